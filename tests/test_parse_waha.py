"""WAHA payloads into wasync events, from the real samples in tests/samples/waha and from shapes
the WAHA notes document (engine `_data` variants, LID hints, odd content)."""

from __future__ import annotations

import copy
import json
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
    PollVote,
    Reaction,
    Revoke,
    SessionStatus,
)
from wasync.providers.waha import ack_from, message_key, parse_message, parse_webhook

SAMPLES = Path(__file__).parent / "samples" / "waha"


def load(name: str) -> Any:
    """One WAHA sample body."""
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def one(body: Any) -> Any:
    """The single event a webhook body yields."""
    events = parse_webhook(body, session_id=7)
    assert len(events) == 1
    return events[0]


def message(payload: dict[str, Any], **kwargs: Any) -> Message:
    """parse_message that must give a Message (not a Reaction)."""
    parsed = parse_message(payload, session_id=7, **kwargs)
    assert isinstance(parsed, Message)
    return parsed


# Every sample file: the event classes its webhook yields, "error" (PayloadError), or "api"
# (an API request/response body, not a webhook).
EXPECTED: dict[str, list[type] | str] = {
    "auth.qr.raw.response.json": "api",
    "chats.messages.read.response.json": "api",
    "chats.messages.response.reconstructed.json": "api",
    "check-exists.response.json": "api",
    "group.v2.join.json": [],
    "group.v2.participants.json": [],
    "lids.by-lid.found.response.json": "api",
    "lids.by-lid.notfound.response.json": "api",
    "lids.by-pn.notfound.response.json": "api",
    "lids.count.response.json": "api",
    "lids.list.response.json": "api",
    "message.ack.gows.dm.device.json": [Ack],
    "message.ack.gows.dm.read-by-me-other-device.json": [Ack],
    "message.ack.gows.dm.read.json": [Ack],
    "message.ack.gows.group.lid-participant.json": "error",  # fixture has no `event`
    "message.ack.group.json": [Ack],
    "message.ack.json": [Ack],
    "message.ack.noweb.dm.read.json": [Ack],
    "message.ack.noweb.group.lid-participant.json": [Ack],
    "message.ack.webjs.dm.read.json": [Ack],
    "message.ack.webjs.group.lid-participant.json": [Ack],
    "message.any.fromMe.reconstructed.json": [Message],
    "message.any.payload.noweb.lid.issue-1418.json": "api",  # payload only, see below
    "message.any.webjs.lid.issue-1849.json": "error",  # trimmed by its author: no id
    "message.document.pdf.json": "error",  # changelog excerpt: no id
    "message.image.json": [Message],
    "message.newsletter.noweb.json": [Message],
    "message.noweb.image.captured.headers.json": "api",
    "message.noweb.image.captured.json": [Message],
    "message.reaction.json": [Reaction],
    "message.revoked.reconstructed.json": [Revoke],
    "message.status-broadcast.image.json": [Message],
    "poll.vote.group.json": [PollVote],
    "poll.vote.json": [PollVote],
    "presence.update.json": [],
    "sendFile.url.request.json": "api",
    "sendImage.url.request.json": "api",
    "sendSeen.group.request.json": "api",
    "sendSeen.request.json": "api",
    "sendText.reply.request.json": "api",
    "sendText.request.json": "api",
    "sendText.response.gows.reconstructed.json": "api",
    "sendText.response.noweb.issue-760.json": "api",
    "sendVoice.url.request.json": "api",
    "session.create.webhooks-full.request.json": "api",
    "session.create.webhooks.swagger-example.request.json": "api",
    "session.status.scan_qr_code.webjs.captured.headers.json": "api",
    "session.status.scan_qr_code.webjs.captured.json": [SessionStatus],
    "sessions.get.response.json": "api",
    "sessions.list.response.json": "api",
    "sessions.me.response.json": "api",
    "webhook.envelope.reconstructed.json": "error",  # `payload: {}`
    "webhook.hmac.test-vector.reconstructed.json": "api",
}


def test_every_sample_has_an_expectation() -> None:
    """The expectation table covers exactly the sample files, so new samples get a verdict."""
    assert sorted(EXPECTED) == sorted(p.name for p in SAMPLES.glob("*.json"))


@pytest.mark.parametrize("name", sorted(n for n, v in EXPECTED.items() if v != "api"))
def test_every_webhook_sample_gives_expected_events(name: str) -> None:
    """Each webhook sample yields the expected event classes, [] or PayloadError."""
    expected = EXPECTED[name]
    if expected == "error":
        with pytest.raises(PayloadError):
            parse_webhook(load(name), session_id=7)
        return
    events = parse_webhook(load(name), session_id=7)
    assert [type(e) for e in events] == expected
    assert all(e.session_id == 7 for e in events)


