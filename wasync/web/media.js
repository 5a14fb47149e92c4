// A bubble's media: images, audio and video players and document links, from the daemon's
// media endpoint (GET /api/messages/{id}/media, JWT in the Authorization header, shown as a
// blob: URL). Until the daemon has the file (or where it has no media endpoint) the bubble
// says what the media is and its file name. A `chat:message-media` frame asks for it again.

import { fill, h } from "./dom.js";
import { t } from "./i18n.js";

const MEDIA = new Set(["image", "video", "audio", "document", "sticker"]);

export class MediaView {
  constructor(api) {
    this.api = api;
    this.el = h("div", { class: "media", hidden: true });
    this.url = null;
    this.key = null;
    this.localUrl = null;
  }

  /** Show `message`'s media (null: none). Fetches once per message and media state. */
  show(message) {
    if (!message || !MEDIA.has(message.type)) {
      this.el.hidden = true;
      return;
    }
    this.el.hidden = false;
    if (message.localFile && !this.localUrl) {
      this.localUrl = URL.createObjectURL(message.localFile); // our own upload, shown at once
      this.render(message, this.localUrl);
    }
    const key = `${message.id}:${message.mediaStatus ?? ""}`;
    if (key === this.key) return;
    this.key = key;
    if (!this.localUrl) this.render(message, null);
    if (typeof message.id === "number") this.fetch(message, key);
  }

  async fetch(message, key) {
    const url = await this.api.mediaUrl(message.id).catch(() => null);
    if (key !== this.key) {
      if (url) URL.revokeObjectURL(url);
      return;
    }
    if (!url) return;
    this.release();
    this.url = url;
    this.render(message, url);
  }

  render(message, url) {
    const name = message.mediaFilename || message.localFile?.name || "";
    const kind = message.type === "audio" && message.mediaVoice ? "voice" : message.type;
    const what = `${t(`type.${kind}`)}${name ? ` · ${name}` : ""}`;
    if (!url) {
      fill(this.el, h("span", { class: "media-placeholder", dataset: { mediaType: kind } }, what));
      return;
    }
    fill(this.el, element(message, url, what, name));
  }

  release() {
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = null;
  }

  dispose() {
    this.release();
    if (this.localUrl) URL.revokeObjectURL(this.localUrl);
    this.localUrl = null;
  }
}

function element(message, url, what, name) {
  switch (message.type) {
    case "image":
    case "sticker":
      return h("img", { src: url, alt: what, loading: "lazy" });
    case "video":
      return h("video", { src: url, controls: true, preload: "metadata", "aria-label": what });
    case "audio":
      return h("audio", { src: url, controls: true, preload: "metadata", "aria-label": what });
    default:
      return h(
        "a",
        { href: url, download: name || "arquivo", class: "document" },
        t("download", { name: name || t("type.document") }),
      );
  }
}
