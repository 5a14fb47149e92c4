"""Evolution API payloads into wasync events, from the samples in tests/samples/evolution and
from shapes the Evolution notes document (2.3.0-2.3.7 key variants, wrappers, odd content)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wasync.errors import PayloadError
from wasync.events import (
    Ack,
    AckLevel,
    ChatKind,
    Edit,
    Message,
    MessageType,
    Reaction,
    Revoke,
    SessionStatus,
)
from wasync.providers.evolution import ack_from, event_name, parse_message, parse_webhook
from wasync.providers.evolution.parse import needs_version, stored_changes
from wasync.providers.evolution.version import parse_version, polling_misses_deletes

SAMPLES = Path(__file__).parent / "samples" / "evolution"


def load(name: str) -> Any:
    """One Evolution sample body."""
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def one(body: Any) -> Any:
    """The single event a webhook body yields."""
    events = parse_webhook(body, session_id=3)
    assert len(events) == 1
    return events[0]


def message(data: dict[str, Any], **kwargs: Any) -> Message:
    """parse_message that must give a Message (not a Reaction)."""
    parsed = parse_message(data, session_id=3, **kwargs)
    assert isinstance(parsed, Message)
    return parsed


def upsert(message_type: str | None, content: dict[str, Any], **key: Any) -> dict[str, Any]:
    """A 2.3.x `messages.upsert` data object around one `message` content."""
    data: dict[str, Any] = {
        "key": {"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": False, "id": "K1", **key},
        "pushName": "Ana",
        "status": "DELIVERY_ACK",
        "message": content,
        "messageTimestamp": 1763000000,
    }
    if message_type is not None:
        data["messageType"] = message_type
    return data


# Every sample file: the event classes its webhook yields, "error" (PayloadError), or "api"
# (an API request/response body, not a webhook).
EXPECTED: dict[str, list[type] | str] = {
    "connection.update.close-401.v1.json": [SessionStatus],
    "connection.update.close-405.v1.json": [SessionStatus],
    "connection.update.json": [SessionStatus],
    "connection.update.open.v1.json": [SessionStatus],
    "contacts.update.single.json": [],
    "contacts.upsert.json": [],
    "error.404.instance-not-found.docs-openapi.json": "api",
    "fetchInstances.response.reconstructed.json": "api",
    "findChats.response.reconstructed.json": "api",
    "findMessages.response.json": "api",
    "findMessages.response.reconstructed.json": "api",
    "getBase64FromMediaMessage.response.reconstructed.json": "api",
    "instance.connect.response.docs-openapi.json": "api",
    "instance.connectionState.response.docs-openapi.json": "api",
    "instance.create.response.reconstructed.json": "api",
    "instance.delete.response.json": "api",
    "messages.delete.reconstructed.json": [Revoke],
    "messages.update.edit.json": [],  # 2.2.3 edit: no status, no text (#1380)
    "messages.update.read.json": [Ack],
    "messages.update.status-deleted.json": [],  # DELETED is not a revoke (#2010)
    "messages.upsert.audio.reconstructed.json": [Message],
    "messages.upsert.document.reconstructed.json": [Message],
    "messages.upsert.extendedText-quoted-document.v1.json": [Message],
    "messages.upsert.extendedText.v1.json": [Message],
    "messages.upsert.fromMe.json": [Message],
    "messages.upsert.fromMe.v1.json": [Message],
    "messages.upsert.group.reconstructed.json": [Message],
    "messages.upsert.group.v1.json": [Message],
    "messages.upsert.image.reconstructed.json": [Message],
    "messages.upsert.sticker.v1.json": [Message],
    "messages.upsert.text.json": [Message],
    "messages.upsert.text.pn.json": [Message],
    "messages.upsert.text.rabbitmq-2.3.7.json": [Message],
    "qrcode.updated.json": [],
    "qrcode.updated.v1.json": [],
    "send.message.partial.json": [Message],
    "send.message.reconstructed.json": [Message],
    "sendMedia.response.image.docs-openapi.json": "api",
    "sendMedia.response.image.v1.json": "api",
    "sendText.error.not-on-whatsapp.v1.json": "api",
    "sendText.response.docs-openapi.json": "api",
    "sendText.response.reconstructed.json": "api",
    "sendText.response.v1.json": "api",
    "sendWhatsAppAudio.response.docs-openapi.json": "api",
    "sendWhatsAppAudio.response.v1.json": "api",
    "webhook.find.response.reconstructed.json": "api",
    "webhook.object.v2.json": "api",
    "whatsappNumbers.request.json": "api",
    "whatsappNumbers.response.docs-openapi.json": "api",
    "whatsappNumbers.response.json": "api",
}


def test_every_sample_has_an_expectation() -> None:
    """The expectation table covers exactly the sample files, so new samples get a verdict."""
    assert sorted(EXPECTED) == sorted(p.name for p in SAMPLES.glob("*.json"))


@pytest.mark.parametrize("name", sorted(n for n, v in EXPECTED.items() if v != "api"))
def test_every_webhook_sample_gives_expected_events(name: str) -> None:
    """Each webhook sample yields the expected event classes or the expected empty list."""
    events = parse_webhook(load(name), session_id=3)
    assert [type(e) for e in events] == EXPECTED[name]
    assert all(e.session_id == 3 for e in events)


# --- messages from samples ---


def test_lid_addressed_text_sample_pairs_phone_and_lid() -> None:
    """messages.upsert.text.json (2.3.6, raw @lid): phone from remoteJidAlt with the 9th digit."""
    msg = one(load("messages.upsert.text.json"))
    assert isinstance(msg, Message)
    assert msg.provider_message_id == "ACF74C317ABADED4BE7EDC7E41BE13EE"
    assert msg.chat.phone == "5588993074699"
    assert msg.chat.jid == "5588993074699@s.whatsapp.net"
    assert msg.chat.lid == "76201477542116@lid"
    assert msg.chat.kind is ChatKind.DIRECT
    assert (msg.type, msg.body) == (MessageType.TEXT, "Teste envio de mensagem")
    assert msg.from_me is False
    assert msg.ack is AckLevel.DEVICE
    assert msg.push_name == "Gleidiane Limaverde"
    assert msg.timestamp == datetime(2025, 11, 16, 20, 49, 42, tzinfo=UTC)  # not date_time
    assert msg.sender is None
    assert msg.raw is None


def test_pn_addressed_text_sample() -> None:
    """messages.upsert.text.pn.json: remoteJid is the phone, remoteJidAlt the LID."""
    msg = one(load("messages.upsert.text.pn.json"))
    assert isinstance(msg, Message)
    assert msg.chat.phone == "5588997141275"
    assert msg.chat.lid == "62921321222334@lid"
    assert msg.body == "Teste recebimento de mensagens"


def test_rabbitmq_237_sample_rewritten_to_phone() -> None:
    """2.3.7 rewrites remoteJid to the phone (remoteJid == remoteJidAlt); no LID known."""
    msg = one(load("messages.upsert.text.rabbitmq-2.3.7.json"))
    assert isinstance(msg, Message)
    assert msg.chat.phone == "5511956291095"
    assert msg.chat.lid is None
    assert msg.push_name == "João"


def test_same_message_under_lid_and_phone_has_same_id() -> None:
    """The 2.3.6 webhook (@lid) and the 2.3.7 one (phone) of one message share id and chat."""
    lid_form = load("messages.upsert.text.json")
    pn_form = copy.deepcopy(lid_form)
    pn_form["data"]["key"].update(
        remoteJid="558893074699@s.whatsapp.net", remoteJidAlt="558893074699@s.whatsapp.net"
    )
    a, b = one(lid_form), one(pn_form)
    assert a.provider_message_id == b.provider_message_id
    assert a.chat.jid == b.chat.jid == "5588993074699@s.whatsapp.net"


def test_from_me_sample() -> None:
    """A message typed on the phone arrives as an upsert with fromMe and SERVER_ACK."""
    msg = one(load("messages.upsert.fromMe.json"))
    assert isinstance(msg, Message)
    assert msg.from_me is True
    assert msg.ack is AckLevel.SERVER
    assert msg.chat.phone == "5581997088404"
    assert msg.body == "Texto da mensagem"


def test_v1_extended_text_and_quote() -> None:
    """v1 extendedTextMessage: text body and the quoted stanzaId as reply_to."""
    msg = one(load("messages.upsert.extendedText-quoted-document.v1.json"))
    assert isinstance(msg, Message)
    assert (msg.type, msg.body) == (MessageType.TEXT, "é assim que começa")
    assert msg.reply_to == "2F0C1BF027EBAFBAB650D16D3C685EE1"
    assert msg.chat.phone == "5531999668527"
    plain = one(load("messages.upsert.extendedText.v1.json"))
    assert (plain.type, plain.body, plain.ack) == (MessageType.TEXT, "Teste", None)


@pytest.mark.parametrize(
    ("name", "sender_phone", "sender_lid"),
    [
        ("messages.upsert.group.reconstructed.json", "5511999999999", "123456789012345@lid"),
        ("messages.upsert.group.v1.json", "5541996910256", None),
    ],
)
def test_group_samples_have_author(name: str, sender_phone: str, sender_lid: str | None) -> None:
    """Group messages: group chat, author from participant(+Alt)."""
    msg = one(load(name))
    assert isinstance(msg, Message)
    assert msg.chat.kind is ChatKind.GROUP
    assert msg.sender is not None
    assert (msg.sender.phone, msg.sender.lid) == (sender_phone, sender_lid)


def test_image_sample() -> None:
    """Image: caption body, mimetype, Long fileLength, S3 mediaUrl as url."""
    msg = one(load("messages.upsert.image.reconstructed.json"))
    assert isinstance(msg, Message)
    assert msg.type is MessageType.IMAGE
    assert msg.body == "<optional caption>"
    assert msg.media is not None
    assert (msg.media.mimetype, msg.media.size) == ("image/jpeg", 123456)
    assert msg.media.url == "<only when S3/MinIO is enabled>"


def test_audio_sample_is_voice_note() -> None:
    """audioMessage with ptt: audio, voice, Long fileLength, seconds in extra."""
    msg = one(load("messages.upsert.audio.reconstructed.json"))
    assert isinstance(msg, Message)
    assert msg.type is MessageType.AUDIO
    assert msg.media is not None
    assert (msg.media.voice, msg.media.size) == (True, 5999)
    assert msg.media.mimetype == "audio/ogg; codecs=opus"
    assert msg.media.url is None  # the mmg.whatsapp.net blob is encrypted
    assert msg.extra["seconds"] == 4


def test_document_sample() -> None:
    """documentMessage: fileName, mimetype, caption and size."""
    msg = one(load("messages.upsert.document.reconstructed.json"))
    assert isinstance(msg, Message)
    assert msg.type is MessageType.DOCUMENT
    assert msg.media is not None
    assert (msg.media.filename, msg.media.mimetype, msg.media.size) == (
        "boleto.pdf",
        "application/pdf",
        195000,
    )
    assert msg.body is not None and msg.body.startswith("<present when sent with caption")


def test_sticker_sample_with_string_file_length() -> None:
    """v1 sticker: string fileLength, webp mimetype, no body."""
    msg = one(load("messages.upsert.sticker.v1.json"))
    assert isinstance(msg, Message)
    assert msg.type is MessageType.STICKER
    assert msg.media is not None and (msg.media.size, msg.media.mimetype) == (35216, "image/webp")
    assert msg.body is None


def test_send_message_samples_are_own_pending() -> None:
    """send.message: fromMe, PENDING; the trimmed capture without timestamp still parses."""
    full = one(load("send.message.reconstructed.json"))
    assert isinstance(full, Message)
    assert (full.from_me, full.ack, full.body) == (True, AckLevel.PENDING, "<text you sent>")
    partial = one(load("send.message.partial.json"))
    assert isinstance(partial, Message)
    assert partial.provider_message_id == "3EB070F0584DDE07E04CDAC948322F0DB37A27E4"
    assert partial.chat.jid == "132985256960177@lid"
    assert (partial.type, partial.body, partial.from_me) == (MessageType.TEXT, None, True)
    assert partial.extra["timestamp_missing"] is True


def test_send_message_forces_from_me() -> None:
    """send.message is our own send even when the key says otherwise."""
    body = load("send.message.reconstructed.json")
    body["data"]["key"]["fromMe"] = False
    assert one(body).from_me is True


def test_find_messages_record_ack_from_message_update() -> None:
    """A findMessages record: raw @lid key + alt, ack from its MessageUpdate statuses."""
    (record,) = load("findMessages.response.reconstructed.json")["messages"]["records"]
    msg = message(record)
    assert msg.provider_message_id == "ACF74C317ABADED4BE7EDC7E41BE13EE"
    assert msg.chat.phone == "5588993074699"
    assert msg.ack is AckLevel.READ
    assert msg.body == "<text>"


def test_find_chats_last_message() -> None:
    """A findChats lastMessage parses like an upsert, with its DELIVERY_ACK status."""
    (chat,) = load("findChats.response.reconstructed.json")
    msg = message(chat["lastMessage"])
    assert msg.provider_message_id == "3EB0AAAAAAAAAAAAAAAAAA"
    assert msg.ack is AckLevel.DEVICE
    assert msg.timestamp == datetime.fromtimestamp(1763326182, tz=UTC)


@pytest.mark.parametrize(
    ("name", "kind", "voice"),
    [
        ("sendText.response.v1.json", MessageType.TEXT, False),
        ("sendText.response.docs-openapi.json", MessageType.TEXT, False),
        ("sendMedia.response.image.v1.json", MessageType.IMAGE, False),
        ("sendWhatsAppAudio.response.docs-openapi.json", MessageType.AUDIO, True),
    ],
)
def test_send_responses_without_message_type(name: str, kind: MessageType, voice: bool) -> None:
    """Send responses lack messageType: the content whitelist decides; string timestamps parse."""
    msg = message(load(name))
    assert msg.type is kind
    assert msg.from_me is True
    assert msg.ack is AckLevel.PENDING
    assert msg.timestamp.year in (2024, 2025) or msg.timestamp.year == 2024
    if kind is not MessageType.TEXT:
        assert msg.media is not None and msg.media.voice is voice


# --- other documented content shapes ---


def test_baileys_67_sender_pn_and_previous_remote_jid() -> None:
    """2.3.0-2.3.2 keys: senderPn / previousRemoteJid still pair the LID and the phone."""
    data = upsert(
        "conversation",
        {"conversation": "oi"},
        remoteJid="558893074699@s.whatsapp.net",
        previousRemoteJid="76201477542116@lid",
    )
    msg = message(data)
    assert (msg.chat.phone, msg.chat.lid) == ("5588993074699", "76201477542116@lid")
    data["key"].update(remoteJid="76201477542116@lid", senderPn="558893074699@s.whatsapp.net")
    del data["key"]["previousRemoteJid"]
    assert message(data).chat.jid == "5588993074699@s.whatsapp.net"


def test_group_participant_pn_and_lid() -> None:
    """Baileys 6.7 group keys participantPn / participantLid pair the author's forms."""
    data = upsert(
        "conversation",
        {"conversation": "x"},
        remoteJid="120363000000000000@g.us",
        participant="123456789012345@lid",
        participantPn="5511988887777@s.whatsapp.net",
    )
    msg = message(data)
    assert msg.chat.kind is ChatKind.GROUP
    assert msg.sender is not None
    assert (msg.sender.phone, msg.sender.lid) == ("5511988887777", "123456789012345@lid")


