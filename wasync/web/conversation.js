// The middle column's message area (aria-label "Conversa"): bubbles in provider time order
// with day separators, older pages loaded when scrolled to the top, and every live change
// (new message, ack, edit, delete, reaction, merged echo, media) applied in place.
// Our own sends show at once as local bubbles ("local:<key>"); the row a send made can reach
// the page before the POST's answer names it (its /ws frame, a history read after a resync):
// a row of ours that looks like a send still waiting for its answer is kept, not shown, until
// that answer binds the two, so one send is one bubble whatever order they arrive in. A send
// not bound yet belongs to its chat: it shows again (waiting, or refused with its retry) when
// the agent comes back to that chat from another.

import { query } from "./api.js";
import { Bubble } from "./bubble.js";
import { h, reconcile } from "./dom.js";
import { compareTimes, dayKey, dayLabel, t } from "./i18n.js";

const PAGE = 50;

export class Conversation {
  constructor(page, scroller, list) {
    this.page = page;
    this.scroller = scroller;
    this.list = list;
    this.chatId = null;
    this.locals = new Map(); // "local:<key>" → our sends not bound to a row yet, of every chat
    this.reset();
    scroller.addEventListener("scroll", () => {
      if (scroller.scrollTop < 80) this.loadOlder();
    });
  }

  reset() {
    for (const bubble of this.bubbles?.values() ?? []) bubble.dispose();
    this.messages = new Map(); // key (message id, or "local:<key>") → message
    this.bubbles = new Map();
    this.byPid = new Map(); // providerMessageId → message, for quotes and reactions
    this.reactionsOf = new Map(); // target providerMessageId → Map(sender → emoji)
    this.separators = new Map();
    this.nextCursor = null;
    this.loadingOlder = null;
    this.generation = (this.generation ?? 0) + 1;
    this.list.replaceChildren();
  }

  /** Show `chatId`'s newest messages, scrolled to the end. */
  async open(chatId) {
    this.reset();
    this.chatId = chatId;
    if (chatId === null) return;
    // This chat's sends not bound to a row yet: waiting for their answer, or refused (the
    // same chat again after a resync, or back from another chat).
    for (const [key, local] of this.locals) {
      if (local.chatId === chatId) this.remember(local, key);
    }
    this.render();
    const generation = this.generation;
    const body = await this.page.api.get(`/api/chats/${chatId}/messages${query({ limit: PAGE })}`);
    if (generation !== this.generation) return;
    this.nextCursor = body.nextCursor;
    for (const message of body.messages) this.remember(message);
    this.render();
    this.scrollToEnd();
  }

  /** Reload what is shown (after a resync). */
  async reload() {
    if (this.chatId !== null) await this.open(this.chatId);
  }

  async loadOlder() {
    if (!this.nextCursor || this.loadingOlder || this.chatId === null) return;
    const generation = this.generation;
    const url = `/api/chats/${this.chatId}/messages${query({ limit: PAGE, cursor: this.nextCursor })}`;
    this.scroller.setAttribute("aria-busy", "true");
    this.loadingOlder = this.page.api.get(url);
    try {
      const body = await this.loadingOlder;
      if (generation !== this.generation) return;
      const before = this.scroller.scrollHeight - this.scroller.scrollTop;
      this.nextCursor = body.nextCursor;
      for (const message of body.messages) this.remember(message);
      this.render();
      this.scroller.scrollTop = this.scroller.scrollHeight - before; // stay on what was read
    } finally {
      this.scroller.removeAttribute("aria-busy");
      if (generation === this.generation) this.loadingOlder = null;
    }
  }

  remember(message, key = message.id) {
    if (message.type === "reaction") {
      const sender = message.fromMe ? "me" : message.senderJid || "them";
      const target = message.replyTo;
      if (!this.reactionsOf.has(target)) this.reactionsOf.set(target, new Map());
      const byTarget = this.reactionsOf.get(target);
      if (message.body) byTarget.set(sender, message.body);
      else byTarget.delete(sender); // an empty reaction takes it back
      this.byPid.get(target) && this.touch(this.byPid.get(target));
      return;
    }
    const old = this.messages.get(key);
    const merged = old ? { ...old, ...message } : message;
    this.messages.set(key, merged);
    if (merged.providerMessageId) this.byPid.set(merged.providerMessageId, merged);
    this.touch(merged, key);
  }

  touch(message, key = message.id) {
    const bubble = this.bubbles.get(key);
    if (bubble) bubble.update(message);
  }

  sorted() {
    return [...this.messages.entries()].sort(([ka, a], [kb, b]) => {
      const at = compareTimes(a.sentAt, b.sentAt);
      if (at) return at;
      const ia = typeof a.id === "number" ? a.id : Infinity;
      const ib = typeof b.id === "number" ? b.id : Infinity;
      return ia - ib || String(ka).localeCompare(String(kb));
    });
  }

