// The attendance page: login, then three columns kept live by one /ws connection.
// Order of start: the WebSocket first (frames queue from the moment it is open), then the
// REST reads, then the queued frames: nothing committed in between is missed, and applying
// a frame twice changes nothing.

import { Alerts } from "./alerts.js";
import { Api, ApiError } from "./api.js";
import { claims, dropToken, expired, keepToken, msLeft, takeToken } from "./auth.js";
import { Bell } from "./bell.js";
import { ChatList } from "./chatlist.js";
import { Composer } from "./composer.js";
import { Conversation } from "./conversation.js";
import { fill, h } from "./dom.js";
import { label, t, translate } from "./i18n.js";
import { LeadPanel } from "./leadpanel.js";
import { Live } from "./live.js";
import { chatTitle } from "./names.js";

const $ = (id) => document.getElementById(id);
// A frame's follow-up read failing (the daemon restarting) is not the page's end: the next
// frame, or the resync after a reconnect, reads it again.
const quietly = (promise) => promise?.catch?.((exc) => console.warn("wasync:", exc.message || exc));
const MAX_TIMER_MS = 2_000_000_000;

class Page {
  constructor(token, me, logout) {
    this.token = token;
    this.me = me;
    this.logout = logout;
    this.openChatId = null;
    this.openChatRow = null;
    this.ready = false;
    this.queued = [];
    this.api = new Api(token, () => logout(expired(token) ? t("expired") : t("invalid")));
    this.alerts = new Alerts(t("title"));
    this.list = new ChatList(this, $("chats"));
    this.conversation = new Conversation(this, $("messages-scroll"), $("messages"));
    this.composer = new Composer(this, $("composer"));
    this.panel = new LeadPanel(this, $("lead"));
    this.bell = new Bell(this, $("bell"), $("bell-panel"));
    this.live = new Live(token, {
      onFrame: (frame) => (this.ready ? this.apply(frame) : this.queued.push(frame)),
      onResync: () => quietly(this.resync()),
      onState: (state) => this.connection(state),
      check: () => this.check(),
    });
    window.wasyncPage = this; // for the browser tests and the curious
  }

  async start() {
    fill($("who"), `${this.me.userId} · ${this.me.role}`);
    this.connection("reconnecting");
    await this.live.start();
    await Promise.all([this.list.reload(), this.bell.load(), this.panel.load()]);
    this.ready = true;
    for (const frame of this.queued.splice(0)) this.apply(frame);
    const wanted = Number(new URLSearchParams(location.search).get("chat"));
    // Not again when the agent opened it while the lists loaded (openChat wrote ?chat=).
    if (wanted && wanted !== this.openChatId) await this.openChat(wanted);
  }

  stop() {
    this.live.stop();
  }

  connection(state) {
    const el = $("conn");
    el.dataset.state = state;
    el.textContent = state === "connected" ? t("connected") : t("reconnecting");
  }

  async check() {
    try {
      await this.api.get("/api/me");
      return true;
    } catch (exc) {
      return !(exc instanceof ApiError && exc.status === 401);
    }
  }

  async resync() {
    await Promise.all([this.list.reload(), this.conversation.reload(), this.bell.load()]);
    if (this.openChatId !== null) await this.list.touch(this.openChatId);
  }

  // --- the open chat ----------------------------------------------------------------------

  async openChat(chatId) {
    this.openChatId = chatId;
    history.replaceState(null, "", `${location.pathname}?chat=${chatId}`);
    this.list.render();
    let chat;
    try {
      chat = await this.api.get(`/api/chats/${chatId}`);
    } catch (exc) {
      if (exc.status === 404) return this.closeChat(t("transferred"));
      throw exc;
    }
    if (this.openChatId !== chatId) return;
    this.showChat(chat);
    this.composer.enable(true);
    $("pick").hidden = true;
    await this.conversation.open(chatId);
    if (chat.unreadCount > 0) {
      await this.api.post(`/api/chats/${chatId}/read`).catch(() => null);
    }
  }

