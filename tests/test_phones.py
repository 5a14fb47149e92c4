"""Canonical phones, jids and addresses: Brazil's ninth digit, LIDs, groups, typed input."""

from __future__ import annotations

import pytest

from wasync import phones
from wasync.events import Address, ChatKind
from wasync.phones import canonical_phone, parse_phone, phone_variants

PHONE = "5531988887777"
PHONE12 = "553188887777"
LID = "76201477542116@lid"


@pytest.mark.parametrize(
    "value",
    [
        "5531988887777",
        "5531988887777@c.us",
        "5531988887777@s.whatsapp.net",
        "5531988887777:12@s.whatsapp.net",
        "553188887777@s.whatsapp.net",
        "553188887777@c.us",
        "553188887777:3@s.whatsapp.net",
        "553188887777",
        "+55 (31) 98888-7777",
        " 5531988887777@S.WhatsApp.Net ",
    ],
)
def test_every_form_of_a_brazilian_mobile_is_one_phone(value: str) -> None:
    """Plain digits, `@c.us`, `@s.whatsapp.net`, device suffixes and the 12-digit jid agree."""
    assert canonical_phone(value) == PHONE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("551133334444", "551133334444"),  # São Paulo landline, first digit 3
        ("552122223333", "552122223333"),  # Rio landline, first digit 2
        ("554145556666", "554145556666"),  # Curitiba landline, first digit 4
        ("553155556666@s.whatsapp.net", "553155556666"),  # landline jid, first digit 5
    ],
)
def test_brazilian_landlines_keep_eight_digits(value: str, expected: str) -> None:
    """An 8-digit Brazilian number starting 2-5 is a landline and gets no ninth digit."""
    assert canonical_phone(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("14155552671@c.us", "14155552671"),  # US
        ("447911123456@s.whatsapp.net", "447911123456"),  # UK mobile, 12 digits
        ("351912345678", "351912345678"),  # Portugal, 12 digits
        ("5511987654321", "5511987654321"),  # already 13-digit Brazilian mobile
    ],
)
def test_other_numbers_are_unchanged(value: str, expected: str) -> None:
    """Numbers outside the Brazilian 12-digit mobile form keep their digits."""
    assert canonical_phone(value) == expected


@pytest.mark.parametrize(
    "value",
    [LID, "120363025246125486@g.us", "status@broadcast", "1234", "abc@s.whatsapp.net", ""],
)
def test_non_phones_have_no_canonical_phone(value: str) -> None:
    """LIDs, groups, broadcasts, too-short numbers and empty users are not phones."""
    assert canonical_phone(value) is None


def test_split_jid_drops_device_and_lowercases_server() -> None:
    """`user:device@Server` splits into the bare user and the lower-case server."""
    assert phones.split_jid("553188887777:12@S.WHATSAPP.NET") == (PHONE12, "s.whatsapp.net")


def test_phone_variants_of_a_brazilian_mobile() -> None:
    """A Brazilian mobile is also known to WhatsApp without its ninth digit."""
    assert phone_variants(PHONE) == [PHONE, PHONE12]


@pytest.mark.parametrize("phone", ["551133334444", "14155552671", "447911123456"])
def test_phone_variants_of_other_numbers(phone: str) -> None:
    """Landlines and foreign numbers have one form only."""
    assert phone_variants(phone) == [phone]


@pytest.mark.parametrize("phone", [PHONE, "5511987654321", "551133334444", "14155552671"])
def test_every_variant_maps_back_to_its_phone(phone: str) -> None:
    """Each variant, as a jid, canonicalises to the phone it came from."""
    for variant in phone_variants(phone):
        assert canonical_phone(f"{variant}@s.whatsapp.net") == phone


def test_phone_jid_uses_the_whatsapp_server() -> None:
    """The canonical jid of a phone is `<digits>@s.whatsapp.net`."""
    assert phones.phone_jid(PHONE) == f"{PHONE}@s.whatsapp.net"


# --- address() -------------------------------------------------------------------------------


def test_address_of_a_12_digit_jid_is_the_canonical_phone() -> None:
    """A direct chat addressed by the old 12-digit jid is keyed by the 13-digit phone."""
    assert phones.address(f"{PHONE12}@s.whatsapp.net") == Address(
        jid=f"{PHONE}@s.whatsapp.net", kind=ChatKind.DIRECT, phone=PHONE
    )


def test_address_of_a_group() -> None:
    """A group jid keeps its jid, kind `group`, and has no phone even beside a phone jid."""
    addr = phones.address("120363025246125486@g.us", f"{PHONE}@c.us")
    assert addr == Address(jid="120363025246125486@g.us", kind=ChatKind.GROUP)


