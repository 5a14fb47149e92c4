"""One delivery attempt of a claimed outbox row: reconcile if needed, send, record the outcome.

A row whose last attempt has no known outcome (UNKNOWN, or SENDING left by a crash) is first
looked for at the provider (`match_sent`: our fromMe message in the chat, not typed on the
phone, not owned by another row) and adopted if found, never sent twice. Not found, it is
looked for again, with backoff, until `[send] reconcile_grace_s` after the request started:
WAHA and Evolution go on with a send whose client gave up, so a slow one may land minutes
later. Only then, still not found, does it go out again. Otherwise one request
goes out (`wasync.providers.sending.post_once` semantics); accepted and refused outcomes
become `SendAccepted` / `SendFailed` commands for the one writer, retries touch only the
`outbox` row, fenced on the claim's `attempts`. A session that is down refuses before
sending: the row waits for it (`[send] max_session_wait_s`) without spending attempts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from wasync import providers
from wasync.errors import (
    ProviderError,
    RateLimited,
    SendOutcomeUnknown,
    SessionNotWorking,
    TransientProviderError,
)
from wasync.events import ClaimRef, Message, MessageType, SendAccepted, SendFailed
from wasync.outbox import QUEUED, SENDING, T_OUTBOX, UNKNOWN, Outbox
from wasync.providers.sending import Outgoing, SendReceipt
from wasync.ratelimit import SendSlots
from wasync.registry import SessionRef

log = logging.getLogger(__name__)

# Types the echo of a send may come back as (WAHA sends plain audio as a file).
_ECHO_TYPES: dict[str, set[MessageType]] = {
    "text": {MessageType.TEXT},
    "image": {MessageType.IMAGE},
    "video": {MessageType.VIDEO},
    "audio": {MessageType.AUDIO, MessageType.DOCUMENT},
    "voice": {MessageType.AUDIO},
    "document": {MessageType.DOCUMENT},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A row this sender holds (status SENDING, fenced by `attempts`)."""

    id: int
    tenant_id: str
    session_id: int
    chat_id: int | None
    message_id: int | None
    to_jid: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    created_at: datetime
    previous: str
    touched_at: datetime  # when the row last changed before this claim
    unknown_since: datetime | None = None  # when the request in doubt started (UNKNOWN rows)
    session_down_since: datetime | None = None  # the session's first refusal, while it waits
    slot_at: float | None = None  # `time.monotonic()` of the send slot reserved with the claim
    claimed_at: float = 0.0  # `time.monotonic()` when the row was claimed

    @property
    def ref(self) -> ClaimRef:
        """What the outcome commands need to find (and fence) the row."""
        return ClaimRef(
            outbox_id=self.id,
            attempts=self.attempts,
            tenant_id=self.tenant_id,
            session_id=self.session_id,
            chat_id=self.chat_id,
            message_id=self.message_id,
        )

    def outgoing(self) -> Outgoing:
        """What the provider adapter sends."""
        p = self.payload
        return Outgoing(
            to_jid=self.to_jid,
            kind=self.kind,
            text=p.get("text"),
            url=p.get("url"),
            data=p.get("data"),
            mimetype=p.get("mimetype"),
            filename=p.get("filename"),
        )