def test_ephemeral_wrapper_is_unwrapped() -> None:
    """messageType ephemeralMessage: the wrapped extendedTextMessage is the text."""
    msg = message(
        upsert(
            "ephemeralMessage",
            {"ephemeralMessage": {"message": {"extendedTextMessage": {"text": "vanishing"}}}},
        )
    )
    assert (msg.type, msg.body) == (MessageType.TEXT, "vanishing")


def test_view_once_image() -> None:
    """viewOnceMessageV2 wrapping an image gives an image."""
    msg = message(
        upsert(
            "viewOnceMessageV2",
            {"viewOnceMessageV2": {"message": {"imageMessage": {"mimetype": "image/jpeg"}}}},
        )
    )
    assert msg.type is MessageType.IMAGE


def test_message_type_wins_over_first_key() -> None:
    """Metadata keys before the content never decide the type."""
    content = {"senderKeyDistributionMessage": {"groupId": "g"}, "conversation": "real text"}
    msg = message(upsert("conversation", content))
    assert (msg.type, msg.body) == (MessageType.TEXT, "real text")


def test_missing_message_type_uses_whitelist() -> None:
    """Without messageType the content key whitelist finds the video and its caption."""
    content = {"messageContextInfo": {}, "videoMessage": {"caption": "clip", "seconds": 7}}
    msg = message(upsert(None, content))
    assert (msg.type, msg.body, msg.extra["seconds"]) == (MessageType.VIDEO, "clip", 7)


