// The right column (aria-label "Lead"): the open chat's lead (name, phone, status, score,
// source; name and status editable), the CRM actions (assign to me and transfer for an
// ADMIN, close / reopen, mark as read) and the quick replies. Every change is a REST call
// through the one writer; what it changed comes back to every open page over /ws.

import { fill, h } from "./dom.js";
import { label, t } from "./i18n.js";

export class LeadPanel {
  constructor(page, root) {
    this.page = page;
    this.root = root;
    this.chat = null;
    this.lead = null;
    this.agents = [];
    this.statuses = [];
    this.replies = [];
    this.note = h("p", { class: "note", role: "status" });
    this.actions = h("section", { class: "actions", "aria-label": t("actions") });
    this.leadBox = h("section", { class: "lead-box", "aria-label": t("lead") });
    this.quick = h("section", { class: "quick", "aria-label": t("quickReplies") });
    fill(root, this.leadBox, this.actions, this.quick, this.note);
    this.render();
  }

  /** What the panel needs once: quick replies, lead statuses, agents (ADMIN). */
  async load() {
    const api = this.page.api;
    const [replies, statuses] = await Promise.all([api.get("/api/quick-replies"), api.get("/api/lead-statuses")]);
    this.replies = replies.quickReplies;
    this.statuses = statuses.leadStatuses;
    if (this.page.me.role === "ADMIN") this.agents = (await api.get("/api/agents")).agents;
    this.renderQuick();
  }

  /** Show `chat` (null: nothing open). */
  async show(chat) {
    const leadChanged = chat?.leadId !== this.chat?.leadId;
    this.chat = chat;
    if (leadChanged) this.lead = null;
    this.render();
    if (chat?.leadId && (leadChanged || !this.lead)) await this.reloadLead();
  }

  async reloadLead() {
    const leadId = this.chat?.leadId;
    if (!leadId) return;
    try {
      const lead = await this.page.api.get(`/api/leads/${leadId}`);
      if (this.chat?.leadId === leadId) {
        this.lead = lead;
        this.renderLead();
      }
    } catch (exc) {
      if (exc.status !== 404) throw exc;
    }
  }

  render() {
    this.renderLead();
    this.renderActions();
    this.renderQuick();
  }

  renderLead() {
    const chat = this.chat;
    if (!chat) return fill(this.leadBox);
    if (!chat.leadId) return fill(this.leadBox, h("p", {}, t("noLead")));
    const lead = this.lead;
    if (!lead) return fill(this.leadBox, h("h2", {}, t("lead")));
    const editing = this.leadBox.contains(document.activeElement);
    if (editing && this.leadBox.dataset.leadId === String(lead.id)) return; // keep the agent's typing
    this.leadBox.dataset.leadId = String(lead.id);
    const first = field("lead-first", t("name"), h("input", { id: "lead-first", value: lead.firstName, maxlength: 100 }));
    const last = field("lead-last", t("lastName"), h("input", { id: "lead-last", value: lead.lastName, maxlength: 100 }));
    const statuses = this.statuses.includes(lead.status) ? this.statuses : [lead.status, ...this.statuses];
    const status = h(
      "select",
      { id: "lead-status" },
      statuses.map((code) => h("option", { value: code, selected: code === lead.status }, label("lead", code))),
    );
    const form = h(
      "form",
      { class: "lead-form", onsubmit: (event) => this.save(event) },
      first,
      last,
      field("lead-status", t("leadStatus"), status),
      h("button", { type: "submit" }, t("saveLead")),
    );
    fill(
      this.leadBox,
      h("h2", {}, t("lead")),
      h(
        "dl",
        {},
        h("dt", {}, t("phone")),
        h("dd", { class: "lead-phone" }, lead.phone ? `+${lead.phone}` : "—"),
        h("dt", {}, t("score")),
        h("dd", { class: "lead-score" }, lead.score),
        h("dt", {}, t("source")),
        h("dd", { class: "lead-source" }, lead.source),
      ),
      form,
    );
  }

  async save(event) {
    event.preventDefault();
    const form = event.target;
    const body = {
      firstName: form.querySelector("#lead-first").value,
      lastName: form.querySelector("#lead-last").value,
      status: form.querySelector("#lead-status").value,
    };
    await this.run(async () => {
      this.lead = await this.page.api.patch(`/api/leads/${this.lead.id}`, body);
      document.activeElement?.blur();
      this.renderLead();
      this.page.list.touch(this.chat.id);
      this.note.textContent = t("saved");
    });
  }

  renderActions() {
    const chat = this.chat;
    if (!chat) return fill(this.actions);
    const me = this.page.me;
    const admin = me.role === "ADMIN";
    const chatPath = `/api/chats/${chat.id}`;
    const assigned = chat.assignedUserId
      ? t("assignedTo", { user: chat.assignedUserId })
      : t("notAssigned");
    const buttons = [];
    if (admin && chat.assignedUserId !== me.userId) {
      buttons.push(button(t("assignMe"), () => this.change(`${chatPath}/assign`, { userId: me.userId })));
    }
    if (admin) buttons.push(this.transfer(chat));
    buttons.push(
      chat.status === "OPEN"
        ? button(t("close"), () => this.change(`${chatPath}/status`, { status: "CLOSED" }))
        : button(t("reopen"), () => this.change(`${chatPath}/status`, { status: "OPEN" })),
      button(t("markRead"), () => this.change(`${chatPath}/read`, {}), { disabled: !chat.unreadCount }),
    );
    fill(
      this.actions,
      h("h2", {}, t("actions")),
      h(
        "p",
        { class: "chat-state" },
        h("span", { class: "chat-status", "aria-label": t("chatStatus") }, label("chat", chat.status)),
        " · ",
        h("span", { class: "chat-assignee" }, assigned),
      ),
      buttons,
    );
  }

  transfer(chat) {
    const others = this.agents.filter((a) => a.id !== chat.assignedUserId);
    const pick = h(
      "select",
      { id: "transfer-to" },
      others.map((a) => h("option", { value: a.id }, a.id)),
    );
    const go = button(t("transfer"), () => this.change(`/api/chats/${chat.id}/assign`, { userId: pick.value }), {
      disabled: others.length === 0,
    });
    return h("div", { class: "transfer" }, field("transfer-to", t("transferTo"), pick), go);
  }

  async change(path, body) {
    await this.run(async () => {
      const chat = await this.page.api.post(path, body);
      this.page.list.touch(chat.id);
    });
  }

  async run(fn) {
    this.note.textContent = "";
    try {
      await fn();
    } catch (exc) {
      this.note.textContent = exc.message;
    }
  }

  renderQuick() {
    if (!this.chat) return fill(this.quick);
    fill(
      this.quick,
      h("h2", {}, t("quickReplies")),
      h(
        "ul",
        {},
        this.replies.map((text) =>
          h("li", {}, h("button", { type: "button", class: "quick-reply", onclick: () => this.page.composer.insert(text) }, text)),
        ),
      ),
    );
  }
}

function field(id, text, control) {
  return h("div", { class: "field" }, h("label", { for: id }, text), control);
}

function button(text, onclick, extra = {}) {
  return h("button", { type: "button", onclick, ...extra }, text);
}
