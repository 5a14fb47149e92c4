// One message bubble: quote, media, text, time, ticks, edited/deleted marks, reactions, and a
// send error with its retry. A bubble is built once and updated in place, so a playing
// audio or video is not interrupted when an ack or a reaction arrives.

import { fill, h } from "./dom.js";
import { clock, t } from "./i18n.js";
import { MediaView } from "./media.js";
import { TICKS, ackState, preview } from "./names.js";

export class Bubble {
  /** `ctx`: { api, quoted(providerId) → message|null, reactions(providerId) → [emoji],
   * retry(message) } */
  constructor(message, ctx) {
    this.ctx = ctx;
    this.el = h("li", { class: `bubble ${message.fromMe ? "out" : "in"}` });
    this.quote = h("blockquote", { class: "quote", hidden: true });
    this.media = new MediaView(ctx.api);
    this.body = h("p", { class: "body" });
    this.edited = h("span", { class: "edited", hidden: true }, t("edited"));
    this.time = h("time");
    this.tick = h("span", { class: "tick", role: "img" });
    this.meta = h("span", { class: "meta" }, this.edited, this.time, this.tick);
    this.reactions = h("span", { class: "reactions", hidden: true });
    this.error = h("p", { class: "send-error", role: "alert", hidden: true });
    this.el.append(this.quote, this.media.el, this.body, this.meta, this.reactions, this.error);
    this.update(message);
  }

  update(message) {
    this.message = message;
    const el = this.el;
    el.dataset.messageId = message.id ?? "";
    el.dataset.type = message.type;
    el.classList.toggle("revoked", Boolean(message.revoked));
    this.renderQuote(message);
    this.media.show(message.revoked ? null : message);
    const text = message.revoked ? t("deleted") : message.type === "text" ? message.body : mediaCaption(message);
    this.body.textContent = text || "";
    this.body.hidden = !text;
    this.edited.hidden = !message.edited || message.revoked;
    this.time.textContent = clock(message.sentAt);
    this.time.dateTime = message.sentAt || "";
    this.renderTick(message);
    this.renderReactions();
    this.renderError(message);
  }

  renderQuote(message) {
    if (!message.replyTo || message.type === "reaction") {
      this.quote.hidden = true;
      return;
    }
    const quoted = this.ctx.quoted(message.replyTo);
    fill(this.quote, quoted ? preview(quoted) : t("quoted"));
    this.quote.hidden = false;
  }

  renderTick(message) {
    const state = message.fromMe ? ackState(message.ack) : null;
    this.el.dataset.status = state || "";
    this.tick.hidden = !state;
    if (!state) return;
    this.tick.textContent = TICKS[state];
    this.tick.dataset.state = state;
    this.tick.setAttribute("aria-label", t(`ack.${state}`));
    this.tick.title = t(`ack.${state}`);
  }

  renderReactions() {
    const list = this.message.providerMessageId ? this.ctx.reactions(this.message.providerMessageId) : [];
    this.reactions.hidden = list.length === 0;
    this.reactions.textContent = list.join(" ");
  }

  renderError(message) {
    const failed = message.fromMe && (message.ack === -1 || message.sendError);
    this.error.hidden = !failed;
    if (!failed) return;
    const reason = message.sendError || message.ackError;
    const retry = this.ctx.canRetry(message)
      ? h("button", { class: "retry", onclick: () => this.ctx.retry(message) }, t("retry"))
      : null;
    fill(this.error, `${t("sendFailed")}${reason ? `: ${reason}` : ""} `, retry);
  }

  dispose() {
    this.media.dispose();
  }
}

function mediaCaption(message) {
  return message.type === "location" || message.type === "contact" || message.type === "other"
    ? message.body || t(`type.${message.type}`)
    : message.body;
}