def test_location_message() -> None:
    """locationMessage keeps degreesLatitude/Longitude and name in extra."""
    content = {
        "locationMessage": {"degreesLatitude": -3.73, "degreesLongitude": -38.52, "name": "Praia"}
    }
    msg = message(upsert("locationMessage", content))
    assert msg.type is MessageType.LOCATION
    assert (msg.extra["latitude"], msg.extra["longitude"], msg.extra["name"]) == (
        -3.73,
        -38.52,
        "Praia",
    )


def test_contact_message() -> None:
    """contactMessage: display name as body, vCard in extra."""
    card = "BEGIN:VCARD\nFN:Ana\nEND:VCARD"
    msg = message(
        upsert("contactMessage", {"contactMessage": {"displayName": "Ana", "vcard": card}})
    )
    assert (msg.type, msg.body, msg.extra["vcards"]) == (MessageType.CONTACT, "Ana", [card])


@pytest.mark.parametrize("text", ["👍", ""])
def test_reaction_message(text: str) -> None:
    """reactionMessage becomes a Reaction to key.id; "" removes it."""
    content = {"reactionMessage": {"key": {"id": "TARGET", "fromMe": True}, "text": text}}
    reaction = parse_message(upsert("reactionMessage", content), session_id=3)
    assert isinstance(reaction, Reaction)
    assert (reaction.provider_message_id, reaction.target_message_id) == ("K1", "TARGET")
    assert reaction.emoji == text
    assert reaction.chat.phone == "5511999999999"


