"""Deterministic simulated WhatsApp worlds: people, chats and Portuguese conversations.

A world is planned here once, provider-neutral, from a `random.Random`; each simulator renders it
in its provider's shapes (`WahaSim.add_message`, `EvolutionSim.add_message`). The same helpers
(content, message ids, Brazilian number forms, who is on WhatsApp) are shared by both simulators
so one seed gives the same conversations on WAHA (any engine) and on Evolution.
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from wasync.sim.evolution import EvolutionSim
    from wasync.sim.waha import WahaSim

KINDS = (
    "text",
    "image",
    "video",
    "audio",
    "voice",
    "document",
    "sticker",
    "location",
    "contact",
    "reaction",
)
MEDIA_KINDS = frozenset({"image", "video", "audio", "voice", "document", "sticker"})
_MEDIA_DEFAULTS: dict[str, tuple[str, str | None]] = {
    "image": ("image/jpeg", None),
    "video": ("video/mp4", None),
    "audio": ("audio/mpeg", None),
    "voice": ("audio/ogg; codecs=opus", None),
    "document": ("application/pdf", "documento.pdf"),
    "sticker": ("image/webp", None),
}
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BASE36 = string.digits + string.ascii_lowercase


@dataclass(frozen=True, slots=True, kw_only=True)
class Content:
    """What a simulated message carries, before a simulator renders it in its provider's shape."""

    kind: str = "text"
    text: str | None = None
    mimetype: str | None = None
    filename: str | None = None
    size: int = 0
    seconds: int = 0
    latitude: float = 0.0
    longitude: float = 0.0
    place: str | None = None
    contact_name: str | None = None
    vcard: str | None = None
    reaction_to: str | None = None
    reaction_to_from_me: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown content kind {self.kind!r}; expected one of {KINDS}")

    @property
    def has_media(self) -> bool:
        """True for kinds WhatsApp stores as a downloadable file."""
        return self.kind in MEDIA_KINDS


def text(body: str) -> Content:
    """A plain text message."""
    return Content(kind="text", text=body)


def media(
    kind: str = "image",
    *,
    caption: str | None = None,
    filename: str | None = None,
    mimetype: str | None = None,
    size: int = 48_213,
    seconds: int = 7,
) -> Content:
    """A media message; mimetype and (for documents) file name default per kind."""
    if kind not in MEDIA_KINDS:
        raise ValueError(f"{kind!r} is not a media kind; expected one of {sorted(MEDIA_KINDS)}")
    default_mime, default_name = _MEDIA_DEFAULTS[kind]
    return Content(
        kind=kind,
        text=caption,
        mimetype=mimetype or default_mime,
        filename=filename or default_name,
        size=size,
        seconds=seconds if kind in {"video", "audio", "voice"} else 0,
    )


def location(latitude: float, longitude: float, place: str | None = None) -> Content:
    """A pinned location."""
    return Content(kind="location", latitude=latitude, longitude=longitude, place=place)


def contact_card(name: str, phone: str) -> Content:
    """A shared contact (vCard)."""
    vcard = (
        "BEGIN:VCARD\nVERSION:3.0\n"
        f"N:;{name};;;\nFN:{name}\nTEL;type=CELL;waid={phone}:+{phone}\nEND:VCARD"
    )
    return Content(kind="contact", contact_name=name, vcard=vcard)


def reaction(emoji: str, target_raw_id: str, *, target_from_me: bool) -> Content:
    """An emoji reaction to the message whose raw WhatsApp id is `target_raw_id`."""
    return Content(
        kind="reaction", text=emoji, reaction_to=target_raw_id, reaction_to_from_me=target_from_me
    )


PROTO_KEYS = {
    "text": "conversation",
    "image": "imageMessage",
    "video": "videoMessage",
    "audio": "audioMessage",
    "voice": "audioMessage",
    "document": "documentMessage",
    "sticker": "stickerMessage",
    "location": "locationMessage",
    "contact": "contactMessage",
    "reaction": "reactionMessage",
}
_CDN_PATHS = {
    "image": "/o1/v/t62.7118-24/f1/m234/up-oil-image",
    "video": "/v/t62.7161-24/up-video",
    "audio": "/v/t62.7114-24/up-audio",
    "voice": "/v/t62.7117-24/up-ptt",
    "document": "/v/t62.7119-24/up-doc",
    "sticker": "/v/t62.15575-24/up-sticker",
}


