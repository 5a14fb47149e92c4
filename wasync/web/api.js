// REST calls with the agent's JWT in the Authorization header. A 401 anywhere ends the
// session (the page returns to the login form); other errors carry wasync's one-line
// `{"error": "..."}` message.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  /** `onUnauthorized()` is called once per 401. */
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, { body, headers = {} } = {}) {
    const init = { method, headers: { Authorization: `Bearer ${this.token}`, ...headers } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (exc) {
      throw new ApiError(0, String(exc?.message || exc));
    }
    if (resp.status === 401) {
      this.onUnauthorized?.();
      throw new ApiError(401, "unauthorized");
    }
    if (!resp.ok) throw new ApiError(resp.status, await errorText(resp));
    return resp;
  }

  async json(method, path, options) {
    return (await this.request(method, path, options)).json();
  }

  get(path) {
    return this.json("GET", path);
  }

  post(path, body, headers) {
    return this.json("POST", path, { body: body ?? {}, headers });
  }

  patch(path, body) {
    return this.json("PATCH", path, { body });
  }

  /** A message's media as a blob URL (GET /api/messages/{id}/media), or null when the
   * daemon has none for it (not downloaded yet, or no media endpoint). */
  async mediaUrl(messageId) {
    try {
      const resp = await this.request("GET", `/api/messages/${messageId}/media`);
      return URL.createObjectURL(await resp.blob());
    } catch (exc) {
      if (exc instanceof ApiError && exc.status !== 401) return null;
      throw exc;
    }
  }
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (body && typeof body.error === "string") return body.error;
  } catch {
    // not JSON: fall through
  }
  return `HTTP ${resp.status}`;
}

/** `?a=1&b=` from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") q.set(key, value);
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}
