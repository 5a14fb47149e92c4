"""WAHA's JSON shapes per engine: a stored `WAMessage` with its `_data`, a chat summary's
`_chat`, and the engine-specific 201 body of a send."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime

from wasync.sim.base import Json
from wasync.sim.content import Content, wa_proto
from wasync.sim.waha.session import ACK_NAMES, WahaChat, WahaSession, swa

_WEBJS_TYPES = {
    "text": "chat", "image": "image", "video": "video", "audio": "audio", "voice": "ptt",
    "document": "document", "sticker": "sticker", "location": "location", "contact": "vcard",
    "reaction": "reaction",
}  # fmt: skip


def raw_chat(engine: str, chat: WahaChat) -> Json:
    """`ChatSummary._chat`: the engine's own chat object (shape differs per engine)."""
    last_ts = chat.last["timestamp"] if chat.last else None
    if engine == "WEBJS":
        user, _, server = chat.id.partition("@")
        return {
            "id": {"server": server, "user": user, "_serialized": chat.id},
            "name": chat.name,
            "isGroup": server == "g.us",
            "unreadCount": chat.unread,
            "timestamp": last_ts,
            "archived": False,
            "pinned": False,
        }
    key = "id" if engine == "NOWEB" else "jid"
    return {
        key: swa(chat.id),
        "name": chat.name,
        "conversationTimestamp": last_ts,
        "unreadCount": chat.unread,
    }


class MessageRender:
    """Builds one `WAMessage` dict the way each engine's `toWAMessage` does (waha.md §3)."""

    def __init__(
        self,
        rng: random.Random,
        session: WahaSession,
        chat_id: str,
        content: Content,
        raw_id: str,
        ts: int,
        from_me: bool,
        author: str | None,
        push_name: str | None,
        pn_keys: bool = False,
    ) -> None:
        self.rng, self.session, self.chat_id, self.content = rng, session, chat_id, content
        self.raw_id, self.ts, self.from_me, self.author = raw_id, ts, from_me, author
        self.push_name = push_name
        self.pn_keys = pn_keys  # NOWEB's Baileys of WAHA 2025.7.4-2025.9.4: `senderPn`...
        self.group = chat_id.endswith("@g.us")
        suffix = f"_{author}" if self.group and author else ""
        self.id = f"{'true' if from_me else 'false'}_{chat_id}_{raw_id}{suffix}"

    def build(self, ack: int | None, source: str) -> Json:
        """The `WAMessage`; an incoming message without `ack` gets the engine's default."""
        engine = self.session.engine
        if ack is None and not self.from_me:
            ack = None if engine == "NOWEB" else 2
        content = self.content
        body = content.text if content.kind in ("text", "image", "video", "document") else None
        msg: Json = {"id": self.id, "timestamp": self.ts}
        msg.update(self._from_to())
        msg.update(
            body=body,
            hasMedia=content.has_media,
            media=None,
            ack=ack,
            ackName=ACK_NAMES.get(ack, "UNKNOWN") if ack is not None else "UNKNOWN",
            location=self._location(),
            vCards=[content.vcard] if content.vcard else [],
            replyTo=None,
            source=source,
        )
        msg["_data"] = self._data(ack)
        return msg

    def _from_to(self) -> Json:
        engine, chat, me = self.session.engine, self.chat_id, self.session.me_id
        if engine == "NOWEB":
            out: Json = {"from": chat, "fromMe": self.from_me}
            if self.group:
                out.update(to=chat, participant=self.author)
            return out
        if engine == "GOWS":
            author = self.author if self.group else None
            return {"from": chat, "fromMe": self.from_me, "to": author, "participant": author}
        sender, recipient = (me, chat) if self.from_me else (chat, me)
        participant = self.author if self.group else None
        return {"from": sender, "fromMe": self.from_me, "to": recipient, "participant": participant}

    def _location(self) -> Json | None:
        content = self.content
        if content.kind != "location":
            return None
        return {
            "latitude": content.latitude,
            "longitude": content.longitude,
            "live": False,
            "name": content.place,
            "address": content.place,
        }

    def _proto(self) -> Json:
        key = None
        if self.content.kind == "reaction":
            key = {
                "remoteJid": swa(self.chat_id),
                "fromMe": self.content.reaction_to_from_me,
                "id": self.content.reaction_to,
            }
        return dict(wa_proto(self.content, ts=self.ts, rng=self.rng, reaction_key=key))

    def _data(self, ack: int | None) -> Json:
        engine = self.session.engine
        if engine == "NOWEB":
            return self._noweb()
        if engine == "GOWS":
            return self._gows()
        return self._webjs(ack)

    def _alt(self) -> tuple[str | None, str | None]:
        """(person, their other address form) for the chat (DM) or the group author."""
        who = self.author if self.group else self.chat_id
        if who is None or who == self.session.me_id:
            return who, None
        return who, self.session.alt(who)

    def _noweb(self) -> Json:
        key: Json = {"remoteJid": swa(self.chat_id), "fromMe": self.from_me, "id": self.raw_id}
        who, alt = self._alt()
        if self.group and self.author:
            key["participant"] = swa(self.author)
        if self.pn_keys:
            key.update(self._pn_keys(who, alt))
        elif self.group and self.author:
            if alt:
                key["participantAlt"] = swa(alt)
        elif alt:
            key["remoteJidAlt"] = swa(alt)
        if alt and who and not self.pn_keys:
            key["addressingMode"] = "lid" if who.endswith("@lid") else "pn"
        return {
            "key": key,
            "messageTimestamp": self.ts,
            "pushName": self.push_name,
            "broadcast": False,
            "message": self._proto(),
        }

    def _pn_keys(self, who: str | None, alt: str | None) -> Json:
        """Baileys 6.7's names for both forms of the other party (`stanza.attrs.sender_pn`,
        `sender_lid`, `participant_pn`, `participant_lid`): a group's author, a direct
        chat's sender (not on our own messages: the sender is us)."""
        if not (who and alt) or (self.from_me and not self.group):
            return {}
        lid, pn = (who, alt) if who.endswith("@lid") else (alt, who)
        prefix = "participant" if self.group else "sender"
        return {f"{prefix}Pn": swa(pn), f"{prefix}Lid": lid}

    def _gows(self) -> Json:
        who, alt = self._alt()
        me = f"{self.session.phone}@s.whatsapp.net"
        sender = me if self.from_me else swa(who or self.chat_id)
        kind = self.content.kind
        info = {
            "Chat": swa(self.chat_id),
            "Sender": sender,
            "IsFromMe": self.from_me,
            "IsGroup": self.group,
            "AddressingMode": ("lid" if (who or "").endswith("@lid") else "pn") if alt else "",
            "SenderAlt": swa(alt) if alt and not self.from_me else "",
            "RecipientAlt": swa(alt) if alt and self.from_me else "",
            "BroadcastListOwner": "",
            "BroadcastRecipients": None,
            "ID": self.raw_id,
            "ServerID": 0,
            "Type": "text" if kind == "text" else "reaction" if kind == "reaction" else "media",
            "PushName": self.push_name or "",
            "Timestamp": datetime.fromtimestamp(self.ts, UTC).isoformat().replace("+00:00", "Z"),
            "Category": "",
            "Multicast": False,
            "MediaType": "" if kind in ("text", "reaction") else _WEBJS_TYPES[kind],
            "Edit": "",
        }
        return {"Info": info, "Message": self._proto(), "IsEphemeral": False, "IsViewOnce": False}

    def _webjs(self, ack: int | None) -> Json:
        content = self.content
        me = self.session.me_id
        sender, recipient = (me, self.chat_id) if self.from_me else (self.chat_id, me)
        ident: Json = {
            "fromMe": self.from_me,
            "remote": self.chat_id,
            "id": self.raw_id,
            "_serialized": self.id,
        }
        if self.group and self.author:
            ident["participant"] = self.author
        data: Json = {
            "id": ident,
            "viewed": False,
            "body": content.vcard if content.kind == "contact" else content.text or "",
            "type": _WEBJS_TYPES[content.kind],
            "t": self.ts,
            "notifyName": self.push_name or "",
            "from": sender,
            "to": recipient,
            "author": self.author if self.group else None,
            "ack": ack,
            "isNewMsg": True,
            "star": False,
            "broadcast": False,
            "isForwarded": False,
            "mentionedJidList": [],
        }
        if content.has_media:
            data.update(mimetype=content.mimetype, filename=content.filename, size=content.size)
            if content.text:
                data["caption"] = content.text
        if content.kind == "location":
            data.update(lat=content.latitude, lng=content.longitude, loc=content.place)
        return data