# --- messages from samples ---


def test_image_message_sample() -> None:
    """message.image.json: image with caption, media url/mimetype, own message by the id prefix."""
    msg = one(load("message.image.json"))
    assert isinstance(msg, Message)
    assert msg.provider_message_id == "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    assert msg.chat.jid == "11111111111@s.whatsapp.net"
    assert msg.chat.phone == "11111111111"
    assert msg.from_me is True
    assert msg.type is MessageType.IMAGE
    assert msg.body == "Check this out (caption for the media)!"
    assert msg.timestamp == datetime(2022, 11, 4, 11, 31, 25, tzinfo=UTC)
    assert msg.media is not None
    assert msg.media.mimetype == "image/jpeg"
    assert msg.media.filename is None
    assert msg.media.url is not None and msg.media.url.endswith("AAAAAAAAAAAAAAAAAAAAAAAA.jpg")
    assert msg.raw is None


def test_noweb_captured_image_uses_id_chat_and_push_name() -> None:
    """The NOWEB capture: chat from the id (its `from` differs by one digit), push name, image."""
    msg = one(load("message.noweb.image.captured.json"))
    assert isinstance(msg, Message)
    assert msg.provider_message_id == "6738E65C1C0E65591F2739658FC18A26"
    assert msg.chat.phone == "79069471990"
    assert msg.from_me is False
    assert msg.type is MessageType.IMAGE  # hasMedia wins over `_data.message.conversation`
    assert msg.body == "Hi there's!"
    assert msg.push_name == "Sim1"
    assert msg.ack is None  # ack null, ackName UNKNOWN
    assert msg.timestamp == datetime.fromtimestamp(1727252030, tz=UTC)
    assert msg.media is not None and msg.media.url is not None
    assert msg.media.url.startswith("https://github.com/devlikeapro/")


def test_from_me_reconstructed_sample() -> None:
    """message.any fromMe: text, SERVER ack, source kept in extra."""
    msg = one(load("message.any.fromMe.reconstructed.json"))
    assert isinstance(msg, Message)
    assert (msg.type, msg.body, msg.from_me) == (MessageType.TEXT, "Hi there!", True)
    assert msg.ack is AckLevel.SERVER
    assert msg.chat.jid == "11111111111@s.whatsapp.net"
    assert msg.extra["source"] == "app"


def test_newsletter_sample_is_a_newsletter_chat() -> None:
    """The NOWEB newsletter message: chat kind newsletter from the id, UNKNOWN ack is None."""
    msg = one(load("message.newsletter.noweb.json"))
    assert isinstance(msg, Message)
    assert msg.chat.kind is ChatKind.NEWSLETTER
    assert msg.chat.jid == "123123@newsletter"
    assert msg.body == "How are you all?! ❤️"
    assert msg.ack is None


def test_status_broadcast_sample_has_sender_from_id_suffix() -> None:
    """status@broadcast: broadcast chat, sender is the 4th id segment."""
    msg = one(load("message.status-broadcast.image.json"))
    assert isinstance(msg, Message)
    assert msg.chat.kind is ChatKind.BROADCAST
    assert msg.provider_message_id == "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    assert msg.sender is not None and msg.sender.phone == "123123"
    assert msg.type is MessageType.IMAGE


def test_polling_response_sample() -> None:
    """chats/{id}/messages response: each WAMessage parses with its READ ack."""
    (msg,) = [
        parse_message(p, session_id=7) for p in load("chats.messages.response.reconstructed.json")
    ]
    assert isinstance(msg, Message)
    assert msg.provider_message_id == "AAAAAA"
    assert msg.chat.jid == "123123@s.whatsapp.net"
    assert msg.ack is AckLevel.READ
    assert msg.body == "I'm good!"
    assert msg.type is MessageType.TEXT


def test_lid_chat_issue_1418_payload() -> None:
    """A NOWEB payload addressed by @lid keeps the LID as the chat key."""
    msg = message(load("message.any.payload.noweb.lid.issue-1418.json"))
    assert msg.provider_message_id == "3A8E1EBFE4943CA06D82"
    assert msg.chat.jid == "176369157804064@lid"
    assert msg.chat.lid == "176369157804064@lid"
    assert msg.chat.phone is None
    assert msg.body == "Iya sist"