  render() {
    const nodes = [];
    let day = null;
    const waiting = this.waitingSends();
    for (const [key, message] of this.sorted()) {
      if (waiting.length && this.awaitsAnswer(key, message, waiting)) continue;
      const today = dayKey(message.sentAt || new Date().toISOString());
      if (today !== day) {
        nodes.push(this.separator(today));
        day = today;
      }
      nodes.push(this.bubble(key, message).el);
    }
    reconcile(this.list, nodes);
  }

  bubble(key, message) {
    let bubble = this.bubbles.get(key);
    if (!bubble) {
      bubble = new Bubble(message, {
        api: this.page.api,
        quoted: (pid) => this.byPid.get(pid) ?? null,
        reactions: (pid) => [...(this.reactionsOf.get(pid)?.values() ?? [])],
        retry: (m) => this.page.composer.retry(m),
        canRetry: (m) => this.page.composer.canRetry(m),
      });
      this.bubbles.set(key, bubble);
    }
    return bubble;
  }

  /** Our local messages whose POST has not answered yet. */
  waitingSends() {
    return [...this.messages.entries()].filter(([key, m]) => isLocal(key) && !m.sendError).map(([, m]) => m);
  }

  /** Is this row (not on screen yet) perhaps the one a waiting send made: ours, newer than
   * every row shown when the send began, the same type and text? Then its answer decides:
   * bound to the local bubble, or (another send) shown once the answers are in. An older row
   * with the same text ("ok") shows as ever, a resync's history included. */
  awaitsAnswer(key, message, waiting) {
    if (isLocal(key) || !message.fromMe || this.bubbles.has(key)) return false;
    return waiting.some(
      (local) =>
        key > (local.after ?? 0) && local.type === message.type && (local.body ?? null) === (message.body ?? null),
    );
  }

  separator(day) {
    if (!this.separators.has(day)) {
      this.separators.set(day, h("li", { class: "day", role: "separator", dataset: { day } }, dayLabel(day)));
    }
    return this.separators.get(day);
  }

  nearEnd() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 150;
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  // --- live changes ---------------------------------------------------------------------

  /** A message arrived (a frame, or our own send's answer). */
  add(message) {
    if (message.chatId !== this.chatId) return;
    const follow = this.nearEnd() || message.fromMe;
    this.remember(message);
    this.render();
    if (follow) this.scrollToEnd();
  }

  /** Apply a frame about one message of this chat. */
  update(messageId, change) {
    const message = this.messages.get(messageId);
    if (!message) return;
    this.remember({ ...message, ...change });
  }

  /** An echo was merged into our send: the echo's row is gone. */
  drop(messageId) {
    const bubble = this.bubbles.get(messageId);
    bubble?.dispose();
    this.bubbles.delete(messageId);
    this.messages.delete(messageId);
    this.render();
  }

  // --- our sends (see composer.js) ------------------------------------------------------

  addLocal(key, message) {
    // The row this send makes is newer than every row shown now: only such a row may be it.
    const after = Math.max(0, ...[...this.messages.keys()].filter((k) => typeof k === "number"));
    const local = { ...message, chatId: this.chatId, after };
    this.locals.set(`local:${key}`, local);
    this.remember(local, `local:${key}`);
    this.render();
    this.scrollToEnd();
  }

  /** The server queued our local message as `messageId`: one bubble, the server's id. The
   * row may be here already (its frame or a history read came first): our bubble takes its
   * state, unless the row is on screen already; then that bubble stays, showing our upload. */
  bind(key, messageId) {
    this.locals.delete(`local:${key}`); // its chat shows the row from now on
    const local = this.messages.get(`local:${key}`);
    if (!local) return;
    const bubble = this.bubbles.get(`local:${key}`);
    this.messages.delete(`local:${key}`);
    this.bubbles.delete(`local:${key}`);
    const row = this.messages.get(messageId);
    const merged = row
      ? { ...row, localFile: local.localFile ?? row.localFile }
      : { ...local, id: messageId, ack: 0, sendError: null };
    if (this.bubbles.has(messageId)) bubble?.dispose();
    else if (bubble) this.bubbles.set(messageId, bubble);
    this.remember(merged, messageId);
    this.render();
  }

  /** The send was refused: its bubble shows the error and a retry, now if its chat is open,
   * else when the agent comes back to it. */
  failLocal(key, error) {
    const stored = this.locals.get(`local:${key}`);
    if (!stored) return;
    const failed = { ...stored, sendError: error || t("sendFailed") };
    this.locals.set(`local:${key}`, failed);
    if (!this.messages.has(`local:${key}`)) return; // its chat is not the one shown
    this.remember(failed, `local:${key}`);
    this.render(); // a row it held back (another send's) shows now
  }

  dropLocal(key) {
    this.locals.delete(`local:${key}`);
    this.bubbles.get(`local:${key}`)?.dispose();
    this.bubbles.delete(`local:${key}`);
    this.messages.delete(`local:${key}`);
    this.render();
  }
}

function isLocal(key) {
  return typeof key === "string" && key.startsWith("local:");
}
