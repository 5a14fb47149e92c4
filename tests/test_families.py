"""Message families, polls and revoke shapes, parsed from the reconstructed samples in
`tests/samples/*/families/` (each file's README says which source it comes from)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wasync.events import Edit, Message, MessageType, PollVote, Revoke
from wasync.providers import evolution, waha
from wasync.providers.proto import message_content

FAMILIES = Path(__file__).parent / "samples"


def load(provider: str, name: str) -> Any:
    """One reconstructed sample body."""
    return json.loads((FAMILIES / provider / "families" / name).read_text(encoding="utf-8"))


def one_message(provider: str, name: str) -> Message:
    """The single Message a sample's webhook gives."""
    parse = waha.parse_webhook if provider == "waha" else evolution.parse_webhook
    (event,) = parse(load(provider, name), session_id=5)
    assert isinstance(event, Message)
    return event


# (provider, sample, type, body, extra items that must be there)
FAMILY_CASES = [
    (
        "waha",
        "message.any.noweb.template.reconstructed.json",
        MessageType.TEXT,
        "Seu pedido #4521 saiu para entrega. Previsão: hoje até 18h.",
        {"business": "template"},
    ),
    (
        "waha",
        "message.any.gows.buttons.reconstructed.json",
        MessageType.TEXT,
        "Deseja confirmar a consulta de amanhã às 14h?",
        {"business": "buttons"},
    ),
    (
        "waha",
        "message.any.noweb.list.reconstructed.json",
        MessageType.TEXT,
        "Cardápio do dia\nEscolha o seu prato\nRestaurante Sabor",
        {"business": "list"},
    ),
    (
        "waha",
        "message.any.noweb.interactive.reconstructed.json",
        MessageType.TEXT,
        "Use o código Pix abaixo para pagar R$ 149,90.",
        {"business": "interactive"},
    ),
    ("waha", "message.any.noweb.motion-photo.reconstructed.json", MessageType.VIDEO, None, {}),
    (
        "waha",
        "message.any.noweb.group-status.reconstructed.json",
        MessageType.IMAGE,
        "Promoção de sábado!",
        {},
    ),
    ("waha", "message.any.noweb.lottie-sticker.reconstructed.json", MessageType.STICKER, None, {}),
    (
        "evolution",
        "messages.upsert.template.reconstructed.json",
        MessageType.IMAGE,
        "Seu boleto vence amanhã. Pague pelo link.",
        {"business": "template"},
    ),
    (
        "evolution",
        "messages.upsert.buttons.reconstructed.json",
        MessageType.TEXT,
        "Podemos confirmar a entrega para sábado?",
        {"business": "buttons"},
    ),
    (
        "evolution",
        "messages.upsert.list.reconstructed.json",
        MessageType.TEXT,
        "Horários\nEscolha um horário para a visita\nImobiliária",
        {"business": "list"},
    ),
    (
        "evolution",
        "messages.upsert.interactive.reconstructed.json",
        MessageType.TEXT,
        "Copie o código Pix para pagar R$ 89,90.",
        {"business": "interactive"},
    ),
    (
        "evolution",
        "messages.upsert.lottie-sticker.reconstructed.json",
        MessageType.STICKER,
        None,
        {},
    ),
    (
        "evolution",
        "messages.upsert.motion-photo.reconstructed.json",
        MessageType.VIDEO,
        None,
        {"seconds": 3},
    ),
    (
        "evolution",
        "messages.upsert.group-status.reconstructed.json",
        MessageType.TEXT,
        "Reunião do condomínio hoje às 19h",
        {},
    ),
]


@pytest.mark.parametrize(("provider", "name", "kind", "body", "extra"), FAMILY_CASES)
def test_each_family_keeps_its_text_and_type(
    provider: str, name: str, kind: MessageType, body: str | None, extra: dict[str, Any]
) -> None:
    """Business messages keep their words (and a media header its type); the wrappers
    Baileys and whatsmeow unwrap give their inner type; nothing is `other`."""
    message = one_message(provider, name)
    assert message.type is kind
    assert message.body == body
    assert extra.items() <= message.extra.items()
    assert message.raw is None
    if kind in (MessageType.VIDEO, MessageType.IMAGE, MessageType.STICKER):
        assert message.media is not None and message.media.mimetype


