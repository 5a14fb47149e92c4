// One /ws connection for the whole page. After a drop it reconnects with `since=<last id>`,
// so the server replays exactly what was missed (no gap, no duplicate) and the page never
// reloads. A connection that never got a frame has no id to resume from: the page reloads
// its lists through REST instead (`onResync`), as it does for the server's `resync` frame.

const MAX_BACKOFF_MS = 3000;

export class Live {
  /**
   * @param {object} hooks onFrame(frame), onResync(), onState("connected"|"reconnecting"),
   *   check() → Promise<boolean> (is the token still good? false ends the session)
   */
  constructor(token, hooks) {
    this.token = token;
    this.hooks = hooks;
    this.lastId = null;
    this.socket = null;
    this.failures = 0;
    this.stopped = false;
    this.connects = 0;
    this.resyncs = 0; // reloads through REST instead of a replay (for tests and diagnostics)
    this.opened = Promise.withResolvers ? Promise.withResolvers() : deferred();
  }

  /** Connect; resolves once the first connection is open (frames then queue in order). */
  start() {
    this.connect();
    return this.opened.promise;
  }

  stop() {
    this.stopped = true;
    this.socket?.close(1000, "bye");
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const q = new URLSearchParams({ token: this.token });
    if (this.lastId !== null) q.set("since", String(this.lastId));
    return `${scheme}://${location.host}/ws?${q}`;
  }

  connect() {
    if (this.stopped) return;
    const resuming = this.connects > 0;
    const blind = resuming && this.lastId === null;
    const socket = new WebSocket(this.url());
    this.socket = socket;
    this.connects += 1;
    socket.onopen = () => {
      this.failures = 0;
      this.hooks.onState?.("connected");
      this.opened.resolve();
      if (blind) this.resync();
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = () => {
      if (this.socket !== socket || this.stopped) return;
      this.hooks.onState?.("reconnecting");
      this.retry();
    };
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof frame.id === "number") {
      if (this.lastId !== null && frame.id <= this.lastId && frame.type !== "resync") return;
      this.lastId = frame.id;
    }
    if (frame.type === "resync") {
      this.resync();
      return;
    }
    this.hooks.onFrame(frame);
  }

  resync() {
    this.resyncs += 1;
    this.hooks.onResync?.();
  }

  async retry() {
    this.failures += 1;
    const wait = Math.min(250 * 2 ** (this.failures - 1), MAX_BACKOFF_MS);
    await new Promise((done) => setTimeout(done, wait));
    if (this.stopped) return;
    const ok = await this.hooks.check?.();
    if (ok === false) return; // the session ended (expired or revoked token)
    this.connect();
  }
}

function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}
