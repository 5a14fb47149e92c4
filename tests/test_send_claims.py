"""A claim outlives its wait for the send slot: two senders on one session (the daemon and a
CLI campaign, other nodes) never send one row twice, however long the rate makes them wait.

The rate here makes a row wait 3 s for its slot, longer than `[send] lease_s` (2 s), after
which a SENDING row counts as abandoned by its sender and may be taken over (a crash). The
first sender renews its claim before the request goes out, or, when the row was taken over
meanwhile, does not send it; the taker reconciles and sends once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

from tests.test_outbox import environment, text_request
from wasync.sender import Sender, wait_final


async def test_two_senders_waiting_for_slots_longer_than_the_lease_send_each_row_once(
    db_url: str,
) -> None:
    """Four rows at 20/min (burst 1) with lease_s 2: four sends, one per row, and every row
    SENT; the sends keep the rate (3 s apart, less the simulator's arrival jitter)."""
    send = {"rate_per_minute": 20, "burst": 1, "timeout_s": 1, "lease_s": 2}
    async with environment(db_url, reconcile_window_s=60, **send) as env:
        texts = [f"campanha {i}" for i in range(4)]
        rows = [await env.queue("waha", text_request(t)) for t in texts]
        ref = env.ref("waha")
        async with Sender(env.outbox, [ref]), Sender(env.outbox, [ref]):
            done = await wait_final(env.outbox, [r.id for r in rows], timeout_s=90)
            # Both senders run on a while: a second send of a row would come now.
            await asyncio.sleep(4)
        sent = [s.body["text"] for s in env.waha.sends if s.status in (200, 201)]
        assert Counter(sent) == Counter(texts), sent  # each row once, none twice
        assert {r.status for r in done.values()} == {"SENT"}
        times = sorted(s.at for s in env.waha.sends)
        assert all(b - a >= 3 - 0.5 for a, b in itertools.pairwise(times)), times
