// The composer: textbox "Mensagem" (Enter sends, Shift+Enter breaks the line), button
// "Enviar", an attachment. A message shows at once as queued, becomes the server's message
// when the outbox row is made (POST /api/chats/{id}/messages, with an Idempotency-Key so a
// retry can never send twice), then follows its ticks from /ws. A refused or failed send
// shows the error and a retry.

import { fill, h } from "./dom.js";
import { t } from "./i18n.js";

export class Composer {
  constructor(page, form) {
    this.page = page;
    this.requests = new Map(); // message id or local key → the body that was sent
    this.file = null;
    this.text = form.querySelector("textarea");
    this.sendButton = form.querySelector("button[type=submit]");
    this.picker = form.querySelector("input[type=file]");
    this.chip = form.querySelector(".attachment");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    this.picker.addEventListener("change", () => this.attach(this.picker.files?.[0] ?? null));
    this.enable(false);
  }

  enable(on) {
    for (const el of [this.text, this.sendButton, this.picker]) el.disabled = !on;
  }

  attach(file) {
    this.file = file;
    if (!file) {
      this.picker.value = "";
      fill(this.chip);
      return;
    }
    const remove = h("button", { type: "button", "aria-label": t("removeAttachment"), onclick: () => this.attach(null) }, "×");
    fill(this.chip, `${file.name} `, remove);
  }

  /** Put a quick reply into the textbox, at the caret. */
  insert(text) {
    const el = this.text;
    const start = el.selectionStart ?? el.value.length;
    const end = el.selectionEnd ?? el.value.length;
    el.value = el.value.slice(0, start) + text + el.value.slice(end);
    el.focus();
    el.selectionStart = el.selectionEnd = start + text.length;
  }

  async send() {
    const chatId = this.page.openChatId;
    const text = this.text.value.trim();
    const file = this.file;
    if (chatId === null || (!text && !file)) return;
    this.text.value = "";
    this.attach(null);
    const body = file ? await mediaBody(file, text) : { text };
    const local = {
      id: null,
      fromMe: true,
      type: file ? body.type === "voice" ? "audio" : body.type : "text",
      body: file ? text || null : text,
      mediaFilename: file?.name ?? null,
      localFile: file,
      sentAt: new Date().toISOString(),
      ack: "queued",
    };
    await this.post(chatId, newKey(), body, local);
    this.text.focus();
  }

  async post(chatId, key, body, local) {
    const conversation = this.page.conversation;
    this.requests.set(`local:${key}`, { body, local });
    conversation.addLocal(key, { ...local, localKey: key, sendError: null });
    try {
      const row = await this.page.api.post(`/api/chats/${chatId}/messages`, body, { "Idempotency-Key": key });
      this.requests.set(row.messageId, { body, local });
      // Whatever is open now: the key is this send's own; the conversation keeps it for its
      // chat (shown again if the agent went to another chat and comes back).
      conversation.bind(key, row.messageId);
    } catch (exc) {
      conversation.failLocal(key, exc.message);
    }
  }

  canRetry(message) {
    return this.requestFor(message) !== null;
  }

  /** What to send again for a failed message: what this page sent, or a stored text. */
  requestFor(message) {
    const key = message.id === null ? `local:${message.localKey}` : message.id;
    const found = this.requests.get(key);
    if (found) return found;
    if (message.fromMe && message.type === "text" && message.body) {
      return { body: { text: message.body }, local: { ...message, localFile: null } };
    }
    return null;
  }

  /** Send a failed message again. One the server refused keeps its Idempotency-Key (it was
   * never queued); one queued and then failed goes again as a new message, the failed one
   * staying in the history. */
  async retry(message) {
    const chatId = this.page.openChatId;
    const request = this.requestFor(message);
    if (chatId === null || !request) return;
    const fresh = { ...request.local, id: null, ack: "queued", sentAt: new Date().toISOString() };
    if (message.id === null) {
      this.page.conversation.dropLocal(message.localKey);
      await this.post(chatId, message.localKey, request.body, fresh);
    } else {
      await this.post(chatId, newKey(), request.body, fresh);
    }
  }
}

function newKey() {
  if (globalThis.crypto?.randomUUID) return `page-${crypto.randomUUID()}`;
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // plain http on a LAN
  return `page-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

async function mediaBody(file, caption) {
  const mime = file.type || "application/octet-stream";
  const kind = ["image", "video", "audio"].find((k) => mime.startsWith(`${k}/`)) || "document";
  const data = await base64(file);
  const body = { type: kind, data, mimetype: mime, filename: file.name };
  if (caption) body.caption = caption;
  return body;
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