def wa_proto(
    content: Content,
    *,
    ts: int,
    rng: random.Random,
    longs: bool = False,
    reaction_key: dict[str, object] | None = None,
) -> dict[str, object]:
    """`content` as WhatsApp's protobuf message in JSON (Baileys / whatsmeow field names).

    `longs=True` serialises Long and byte fields like Evolution 2.3.x (`{"low":N,"high":0,
    "unsigned":true}`, `{"0":12,...}`); otherwise as protobuf JSON strings (WAHA `_data`).
    """
    kind = content.kind
    if kind == "text":
        return {"conversation": content.text or ""}
    if kind == "location":
        return {
            "locationMessage": {
                "degreesLatitude": content.latitude,
                "degreesLongitude": content.longitude,
                "name": content.place,
                "address": content.place,
            }
        }
    if kind == "contact":
        return {"contactMessage": {"displayName": content.contact_name, "vcard": content.vcard}}
    if kind == "reaction":
        stamp = ts * 1000
        return {
            "reactionMessage": {
                "key": reaction_key or {},
                "text": content.text or "",
                "senderTimestampMs": _long(stamp) if longs else str(stamp),
            }
        }
    return {PROTO_KEYS[kind]: _media_proto(content, ts=ts, rng=rng, longs=longs)}


def _long(value: int) -> dict[str, object]:
    return {"low": value & 0xFFFFFFFF, "high": value >> 32, "unsigned": True}


def _bytes(rng: random.Random, n: int, longs: bool) -> object:
    raw = rng.getrandbits(8 * n).to_bytes(n, "big")
    if longs:
        return {str(i): b for i, b in enumerate(raw)}
    return base64.b64encode(raw).decode()


def _media_proto(
    content: Content, *, ts: int, rng: random.Random, longs: bool
) -> dict[str, object]:
    kind = content.kind
    path = f"{_CDN_PATHS[kind]}-{_hex(rng, 12).lower()}"
    out: dict[str, object] = {
        "url": f"https://mmg.whatsapp.net{path}?ccb=11-4&mms3=true",
        "mimetype": content.mimetype,
        "fileSha256": _bytes(rng, 8, longs),
        "fileLength": _long(content.size) if longs else str(content.size),
        "mediaKey": _bytes(rng, 8, longs),
        "fileEncSha256": _bytes(rng, 8, longs),
        "directPath": path,
        "mediaKeyTimestamp": _long(ts) if longs else str(ts),
    }
    if kind in ("image", "video"):
        out.update(height=1280, width=720, jpegThumbnail=_bytes(rng, 6, longs))
    if kind in ("image", "video", "document") and content.text:
        out["caption"] = content.text
    if kind in ("video", "audio", "voice"):
        out["seconds"] = content.seconds
    if kind in ("audio", "voice"):
        out["ptt"] = kind == "voice"
    if kind == "voice":
        out["waveform"] = _bytes(rng, 8, longs)
    if kind == "document":
        out.update(title=content.filename, fileName=content.filename, pageCount=1)
    if kind == "sticker":
        out.update(isAnimated=False, isAvatar=False)
    return out


# -- ids ---------------------------------------------------------------------------------------


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}X}"


def raw_message_id(rng: random.Random, device: str = "android") -> str:
    """A WhatsApp message id in the format the sending device uses.

    Baileys' `getDevice()` infers the device from this format (`3A`+18 iOS, `3E`+20 web,
    32 chars Android), which is what Evolution reports as `source`.
    """
    if device == "ios":
        return "3A" + _hex(rng, 18)
    if device == "web":
        return "3EB0" + _hex(rng, 18)
    if device == "desktop":
        return "3F" + _hex(rng, 16)
    return _hex(rng, 32)


def device_of(raw_id: str) -> str:
    """Baileys `getDevice()`: the device that produced a message id."""
    if raw_id.startswith("3A") and len(raw_id) == 20:
        return "ios"
    if raw_id.startswith("3E") and len(raw_id) == 22:
        return "web"
    if len(raw_id) in (21, 32):
        return "android"
    if raw_id.startswith("3F") or len(raw_id) == 18:
        return "desktop"
    return "unknown"


