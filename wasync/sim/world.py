"""Deterministic simulated WhatsApp worlds: people, chats and Portuguese conversations, planned
once, provider-neutral, from a `random.Random` (each simulator renders them in its own shapes)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from wasync.phones import parse_phone
from wasync.sim.content import (
    Content,
    contact_card,
    location,
    media,
    raw_message_id,
    reaction,
    text,
)

_FIRST = (
    "Ana", "João", "Maria", "Carlos", "Fernanda", "Lucas", "Juliana", "Rafael", "Patrícia",
    "Bruno", "Camila", "Thiago", "Aline", "Marcos", "Beatriz", "Gustavo", "Larissa", "Paulo",
    "Renata", "Diego", "Gleidiane", "Weslley", "Sônia", "Raimundo",
)  # fmt: skip
_LAST = (
    "Silva", "Souza", "Oliveira", "Pereira", "Lima", "Costa", "Ferreira", "Almeida", "Ribeiro",
    "Carvalho", "Gomes", "Martins", "Araújo", "Barbosa", "Limaverde", "Rocha",
)  # fmt: skip
_DDDS = (11, 21, 27, 31, 34, 41, 47, 51, 61, 71, 81, 85, 88, 92)
_GROUPS = (
    "Família Silva", "Equipe Vendas", "Condomínio Jardim", "Futebol de quinta",
    "Clientes VIP", "Turma do trabalho", "Suporte Loja Centro",
)  # fmt: skip
_CUSTOMER = (
    "Oi, tudo bem?", "Bom dia! Gostaria de saber o preço do plano.", "Vocês abrem no sábado?",
    "Pode me mandar o boleto?", "Qual o prazo de entrega para Belo Horizonte?",
    "Ainda não recebi o código de rastreio.", "Obrigado pela atenção!", "Segue o comprovante.",
    "Amanhã às 14h funciona pra mim.", "Preciso remarcar a consulta.", "Quanto fica em 3x?",
    "Tem desconto à vista?", "Meu pedido chegou com defeito 😕", "Perfeito, combinado 👍",
    "Alguém pode me ajudar?", "Vou pensar e te aviso.", "Qual o endereço da loja?",
    "Boa tarde, ainda tem disponível?", "Consegue me ligar mais tarde?", "Ok, aguardo.",
)  # fmt: skip
_AGENT = (
    "Olá! Como posso ajudar?", "Claro, vou verificar e já te retorno.",
    "O boleto foi enviado para o seu e-mail.", "Nosso horário é de seg a sex, das 8h às 18h.",
    "Sim, temos! Posso reservar para você?", "Em até 5 dias úteis.", "Obrigado, bom dia!",
    "Pode me informar o número do pedido?", "Fica R$ 149,90 à vista.",
    "Já encaminhei para o setor responsável.", "Agendado! Qualquer coisa é só chamar.",
    "Desculpe a demora, estamos com muitos atendimentos.", "Segue o catálogo atualizado.",
)  # fmt: skip
_CAPTIONS = ("Olha essa foto", "Segue o print", "Catálogo novo", None, None, "Comprovante")
_DOCS = (
    ("boleto.pdf", "application/pdf"),
    ("contrato.pdf", "application/pdf"),
    ("orcamento.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("nota-fiscal.pdf", "application/pdf"),
    ("proposta.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
)
_PLACES = (
    (-23.5614, -46.6559, "Av. Paulista, 1578 - São Paulo"),
    (-19.9320, -43.9380, "Praça da Liberdade - Belo Horizonte"),
    (-3.7319, -38.5267, "Centro - Fortaleza"),
    (-22.9711, -43.1822, "Copacabana - Rio de Janeiro"),
)
_EMOJIS = ("👍", "❤️", "😂", "🙏", "😮", "👏")
_KIND_WEIGHTS = (
    ("text", 52), ("image", 9), ("video", 4), ("audio", 3), ("voice", 6), ("document", 6),
    ("sticker", 5), ("location", 3), ("contact", 3), ("reaction", 9),
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    """Someone in the simulated world."""

    phone: str
    push_name: str
    name: str | None
    lid: str | None
    lid_known: bool
    device: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedMessage:
    """One message of a planned chat; `sender` is the group author's address, else None."""

    raw_id: str
    ts: int
    from_me: bool
    sender: str | None
    content: Content
    ack: int | None
    device: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedChat:
    """A chat of a planned world and its messages, oldest first.

    `address` is phone digits (direct chat), `<lid>@lid` (LID-addressed chat) or `<id>@g.us`.
    Messages before `pn_until` of a LID chat were exchanged before WhatsApp switched the contact
    to LID addressing (Evolution stores those rows under the phone jid).
    """

    kind: str
    address: str
    person: Person | None
    subject: str | None
    members: tuple[Person, ...]
    messages: tuple[PlannedMessage, ...]
    pn_until: int = 0


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(10 ** (n - 1), 10**n - 1))