def test_same_message_under_lid_and_phone_has_same_id() -> None:
    """The bare id is the same whether WAHA serializes the chat as @lid or @c.us."""
    lid = message({"id": "false_176369157804064@lid_3A8E1EBFE4943CA06D82", "timestamp": 1})
    pn = message({"id": "false_5511988887777@c.us_3A8E1EBFE4943CA06D82", "timestamp": 1})
    assert lid.provider_message_id == pn.provider_message_id == "3A8E1EBFE4943CA06D82"


def test_trimmed_issue_1849_payload_has_no_id() -> None:
    """A payload with no id anywhere is a PayloadError (nothing to dedupe on)."""
    with pytest.raises(PayloadError):
        parse_message(load("message.any.webjs.lid.issue-1849.json")["payload"], session_id=7)


# --- reactions, revokes, edits, acks, status ---


def test_reaction_sample() -> None:
    """message.reaction: target bare id from reaction.messageId, emoji, float timestamp."""
    reaction = one(load("message.reaction.json"))
    assert isinstance(reaction, Reaction)
    assert reaction.provider_message_id == "11111111111111111111111111111111"
    assert reaction.target_message_id == "11111111111111111111111111111111"
    assert reaction.emoji == "🙏"
    assert reaction.chat.phone == "79111111"
    assert reaction.from_me is False
    assert reaction.timestamp == datetime(2024, 3, 15, 5, 38, 31, 853000, tzinfo=UTC)


def test_reaction_removed_is_empty_emoji() -> None:
    """A reaction with text "" removes the reaction."""
    body = load("message.reaction.json")
    body["payload"]["reaction"]["text"] = ""
    reaction = one(body)
    assert isinstance(reaction, Reaction)
    assert reaction.emoji == ""


def test_revoked_sample() -> None:
    """message.revoked: revokedMessageId is the revoked bare id; chat from after.id."""
    revoke = one(load("message.revoked.reconstructed.json"))
    assert isinstance(revoke, Revoke)
    assert revoke.provider_message_id == "AAAAAAAAAAAAAAAA"
    assert revoke.chat is not None and revoke.chat.phone == "1231243123"


def test_edited_event() -> None:
    """message.edited: editedMessageId (bare) and the new body."""
    body = {
        "event": "message.edited",
        "session": "default",
        "timestamp": 1741249702485,
        "payload": {
            "id": "true_11111111111@c.us_EDITACTION",
            "timestamp": 1741249700,
            "fromMe": True,
            "body": "fixed text",
            "editedMessageId": "ORIGINALID",
        },
    }
    edit = one(body)
    assert isinstance(edit, Edit)
    assert (edit.provider_message_id, edit.body) == ("ORIGINALID", "fixed text")
    assert edit.chat is not None and edit.chat.phone == "11111111111"
    assert edit.timestamp == datetime.fromtimestamp(1741249700, tz=UTC)


@pytest.mark.parametrize("named", [True, False])
def test_a_webjs_edit_has_the_time_of_its_envelope(named: bool) -> None:
    """WEBJS builds `message.edited` from the edited message itself (`toWAMessage(event.
    message)`, `_data: {message, newBody, prevBody}`, WAHA 2026.2.1 session.webjs.core.ts):
    its `id` and `timestamp` are the original's, so the edit happened at the envelope's time
    (whether the envelope names the engine or not)."""
    original = 1764500000
    body = {
        "event": "message.edited",
        "session": "default",
        "timestamp": (original + 3600) * 1000,
        "payload": {
            "id": "true_11111111111@c.us_ORIGINALID",
            "timestamp": original,
            "fromMe": True,
            "body": "texto corrigido",
            "editedMessageId": "ORIGINALID",
            "_data": {"message": {}, "newBody": "texto corrigido", "prevBody": "texto"},
        },
    }
    if named:
        body["engine"] = "WEBJS"
    edit = one(body)
    assert isinstance(edit, Edit) and edit.provider_message_id == "ORIGINALID"
    assert edit.timestamp == datetime.fromtimestamp(original + 3600, tz=UTC)


