// The notifications bell: the caller's notifications (a new lead for each admin), a badge
// with the unread count, links that open the chat (`/atendimento?chat=<id>`, opened in
// place) and mark the notification read.

import { fill, h } from "./dom.js";
import { shortWhen, t } from "./i18n.js";

export class Bell {
  constructor(page, button, panel) {
    this.page = page;
    this.button = button;
    this.panel = panel;
    this.items = [];
    this.badge = h("span", { class: "badge", hidden: true });
    button.append(this.badge);
    button.addEventListener("click", () => this.toggle());
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.toggle(false);
    });
  }

  toggle(open = this.panel.hidden) {
    this.panel.hidden = !open;
    this.button.setAttribute("aria-expanded", String(open));
    if (open) this.panel.querySelector("a, button")?.focus();
    else this.button.focus();
  }

  async load() {
    const body = await this.page.api.get("/api/notifications?limit=30");
    this.items = body.notifications;
    this.render();
  }

  render() {
    const unread = this.items.filter((n) => !n.read).length;
    this.badge.hidden = unread === 0;
    this.badge.textContent = String(unread);
    this.button.setAttribute("aria-label", unread ? `${t("notifications")} (${unread})` : t("notifications"));
    if (this.items.length === 0) return fill(this.panel, h("p", { class: "empty" }, t("noNotifications")));
    fill(
      this.panel,
      h(
        "ul",
        {},
        this.items.map((n) =>
          h(
            "li",
            { class: n.read ? "read" : "unread" },
            h(
              "a",
              { href: n.link || "#", onclick: (event) => this.follow(event, n) },
              h("strong", {}, n.title),
              h("span", {}, n.message),
              h("time", { datetime: n.createdAt }, shortWhen(n.createdAt)),
            ),
          ),
        ),
      ),
    );
  }

  async follow(event, note) {
    const link = new URL(note.link || "", location.href);
    const chatId = Number(link.searchParams.get("chat"));
    if (link.origin !== location.origin || link.pathname !== location.pathname || !chatId) return;
    event.preventDefault();
    this.toggle(false);
    if (!note.read) {
      await this.page.api.post(`/api/notifications/${note.id}/read`).catch(() => null);
    }
    await this.page.openChat(chatId);
  }
}
