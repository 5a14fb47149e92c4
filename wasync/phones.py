"""Canonical phone numbers and WhatsApp jids.

A canonical phone is digits only, E.164 without `+`. Brazilian mobiles are stored with the
ninth digit: WhatsApp still addresses many of them by the old 12-digit form
(`553188887777@s.whatsapp.net`), and Evolution's `createJid` drops the 9 for DDD >= 31
(evolution.md section 7.1) -- both forms are one person, so both map to `5531988887777`.
"""

from __future__ import annotations

import re

import phonenumbers

from wasync.events import Address, ChatKind

PHONE_SERVERS = frozenset({"s.whatsapp.net", "c.us"})
_NON_DIGITS = re.compile(r"\D+")


def split_jid(jid: str) -> tuple[str, str]:
    """Split `user[:device]@server` into (user, server) without the device suffix."""
    user, _, server = jid.strip().partition("@")
    user = user.split(":", 1)[0]
    return user, server.lower()


def canonical_phone(value: str) -> str | None:
    """Canonical digits for a phone or phone jid, or None when it is not a plausible number."""
    user, server = split_jid(value)
    if server and server not in PHONE_SERVERS:
        return None
    digits = _NON_DIGITS.sub("", user)
    if not 5 <= len(digits) <= 15:
        return None
    return _brazil_ninth_digit(digits)


def _brazil_ninth_digit(digits: str) -> str:
    """`55 DD XXXX-XXXX` mobile (first digit 6-9) -> `55 DD 9XXXX-XXXX`; other numbers unchanged."""
    brazil = len(digits) == 12 and digits.startswith("55") and "0" not in digits[2:4]
    if brazil and digits[4] in "6789":
        return f"{digits[:4]}9{digits[4:]}"
    return digits


def phone_variants(phone: str) -> list[str]:
    """Forms WhatsApp may use for one canonical phone: the phone itself and, for Brazilian
    mobiles, the 12-digit form without the ninth digit."""
    if len(phone) == 13 and phone.startswith("55") and phone[4] == "9" and phone[5] in "6789":
        return [phone, phone[:4] + phone[5:]]
    return [phone]


def parse_phone(text: str, *, default_region: str = "BR") -> str:
    """Validate a phone typed by a person (CLI, REST) and return its canonical digits.

    Raises ValueError with a one-line reason.
    """
    raw = text.strip()
    if "@" in raw:
        found = canonical_phone(raw)
        if found is None:
            raise ValueError(f"{text!r} is not a phone jid")
        return found
    digits = _NON_DIGITS.sub("", raw)
    # Digits-only input of 12+ digits is international without the `+` (how CRMs store phones).
    international = not raw.startswith("+") and not digits.startswith("0") and len(digits) >= 12
    candidate = f"+{digits}" if international else raw
    try:
        number = phonenumbers.parse(candidate, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{text!r} is not a phone number ({exc})") from None
    # The old 8-digit Brazilian mobile form is no longer a valid number: add the 9 first.
    digits = _brazil_ninth_digit(
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    )
    if not phonenumbers.is_valid_number(phonenumbers.parse(f"+{digits}")):
        raise ValueError(f"{text!r} is not a valid phone number (area code missing?)")
    return digits


def phone_jid(phone: str) -> str:
    """The canonical jid of a phone: `<digits>@s.whatsapp.net`."""
    return f"{phone}@s.whatsapp.net"


def kind_of(jid: str) -> ChatKind:
    """Chat kind from a jid's server part."""
    user, server = split_jid(jid)
    if server == "g.us":
        return ChatKind.GROUP
    if server == "newsletter":
        return ChatKind.NEWSLETTER
    if server == "broadcast" or user == "status":
        return ChatKind.BROADCAST
    return ChatKind.DIRECT


def address(*jids: str | None) -> Address | None:
    """Build an Address from every form a provider gave for one party (jid, alt jid, PN, LID).

    The first non-empty jid decides the kind; for direct chats the phone comes from any phone
    jid and the LID from any `@lid` jid. Returns None when nothing usable was given.
    """
    present = [j.strip() for j in jids if j and j.strip() and "@" in j]
    if not present:
        return None
    kind = kind_of(present[0])
    if kind is not ChatKind.DIRECT:
        user, server = split_jid(present[0])
        return Address(jid=f"{user}@{server}", kind=kind)
    phone: str | None = None
    lid: str | None = None
    for jid in present:
        user, server = split_jid(jid)
        if server == "lid" and lid is None and user:
            lid = f"{user}@lid"
        elif server in PHONE_SERVERS and phone is None:
            phone = canonical_phone(jid)
    if phone is not None:
        return Address(jid=phone_jid(phone), kind=kind, phone=phone, lid=lid)
    if lid is not None:
        return Address(jid=lid, kind=kind, lid=lid)
    user, server = split_jid(present[0])
    return Address(jid=f"{user}@{server}", kind=kind)
