"""Who is on WhatsApp in a simulated world, and the Brazilian number forms it answers to."""

from __future__ import annotations


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