def test_reaction_without_target_is_other() -> None:
    """A reaction with no target key is odd content: OTHER with raw."""
    msg = message(upsert("reactionMessage", {"reactionMessage": {"text": "👍"}}))
    assert msg.type is MessageType.OTHER
    assert msg.raw is not None


@pytest.mark.parametrize(
    ("message_type", "content"),
    [
        ("pollCreationMessageV3", {"pollCreationMessageV3": {"name": "Lunch?"}}),
        ("somethingBrandNew", {"somethingBrandNew": {"x": 1}}),
        (None, {"messageContextInfo": {}}),
    ],
)
def test_unknown_content_is_other_with_raw(
    message_type: str | None, content: dict[str, Any]
) -> None:
    """Polls, unknown types and empty content become OTHER with the raw data kept."""
    data = upsert(message_type, content)
    msg = message(data)
    assert msg.type is MessageType.OTHER
    assert msg.raw == data


def test_long_and_string_timestamps() -> None:
    """messageTimestamp as a Long object or numeric string is epoch seconds."""
    data = upsert("conversation", {"conversation": "t"})
    data["messageTimestamp"] = {"low": 1763000000, "high": 0, "unsigned": True}
    assert message(data).timestamp == datetime.fromtimestamp(1763000000, tz=UTC)
    data["messageTimestamp"] = "1763000000"
    assert message(data).timestamp == datetime.fromtimestamp(1763000000, tz=UTC)