def ulid(rng: random.Random, ms: int) -> str:
    """A ULID (Crockford base32, 26 chars) for time `ms` with random bits from `rng`."""
    value = (ms << 80) | rng.getrandbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def cuid(rng: random.Random) -> str:
    """A Prisma-style cuid (`c` + 24 base36 chars), Evolution's row id."""
    return "c" + "".join(rng.choice(_BASE36) for _ in range(24))


# -- phone numbers -----------------------------------------------------------------------------


def digits_of(value: str) -> str:
    """The digits of a phone or of the user part of a jid (`5531...:12@s.whatsapp.net`)."""
    user = value.split("@", 1)[0].split(":", 1)[0]
    return "".join(ch for ch in user if ch.isdigit())


def br_variants(digits: str) -> tuple[str, ...]:
    """Both WhatsApp forms of a Brazilian mobile (13 digits with the ninth digit, 12 without);
    any other number is its only form."""
    if len(digits) == 13 and digits.startswith("55") and digits[4] == "9":
        return (digits, digits[:4] + digits[5:])
    if len(digits) == 12 and digits.startswith("55") and digits[4] in "6789":
        return (digits[:4] + "9" + digits[4:], digits)
    return (digits,)


class Directory:
    """Who is on WhatsApp in a simulated world, and under which number form.

    Open world: a plausible number nobody registered or marked absent exists as given, so demos
    can message any number; `mark_absent` makes a number "not on WhatsApp".
    """

    def __init__(self) -> None:
        self._registered: dict[str, str] = {}
        self._absent: set[str] = set()

    def register(self, digits: str) -> None:
        """Record that `digits` is an account, registered exactly in that form."""
        for form in br_variants(digits):
            self._registered[form] = digits
            self._absent.discard(form)

    def mark_absent(self, digits: str) -> None:
        """Record that nobody uses this number (both Brazilian forms)."""
        for form in br_variants(digits):
            self._absent.add(form)
            self._registered.pop(form, None)

    def lookup(self, digits: str) -> str | None:
        """The registered form of `digits`, or None when the number is not on WhatsApp."""
        if not 8 <= len(digits) <= 15:
            return None
        forms = br_variants(digits)
        if any(form in self._absent for form in forms):
            return None
        for form in forms:
            if form in self._registered:
                return self._registered[form]
        return digits


# -- world planning ----------------------------------------------------------------------------

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


class SimWorld(Protocol):
    """What a simulator offers for seeding; both `WahaSim` and `EvolutionSim` fit."""

    def add_contact(
        self,
        target: str,
        phone: str,
        *,
        name: str | None = None,
        push_name: str | None = None,
        lid: str | None = None,
        lid_known: bool = True,
    ) -> None: ...

    def add_group(
        self, target: str, group_id: str, *, subject: str, participants: Sequence[str]
    ) -> None: ...

    def add_message(
        self,
        target: str,
        chat: str,
        content: Content,
        *,
        from_me: bool = False,
        ts: int | None = None,
        sender: str | None = None,
        push_name: str | None = None,
        ack: int | None = None,
        message_id: str | None = None,
        device: str | None = None,
    ) -> str: ...


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(10 ** (n - 1), 10**n - 1))


def _person(rng: random.Random, *, lid_share: float) -> Person:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    if rng.random() < 0.88:
        ddd = rng.choice(_DDDS)
        full = f"55{ddd}9{rng.randint(6, 9)}{_digits(rng, 7)}"
        old_form = ddd >= 31 and rng.random() < 0.6  # 12-digit jid, no ninth digit
        phone = full[:4] + full[5:] if old_form else full
    else:
        phone = rng.choice(("3519", "1415", "5411")) + _digits(rng, 8)
    has_lid = rng.random() < lid_share
    return Person(
        phone=phone,
        push_name=first if rng.random() < 0.7 else f"{first} {last}",
        name=f"{first} {last}" if rng.random() < 0.7 else None,
        lid=f"{rng.randint(1, 2)}{_digits(rng, 14)}@lid" if has_lid else None,
        lid_known=rng.random() < 0.65,
        device=rng.choices(("android", "ios", "web"), weights=(60, 35, 5))[0],
    )


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


