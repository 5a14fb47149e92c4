// The left column (aria-label "Conversas"): the caller's chats by last message, with unread
// badges, previews, the session they came through, search, filters and cursor pages.
// What a USER sees is decided by the server (the one predicate behind REST and /ws); the
// list only ever shows chats that REST returned.

import { query } from "./api.js";
import { debounce, fill, h, reconcile } from "./dom.js";
import { compareTimes, shortWhen, t } from "./i18n.js";
import { chatTitle, preview } from "./names.js";

const PAGE = 50;

export class ChatList {
  constructor(page, root) {
    this.page = page;
    this.chats = new Map();
    this.items = new Map();
    this.nextCursor = null;
    this.loading = null;
    this.generation = 0;
    this.pendingRefresh = new Map();
    this.build(root);
  }

  build(root) {
    const isAdmin = this.page.me.role === "ADMIN";
    this.search = h("input", {
      type: "search",
      "aria-label": t("search"),
      placeholder: t("search"),
      oninput: debounce(() => this.reload(), 250),
    });
    this.status = select(t("statusFilter"), [
      ["OPEN", t("open")],
      ["CLOSED", t("closed")],
      ["", t("all")],
    ]);
    this.assigned = select(t("assignFilter"), [
      ["", t("all")],
      ["me", t("mine")],
      ["none", t("unassigned")],
    ]);
    this.status.onchange = this.assigned.onchange = () => this.reload();
    this.assigned.hidden = !isAdmin;
    this.list = h("ul", { class: "chat-items", role: "list" });
    this.empty = h("p", { class: "empty", hidden: true }, t("noChats"));
    this.more = h("button", { class: "more", hidden: true, onclick: () => this.loadMore() });
    this.more.textContent = t("loadMore");
    this.scroller = h("div", { class: "chat-scroll" }, this.list, this.empty, this.more);
    this.scroller.addEventListener("scroll", () => {
      const s = this.scroller;
      if (s.scrollTop + s.clientHeight > s.scrollHeight - 120) this.loadMore();
    });
    fill(root, h("div", { class: "filters" }, this.search, this.status, this.assigned), this.scroller);
  }

  filters() {
    return { status: this.status.value, assigned: this.assigned.value, q: this.search.value.trim() };
  }

  /** Start again from the first page (new filters, a resync). */
  async reload() {
    this.generation += 1;
    this.chats.clear();
    this.nextCursor = null;
    this.loading = null;
    await this.fetchPage(null);
  }

  async loadMore() {
    if (this.nextCursor && !this.loading) await this.fetchPage(this.nextCursor);
  }

  async fetchPage(cursor) {
    const generation = this.generation;
    const params = { ...this.filters(), limit: PAGE, cursor };
    this.loading = this.page.api.get(`/api/chats${query(params)}`);
    try {
      const body = await this.loading;
      if (generation !== this.generation) return;
      for (const chat of body.chats) this.chats.set(chat.id, chat);
      this.nextCursor = body.nextCursor;
      this.render();
    } finally {
      if (generation === this.generation) this.loading = null;
    }
  }

  /** A frame concerned this chat: read it again (coalesced) and place or drop it. */
  touch(chatId) {
    if (this.pendingRefresh.has(chatId)) return this.pendingRefresh.get(chatId);
    const done = new Promise((resolve) => setTimeout(resolve, 50)).then(() => this.refresh(chatId));
    this.pendingRefresh.set(chatId, done);
    return done.finally(() => this.pendingRefresh.delete(chatId));
  }

  async refresh(chatId) {
    let chat = null;
    try {
      chat = await this.page.api.get(`/api/chats/${chatId}`);
    } catch (exc) {
      if (exc.status !== 404) throw exc;
    }
    if (chat && this.matches(chat)) this.chats.set(chatId, chat);
    else this.chats.delete(chatId);
    this.render();
    this.page.chatChanged(chatId, chat);
    return chat;
  }

  matches(chat) {
    const f = this.filters();
    if (f.status && chat.status !== f.status) return false;
    if (f.assigned === "me" && chat.assignedUserId !== this.page.me.userId) return false;
    if (f.assigned === "none" && chat.assignedUserId !== null) return false;
    if (f.q) {
      const q = f.q.toLowerCase();
      const digits = q.replace(/\D/g, "");
      const hay = `${chatTitle(chat)} ${chat.name || ""}`.toLowerCase();
      return hay.includes(q) || (digits.length >= 3 && (chat.phone || "").includes(digits));
    }
    return true;
  }

  sorted() {
    return [...this.chats.values()].sort(
      (a, b) => compareTimes(b.sortAt, a.sortAt) || b.id - a.id,
    );
  }

  render() {
    const chats = this.sorted();
    const live = new Set(chats.map((c) => c.id));
    for (const id of this.items.keys()) if (!live.has(id)) this.items.delete(id);
    reconcile(this.list, chats.map((chat) => this.item(chat)));
    this.empty.hidden = chats.length > 0;
    this.more.hidden = !this.nextCursor;
    this.page.unreadChanged(chats.reduce((sum, c) => sum + (c.unreadCount || 0), 0));
  }

  item(chat) {
    let li = this.items.get(chat.id);
    if (!li) {
      li = h("li", { dataset: { chatId: chat.id } });
      this.items.set(chat.id, li);
    }
    const open = this.page.openChatId === chat.id;
    const signature = JSON.stringify([chat, open]);
    if (li.signature === signature) return li; // unchanged: keep focus where it is
    li.signature = signature;
    const unread = chat.unreadCount > 0
      ? h("span", { class: "badge", "aria-label": t("unread", { n: chat.unreadCount }) }, chat.unreadCount)
      : null;
    const session = chat.session ? `${chat.session.name} · ${chat.session.provider}` : "";
    const button = h(
      "button",
      {
        class: "chat-item",
        "aria-current": open ? "true" : null,
        onclick: () => this.page.openChat(chat.id),
      },
      h("span", { class: "chat-line" }, h("strong", { class: "chat-title" }, chatTitle(chat)),
        h("time", { datetime: chat.sortAt }, shortWhen(chat.lastMessage?.sentAt || chat.sortAt))),
      h("span", { class: "chat-line" }, h("span", { class: "preview" }, preview(chat.lastMessage)), unread),
      h("span", { class: "session" }, session, chat.status === "CLOSED" ? ` · ${t("chat.CLOSED")}` : ""),
    );
    fill(li, button);
    li.dataset.unread = String(chat.unreadCount || 0);
    return li;
  }

  /** Mark the open chat in the list. */
  highlight() {
    for (const [id, li] of this.items) {
      const button = li.firstChild;
      if (button) button.setAttribute("aria-current", String(id === this.page.openChatId));
    }
  }
}

function select(name, options) {
  return h(
    "select",
    { "aria-label": name },
    options.map(([value, text]) => h("option", { value }, text)),
  );
}