@pytest.mark.parametrize(
    ("provider", "name", "question", "options", "selectable"),
    [
        (
            "waha",
            "message.any.noweb.poll.reconstructed.json",
            "Qual horário prefere?",
            ["Manhã", "Tarde", "Noite"],
            1,
        ),
        (
            "waha",
            "message.any.webjs.poll.reconstructed.json",
            "Qual horário prefere?",
            ["Manhã", "Tarde"],
            1,
        ),
        (
            "evolution",
            "messages.upsert.poll.reconstructed.json",
            "Qual sabor você prefere?",
            ["Chocolate", "Morango"],
            1,
        ),
    ],
)
def test_a_poll_is_a_poll_with_its_options(
    provider: str, name: str, question: str, options: list[str], selectable: int
) -> None:
    """A poll's creation is type `poll`: its question as body, its options in `extra`."""
    message = one_message(provider, name)
    assert message.type is MessageType.POLL
    assert message.body == question
    assert message.extra["poll"] == {"options": options, "selectable": selectable}


def test_a_poll_without_options_stays_other() -> None:
    """A creation that carries no options is odd content: `other`, with its question."""
    content = message_content({"pollCreationMessageV3": {"name": "Almoço?"}})
    assert (content.type, content.text) == (MessageType.OTHER, "Almoço?")


def test_an_evolution_vote_updates_its_poll() -> None:
    """Evolution 2.3.7 decrypts a vote into option names: a PollVote on the poll, no message."""
    (vote,) = evolution.parse_webhook(
        load("evolution", "messages.upsert.poll-vote.2.3.7.reconstructed.json"), session_id=5
    )
    assert isinstance(vote, PollVote)
    assert vote.provider_message_id == "3EB0E1B2C3D4E5F6A7B8C9"
    assert vote.options == ("Morango",)
    assert vote.voter == "5531988887777@s.whatsapp.net"
    assert vote.vote_id == "3A6E2F3A4B5C6D7E8F90"


def test_an_encrypted_evolution_vote_stays_a_message() -> None:
    """A vote Evolution could not decrypt (its options are hashes, as before 2.3.7) is kept as
    `other`, as it was."""
    body = load("evolution", "messages.upsert.poll-vote.2.3.7.reconstructed.json")
    body["data"]["message"]["pollUpdateMessage"]["vote"]["selectedOptions"] = [{"0": 1}]
    (event,) = evolution.parse_webhook(body, session_id=5)
    assert isinstance(event, Message) and event.type is MessageType.OTHER
    assert event.provider_type == "pollUpdateMessage"


def test_an_edit_through_evolutions_api_is_an_edit() -> None:
    """`send.message.update` (an edit made with Evolution's updateMessage) is an Edit."""
    (edit,) = evolution.parse_webhook(
        load("evolution", "send.message.update.reconstructed.json"), session_id=5
    )
    assert isinstance(edit, Edit)
    assert edit.provider_message_id == "3EB0AAAAAAAAAAAAAAAAAA"
    assert edit.body == "Seu horário é às 15h (corrigido)"
    assert edit.timestamp == datetime(2025, 12, 1, 14, 40, 30, tzinfo=UTC)
    assert "SEND_MESSAGE_UPDATE" in evolution.EVOLUTION_EVENTS


@pytest.mark.parametrize(
    "name",
    [
        "message.revoked.gows.before-2025.6.3.reconstructed.json",
        "message.revoked.noweb.before-2025.6.3.reconstructed.json",
        "message.revoked.webjs.before-2025.6.3.reconstructed.json",
    ],
)
def test_revokes_before_revoked_message_id(name: str) -> None:
    """WAHA before 2025.6.3 sent no `revokedMessageId`: the target comes from the protocol
    message of `after` (GOWS `ID`, NOWEB `id`) or, on WEBJS, from `after` itself."""
    (revoke,) = waha.parse_webhook(load("waha", name), session_id=5)
    assert isinstance(revoke, Revoke)
    assert revoke.provider_message_id == "A06CA7BB5DD8C8F705628CDB7E3A33C9"
    assert revoke.chat is not None and revoke.chat.phone == "5531988887777"


def test_unknown_content_names_its_type_for_the_metric() -> None:
    """An `other` message carries the provider's own name for its content."""
    body = load("evolution", "messages.upsert.buttons.reconstructed.json")
    body["data"]["messageType"] = "somethingBrandNew"
    body["data"]["message"] = {"somethingBrandNew": {"x": 1}}
    message = evolution.parse_webhook(body, session_id=5)[0]
    assert isinstance(message, Message) and message.type is MessageType.OTHER
    assert message.provider_type == "somethingBrandNew"