@pytest.mark.parametrize("engine", ["WEBJS", None])
def test_a_webjs_revoke_has_the_time_of_its_envelope(engine: str | None) -> None:
    """WEBJS' `message.revoked` `after` is the revoked message itself (whatsapp-web.js
    `message_revoke_everyone`, WAHA 2026.2.1 session.webjs.core.ts), dated when it was sent:
    the revoke happened at the envelope's time. NOWEB's `after` is the revoke action's own."""
    original = 1764500000
    after = {
        "id": "true_11111111111@c.us_ORIGINALID",
        "timestamp": original,
        "fromMe": True,
        "body": "",
        "_data": {
            "id": {"fromMe": True, "id": "ORIGINALID"},
            "type": "revoked",
            "protocolMessageKey": {"id": "ORIGINALID"},
        },
    }
    body: dict[str, Any] = {
        "event": "message.revoked",
        "session": "default",
        "timestamp": (original + 600) * 1000,
        "payload": {"after": after, "before": None, "revokedMessageId": "ORIGINALID"},
    }
    if engine:
        body["engine"] = engine
    revoke = one(body)
    assert isinstance(revoke, Revoke) and revoke.provider_message_id == "ORIGINALID"
    assert revoke.timestamp == datetime.fromtimestamp(original + 600, tz=UTC)
    noweb = copy.deepcopy(body)
    noweb["engine"] = "NOWEB"
    noweb["payload"]["after"].update(
        id="true_11111111111@c.us_REVOKEACTION", timestamp=original + 5
    )
    noweb["payload"]["after"]["_data"] = {"key": {"id": "REVOKEACTION", "fromMe": True}}
    assert one(noweb).timestamp == datetime.fromtimestamp(original + 5, tz=UTC)


@pytest.mark.parametrize(
    ("name", "bare", "chat", "ack"),
    [
        ("message.ack.json", "4CC5EDD64BC22EBA6D639F2AF571346C", "11111111111@s.whatsapp.net", 3),
        ("message.ack.group.json", "4CC5EDD64BC22EBA6D639F2AF571346C", "11111111111@g.us", 2),
        (
            "message.ack.gows.dm.device.json",
            "3333333333333333333333",
            "11111111111@s.whatsapp.net",
            2,
        ),
        ("message.ack.noweb.group.lid-participant.json", "A" * 32, "222222222222222222@g.us", 2),
        ("message.ack.webjs.dm.read.json", "AAA", "11111111111@s.whatsapp.net", 3),
        ("message.ack.webjs.group.lid-participant.json", "A" * 32, "222222222222222222@g.us", 2),
    ],
)
def test_ack_samples(name: str, bare: str, chat: str, ack: int) -> None:
    """Acks: bare id is the 3rd id segment even with a `_<participant>` suffix; a group
    member's READ (`participant` names the reader) counts as reaching a device only."""
    event = one(load(name))
    assert isinstance(event, Ack)
    assert event.provider_message_id == bare
    assert event.chat is not None and event.chat.jid == chat
    assert event.ack == ack


def test_gows_group_ack_fixture_with_event_name() -> None:
    """The GOWS group fixture (no `event` key) parses once named message.ack.group."""
    body = {**load("message.ack.gows.group.lid-participant.json"), "event": "message.ack.group"}
    event = one(body)
    assert isinstance(event, Ack)
    assert event.provider_message_id == "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    assert event.from_me is True
    assert event.ack is AckLevel.DEVICE  # one member read it, not the group


def test_a_group_ack_without_a_member_keeps_its_level() -> None:
    """A group ack that names no member (an aggregate) keeps READ; a member's PLAYED is a
    device's too."""
    body = load("message.ack.group.json")
    body["payload"]["participant"] = None
    assert one(body).ack is AckLevel.READ
    body = load("message.ack.group.json")
    body["payload"].update(ack=4, ackName="PLAYED")
    assert one(body).ack is AckLevel.DEVICE


def test_webjs_group_ack_direction_comes_from_the_id() -> None:
    """WEBJS reports a group receipt's `fromMe` flipped; the id's `true_` prefix says whose
    message it is."""
    body = load("message.ack.webjs.group.lid-participant.json")
    assert body["payload"]["id"].startswith("true_") and body["payload"]["fromMe"] is False
    assert one(body).from_me is True
    body["payload"]["id"] = body["payload"]["id"].replace("true_", "false_", 1)
    assert one(body).from_me is False


def test_ack_from_ack_name_only_and_unknown() -> None:
    """ackName is used when ack is missing; `ack: null, ackName: UNKNOWN` yields nothing,
    except from GOWS for our own message, where it is how ERROR arrives (waha.md 3-4)."""
    body = load("message.ack.json")
    body["payload"].pop("ack")
    body["payload"]["ackName"] = "PLAYED"
    assert one(body).ack is AckLevel.PLAYED
    body["payload"].update(ack=None, ackName="UNKNOWN")
    assert parse_webhook(body, session_id=7) == []
    gows = load("message.ack.gows.dm.device.json")
    assert gows["payload"]["id"].startswith("true_")
    gows["payload"].update(ack=None, ackName="UNKNOWN")
    assert one(gows).ack is AckLevel.ERROR
    gows["payload"]["id"] = gows["payload"]["id"].replace("true_", "false_", 1)
    gows["payload"]["fromMe"] = False
    assert parse_webhook(gows, session_id=7) == []  # someone else's message: no level