def _foreign(country: str, digits: str) -> str:
    """A valid mobile of `country` from 8 random digits (the same draws as before, so worlds
    keep their shape): Portugal 351 9[1236]…, the UK 44 7…, Argentina's WhatsApp form
    54 9 11 …, all of 12 digits or more so that the stored digits typed back as they are
    parse as the same number; the digits turn until the number is valid, since `wasync
    send` and the REST send both refuse numbers that are not."""
    for turn in range(len(digits) * 10):
        d = digits[turn % 8 :] + digits[: turn % 8]
        d = str((int(d[0]) + turn // 8) % 10) + d[1:]
        phone = {"PT": f"3519{'1236'[int(d[0]) % 4]}{d[1:]}", "GB": f"447{d}{d[0]}"}.get(
            country, f"54911{d}"
        )
        if _valid(phone):
            return phone
    raise AssertionError(f"no valid {country} number from {digits}")  # never: 80 tries


def _valid(phone: str) -> bool:
    try:
        return parse_phone(phone) == phone
    except ValueError:
        return False


def _person(rng: random.Random, *, lid_share: float) -> Person:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    if rng.random() < 0.88:
        ddd = rng.choice(_DDDS)
        full = f"55{ddd}9{rng.randint(6, 9)}{_digits(rng, 7)}"
        old_form = ddd >= 31 and rng.random() < 0.6  # 12-digit jid, no ninth digit
        phone = full[:4] + full[5:] if old_form else full
    else:
        phone = _foreign(rng.choice(("PT", "GB", "AR")), _digits(rng, 8))
    has_lid = rng.random() < lid_share
    return Person(
        phone=phone,
        push_name=first if rng.random() < 0.7 else f"{first} {last}",
        name=f"{first} {last}" if rng.random() < 0.7 else None,
        lid=f"{rng.randint(1, 2)}{_digits(rng, 14)}@lid" if has_lid else None,
        lid_known=rng.random() < 0.65,
        device=rng.choices(("android", "ios", "web"), weights=(60, 35, 5))[0],
    )


def person(rng: random.Random) -> Person:
    """Someone new (a valid number; half of them with a LID), for live traffic."""
    return _person(rng, lid_share=0.5)


def customer_line(rng: random.Random) -> str:
    """Something a customer writes (Portuguese)."""
    return rng.choice(_CUSTOMER)


def _content(rng: random.Random, from_me: bool, previous: Sequence[PlannedMessage]) -> Content:
    kind = rng.choices([k for k, _ in _KIND_WEIGHTS], weights=[w for _, w in _KIND_WEIGHTS])[0]
    targets = [m for m in previous if m.content.kind != "reaction"]
    if kind == "reaction" and targets:
        target = rng.choice(targets[-5:])
        return reaction(rng.choice(_EMOJIS), target.raw_id, target_from_me=target.from_me)
    if kind in ("text", "reaction"):
        return text(rng.choice(_AGENT if from_me else _CUSTOMER))
    if kind == "document":
        name, mime = rng.choice(_DOCS)
        return media("document", filename=name, mimetype=mime, size=rng.randint(20_000, 900_000))
    if kind == "location":
        lat, lng, place = rng.choice(_PLACES)
        return location(lat, lng, place)
    if kind == "contact":
        other = _person(rng, lid_share=0.0)
        return contact_card(other.name or other.push_name, other.phone)
    caption = rng.choice(_CAPTIONS) if kind in ("image", "video") else None
    return media(
        kind, caption=caption, size=rng.randint(4_000, 2_000_000), seconds=rng.randint(2, 90)
    )


def _timestamps(rng: random.Random, n: int, *, now: int, span_s: int) -> list[int]:
    start = now - int(span_s * rng.uniform(0.3, 1.0))
    end = now - int(span_s * rng.uniform(0.0, 0.05))
    stamps = sorted(rng.randint(start, max(start, end)) for _ in range(n))
    for i in range(1, n):  # bursts: several messages in the same second
        if rng.random() < 0.12:
            stamps[i] = stamps[i - 1]
    return stamps


def _ack(rng: random.Random, from_me: bool, content: Content, age_s: int) -> int | None:
    if not from_me:
        return None
    if age_s > 86_400:
        return 4 if content.kind == "voice" and rng.random() < 0.5 else 3
    return rng.choice((1, 2, 2, 3))


def _messages(
    rng: random.Random,
    n: int,
    *,
    now: int,
    span_s: int,
    members: Sequence[Person],
    group: bool,
    reactions: bool,
) -> tuple[PlannedMessage, ...]:
    planned: list[PlannedMessage] = []
    for ts in _timestamps(rng, n, now=now, span_s=span_s):
        from_me = rng.random() < (0.2 if group else 0.38)
        author = rng.choice(members)
        content = _content(rng, from_me, planned if reactions else [])
        device = "android" if from_me else author.device
        sender = None
        if group and not from_me:
            use_lid = author.lid is not None and rng.random() < 0.5
            sender = author.lid if use_lid and author.lid else author.phone
        planned.append(
            PlannedMessage(
                raw_id=raw_message_id(rng, device),
                ts=ts,
                from_me=from_me,
                sender=sender,
                content=content,
                ack=_ack(rng, from_me, content, now - ts),
                device=device,
            )
        )
    return tuple(planned)


def plan_world(
    rng: random.Random,
    *,
    chats: int = 20,
    messages_per_chat: int = 50,
    now: int,
    span_s: int = 14 * 86_400,
    reactions: bool = True,
) -> list[PlannedChat]:
    """Plan `chats` chats (direct, LID-addressed and groups) of `messages_per_chat` messages
    each, timestamps spread over the `span_s` seconds before `now`."""
    kinds = ["direct", "lid", "group", "lid"][:chats]
    kinds += rng.choices(("direct", "lid", "group"), weights=(6, 2, 2), k=max(0, chats - 4))
    planned = []
    for kind in kinds:
        if kind == "group":
            members = tuple(_person(rng, lid_share=0.6) for _ in range(rng.randint(3, 7)))
            gid = f"120363{_digits(rng, 12)}@g.us"
            msgs = _messages(
                rng,
                messages_per_chat,
                now=now,
                span_s=span_s,
                members=members,
                group=True,
                reactions=reactions,
            )
            planned.append(
                PlannedChat(
                    kind=kind,
                    address=gid,
                    person=None,
                    subject=rng.choice(_GROUPS),
                    members=members,
                    messages=msgs,
                )
            )
            continue
        person = _person(rng, lid_share=1.0 if kind == "lid" else 0.5)
        msgs = _messages(
            rng,
            messages_per_chat,
            now=now,
            span_s=span_s,
            members=[person],
            group=False,
            reactions=reactions,
        )
        address = person.lid if kind == "lid" and person.lid else person.phone
        pn_until = len(msgs) // 3 if kind == "lid" and person.lid_known else 0
        planned.append(
            PlannedChat(
                kind=kind,
                address=address,
                person=person,
                subject=None,
                members=(person,),
                messages=msgs,
                pn_until=pn_until,
            )
        )
    return planned