def test_deleted_status_is_not_an_ack() -> None:
    """A stored row with status DELETED has no ack and is flagged deleted."""
    data = upsert("conversation", {"conversation": "gone"})
    data["status"] = "DELETED"
    msg = message(data)
    assert msg.ack is None
    assert msg.extra["deleted"] is True


def test_message_without_key_is_payload_error() -> None:
    """No key id or no chat jid at all: PayloadError."""
    with pytest.raises(PayloadError):
        parse_message({"message": {"conversation": "x"}}, session_id=3)
    with pytest.raises(PayloadError):
        parse_message({"key": {"id": "X", "remoteJid": ""}}, session_id=3)


# --- updates, deletes, edits, connection ---


def test_update_read_sample() -> None:
    """messages.update READ: Ack on keyId (not the DB messageId)."""
    ack = one(load("messages.update.read.json"))
    assert isinstance(ack, Ack)
    assert ack.provider_message_id == "A5561E44C2A63682E4295B52F484C14E"
    assert ack.ack is AckLevel.READ
    assert ack.from_me is False
    assert ack.chat is not None and ack.chat.phone == "200000000000"


def test_update_with_edited_text_237() -> None:
    """2.3.7 messages.update carrying the edited message yields its SERVER_ACK and an Edit."""
    body = load("messages.update.read.json")
    body["data"].update(status="SERVER_ACK", message={"conversation": "edited text"})
    ack, edit = parse_webhook(body, session_id=3)
    assert isinstance(ack, Ack) and ack.ack is AckLevel.SERVER
    assert isinstance(edit, Edit)
    assert (edit.provider_message_id, edit.body) == (
        "A5561E44C2A63682E4295B52F484C14E",
        "edited text",
    )


def test_update_list_data_is_tolerated() -> None:
    """messages.update with a list of updates yields one Ack per item."""
    body = load("messages.update.read.json")
    second = {**body["data"], "keyId": "B2", "status": 5}
    body["data"] = [body["data"], second]
    acks = parse_webhook(body, session_id=3)
    assert all(isinstance(a, Ack) for a in acks)
    assert [(a.provider_message_id, a.ack) for a in acks if isinstance(a, Ack)] == [
        ("A5561E44C2A63682E4295B52F484C14E", AckLevel.READ),
        ("B2", AckLevel.PLAYED),
    ]


def test_delete_raw_key_sample() -> None:
    """messages.delete with the raw key: the WA id is `id`."""
    revoke = one(load("messages.delete.reconstructed.json"))
    assert isinstance(revoke, Revoke)
    assert revoke.provider_message_id == "3EB0AAAAAAAAAAAAAAAAAA"
    assert revoke.chat is not None and revoke.chat.phone == "5511999999999"