def test_ack_uses_envelope_timestamp() -> None:
    """An ack's time is the envelope `timestamp` (ms) when present."""
    body = {**load("message.ack.json"), "timestamp": 1741249702485}
    assert one(body).timestamp == datetime(2025, 3, 6, 8, 28, 22, 485000, tzinfo=UTC)


def test_pending_ack_zero_is_kept() -> None:
    """ack 0 (PENDING) is a real level, not a missing one."""
    assert message({"id": "true_1@c.us_X", "timestamp": 1, "ack": 0}).ack is AckLevel.PENDING


def test_session_status_keeps_the_status_data() -> None:
    """`payload.data` is extra info of the current status (a pairing code, a time lock)."""
    body = {
        "event": "session.status",
        "session": "default",
        "payload": {"status": "PASSKEY_CONFIRMATION_REQUIRED", "data": {"code": "1234"}},
    }
    status = one(body)
    assert isinstance(status, SessionStatus)
    assert status.detail["data"] == {"code": "1234"}


def test_session_status_sample() -> None:
    """session.status: status verbatim and the session name in detail."""
    status = one(load("session.status.scan_qr_code.webjs.captured.json"))
    assert isinstance(status, SessionStatus)
    assert status.status == "SCAN_QR_CODE"
    assert status.detail["name"] == "default2"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, AckLevel.ERROR),
        (0, AckLevel.PENDING),
        (4, AckLevel.PLAYED),
        ("3", AckLevel.READ),
        ("device", AckLevel.DEVICE),
        ("SERVER", AckLevel.SERVER),
        ("ERROR", AckLevel.ERROR),
        ("UNKNOWN", None),
        (None, None),
        (5, None),
        (True, None),
    ],
)
def test_ack_from(value: Any, expected: AckLevel | None) -> None:
    """ack_from accepts -1..4 and the WAMessageAck names, nothing else."""
    assert ack_from(value) is expected


# --- ids ---


def test_message_key_forms() -> None:
    """Serialized, group-suffixed, raw and WEBJS object ids all give the bare id."""
    group = message_key("false_1@g.us_ABC_9999@lid")
    assert group is not None
    assert (group.bare, group.chat, group.from_me, group.participant) == (
        "ABC",
        "1@g.us",
        False,
        "9999@lid",
    )
    raw = message_key("3EB0ABC")
    assert raw is not None and (raw.bare, raw.chat) == ("3EB0ABC", None)
    webjs = message_key({"fromMe": True, "remote": "1@c.us", "id": "AAA", "_serialized": "x"})
    assert webjs is not None and (webjs.bare, webjs.chat, webjs.from_me) == ("AAA", "1@c.us", True)
    assert message_key("") is None and message_key(None) is None


def test_webjs_id_object_and_data_id() -> None:
    """A WEBJS `id` object or `_data.id` with `_serialized` is a usable id."""
    serialized = "true_11111111111@c.us_AAA"
    as_object = message({"id": {"_serialized": serialized}, "timestamp": 1, "body": "a"})
    in_data = message({"_data": {"id": {"_serialized": serialized}}, "timestamp": 1, "body": "a"})
    assert as_object.provider_message_id == in_data.provider_message_id == "AAA"
    assert in_data.chat.phone == "11111111111" and in_data.from_me is True


def test_raw_id_takes_chat_from_engine_fields() -> None:
    """A raw id takes the chat from `from` (NOWEB/GOWS) or `to` when WEBJS and fromMe."""
    noweb = message({"id": "RAW1", "from": "5511988887777@c.us", "fromMe": True, "timestamp": 1})
    assert noweb.chat.phone == "5511988887777"
    payload = {"id": "RAW2", "from": "444@c.us", "to": "5511988887777@c.us", "fromMe": True}
    body = {"event": "message.any", "session": "s", "engine": "WEBJS", "payload": payload}
    webjs = one(body)
    assert isinstance(webjs, Message)
    assert webjs.chat.phone == "5511988887777"
    assert webjs.extra["timestamp_missing"] is True


def test_no_chat_at_all_is_payload_error() -> None:
    """A raw id with no chat anywhere is a PayloadError."""
    with pytest.raises(PayloadError):
        parse_message({"id": "RAW", "timestamp": 1}, session_id=7)


# --- engine hints: LID pairing, types, media ---