def _rng(seed: int | str | random.Random, target: str) -> random.Random:
    if isinstance(seed, random.Random):
        return seed
    return random.Random(f"{seed}:{target}")


def apply_world(
    sim: SimWorld, target: str, world: Sequence[PlannedChat], *, split_addressing: bool
) -> None:
    """Load a planned world into one session/instance of a simulator.

    With `split_addressing`, the first messages of a LID chat whose phone is known are added under
    the phone (Evolution stores rows by the address each message actually used).
    """
    for chat in world:
        for person in chat.members:
            sim.add_contact(
                target,
                person.phone,
                name=person.name,
                push_name=person.push_name,
                lid=person.lid,
                lid_known=person.lid_known,
            )
        if chat.kind == "group":
            addresses = [m.lid if m.lid and m.lid_known else m.phone for m in chat.members]
            sim.add_group(target, chat.address, subject=chat.subject or "", participants=addresses)
        for index, msg in enumerate(chat.messages):
            address = chat.address
            if split_addressing and chat.person is not None and index < chat.pn_until:
                address = chat.person.phone
            sim.add_message(
                target,
                address,
                msg.content,
                from_me=msg.from_me,
                ts=msg.ts,
                sender=msg.sender,
                ack=msg.ack,
                message_id=msg.raw_id,
                device=msg.device,
            )


def seed_waha(
    sim: WahaSim,
    session: str,
    *,
    chats: int = 20,
    messages_per_chat: int = 50,
    now: float | None = None,
    span_s: int = 14 * 86_400,
    seed: int | str | random.Random = 0,
) -> list[PlannedChat]:
    """Fill an existing WAHA session with a deterministic world; returns the plan.

    WEBJS sessions get no reaction messages: whatsapp-web.js does not list reactions as messages.
    """
    engine = sim.session(session).engine
    when = int(now if now is not None else sim.clock())
    world = plan_world(
        _rng(seed, session),
        chats=chats,
        messages_per_chat=messages_per_chat,
        now=when,
        span_s=span_s,
        reactions=engine != "WEBJS",
    )
    apply_world(sim, session, world, split_addressing=False)
    return world


def seed_evolution(
    sim: EvolutionSim,
    instance: str,
    *,
    chats: int = 20,
    messages_per_chat: int = 50,
    now: float | None = None,
    span_s: int = 14 * 86_400,
    seed: int | str | random.Random = 0,
) -> list[PlannedChat]:
    """Fill an existing Evolution instance with a deterministic world; returns the plan."""
    when = int(now if now is not None else sim.clock())
    world = plan_world(
        _rng(seed, instance),
        chats=chats,
        messages_per_chat=messages_per_chat,
        now=when,
        span_s=span_s,
    )
    apply_world(sim, instance, world, split_addressing=True)
    return world


def seed_waha_bulk(
    sim: WahaSim,
    *,
    sessions: int = 500,
    chats: int = 20,
    messages_per_chat: int = 2,
    engine: str = "GOWS",
    prefix: str = "bench",
    now: float | None = None,
    span_s: int = 14 * 86_400,
    seed: int = 0,
) -> list[str]:
    """Create `sessions` WORKING sessions named `<prefix>-0000`… and seed each one (benchmarks)."""
    names = [f"{prefix}-{i:04d}" for i in range(sessions)]
    for name in names:
        sim.add_session(name, engine=engine)
        seed_waha(
            sim,
            name,
            chats=chats,
            messages_per_chat=messages_per_chat,
            now=now,
            span_s=span_s,
            seed=seed,
        )
    return names


def seed_evolution_bulk(
    sim: EvolutionSim,
    *,
    instances: int = 500,
    chats: int = 20,
    messages_per_chat: int = 2,
    prefix: str = "bench",
    now: float | None = None,
    span_s: int = 14 * 86_400,
    seed: int = 0,
) -> list[str]:
    """Create `instances` open instances named `<prefix>-0000`… and seed each one (benchmarks)."""
    names = [f"{prefix}-{i:04d}" for i in range(instances)]
    for name in names:
        sim.add_instance(name)
        seed_evolution(
            sim,
            name,
            chats=chats,
            messages_per_chat=messages_per_chat,
            now=now,
            span_s=span_s,
            seed=seed,
        )
    return names