def send_response(
    session: WahaSession,
    msg: Json,
    content: Content,
    chat_id: str,
    raw_id: str,
    ts: int,
    rng: random.Random,
) -> Json:
    """The 201 body of a send: engine-specific, not the OAS `WAMessage` (waha.md §6, #760)."""
    if session.engine == "NOWEB":
        proto: Json = dict(wa_proto(content, ts=ts, rng=rng))
        if content.kind == "text":
            proto = {"extendedTextMessage": {"text": content.text}}
        return {
            "key": {"remoteJid": swa(chat_id), "fromMe": True, "id": raw_id},
            "message": proto,
            "messageTimestamp": str(ts),
            "status": "PENDING",
        }
    if session.engine == "GOWS":
        return {"id": f"true_{chat_id}_{raw_id}", "_data": dict(wa_proto(content, ts=ts, rng=rng))}
    serialized = f"true_{chat_id}_{raw_id}"  # no participant suffix for groups (#1464)
    data = copy.deepcopy(msg["_data"])
    data["id"]["_serialized"] = serialized
    data.pop("author", None)
    return {
        "_data": data,
        "id": {"fromMe": True, "remote": chat_id, "id": raw_id, "_serialized": serialized},
        "ack": 0,
        "hasMedia": content.has_media,
        "body": data["body"],
        "type": data["type"],
        "timestamp": ts,
        "from": session.me_id,
        "to": chat_id,
        "deviceType": "web",
        "isForwarded": False,
        "forwardingScore": 0,
        "isStatus": False,
        "isStarred": False,
        "fromMe": True,
        "hasQuotedMsg": msg["replyTo"] is not None,
        "hasReaction": False,
        "vCards": [],
        "mentionedIds": [],
        "groupMentions": [],
        "isGif": False,
        "links": [],
    }