def test_noweb_remote_jid_alt_pairs_lid_and_phone() -> None:
    """NOWEB `_data.key.remoteJidAlt` gives the phone of an @lid chat (Brazilian 9th digit)."""
    msg = message(
        {
            "id": "false_76201477542116@lid_ACF74C31",
            "timestamp": 1763326182,
            "from": "76201477542116@lid",
            "body": "oi",
            "_data": {
                "key": {
                    "remoteJid": "76201477542116@lid",
                    "remoteJidAlt": "558893074699@s.whatsapp.net",
                    "id": "ACF74C31",
                },
                "pushName": "Gleidiane",
                "message": {"conversation": "oi"},
            },
        }
    )
    assert msg.chat.jid == "5588993074699@s.whatsapp.net"
    assert msg.chat.lid == "76201477542116@lid"
    assert msg.push_name == "Gleidiane"


def test_noweb_group_participant_alt() -> None:
    """A NOWEB group message pairs the LID participant with `participantAlt`."""
    msg = message(
        {
            "id": "false_120363000000000000@g.us_ABC_123456789012345@lid",
            "timestamp": 1763000000,
            "participant": "123456789012345@lid",
            "body": "hi",
            "_data": {
                "key": {
                    "remoteJid": "120363000000000000@g.us",
                    "participant": "123456789012345@lid",
                    "participantAlt": "5511999999999@s.whatsapp.net",
                }
            },
        }
    )
    assert msg.chat.kind is ChatKind.GROUP
    assert msg.sender is not None
    assert msg.sender.phone == "5511999999999"
    assert msg.sender.lid == "123456789012345@lid"


@pytest.mark.parametrize("pn", ["558893074699@s.whatsapp.net", "558893074699"])
def test_noweb_before_2025_9_5_pairs_lid_and_phone_by_sender_pn(pn: str) -> None:
    """WAHA 2025.7.4-2025.9.4's Baileys names the phone `key.senderPn` (maybe bare digits, as
    WAHA's own store reads it) and the LID `senderLid`; on our own message it is not the
    chat's phone (the sender is us), so a LID chat stays a LID there."""
    data = {"remoteJid": "76201477542116@lid", "id": "ACF74C31"}
    payload = {
        "id": "false_76201477542116@lid_ACF74C31",
        "timestamp": 1763326182,
        "from": "76201477542116@lid",
        "body": "oi",
        "_data": {"key": {**data, "senderPn": pn, "senderLid": "76201477542116@lid"}},
    }
    msg = message(payload)
    assert (msg.chat.jid, msg.chat.lid) == ("5588993074699@s.whatsapp.net", "76201477542116@lid")
    ours = copy.deepcopy(payload)
    ours.update(id="true_76201477542116@lid_ACF74C31", fromMe=True)
    ours["_data"]["key"].update(fromMe=True, senderPn="5531900000000@s.whatsapp.net")
    assert message(ours).chat.jid == "76201477542116@lid"


def test_noweb_before_2025_9_5_group_participant_pn() -> None:
    """... and a group author's phone `participantPn` (`participantLid` the LID)."""
    msg = message(
        {
            "id": "false_120363000000000000@g.us_ABC_123456789012345@lid",
            "timestamp": 1763000000,
            "participant": "123456789012345@lid",
            "body": "hi",
            "_data": {
                "key": {
                    "remoteJid": "120363000000000000@g.us",
                    "participant": "123456789012345@lid",
                    "participantPn": "5511999999999",
                    "participantLid": "123456789012345@lid",
                }
            },
        }
    )
    assert msg.sender is not None
    assert (msg.sender.phone, msg.sender.lid) == ("5511999999999", "123456789012345@lid")


def test_a_gows_message_with_gos_zero_time_takes_the_time_it_was_received() -> None:
    """GOWS gives `timestamp: null` and `Info.Timestamp` Go's zero time when WhatsApp gave
    none: the receipt time stands in (as for a missing one), not the year 1."""
    received = datetime(2025, 10, 4, 12, 0, 5, tzinfo=UTC)
    payload = {
        "id": "false_5511988887777@c.us_3EB0Z",
        "from": "5511988887777@c.us",
        "timestamp": None,
        "body": "hello",
        "_data": {
            "Info": {
                "Chat": "5511988887777@s.whatsapp.net",
                "ID": "3EB0Z",
                "Timestamp": "0001-01-01T00:00:00Z",
            }
        },
    }
    msg = message(payload, received_at=received)
    assert msg.timestamp == received


