// Texts of the page: Brazilian Portuguese by default, English when the browser prefers it
// (navigator.languages). The accessible names Conversas, Conversa, Lead, Mensagem, Enviar,
// Token and Entrar are a contract with tests and users' assistive tools: keep them.

const PT = {
  title: "Atendimento",
  conversations: "Conversas",
  conversation: "Conversa",
  lead: "Lead",
  message: "Mensagem",
  send: "Enviar",
  token: "Token",
  login: "Entrar",
  loginTitle: "Entrar no atendimento",
  loginHelp: "Cole o token de acesso (JWT) gerado por `wasync token`.",
  logout: "Sair",
  expired: "Sua sessão expirou. Entre novamente com um novo token.",
  invalid: "Token inválido. Confira e tente de novo.",
  unreachable: "Servidor indisponível. Tente de novo em instantes.",
  search: "Buscar por nome ou telefone",
  statusFilter: "Situação",
  open: "Abertas",
  closed: "Encerradas",
  assignFilter: "Atribuição",
  all: "Todas",
  mine: "Minhas",
  unassigned: "Não atribuídas",
  noChats: "Nenhuma conversa",
  loadMore: "Carregar mais conversas",
  unread: "{n} não lidas",
  pickChat: "Escolha uma conversa à esquerda.",
  olderLoading: "Carregando mensagens anteriores…",
  attach: "Anexar arquivo",
  removeAttachment: "Remover anexo",
  today: "Hoje",
  yesterday: "Ontem",
  edited: "editada",
  deleted: "Mensagem apagada",
  quoted: "Resposta a uma mensagem",
  you: "Você",
  retry: "Tentar novamente",
  sendFailed: "Falha no envio",
  "ack.queued": "Na fila",
  "ack.pending": "Pendente",
  "ack.sent": "Enviada",
  "ack.delivered": "Entregue",
  "ack.read": "Lida",
  "ack.played": "Reproduzida",
  "ack.error": "Erro",
  "type.image": "Imagem",
  "type.video": "Vídeo",
  "type.audio": "Áudio",
  "type.voice": "Mensagem de voz",
  "type.document": "Documento",
  "type.sticker": "Figurinha",
  "type.location": "Localização",
  "type.contact": "Contato",
  "type.reaction": "Reação",
  "type.other": "Mensagem",
  download: "Baixar {name}",
  name: "Nome",
  lastName: "Sobrenome",
  phone: "Telefone",
  leadStatus: "Status do lead",
  score: "Pontuação",
  source: "Origem",
  saveLead: "Salvar lead",
  saved: "Lead salvo.",
  noLead: "Esta conversa não tem lead (grupo).",
  chatStatus: "Situação da conversa",
  "chat.OPEN": "Aberta",
  "chat.CLOSED": "Encerrada",
  assignedTo: "Atribuída a {user}",
  notAssigned: "Não atribuída",
  assignMe: "Atribuir a mim",
  transferTo: "Transferir para",
  transfer: "Transferir",
  close: "Encerrar conversa",
  reopen: "Reabrir conversa",
  markRead: "Marcar como lida",
  quickReplies: "Respostas rápidas",
  actions: "Ações",
  notifications: "Notificações",
  noNotifications: "Nenhuma notificação",
  connected: "Conectado",
  reconnecting: "Reconectando…",
  transferred: "Esta conversa não está mais com você.",
  "lead.NEW": "Novo",
  "lead.CONTACTED": "Contatado",
  "lead.QUALIFIED": "Qualificado",
  "lead.CONVERTED": "Convertido",
  "lead.LOST": "Perdido",
};

