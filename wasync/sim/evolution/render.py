"""Evolution's JSON shapes: a row's Baileys key, `prepareMessage()` (webhooks and send
answers), the fields `findMessages`/`findChats` project, and a `fetchInstances` item."""

from __future__ import annotations

from collections.abc import Sequence

from wasync.sim.base import Json
from wasync.sim.evolution.instance import EvoInstance

FIND_MESSAGE_FIELDS = (
    "id", "key", "pushName", "messageType", "message", "messageTimestamp", "instanceId",
    "source", "contextInfo", "MessageUpdate",
)  # fmt: skip
LAST_MESSAGE_FIELDS = (
    "id", "key", "pushName", "participant", "messageType", "message", "contextInfo", "source",
    "messageTimestamp", "instanceId", "sessionId", "status",
)  # fmt: skip


def message_key(
    inst: EvoInstance, jid: str, raw_id: str, from_me: bool, author: str | None
) -> Json:
    """Baileys 7 `WAMessageKey` (evolution.md §4.2): alt forms and addressing mode."""
    key: Json = {"remoteJid": jid}
    if jid.endswith("@g.us"):
        key.update(fromMe=from_me, id=raw_id, participant=author or "")
        alt = inst.alt(author) if author else None
        if alt:
            key["participantAlt"] = alt
        key["addressingMode"] = "lid" if (author or "").endswith("@lid") else "pn"
        return key
    alt = inst.alt(jid)
    if alt:
        key["remoteJidAlt"] = alt
    key.update(fromMe=from_me, id=raw_id, participant="")
    key["addressingMode"] = "lid" if jid.endswith("@lid") else "pn"
    return key


def project(row: Json, fields: Sequence[str]) -> Json:
    """The row's `fields`, in that order (the columns a Prisma `select` returns)."""
    return {name: row[name] for name in fields}


def prepared(row: Json, *, lid_rewrite: bool) -> Json:
    """`prepareMessage()` (evolution.md §4.2): the webhook / send-response shape of a row."""
    key = dict(row["key"])
    if lid_rewrite and key["remoteJid"].endswith("@lid") and key.get("remoteJidAlt"):
        key["remoteJid"] = key["remoteJidAlt"]
    data: Json = {
        "key": key,
        "pushName": row["pushName"],
        "status": row["status"],
        "message": row["message"],
    }
    if row["contextInfo"] is not None:
        data["contextInfo"] = row["contextInfo"]
    data.update(
        messageType=row["messageType"],
        messageTimestamp=row["messageTimestamp"],
        instanceId=row["instanceId"],
        source=row["source"],
    )
    return data


def instance_row(inst: EvoInstance) -> Json:
    """One item of `fetchInstances`: the instance with its settings and row counts."""
    chats = {row["key"]["remoteJid"] for row in inst.messages}
    return {
        "id": inst.id,
        "name": inst.name,
        "connectionStatus": inst.state,
        "ownerJid": inst.owner_jid if inst.opened else None,
        "profileName": inst.profile_name,
        "profilePicUrl": None,
        "integration": "WHATSAPP-BAILEYS",
        "number": None,
        "businessId": None,
        "token": inst.token,
        "clientName": "evolution_exchange",
        "disconnectionReasonCode": None,
        "disconnectionObject": None,
        "disconnectionAt": None,
        "createdAt": inst.created_at,
        "updatedAt": inst.created_at,
        "Chatwoot": None,
        "Proxy": None,
        "Rabbitmq": None,
        "Nats": None,
        "Sqs": None,
        "Websocket": None,
        "Setting": {
            "rejectCall": False,
            "groupsIgnore": False,
            "alwaysOnline": False,
            "readMessages": False,
            "readStatus": False,
            "syncFullHistory": False,
            "instanceId": inst.id,
        },
        "_count": {
            "Message": len(inst.messages),
            "Contact": len(inst.contacts),
            "Chat": len(chats),
        },
    }