@pytest.mark.parametrize(
    ("jid", "kind"),
    [
        ("status@broadcast", ChatKind.BROADCAST),
        ("1234567890@broadcast", ChatKind.BROADCAST),
        ("120363144038483540@newsletter", ChatKind.NEWSLETTER),
    ],
)
def test_address_of_broadcasts_and_newsletters(jid: str, kind: ChatKind) -> None:
    """Status broadcasts, broadcast lists and channels get their own kinds and no phone."""
    assert phones.address(jid) == Address(jid=jid, kind=kind)


def test_address_of_a_lid_only_chat() -> None:
    """A chat known only by LID is keyed by the LID (device suffix dropped), phone unknown."""
    addr = phones.address("76201477542116:7@lid")
    assert addr == Address(jid=LID, kind=ChatKind.DIRECT, phone=None, lid=LID)


@pytest.mark.parametrize(
    "jids",
    [
        (LID, f"{PHONE12}@s.whatsapp.net"),
        (f"{PHONE12}@s.whatsapp.net", LID),
        (LID, f"{PHONE}@c.us"),
        (f"{PHONE}@c.us", None, "", LID),
    ],
)
def test_address_of_a_lid_and_phone_pair_is_order_independent(jids: tuple[str | None, ...]) -> None:
    """A LID with its phone gives the phone chat plus the LID, whichever comes first."""
    assert phones.address(*jids) == Address(
        jid=f"{PHONE}@s.whatsapp.net", kind=ChatKind.DIRECT, phone=PHONE, lid=LID
    )


def test_address_skips_an_unusable_phone_jid() -> None:
    """A phone jid with no digits does not hide a valid phone jid given after it."""
    addr = phones.address("abc@s.whatsapp.net", f"{PHONE12}@s.whatsapp.net")
    assert addr is not None
    assert addr.phone == PHONE


@pytest.mark.parametrize("jids", [(), (None,), ("",), ("   ", None), ("5531988887777",)])
def test_address_of_nothing_usable_is_none(jids: tuple[str | None, ...]) -> None:
    """No jid at all (empty, blank, or digits without a server) gives no address."""
    assert phones.address(*jids) is None


# --- parse_phone() ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "+55 (31) 98888-7777",
        "5531988887777",
        "(31) 98888-7777",
        "31 8888-7777",  # old 8-digit mobile, typed without the 9
        "553188887777",
        "+55 31 8888-7777",
        "553188887777@s.whatsapp.net",
    ],
)
def test_parse_phone_accepts_typed_brazilian_mobiles(text: str) -> None:
    """International, national and digits-only forms all give the canonical mobile."""
    assert parse_phone(text) == PHONE


def test_parse_phone_keeps_a_landline() -> None:
    """A typed landline is not given a ninth digit."""
    assert parse_phone("(11) 3333-4444") == "551133334444"


def test_parse_phone_of_a_foreign_number() -> None:
    """A number with its own country code ignores the default region."""
    assert parse_phone("+1 (415) 555-2671") == "14155552671"


def test_parse_phone_uses_the_default_region() -> None:
    """A national number is read in the given default region."""
    assert parse_phone("(415) 555-2671", default_region="US") == "14155552671"


@pytest.mark.parametrize("text", ["hello", "", "   ", "123", "+55 31 98888-7777-1234-5678"])
def test_parse_phone_rejects_garbage_with_a_clear_message(text: str) -> None:
    """Text that is not a phone raises ValueError quoting the input on one line."""
    with pytest.raises(ValueError, match="is not a") as info:
        parse_phone(text)
    assert repr(text) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["120363025246125486@g.us", f"{LID}"])
def test_parse_phone_rejects_non_phone_jids(text: str) -> None:
    """A group or LID jid is not a phone."""
    with pytest.raises(ValueError, match="is not a phone jid"):
        parse_phone(text)


@pytest.mark.parametrize("text", ["(031) 98888-7777", "031 98888-7777"])
def test_parse_phone_accepts_the_national_trunk_prefix(text: str) -> None:
    """A Brazilian number dialled with the trunk prefix 0 before the area code is accepted."""
    assert parse_phone(text) == PHONE


@pytest.mark.parametrize("text", ["98888-7777", "3333-4444"])
def test_parse_phone_rejects_a_number_without_area_code(text: str) -> None:
    """A local number missing its area code cannot be a canonical phone and is refused."""
    with pytest.raises(ValueError):
        parse_phone(text)


def test_every_simulated_number_is_a_valid_phone_typed_back_as_stored() -> None:
    """The simulators' people have numbers `wasync send --to` accepts as they are stored."""
    import random

    from wasync.sim.world import plan_world

    chats = plan_world(random.Random(7), chats=300, messages_per_chat=1, now=1_790_000_000)
    people = [p for c in chats for p in c.members]
    assert len(people) > 300
    for person in people:
        stored = canonical_phone(person.phone)
        assert stored is not None and parse_phone(stored) == stored, person.phone