const EN = {
  title: "Attendance",
  conversations: "Conversations",
  conversation: "Conversation",
  lead: "Lead",
  message: "Message",
  send: "Send",
  token: "Token",
  login: "Sign in",
  loginTitle: "Sign in to attendance",
  loginHelp: "Paste the access token (JWT) made by `wasync token`.",
  logout: "Sign out",
  expired: "Your session expired. Sign in again with a new token.",
  invalid: "Invalid token. Check it and try again.",
  unreachable: "Server unavailable. Try again in a moment.",
  search: "Search by name or phone",
  statusFilter: "Status",
  open: "Open",
  closed: "Closed",
  assignFilter: "Assignment",
  all: "All",
  mine: "Mine",
  unassigned: "Unassigned",
  noChats: "No conversations",
  loadMore: "Load more conversations",
  unread: "{n} unread",
  pickChat: "Pick a conversation on the left.",
  olderLoading: "Loading earlier messages…",
  attach: "Attach a file",
  removeAttachment: "Remove attachment",
  today: "Today",
  yesterday: "Yesterday",
  edited: "edited",
  deleted: "Message deleted",
  quoted: "Reply to a message",
  you: "You",
  retry: "Retry",
  sendFailed: "Sending failed",
  "ack.queued": "Queued",
  "ack.pending": "Pending",
  "ack.sent": "Sent",
  "ack.delivered": "Delivered",
  "ack.read": "Read",
  "ack.played": "Played",
  "ack.error": "Error",
  "type.image": "Image",
  "type.video": "Video",
  "type.audio": "Audio",
  "type.voice": "Voice message",
  "type.document": "Document",
  "type.sticker": "Sticker",
  "type.location": "Location",
  "type.contact": "Contact",
  "type.reaction": "Reaction",
  "type.other": "Message",
  download: "Download {name}",
  name: "First name",
  lastName: "Last name",
  phone: "Phone",
  leadStatus: "Lead status",
  score: "Score",
  source: "Source",
  saveLead: "Save lead",
  saved: "Lead saved.",
  noLead: "This conversation has no lead (group).",
  chatStatus: "Conversation status",
  "chat.OPEN": "Open",
  "chat.CLOSED": "Closed",
  assignedTo: "Assigned to {user}",
  notAssigned: "Unassigned",
  assignMe: "Assign to me",
  transferTo: "Transfer to",
  transfer: "Transfer",
  close: "Close conversation",
  reopen: "Reopen conversation",
  markRead: "Mark as read",
  quickReplies: "Quick replies",
  actions: "Actions",
  notifications: "Notifications",
  noNotifications: "No notifications",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  transferred: "This conversation is no longer yours.",
  "lead.NEW": "New",
  "lead.CONTACTED": "Contacted",
  "lead.QUALIFIED": "Qualified",
  "lead.CONVERTED": "Converted",
  "lead.LOST": "Lost",
};

/** "pt-BR" unless the browser's first preference we know is English. */
export function pickLanguage(preferred) {
  for (const tag of preferred || []) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith("pt")) return "pt-BR";
    if (lower.startsWith("en")) return "en";
  }
  return "pt-BR";
}

export const lang = pickLanguage(globalThis.navigator?.languages);
const TEXTS = lang === "en" ? EN : PT;

/** The text of `key`, with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = TEXTS[key] ?? PT[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** A known code's label (`lead.NEW` → "Novo"), or the code itself. */
export function label(prefix, code) {
  const key = `${prefix}.${code}`;
  return key in TEXTS ? TEXTS[key] : String(code ?? "");
}

/** Fill `[data-t]` text, `[data-t-label]` aria-labels and `[data-t-placeholder]`. */
export function translate(root) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const el of root.querySelectorAll("[data-t-label]")) {
    el.setAttribute("aria-label", t(el.dataset.tLabel));
  }
  for (const el of root.querySelectorAll("[data-t-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.tPlaceholder));
  }
}

const timeFormat = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(lang, { dateStyle: "medium" });
const dayFormat = new Intl.DateTimeFormat(lang, { dateStyle: "long" });

/** Order two ISO 8601 times by the instant they name, a missing one first. Not by their
 * text: the server's `10:00:05+00:00` and the browser's `10:00:05.500Z` differ in format,
 * and `localeCompare` puts "." before "+" (a reply in the customer's second went above it). */
export function compareTimes(a, b) {
  const at = instant(a);
  const bt = instant(b);
  return at === bt ? 0 : at < bt ? -1 : 1;
}

function instant(iso) {
  const ms = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(ms) ? -Infinity : ms;
}

/** `14:05` for today, a short date otherwise (list previews). */
export function shortWhen(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  return dayKey(iso) === dayKey(new Date().toISOString()) ? timeFormat.format(at) : dateFormat.format(at);
}

/** `14:05` (bubbles). */
export function clock(iso) {
  return iso ? timeFormat.format(new Date(iso)) : "";
}

/** The local calendar day of a time, as `YYYY-MM-DD`. */
export function dayKey(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** "Hoje", "Ontem" or the long date of a day separator. */
export function dayLabel(key) {
  const today = new Date();
  const yesterday = new Date(today.getTime() - 86_400_000);
  if (key === dayKey(today.toISOString())) return t("today");
  if (key === dayKey(yesterday.toISOString())) return t("yesterday");
  const [y, m, d] = key.split("-").map(Number);
  return dayFormat.format(new Date(y, m - 1, d));
}
