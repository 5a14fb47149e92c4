// How a chat and a message are named on the page.

import { t } from "./i18n.js";

/** The lead's full name, or null. */
export function leadName(lead) {
  if (!lead) return null;
  return [lead.firstName, lead.lastName].filter(Boolean).join(" ").trim() || null;
}

/** A chat's title: the lead's name once an agent gave it one, else the WhatsApp name, the
 * phone, or the jid. (A new lead is named "Lead <last 4 digits>" by default, which says less
 * than the customer's own WhatsApp name.) */
export function chatTitle(chat) {
  const lead = leadName(chat.lead);
  const placeholder = chat.phone && lead === `Lead ${chat.phone.slice(-4)}`;
  if (lead && !placeholder) return lead;
  return chat.name || lead || (chat.phone ? `+${chat.phone}` : chat.jid);
}

/** A one-line preview of a message (list rows, quotes). */
export function preview(message) {
  if (!message) return "";
  if (message.revoked) return t("deleted");
  const kind = message.type === "audio" && message.mediaVoice ? "voice" : message.type;
  const body = (message.body || "").replace(/\s+/g, " ").trim();
  if (kind === "text") return body;
  const name = t(`type.${kind}`);
  const detail = body || message.mediaFilename || "";
  return detail ? `${name}: ${detail}` : name;
}

/** The tick state of a message's ack (`AckLevel`). */
export function ackState(ack) {
  if (ack === "queued") return "queued";
  switch (ack) {
    case -1:
      return "error";
    case 0:
      return "pending";
    case 1:
      return "sent";
    case 2:
      return "delivered";
    case 3:
      return "read";
    case 4:
      return "played";
    default:
      return null;
  }
}

export const TICKS = {
  queued: "◷",
  pending: "◷",
  sent: "✓",
  delivered: "✓✓",
  read: "✓✓",
  played: "✓✓",
  error: "⚠",
};