  closeChat(note) {
    this.openChatId = null;
    this.openChatRow = null;
    history.replaceState(null, "", location.pathname);
    this.conversation.open(null);
    this.composer.enable(false);
    this.panel.show(null);
    fill($("chat-header"));
    const pick = $("pick");
    pick.textContent = note || t("pickChat");
    pick.hidden = false;
    this.list.render();
  }

  showChat(chat) {
    this.openChatRow = chat;
    const phone = chat.phone ? `+${chat.phone}` : chat.jid;
    const session = chat.session ? `${chat.session.name} · ${chat.session.provider}` : "";
    fill(
      $("chat-header"),
      h("h2", {}, chatTitle(chat)),
      h("span", { class: "chat-meta" }, [phone, session, label("chat", chat.status)].filter(Boolean).join(" · ")),
    );
    this.panel.show(chat);
  }

  /** The list read a chat again (a frame concerned it): keep the open one current. */
  chatChanged(chatId, chat) {
    if (chatId !== this.openChatId) return;
    if (chat === null) this.closeChat(t("transferred"));
    else this.showChat(chat);
  }

  unreadChanged(total) {
    this.alerts.unread(total);
  }

  // --- frames ------------------------------------------------------------------------------

  apply(frame) {
    const chatId = frame.chatId;
    const data = frame.data || {};
    const open = chatId !== null && chatId === this.openChatId;
    switch (frame.type) {
      case "chat:new-message":
        if (frame.message) {
          if (open) this.conversation.add(frame.message);
          if (!frame.message.fromMe && frame.message.type !== "reaction") this.alerts.chime();
        }
        break;
      case "chat:message-ack":
        if (open) this.conversation.update(frame.messageId, { ack: data.ack, ackError: data.error });
        break;
      case "chat:message-edited":
        if (open) this.conversation.update(frame.messageId, { body: data.body, edited: true });
        break;
      case "chat:message-revoked":
        if (open) this.conversation.update(frame.messageId, { revoked: true });
        break;
      case "chat:message-media":
        if (open) this.conversation.update(frame.messageId, { mediaStatus: data.mediaStatus ?? frame.id });
        break;
      case "chat:updated":
        if (open && data.mergedMessageId) this.conversation.drop(data.mergedMessageId);
        if (data.mergedChatId && data.mergedChatId === this.openChatId) quietly(this.openChat(chatId));
        break;
      case "lead:created":
      case "lead:updated":
        if (open) quietly(this.panel.reloadLead());
        break;
      case "notification:new":
      case "notification:read":
        quietly(this.bell.load());
        return;
      default:
        return;
    }
    if (chatId !== null) quietly(this.list.touch(chatId));
  }
}

// --- login -----------------------------------------------------------------------------------

let current = null;
let expiry = null;

function showLogin(message) {
  current?.stop();
  current = null;
  clearTimeout(expiry);
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token-input").value = "";
  $("token-input").focus();
}

function logout(message) {
  dropToken();
  showLogin(message);
}

async function boot() {
  const token = takeToken();
  if (!token) return showLogin("");
  if (expired(token)) return logout(t("expired"));
  if (!claims(token)) return logout(t("invalid"));
  let me;
  try {
    me = await new Api(token, null).get("/api/me");
  } catch (exc) {
    if (exc.status === 401) return logout(t("invalid"));
    return showLogin(t("unreachable"));
  }
  $("login").hidden = true;
  $("app").hidden = false;
  const left = msLeft(token);
  if (left !== null) expiry = setTimeout(() => logout(t("expired")), Math.min(left, MAX_TIMER_MS));
  current = new Page(token, me, logout);
  await current.start();
}

document.addEventListener("DOMContentLoaded", () => {
  translate(document);
  document.title = t("title");
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    keepToken(token);
    boot();
  });
  $("logout").addEventListener("click", () => logout(""));
  // A new login URL pasted into this tab changes only the fragment: no page load.
  addEventListener("hashchange", () => {
    if (!new URLSearchParams(location.hash.slice(1)).get("token")) return;
    current?.stop();
    current = null;
    boot();
  });
  boot();
});
