"""`[crm]`: the lead a new number creates, the admins' notification, the page's lists."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from wasync.config.sections import Section


class LeadDefaults(Section):
    """Defaults of a lead created for a new number (the CRM's original plan)."""

    first_name: str = "Lead"
    last_name: str = "{last4}"
    email: str = "{phone}@whatsapp.com"
    source: str = "WHATSAPP_CAMPAIGN"
    status: str = "NEW"
    score: int = 50


class NotificationTexts(Section):
    """The admin notification for a new lead; Portuguese defaults as in the CRM."""

    type: str = "NEW_MESSAGE"
    title: str = "Nova mensagem de {phone}"
    message: str = "Lead criado automaticamente"
    link: str = "/atendimento?chat={chat_id}"


# Texts an agent inserts into the composer with one click on the attendance page.
DEFAULT_QUICK_REPLIES = (
    "Olá! Obrigado pelo contato. Como posso ajudar?",
    "Um momento, por favor, que já verifico para você.",
    "Poderia me informar seu nome completo e CPF?",
    "Seu pedido foi registrado. Qualquer dúvida, estamos à disposição!",
    "Obrigado pelo atendimento! Tenha um ótimo dia.",
)
# The statuses an agent may give a lead (`PATCH /api/leads/{id}`); the page names the known ones.
DEFAULT_LEAD_STATUSES = ("NEW", "CONTACTED", "QUALIFIED", "CONVERTED", "LOST")


class CrmConfig(Section):
    """`[crm]`: what a new number creates, which chats are dropped, the attendance page's
    quick replies and the lead statuses agents may set."""

    lead: LeadDefaults = LeadDefaults()
    notification: NotificationTexts = NotificationTexts()
    keep_status_broadcast: bool = False
    keep_newsletters: bool = False
    quick_replies: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default=list(DEFAULT_QUICK_REPLIES), max_length=100
    )
    lead_statuses: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default=list(DEFAULT_LEAD_STATUSES), min_length=1, max_length=100
    )

    @model_validator(mode="after")
    def _default_status_allowed(self) -> CrmConfig:
        if self.lead.status not in self.lead_statuses:
            raise ValueError(f"lead_statuses must include lead.status {self.lead.status!r}")
        return self