def test_delete_api_shape_uses_key_id() -> None:
    """An API delete carries the DB cuid as `id` and the WA id in `key.id`."""
    body = {
        "event": "messages.delete",
        "instance": "i",
        "data": {
            "id": "cmfyoow42000hov4xwkdug3lv",
            "key": {
                "remoteJid": "76201477542116@lid",
                "remoteJidAlt": "558893074699@s.whatsapp.net",
                "fromMe": True,
                "id": "WAID1",
            },
            "messageType": "conversation",
            "status": "DELETED",
        },
    }
    revoke = one(body)
    assert isinstance(revoke, Revoke)
    assert revoke.provider_message_id == "WAID1"
    assert revoke.chat is not None and revoke.chat.phone == "5588993074699"


@pytest.mark.parametrize(
    ("edited_message", "body"),
    [
        ({"conversation": "novo texto"}, "novo texto"),
        ({"extendedTextMessage": {"text": "novo texto"}}, "novo texto"),
        ({"imageMessage": {"caption": "nova legenda"}}, "nova legenda"),
    ],
)
def test_edited_protocol_message(edited_message: dict[str, Any], body: str) -> None:
    """messages.edited with editedMessage is an Edit of key.id with the new text."""
    event = one(
        {
            "event": "messages.edited",
            "instance": "i",
            "data": {
                "key": {"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": False, "id": "ORIG"},
                "type": 14,
                "editedMessage": edited_message,
                "timestampMs": {"low": 1763000000123 & 0xFFFFFFFF, "high": 1763000000123 >> 32},
            },
        }
    )
    assert isinstance(event, Edit)
    assert (event.provider_message_id, event.body) == ("ORIG", body)
    assert event.timestamp == datetime.fromtimestamp(1763000000.123, tz=UTC)


@pytest.mark.parametrize("kind", [0, "REVOKE"])
def test_edited_revoke_is_revoke(kind: int | str) -> None:
    """messages.edited with protocolMessage type 0/REVOKE is a delete for everyone."""
    event = one(
        {
            "event": "messages.edited",
            "data": {"key": {"remoteJid": "120363000000000000@g.us", "id": "GONE"}, "type": kind},
        }
    )
    assert isinstance(event, Revoke)
    assert event.provider_message_id == "GONE"
    assert event.chat is not None and event.chat.kind is ChatKind.GROUP


def test_edited_other_protocol_type_gives_nothing() -> None:
    """Other protocolMessage types (ephemeral settings, ...) yield no event."""
    body = {"event": "messages.edited", "data": {"key": {"id": "X"}, "type": 3}}
    assert parse_webhook(body, session_id=3) == []


@pytest.mark.parametrize(
    "data",
    [
        {"type": 3, "ephemeralExpiration": 604800},  # EPHEMERAL_SETTING
        {"type": "HISTORY_SYNC_NOTIFICATION", "historySyncNotification": {"syncType": 2}},
        {"type": 6, "appStateSyncKeyShare": {"keys": []}},
    ],
)
def test_edited_keyless_protocol_messages_are_ignored(data: dict[str, Any]) -> None:
    """Evolution sends every protocolMessage as messages.edited; the ones that change no
    message have no key and are ignored, not dead-lettered (evolution.md 4.2)."""
    assert parse_webhook({"event": "messages.edited", "data": data}, session_id=3) == []


def test_edited_edit_without_key_is_still_an_error() -> None:
    """An edit or a revoke must say which message: without a key it is bad input."""
    body = {"event": "messages.edited", "data": {"type": 0}}
    with pytest.raises(PayloadError, match=r"key\.id"):
        parse_webhook(body, session_id=3)


@pytest.mark.parametrize(
    "updates",
    [
        [{"status": "READ"}, {"status": "EDITED"}],
        [{"status": "READ"}, {"status": "SERVER_ACK"}],
        [{"status": "EDITED"}, {"status": "DELIVERY_ACK"}, {"status": "READ"}],
    ],
)
def test_find_messages_ack_is_the_best_of_every_update(updates: list[dict[str, str]]) -> None:
    """MessageUpdate rows come unordered and an edit adds an `EDITED` row: the ack is the
    highest delivery status among all of them."""
    record = upsert("conversation", {"conversation": "x"}, fromMe=True)
    record.update(status="EDITED", MessageUpdate=updates)
    assert message(record).ack is AckLevel.READ