def test_gows_sender_alt_and_iso_timestamp() -> None:
    """GOWS: `Info.SenderAlt` pairs the chat, `Info.Timestamp` (ISO) is the fallback time."""
    msg = message(
        {
            "id": "false_111111111111111@lid_3EB0X",
            "from": "111111111111111@lid",
            "fromMe": False,
            "body": "hello",
            "ack": None,
            "ackName": "UNKNOWN",
            "_data": {
                "Info": {
                    "Chat": "111111111111111@lid",
                    "Sender": "111111111111111@lid",
                    "SenderAlt": "5511988887777@s.whatsapp.net",
                    "IsFromMe": False,
                    "IsGroup": False,
                    "ID": "3EB0X",
                    "PushName": "Go",
                    "Timestamp": "2025-10-04T12:00:00Z",
                },
                "Message": {"conversation": "hello"},
            },
        }
    )
    assert msg.chat.phone == "5511988887777"
    assert msg.chat.lid == "111111111111111@lid"
    assert msg.timestamp == datetime(2025, 10, 4, 12, 0, tzinfo=UTC)
    assert msg.push_name == "Go"
    assert msg.ack is None
    assert msg.type is MessageType.TEXT


def test_gows_own_message_uses_recipient_alt() -> None:
    """For our own GOWS message the chat's other form is `RecipientAlt`, not `SenderAlt`."""
    msg = message(
        {
            "id": "true_5511988887777@c.us_3EB0Y",
            "timestamp": 1,
            "fromMe": True,
            "body": "x",
            "_data": {
                "Info": {
                    "Chat": "5511988887777@s.whatsapp.net",
                    "SenderAlt": "999999999999999@lid",
                    "RecipientAlt": "111111111111111@lid",
                }
            },
        }
    )
    assert msg.chat.lid == "111111111111111@lid"


@pytest.mark.parametrize(
    ("webjs_type", "mimetype", "expected", "voice"),
    [
        ("chat", None, MessageType.TEXT, False),
        ("ptt", "audio/ogg; codecs=opus", MessageType.AUDIO, True),
        ("audio", "audio/mpeg", MessageType.AUDIO, False),
        ("image", "image/jpeg", MessageType.IMAGE, False),
        ("video", "video/mp4", MessageType.VIDEO, False),
        ("document", "image/jpeg", MessageType.DOCUMENT, False),
        ("sticker", "image/webp", MessageType.STICKER, False),
    ],
)
def test_webjs_type_hints(
    webjs_type: str, mimetype: str | None, expected: MessageType, voice: bool
) -> None:
    """WEBJS `_data.type` decides the type; ptt is audio with Media.voice."""
    has_media = mimetype is not None
    msg = message(
        {
            "id": "false_11111111111@c.us_W1",
            "timestamp": 1,
            "body": "caption" if has_media else "text",
            "hasMedia": has_media,
            "media": {"mimetype": mimetype, "url": "http://waha/f", "filename": None}
            if has_media
            else None,
            "_data": {"type": webjs_type, "notifyName": "Web", "size": 1234},
        }
    )
    assert msg.type is expected
    assert msg.push_name == "Web"
    if has_media:
        assert msg.media is not None
        assert (msg.media.voice, msg.media.mimetype, msg.media.size) == (voice, mimetype, 1234)
    else:
        assert msg.media is None


def test_voice_note_by_mimetype_without_hints() -> None:
    """Without engine hints, `audio/ogg; codecs=opus` media is a voice note."""
    msg = message(
        {
            "id": "false_1@c.us_V",
            "timestamp": 1,
            "hasMedia": True,
            "media": {"mimetype": "audio/ogg; codecs=opus", "url": "http://waha/v.oga"},
        }
    )
    assert msg.type is MessageType.AUDIO
    assert msg.media is not None and msg.media.voice is True


def test_noweb_proto_gives_ptt_and_size_when_media_not_downloaded() -> None:
    """Polling with downloadMedia=false: the NOWEB proto still gives type, ptt and fileLength."""
    msg = message(
        {
            "id": "false_1@c.us_P",
            "timestamp": "1763000000",
            "hasMedia": True,
            "media": None,
            "_data": {
                "message": {
                    "audioMessage": {
                        "mimetype": "audio/ogg; codecs=opus",
                        "ptt": True,
                        "fileLength": {"low": 5999, "high": 0, "unsigned": True},
                    }
                }
            },
        }
    )
    assert msg.type is MessageType.AUDIO
    assert msg.media is not None
    assert (msg.media.voice, msg.media.size, msg.media.url) == (True, 5999, None)


def test_media_without_any_type_evidence_is_other() -> None:
    """hasMedia with no media object and no hints is kept as OTHER with raw."""
    payload = {"id": "false_1@c.us_M", "timestamp": 1, "hasMedia": True, "media": None}
    msg = message(payload)
    assert msg.type is MessageType.OTHER
    assert msg.raw == payload


