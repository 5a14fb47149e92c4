// The agent's token: from the `#token=` fragment (which browsers never send to the server)
// or the login form, kept in sessionStorage for this tab only, dropped when it expires.

const KEY = "wasync.token";

/** The token of this tab: a fresh `#token=` wins (and leaves the address bar). */
export function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get("token");
  if (given) {
    sessionStorage.setItem(KEY, given.trim());
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY);
}

export function keepToken(token) {
  sessionStorage.setItem(KEY, token.trim());
}

export function dropToken() {
  sessionStorage.removeItem(KEY);
}

/** The token's claims, unverified (the server verifies); null when it is not a JWT. */
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

/** True when the token's `exp` has passed. */
export function expired(token) {
  const exp = claims(token)?.exp;
  return typeof exp === "number" && exp * 1000 <= Date.now();
}

/** Milliseconds until the token expires (null: no `exp`). */
export function msLeft(token) {
  const exp = claims(token)?.exp;
  return typeof exp === "number" ? exp * 1000 - Date.now() : null;
}