@pytest.mark.parametrize(
    ("status", "updates", "expected"),
    [
        ("PENDING", [{"status": "ERROR"}], AckLevel.ERROR),
        ("ERROR", [{"status": "PENDING"}], AckLevel.ERROR),
        ("ERROR", [{"status": "SERVER_ACK"}], AckLevel.SERVER),
    ],
)
def test_find_messages_ack_follows_the_one_ack_rule(
    status: str, updates: list[dict[str, str]], expected: AckLevel
) -> None:
    """A failed send stays failed beside a PENDING row (ERROR ranks above PENDING though its
    number, -1, is lower: `ingest.acks`), and a message the server took is not an error."""
    record = upsert("conversation", {"conversation": "x"}, fromMe=True)
    record.update(status=status, MessageUpdate=updates)
    assert message(record).ack is expected


@pytest.mark.parametrize(
    ("marks", "version", "expected"),
    [
        (["DELETED"], (2, 2, 3), ["Revoke"]),  # only an update without a message falls back
        (["DELIVERY_ACK", "DELETED"], (2, 3, 6), ["Revoke"]),
        (["DELETED"], (2, 3, 2), []),  # there a star or a vote synced from the phone too
        (["DELETED"], None, []),  # unknown: hide nothing
        (["EDITED"], (2, 3, 6), ["Edit"]),
        (["EDITED", "DELETED"], (2, 3, 4), ["Edit"]),  # what an edit leaves there
        (["EDITED", "DELETED"], (2, 3, 0), ["Edit"]),
        (["EDITED", "DELETED"], None, ["Edit"]),
        (["DELETED", "EDITED"], (2, 3, 6), ["Edit", "Revoke"]),  # a delete (its REVOKE, too)
        (["EDITED", "DELETED"], (2, 2, 3), ["Edit", "Revoke"]),
        (["EDITED", "SERVER_ACK"], (2, 3, 7), ["Edit"]),
        (["SERVER_ACK", "READ"], (2, 3, 7), []),
    ],
)
def test_stored_changes_read_deletes_by_the_servers_version(
    marks: list[str], version: tuple[int, int, int] | None, expected: list[str]
) -> None:
    """A `DELETED` update row is a delete for everyone only where the server's version says
    so: not on 2.3.0-2.3.4, where any statusless update (an edit, a star, a vote) leaves
    one, nor on a server of unknown version; the version is asked for whenever one shows."""
    record = upsert("conversation", {"conversation": "Chegamos às 16h"}, fromMe=True)
    record["MessageUpdate"] = [{"status": mark} for mark in marks]
    changes = stored_changes(record, message(record), version=version)
    assert [type(c).__name__ for c in changes] == expected
    assert needs_version(record) is ("DELETED" in marks)