def test_location_message() -> None:
    """`location` gives type location with coordinates and name in extra."""
    msg = message(
        {
            "id": "false_1@c.us_L",
            "timestamp": 1,
            "body": "/9j/4AAQSkZJRgABAQ",
            "location": {"latitude": -23.55, "longitude": "-46.63", "name": "Sé", "live": False},
            "_data": {"type": "location"},
        }
    )
    assert msg.type is MessageType.LOCATION
    assert msg.extra["latitude"] == -23.55
    assert msg.extra["longitude"] == -46.63
    assert msg.extra["name"] == "Sé"
    assert msg.body is None  # WEBJS body is a JPEG thumbnail


def test_vcards_message() -> None:
    """A non-empty `vCards` list gives a contact message keeping the vCards."""
    card = "BEGIN:VCARD\nFN:Ana\nEND:VCARD"
    msg = message({"id": "false_1@c.us_C", "timestamp": 1, "body": card, "vCards": [card]})
    assert msg.type is MessageType.CONTACT
    assert msg.extra["vcards"] == [card]


@pytest.mark.parametrize(
    "data",
    [
        {"type": "revoked"},
        {"type": "e2e_notification"},
        {"message": {"pollCreationMessageV3": {"name": "Lunch?"}}},
    ],
)
def test_odd_content_is_other_with_raw(data: dict[str, Any]) -> None:
    """Unknown WEBJS types and unknown protos become OTHER with the raw payload kept."""
    payload = {"id": "false_1@c.us_O", "timestamp": 1, "body": "", "_data": data}
    msg = message(payload)
    assert msg.type is MessageType.OTHER
    assert msg.raw == payload


def test_reply_to_is_bare_id() -> None:
    """`replyTo.id` (serialized or raw) becomes the quoted message's bare id."""
    msg = message(
        {
            "id": "false_1@c.us_R",
            "timestamp": 1,
            "body": "yes",
            "replyTo": {"id": "true_1@c.us_QUOTED", "body": "q?"},
        }
    )
    assert msg.reply_to == "QUOTED"


def test_missing_timestamp_falls_back() -> None:
    """No timestamp: received_at when given, else 1970 flagged `timestamp_missing`."""
    payload = {"id": "false_1@c.us_T", "body": "x"}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert message(payload, received_at=now).timestamp == now
    fallback = message(payload)
    assert fallback.timestamp == datetime(1970, 1, 1, tzinfo=UTC)
    assert fallback.extra["timestamp_missing"] is True


# --- invalid bodies ---


@pytest.mark.parametrize(
    "body",
    [
        None,
        ["event"],
        {"session": "default", "payload": {}},
        {"event": 3, "payload": {}},
        {"event": "message", "session": "default"},
        {"event": "message", "payload": "text"},
        {"event": "message.ack", "payload": {"ack": 3}},
        {"event": "message.revoked", "payload": {"after": {}}},
        {"event": "message.edited", "payload": {"id": "true_1@c.us_A", "body": "x"}},
        {"event": "session.status", "payload": {"name": "default"}},
    ],
)
def test_invalid_bodies_raise_payload_error(body: Any) -> None:
    """Bodies that are not envelopes, or handled events without a usable payload, raise."""
    with pytest.raises(PayloadError):
        parse_webhook(body, session_id=7)


def test_unknown_event_gives_nothing() -> None:
    """Unhandled events (even without payload) give an empty list."""
    assert parse_webhook({"event": "call.received", "session": "default"}, session_id=7) == []


def test_a_poll_vote_is_an_update_of_its_poll() -> None:
    """`poll.vote` (the docs' examples): the voter's options for the poll's bare id, in the
    poll's chat, never a message; a group vote names its voter, a vote of ours is `me`."""
    (vote,) = parse_webhook(load("poll.vote.json"), session_id=1)
    assert isinstance(vote, PollVote)
    assert (vote.provider_message_id, vote.options) == ("BAE5F2EF5C69001E", ("Awesome!",))
    assert vote.voter == "1111111@s.whatsapp.net" and vote.vote_id is not None
    assert vote.chat is not None and vote.chat.jid == "1111111111@s.whatsapp.net"
    (group_vote,) = parse_webhook(load("poll.vote.group.json"), session_id=1)
    assert isinstance(group_vote, PollVote)
    assert group_vote.chat is not None and group_vote.chat.kind is ChatKind.GROUP
    assert group_vote.voter == "1111111111@s.whatsapp.net"
    ours = load("poll.vote.json")
    ours["payload"]["vote"]["fromMe"] = True
    (mine,) = parse_webhook(ours, session_id=1)
    assert isinstance(mine, PollVote) and mine.voter == "me"
    broken = load("poll.vote.json")
    del broken["payload"]["poll"]
    with pytest.raises(PayloadError):
        parse_webhook(broken, session_id=1)
