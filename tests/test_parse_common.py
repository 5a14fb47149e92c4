"""Shared parsing helpers, provider detection, and the sample copies they are tested against."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from wasync.errors import PayloadError
from wasync.events import MessageType
from wasync.providers.detect import detect_provider, session_name
from wasync.providers.parsing import (
    as_int,
    as_number,
    maybe_timestamp,
    parse_timestamp,
)
from wasync.providers.proto import edited_text, message_content

SAMPLES = Path(__file__).parent / "samples"
SHARED = Path("/work/shared/providers")

WAHA_WEBHOOKS = {
    "group.v2.join.json",
    "group.v2.participants.json",
    "message.ack.gows.dm.device.json",
    "message.ack.gows.dm.read-by-me-other-device.json",
    "message.ack.gows.dm.read.json",
    "message.ack.gows.group.lid-participant.json",
    "message.ack.group.json",
    "message.ack.json",
    "message.ack.noweb.dm.read.json",
    "message.ack.noweb.group.lid-participant.json",
    "message.ack.webjs.dm.read.json",
    "message.ack.webjs.group.lid-participant.json",
    "message.any.fromMe.reconstructed.json",
    "message.any.webjs.lid.issue-1849.json",
    "message.document.pdf.json",
    "message.image.json",
    "message.newsletter.noweb.json",
    "message.noweb.image.captured.json",
    "message.reaction.json",
    "message.revoked.reconstructed.json",
    "message.status-broadcast.image.json",
    "poll.vote.group.json",
    "poll.vote.json",
    "presence.update.json",
    "session.status.scan_qr_code.webjs.captured.json",
    "webhook.envelope.reconstructed.json",
}
EVOLUTION_WEBHOOKS = {
    "connection.update.close-401.v1.json",
    "connection.update.close-405.v1.json",
    "connection.update.json",
    "connection.update.open.v1.json",
    "contacts.update.single.json",
    "contacts.upsert.json",
    "messages.delete.reconstructed.json",
    "messages.update.edit.json",
    "messages.update.read.json",
    "messages.update.status-deleted.json",
    "messages.upsert.audio.reconstructed.json",
    "messages.upsert.document.reconstructed.json",
    "messages.upsert.extendedText-quoted-document.v1.json",
    "messages.upsert.extendedText.v1.json",
    "messages.upsert.fromMe.json",
    "messages.upsert.fromMe.v1.json",
    "messages.upsert.group.reconstructed.json",
    "messages.upsert.group.v1.json",
    "messages.upsert.image.reconstructed.json",
    "messages.upsert.sticker.v1.json",
    "messages.upsert.text.json",
    "messages.upsert.text.pn.json",
    "messages.upsert.text.rabbitmq-2.3.7.json",
    "qrcode.updated.json",
    "qrcode.updated.v1.json",
    "send.message.partial.json",
    "send.message.reconstructed.json",
}


def load(provider: str, name: str) -> Any:
    """One sample body from `tests/samples/<provider>/`."""
    return json.loads((SAMPLES / provider / name).read_text(encoding="utf-8"))


def sample_names(provider: str) -> list[str]:
    """Every sample file name of a provider."""
    return sorted(p.name for p in (SAMPLES / provider).glob("*.json"))


# --- timestamps and numbers ---


@pytest.mark.parametrize(
    "value",
    [
        1763326182,
        1763326182.0,
        "1763326182",
        " 1763326182 ",
        1763326182000,
        "1763326182000",
        1763326182000000,
        {"low": 1763326182, "high": 0, "unsigned": True},
        "2025-11-16T20:49:42Z",
        "2025-11-16T20:49:42+00:00",
        "2025-11-16T17:49:42-03:00",
        "2025-11-16T20:49:42",
    ],
)
def test_parse_timestamp_accepts_every_documented_form(value: Any) -> None:
    """Seconds, ms, µs, numeric strings, Longs and ISO strings all give the same UTC instant."""
    parsed = parse_timestamp(value)
    assert parsed == datetime(2025, 11, 16, 20, 49, 42, tzinfo=UTC)
    assert parsed.tzinfo is not None


def test_parse_timestamp_keeps_fractions_and_is_aware() -> None:
    """A float WAHA timestamp keeps its milliseconds and is UTC-aware."""
    parsed = parse_timestamp(1710481111.853)
    assert parsed.tzinfo is UTC
    assert parsed.microsecond == 853000


def test_parse_timestamp_reads_gows_nanosecond_iso() -> None:
    """GOWS Go timestamps with nanoseconds and an offset parse to an aware datetime."""
    parsed = parse_timestamp("2025-10-04T15:00:00.123456789+03:00")
    assert parsed == datetime(2025, 10, 4, 12, 0, 0, 123456, tzinfo=UTC)
    assert parsed.tzinfo == timezone(timedelta(hours=3))


@pytest.mark.parametrize("value", [None, True, "yesterday", {"0": 1, "1": 2}, [], 1e300])
def test_parse_timestamp_rejects_junk(value: Any) -> None:
    """Values that are not a time raise PayloadError, never a bare TypeError."""
    with pytest.raises(PayloadError):
        parse_timestamp(value)


def test_maybe_timestamp_takes_first_usable_value() -> None:
    """maybe_timestamp skips missing and invalid candidates and never raises."""
    assert maybe_timestamp(None, "", "junk", 0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert maybe_timestamp(None, "junk") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5999, 5999),
        ("1305757", 1305757),
        (54005.0, 54005),
        ({"low": 123456, "high": 0, "unsigned": True}, 123456),
        ({"low": -1, "high": 0, "unsigned": True}, 2**32 - 1),
        ({"low": 0, "high": 1, "unsigned": True}, 2**32),
        ({"low": -1, "high": -1, "unsigned": False}, -1),
        ("90071992547409931", 90071992547409931),
        (1.5, None),
        ({"0": 1, "1": 2}, None),
        (True, None),
        ("12a", None),
        (None, None),
    ],
)
def test_as_int_reads_longs_strings_and_ints(value: Any, expected: int | None) -> None:
    """as_int decodes protobuf Longs, digit strings and ints, and refuses everything else."""
    assert as_int(value) == expected


def test_as_number_keeps_coordinates() -> None:
    """as_number keeps float coordinates and numeric strings as numbers."""
    assert as_number(-23.5505) == -23.5505
    assert as_number("-46.6333") == -46.6333


# --- Baileys content ---


def test_message_content_ignores_leading_metadata_keys() -> None:
    """The content key comes from the whitelist, not from the first key of `message`."""
    content = message_content(
        {"messageContextInfo": {"x": 1}, "senderKeyDistributionMessage": {}, "conversation": "hi"}
    )
    assert (content.key, content.type, content.text) == ("conversation", MessageType.TEXT, "hi")


def test_message_content_unwraps_ephemeral_and_view_once() -> None:
    """ephemeralMessage and viewOnceMessageV2 wrappers are unwrapped to the real content."""
    wrapped = {
        "ephemeralMessage": {
            "message": {
                "viewOnceMessageV2": {
                    "message": {"imageMessage": {"mimetype": "image/jpeg", "caption": "once"}}
                }
            }
        }
    }
    content = message_content(wrapped, "ephemeralMessage")
    assert content.type is MessageType.IMAGE
    assert content.text == "once"
    assert content.media is not None and content.media.mimetype == "image/jpeg"


def test_message_content_unwraps_document_with_caption() -> None:
    """documentWithCaptionMessage gives a document with its fileName, mimetype and caption."""
    content = message_content(
        {
            "documentWithCaptionMessage": {
                "message": {
                    "documentMessage": {
                        "fileName": "a.zip",
                        "mimetype": "application/zip",
                        "caption": "zip",
                        "fileLength": "1372777",
                    }
                }
            }
        },
        "documentWithCaptionMessage",
    )
    assert content.type is MessageType.DOCUMENT
    assert content.text == "zip"
    assert content.media is not None
    assert (content.media.filename, content.media.size) == ("a.zip", 1372777)


def test_message_content_unknown_key_is_other() -> None:
    """An unknown messageType or content gives type OTHER."""
    assert message_content({"pollCreationMessageV3": {"name": "?"}}).type is MessageType.OTHER
    assert message_content({"somethingNew": {}}, "somethingNew").type is MessageType.OTHER
    assert message_content({}).type is MessageType.OTHER


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (
            {"buttonsResponseMessage": {"selectedDisplayText": "Sim", "selectedButtonId": "b1"}},
            "Sim",
        ),
        ({"buttonsResponseMessage": {"selectedButtonId": "b1"}}, "b1"),
        (
            {"templateButtonReplyMessage": {"selectedDisplayText": "Quero", "selectedId": "t"}},
            "Quero",
        ),
        (
            {
                "listResponseMessage": {
                    "title": "Opção 2",
                    "singleSelectReply": {"selectedRowId": "r2"},
                }
            },
            "Opção 2",
        ),
        ({"listResponseMessage": {"singleSelectReply": {"selectedRowId": "r2"}}}, "r2"),
        ({"interactiveResponseMessage": {"body": {"text": "Confirmar"}}}, "Confirmar"),
        ({"pollCreationMessageV3": {"name": "Qual horário?"}}, "Qual horário?"),
    ],
)
def test_replies_to_buttons_and_lists_keep_the_answer(message: dict[str, Any], text: str) -> None:
    """A customer's button, list or interactive reply is kept as `other` with what they chose
    as body (evolution.md 4.2 lists these content keys), so the agent sees the answer."""
    content = message_content(message)
    assert content.type is MessageType.OTHER
    assert content.text == text


def test_message_content_contacts_array_keeps_every_vcard() -> None:
    """contactsArrayMessage keeps each vCard and the display name as body."""
    content = message_content(
        {
            "contactsArrayMessage": {
                "displayName": "2 contacts",
                "contacts": [{"vcard": "BEGIN:VCARD\nA"}, {"vcard": "BEGIN:VCARD\nB"}],
            }
        }
    )
    assert content.type is MessageType.CONTACT
    assert content.text == "2 contacts"
    assert content.extra == {"vcards": ["BEGIN:VCARD\nA", "BEGIN:VCARD\nB"]}


@pytest.mark.parametrize(
    "message",
    [
        {"editedMessage": {"conversation": "new"}},
        {"key": {"id": "X"}, "type": 14, "editedMessage": {"extendedTextMessage": {"text": "new"}}},
        {"protocolMessage": {"type": 14, "editedMessage": {"conversation": "new"}}},
        {
            "editedMessage": {
                "message": {"protocolMessage": {"editedMessage": {"conversation": "new"}}}
            }
        },
        {"imageMessage": {"caption": "new"}},
        {"conversation": "new"},
    ],
)
def test_edited_text_finds_the_new_text(message: dict[str, Any]) -> None:
    """edited_text reads protocolMessage, FutureProof editedMessage and plain content forms."""
    assert edited_text(message) == "new"


def test_edited_text_of_nothing_is_none() -> None:
    """No message, or a message without text, gives None."""
    assert edited_text(None) is None
    assert edited_text({"messageContextInfo": {}}) is None


# --- detection ---


@pytest.mark.parametrize("name", sample_names("waha"))
def test_detect_waha_samples(name: str) -> None:
    """Every WAHA webhook sample is detected as WAHA; API bodies are not webhooks."""
    expected = "waha" if name in WAHA_WEBHOOKS else None
    assert detect_provider(load("waha", name)) == expected


@pytest.mark.parametrize("name", sample_names("evolution"))
def test_detect_evolution_samples(name: str) -> None:
    """Every Evolution webhook sample is detected as Evolution; API bodies are not webhooks."""
    expected = "evolution" if name in EVOLUTION_WEBHOOKS else None
    assert detect_provider(load("evolution", name)) == expected


@pytest.mark.parametrize(
    ("provider", "name", "expected"),
    [
        ("waha", "message.noweb.image.captured.json", "chatwoot"),
        ("waha", "session.status.scan_qr_code.webjs.captured.json", "default2"),
        ("waha", "message.any.webjs.lid.issue-1849.json", None),
        ("evolution", "messages.upsert.text.json", "5588921729550"),
        ("evolution", "connection.update.json", "minha-instancia"),
        ("evolution", "send.message.partial.json", None),
        ("evolution", "sendText.response.v1.json", None),
    ],
)
def test_session_name(provider: str, name: str, expected: str | None) -> None:
    """session_name reads WAHA `session` / Evolution `instance`, None when absent."""
    assert session_name(load(provider, name)) == expected


def test_session_name_falls_back_to_inner_name() -> None:
    """Without an envelope name, WAHA `payload.name` and Evolution `data.instance` are used."""
    assert session_name({"event": "session.status", "payload": {"name": "s1"}}) == "s1"
    assert session_name({"event": "connection.update", "data": {"instance": "i1"}}) == "i1"


@pytest.mark.parametrize(
    "body",
    [None, [], "text", {}, {"event": "x"}, {"payload": {}, "data": {}, "event": "x"}, {"data": {}}],
)
def test_detect_provider_refuses_ambiguous_bodies(body: Any) -> None:
    """Non-objects, bodies with neither or both payload keys, and bare data are not detected."""
    assert detect_provider(body) is None


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared provider notes not mounted")
@pytest.mark.parametrize("provider", ["waha", "evolution"])
def test_samples_are_verbatim_copies(provider: str) -> None:
    """tests/samples holds every shared sample, byte for byte."""
    shared = {p.name: p.read_bytes() for p in (SHARED / provider).glob("*.json")}
    copied = {p.name: p.read_bytes() for p in (SAMPLES / provider).glob("*.json")}
    assert copied == shared