class Attempt:
    """What happens to one claimed row: reconcile if needed, send, record the outcome."""

    def __init__(self, outbox: Outbox, ref: SessionRef, slots: SendSlots, claim: Claim):
        self.outbox, self.slots, self.claim = outbox, slots, claim
        self.cfg = outbox.cfg
        self.provider = outbox.provider(ref)
        self.down_since = claim.session_down_since  # None once the session has served

    async def run(self) -> None:
        """Reconcile a row whose last attempt has no known outcome; otherwise send it."""
        c = self.claim
        if c.previous != QUEUED:  # UNKNOWN, or SENDING left by a crash: read the chat first
            doubt = self._in_doubt_from()
            try:
                found = await self._reconcile()
            except SessionNotWorking as exc:
                error = f"reconcile refused: {exc}"
                await self._wait_for_session(UNKNOWN, error, unknown_since=doubt)
                return
            except ProviderError as exc:
                error = f"reconcile failed: {exc}"
                await self._later(UNKNOWN, error, self._backoff(), unknown_since=doubt)
                return
            if found is not None:
                log.info(
                    "outbox %s: found at the provider as %s; not resent",
                    c.id,
                    found.provider_message_id,
                )
                await _record_sent(self.outbox, c, found)
                return
            self.down_since = None
            grace_until = doubt + timedelta(seconds=self.cfg.reconcile_grace_s)
            if datetime.now(UTC) < grace_until:
                await self._not_there_yet(doubt, grace_until)
                return
            if c.attempts > self.cfg.max_attempts:
                await _record_failed(self.outbox, c, "not confirmed by the provider after retries")
                return
            log.info("outbox %s: not at the provider after the grace; sending again", c.id)
        await self._send()

    async def _send(self) -> None:
        """One request; the outcome decides the row's next status."""
        c = self.claim
        # The session's next slot, shared with every process and node (`send_slots`): taken
        # with the claim of a QUEUED row, here after a reconcile found nothing.
        if c.slot_at is not None:
            slot_at = c.slot_at
        else:
            slot_at = time.monotonic() + await self.slots.reserve(c.session_id)
        if not await self._wait_keeping_claim(slot_at):
            log.info("outbox %s: taken over by another sender while waiting; not sent", c.id)
            return
        started = datetime.now(UTC)
        try:
            receipt = await self.provider.send(c.outgoing())
        except SendOutcomeUnknown as exc:
            log.warning("outbox %s: %s; will reconcile before any resend", c.id, exc)
            delay_s = self.cfg.reconcile_delay_s
            await self._later(UNKNOWN, str(exc), delay_s, unknown_since=started)
        except RateLimited as exc:
            await self._retry(str(exc), exc.retry_after_s)
        except SessionNotWorking as exc:
            await self._wait_for_session(QUEUED, str(exc))
        except TransientProviderError as exc:
            await self._retry(str(exc), self._backoff())
        except ProviderError as exc:
            await _record_failed(self.outbox, c, str(exc))
        else:
            await _record_sent(self.outbox, c, receipt)

    async def _wait_keeping_claim(self, until: float) -> bool:
        """Sleep until `until` (the send slot), renewing the claim whenever it is older than
        half the margin between `[send] lease_s` and `timeout_s`: a slow rate (or a long
        reconcile) can make the wait outlast the lease, after which another sender takes a
        SENDING row as abandoned and sends it too. The request then starts on a claim young
        enough to outlive it. False when the row was taken over all the same."""
        step = (self.cfg.lease_s - self.cfg.timeout_s) / 2
        renewed = self.claim.claimed_at
        while True:
            now = time.monotonic()
            if now - renewed >= step:
                if not await self._refresh():
                    return False
                renewed = now
            if now >= until:
                return True
            await asyncio.sleep(min(until - now, step - (now - renewed)))

    async def _refresh(self) -> bool:
        """Renew the claim (`updated_at`); False when the row is no longer ours."""
        return await self._fenced(updated_at=datetime.now(UTC))

    async def _fenced(self, **values: Any) -> bool:
        """Update the claimed row while it is still this claim's (SENDING, same `attempts`);
        False when another sender has taken it since."""
        c, o = self.claim, T_OUTBOX.c
        async with self.outbox.store.write() as conn:
            result = await conn.execute(
                update(T_OUTBOX)
                .where(o.id == c.id, o.status == SENDING, o.attempts == c.attempts)
                .values(**values)
            )
        return bool(result.rowcount)

    def _backoff(self) -> float:
        base = self.cfg.backoff_s * 2.0 ** max(0, self.claim.attempts - 1)
        return float(min(base, self.cfg.max_backoff_s))

    async def _retry(self, error: str, delay_s: float) -> None:
        """Surely not sent: queue again, unless the attempts are spent."""
        if self.claim.attempts >= self.cfg.max_attempts:
            await _record_failed(self.outbox, self.claim, error)
            return
        log.info("outbox %s: not sent (%s); retry in %.1fs", self.claim.id, error, delay_s)
        await self._later(QUEUED, error, delay_s)

    async def _later(
        self,
        status: str,
        error: str,
        delay_s: float,
        *,
        unknown_since: datetime | None = None,
        session_down_since: datetime | None = None,
        give_back: bool = False,
    ) -> None:
        """Leave the claim: the row `status` again, due in `delay_s`. `give_back` when the
        claim sent nothing: `attempts` returns to its value before the claim, so only sends
        spend `max_attempts`. The fence stays sound: the row is no longer SENDING, and the
        next claim moves `attempts` past this one's again."""
        now = datetime.now(UTC)
        attempts = self.claim.attempts - 1 if give_back else self.claim.attempts
        await self._fenced(
            status=status,
            attempts=attempts,
            last_error=error[:2000],
            next_attempt_at=now + timedelta(seconds=delay_s),
            updated_at=now,
            unknown_since=unknown_since,
            session_down_since=session_down_since,
        )

    async def _wait_for_session(
        self, status: str, error: str, *, unknown_since: datetime | None = None
    ) -> None:
        """The session is down and refused before doing anything, asking to be tried later
        (WAHA 422, Evolution "Connection Closed"): the claim's attempt is given back and the
        row waits, tried again after as long as it has waited (at least `backoff_s`, at most
        `session_retry_s`); FAILED once `max_session_wait_s` passed since the first refusal,
        so a message never goes out hours late unnoticed."""
        now = datetime.now(UTC)
        since = self.down_since or now
        waited_s = (now - since).total_seconds()
        if waited_s >= self.cfg.max_session_wait_s:
            reason = f"session not serving for {waited_s:.0f}s (send.max_session_wait_s): {error}"
            if status == UNKNOWN:
                reason += " (the earlier send's outcome was never confirmed)"
            await _record_failed(self.outbox, self.claim, reason)
            return
        delay_s = min(max(waited_s, self.cfg.backoff_s), self.cfg.session_retry_s)
        log.info(
            "outbox %s: %s; waiting for the session, again in %.1fs", self.claim.id, error, delay_s
        )
        await self._later(
            status,
            error,
            delay_s,
            unknown_since=unknown_since,
            session_down_since=since,
            give_back=True,
        )

    async def _not_there_yet(self, doubt: datetime, grace_until: datetime) -> None:
        """Not found, but the provider may still be finishing the request: UNKNOWN again,
        looked for after as long as the request has been in doubt (at least
        `reconcile_delay_s`, at most `max_backoff_s`), and once more at the end of the grace.
        Nothing was sent: the claim's attempt is given back."""
        now = datetime.now(UTC)
        delay_s = min(
            max((now - doubt).total_seconds(), self.cfg.reconcile_delay_s),
            self.cfg.max_backoff_s,
            (grace_until - now).total_seconds(),
        )
        error = (
            "outcome unknown, not at the provider yet: looked for until "
            f"{grace_until:%Y-%m-%d %H:%M:%S} UTC before any resend"
        )
        await self._later(UNKNOWN, error, delay_s, unknown_since=doubt, give_back=True)

    def _in_doubt_from(self) -> datetime:
        """When the request in doubt started, at the latest (the grace runs from it): as
        recorded on an UNKNOWN row; on a row a crash left SENDING, the claim's last renewal,
        just before its request (an UNKNOWN row from before the start was recorded: when it
        became UNKNOWN)."""
        c = self.claim
        if c.previous == UNKNOWN and c.unknown_since is not None:
            return c.unknown_since
        return c.touched_at

    async def _reconcile(self) -> SendReceipt | None:
        """Our fromMe message in the chat, if the provider has it and no other row owns it."""
        c = self.claim
        # The last attempt started at most `timeout_s` before the row was last touched, or
        # when recorded (the row has been looked for since).
        started = c.touched_at - timedelta(seconds=self.cfg.timeout_s)
        if c.unknown_since is not None:
            started = min(started, c.unknown_since)
        since = max(c.created_at, started).timestamp() - self.cfg.reconcile_window_s
        candidates = await self.provider.sent_messages(c.to_jid, since=since)
        taken = await self._owned_elsewhere([m.provider_message_id for m in candidates])
        return match_sent(c.outgoing(), candidates, since=since, exclude=taken)

    async def _owned_elsewhere(self, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        o = T_OUTBOX.c
        q = select(o.provider_message_id).where(
            o.session_id == self.claim.session_id,
            o.provider_message_id.in_(ids),
            o.id != self.claim.id,
        )
        async with self.outbox.store.read() as conn:
            return {r[0] for r in await conn.execute(q)}


def match_sent(
    out: Outgoing, candidates: Sequence[Message], *, since: float, exclude: set[str]
) -> SendReceipt | None:
    """The oldest fromMe message that is this send: same text (text) or same type and caption
    (media), not before `since`, not typed on the phone (`providers.typed_on_phone`: the
    provider says which device wrote it), not owned by another outbox row."""
    types = _ECHO_TYPES[out.kind]
    best: Message | None = None
    for msg in candidates:
        if not msg.from_me or msg.provider_message_id in exclude:
            continue
        if providers.typed_on_phone(msg):
            continue
        if msg.timestamp.timestamp() < since or msg.type not in types:
            continue
        if (msg.body or None) != (out.text or None) and out.kind != "voice":
            continue
        if best is None or msg.timestamp < best.timestamp:
            best = msg
    if best is None:
        return None
    return SendReceipt(
        provider_message_id=best.provider_message_id, timestamp=best.timestamp.timestamp()
    )


# --- outcomes -----------------------------------------------------------------------------------


async def _record_sent(outbox: Outbox, claim: Claim, receipt: SendReceipt) -> None:
    """SENT with the provider's id, given to the message row (`wasync.ingest.sends`)."""
    command = SendAccepted(
        claim=claim.ref,
        provider_message_id=receipt.provider_message_id,
        timestamp=receipt.timestamp,
    )
    if not await outbox.pipeline.execute(command):
        log.warning("outbox %s: another sender took this row over; outcome left to it", claim.id)


async def _record_failed(outbox: Outbox, claim: Claim, error: str) -> None:
    """FAILED, and the message's ack ERROR (`chat:message-ack`)."""
    log.warning("outbox %s: failed: %s", claim.id, error)
    await outbox.pipeline.execute(SendFailed(claim=claim.ref, error=error))