def test_a_deleted_row_that_lost_its_text_is_not_edited_to_nothing() -> None:
    """A delete whose row Evolution emptied: the revoke, no edit to an empty text."""
    record = upsert("conversation", {"conversation": "x"}, fromMe=True)
    record["message"] = {}
    record["MessageUpdate"] = [{"status": "EDITED"}, {"status": "DELETED"}]
    changes = stored_changes(record, message(record), version=(2, 3, 6))
    assert [type(c).__name__ for c in changes] == ["Revoke"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.3.6", (2, 3, 6)),
        ("v2.3.7", (2, 3, 7)),
        ("2.4.0-rc2", (2, 4, 0)),
        ("2.2", (2, 2, 0)),
        ("", None),
        (None, None),
        ("latest", None),
        (237, None),
    ],
)
def test_parse_version(text: Any, expected: tuple[int, int, int] | None) -> None:
    """`GET /`'s `version` as numbers; anything else is unknown."""
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    ("business", "holder"),
    [
        ("templateMessage", lambda h: {"hydratedTemplate": {"hydratedContentText": "Oferta", **h}}),
        ("interactiveMessage", lambda h: {"body": {"text": "Oferta"}, "header": h}),
        ("buttonsMessage", lambda h: {"contentText": "Oferta", **h}),
    ],
)
def test_a_business_messages_header_image_is_fetched_by_its_own_proto(
    business: str, holder: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """The image header of a template, interactive or buttons message is the message's media,
    and its download reference is the header's `imageMessage` with its download fields:
    Evolution's getBase64FromMediaMessage reads a `templateMessage` it is handed as a
    template and answers 400 for one without its parts (which wasync took for gone)."""
    image = {"url": "https://mmg.whatsapp.net/x", "mediaKey": "a2V5", "mimetype": "image/jpeg"}
    image |= {"directPath": "/v/t62/x", "fileLength": "1234", "caption": "ignored here"}
    parsed = message(upsert(business, {business: holder({"imageMessage": image})}))
    assert parsed.type is MessageType.IMAGE and parsed.body == "Oferta"
    assert parsed.media is not None and parsed.media.mimetype == "image/jpeg"
    fields = {k: v for k, v in image.items() if k != "caption"}
    assert parsed.media.ref == {
        "key": {"remoteJid": "5511999999999@s.whatsapp.net", "fromMe": False, "id": "K1"},
        "message": {"imageMessage": fields},
    }


def test_message_type_naming_absent_content_falls_back_to_the_content() -> None:
    """An edited row keeps its `messageType` while Evolution overwrites `message` with the
    edit (evolution.md 4.3): the text is still read."""
    record = upsert("conversation", {"extendedTextMessage": {"text": "novo texto"}})
    parsed = message(record)
    assert (parsed.type, parsed.body) == (MessageType.TEXT, "novo texto")


@pytest.mark.parametrize(
    ("name", "state", "reason"),
    [
        ("connection.update.json", "open", 200),
        ("connection.update.close-401.v1.json", "close", 401),
        ("connection.update.close-405.v1.json", "close", 405),
        ("connection.update.open.v1.json", "open", 200),
    ],
)
def test_connection_update_samples(name: str, state: str, reason: int) -> None:
    """connection.update: state verbatim, statusReason in detail."""
    status = one(load(name))
    assert isinstance(status, SessionStatus)
    assert status.status == state
    assert status.detail["statusReason"] == reason


@pytest.mark.parametrize("name", ["MESSAGES_UPSERT", "messages-upsert", "Messages.Upsert"])
def test_event_name_forms(name: str) -> None:
    """Upper/underscore and hyphenated byEvents names parse like the dotted one."""
    body = {**load("messages.upsert.text.json"), "event": name}
    assert event_name(name) == "messages.upsert"
    assert isinstance(one(body), Message)


def test_kafka_envelope_timestamp_is_event_time() -> None:
    """A Kafka envelope `timestamp` (ms) dates acks; `date_time` is never used."""
    body = {**load("messages.update.read.json"), "timestamp": 1763326182000}
    assert one(body).timestamp == datetime.fromtimestamp(1763326182, tz=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SERVER_ACK", AckLevel.SERVER),
        ("DELIVERY_ACK", AckLevel.DEVICE),
        ("READ", AckLevel.READ),
        ("PLAYED", AckLevel.PLAYED),
        ("PENDING", AckLevel.PENDING),
        ("ERROR", AckLevel.ERROR),
        (0, AckLevel.ERROR),
        (1, AckLevel.PENDING),
        (2, AckLevel.SERVER),
        (3, AckLevel.DEVICE),
        (4, AckLevel.READ),
        (5, AckLevel.PLAYED),
        ("DELETED", None),
        (6, None),
        (None, None),
        (False, None),
    ],
)
def test_ack_from(value: Any, expected: AckLevel | None) -> None:
    """ack_from maps renderStatus names and numbers; DELETED is not an ack."""
    assert ack_from(value) is expected


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"instance": "i", "data": {}},
        {"event": "messages.upsert", "instance": "i"},
        {"event": "messages.upsert", "data": "text"},
        {"event": "messages.upsert", "data": [1]},
        {"event": "messages.upsert", "data": {"key": {"remoteJid": "1@s.whatsapp.net"}}},
        {"event": "messages.update", "data": {"status": "READ"}},
        {"event": "messages.delete", "data": {"remoteJid": "1@s.whatsapp.net"}},
        {"event": "messages.edited", "data": {"type": 14}},
        {"event": "connection.update", "data": {"instance": "i"}},
    ],
)
def test_invalid_bodies_raise_payload_error(body: Any) -> None:
    """Bodies that are not envelopes, or handled events with unusable data, raise."""
    with pytest.raises(PayloadError):
        parse_webhook(body, session_id=3)


def test_unhandled_events_give_nothing() -> None:
    """Events wasync does not consume (messages.set, chats.upsert, ...) give []."""
    for event in ("messages.set", "CHATS_UPSERT", "presence-update", "error"):
        assert parse_webhook({"event": event, "instance": "i", "data": []}, session_id=3) == []


def test_the_versions_where_polling_cannot_tell_a_delete() -> None:
    """`wasync doctor` warns where a delete leaves what an edit leaves (2.3.0-2.3.4) or what
    a delivery leaves (2.3.7 on); not on 2.2.x nor 2.3.5-2.3.6, nor when the version is
    unknown."""
    versions = [(2, 2, 3), (2, 3, 0), (2, 3, 4), (2, 3, 5), (2, 3, 6), (2, 3, 7), (2, 4, 0), None]
    misses = {v: polling_misses_deletes(v) for v in versions}
    assert [v for v, missed in misses.items() if missed] == [
        (2, 3, 0),
        (2, 3, 4),
        (2, 3, 7),
        (2, 4, 0),
    ]
