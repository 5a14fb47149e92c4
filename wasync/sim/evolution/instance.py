"""What one Evolution instance holds (connection, webhook, rows, contacts, groups) and the
jid and date forms Evolution writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from wasync.sim.base import Json
from wasync.sim.content import Content
from wasync.sim.directory import digits_of

STATES = ("open", "connecting", "close")
STATUS_NAMES = {
    -1: "ERROR", 0: "PENDING", 1: "SERVER_ACK", 2: "DELIVERY_ACK", 3: "READ", 4: "PLAYED",
}  # fmt: skip


def iso(ts: float) -> str:
    """Epoch seconds as Evolution writes a date: ISO-8601 UTC with milliseconds and `Z`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_jid(number: str) -> str:
    """Evolution's `createJid()` (evolution.md §7.1): digits become `…@s.whatsapp.net`, and a
    13-digit Brazilian mobile with DDD >= 31 loses its ninth digit."""
    if "@" in number:
        user, _, server = number.partition("@")
        return f"{user}@s.whatsapp.net" if server == "c.us" else number
    digits = digits_of(number)
    if len(digits) == 13 and digits[:2] == "55" and int(digits[2:4]) >= 31 and int(digits[5]) >= 7:
        digits = digits[:4] + digits[5:]
    return f"{digits}@s.whatsapp.net"


@dataclass(slots=True, kw_only=True)
class EvoInstance:
    """A simulated Evolution instance: connection, webhook and the rows it stored."""

    name: str
    id: str
    token: str
    state: str
    phone: str
    profile_name: str
    created_at: str
    opened: bool = False
    webhook: Json | None = None
    messages: list[Json] = field(default_factory=list)
    by_key: dict[str, Json] = field(default_factory=dict)
    contacts: dict[str, Json] = field(default_factory=dict)
    chat_names: dict[str, str | None] = field(default_factory=dict)
    push_names: dict[str, str] = field(default_factory=dict)
    lid_pn: dict[str, str | None] = field(default_factory=dict)
    pn_lid: dict[str, str] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    # Media rows: what each file is, when it was stored (the CDN copy expires after the
    # simulator's `media_lifetime_s`), the files WhatsApp lost, and the errors a file's next
    # downloads fail with before one works (None: the lost file's).
    media: dict[str, Content] = field(default_factory=dict)
    media_born: dict[str, float] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    glitches: dict[str, list[str | None]] = field(default_factory=dict)

    @property
    def owner_jid(self) -> str:
        """The connected account's own jid (`sender` in webhooks)."""
        return f"{self.phone}@s.whatsapp.net"

    def row(self, key_id: str) -> Json:
        """A stored row by its `key.id` (KeyError when unknown)."""
        row = self.by_key.get(key_id)
        if row is None:
            raise KeyError(f"no message {key_id!r} in instance {self.name!r}")
        return row

    def alt(self, jid: str) -> str | None:
        """The other address form of a person (phone for a LID, LID for a phone), if known."""
        if jid.endswith("@lid"):
            return self.lid_pn.get(jid)
        return self.pn_lid.get(jid)
