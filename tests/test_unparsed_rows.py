"""A row a provider lists that its parser refuses is kept, not lost: polling stores the good
messages around it, keeps the row whole in `dead_letters` (`unparsed`, once, however often the
overlap reads it again), and `wasync replay` parses it once it can (SQLite and Postgres, both
providers, through the simulators)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from tests.test_quarantine import World, _poller, phone, world
from wasync.replay import replay_dead_letters
from wasync.sim.content import text as text_content

BROKEN_ID = 12345  # an id that is not text: the parser cannot key the message


def _break(w: World, message_id: str) -> dict[str, Any]:
    """Give the simulator's stored row an id its parser refuses (the row stays listed in its
    chat); return the row as the provider now lists it."""
    if w.provider == "waha":
        stored = w.sim.session("default").message(message_id)
        stored["id"] = BROKEN_ID
        del stored["_data"]  # WEBJS's own copy of the id, which the parser falls back to
        rows = w.sim.all_messages("default")
        return next(r for r in rows if r["id"] == BROKEN_ID)
    w.sim.instance("default").row(message_id)["key"]["id"] = BROKEN_ID
    return next(r for r in w.sim.all_messages("default") if r["key"]["id"] == BROKEN_ID)


async def _unparsed(w: World) -> list[Any]:
    async with w.store.read() as conn:
        sql = "SELECT * FROM dead_letters WHERE kind = 'unparsed' ORDER BY id"
        return list(await conn.execute(text(sql)))


@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_a_listed_row_the_parser_refuses_is_kept_once_and_replayed_when_it_parses(
    db_url: str, provider: str
) -> None:
    async with world(db_url, provider) as w, _poller(w) as poller:
        chat = phone(50)
        before = w.sim.add_message("default", chat, text_content("antes"), ts=_ts(w, 1))
        bad = w.sim.add_message("default", chat, text_content("mensagem ruim"), ts=_ts(w, 2))
        after = w.sim.add_message("default", chat, text_content("depois"), ts=_ts(w, 3))
        listed = _break(w, bad)

        first = await poller.cycle()
        assert first.error is None, first.error
        for mid in (before, after):
            key = mid.rsplit("_", 1)[-1] if provider == "waha" else mid
            assert await w.scalar(
                "SELECT count(*) FROM messages WHERE provider_message_id = :p", p=key
            )
        (row,) = await _unparsed(w)
        assert (row.source, row.provider, row.tenant_id) == ("poll", provider, "acme")
        assert row.session_name == "default" and row.session_id == next(iter(w.registry)).id
        assert "could not be read" in row.error and row.provider_message_id is None
        assert json.loads(bytes(row.body)) == listed  # the row as the provider listed it

        w.sim.add_incoming("default", chat, text="mais uma")
        for _ in range(2):  # the overlap window reads the broken row again: kept once
            again = await poller.cycle()
            assert again.error is None, again.error
        assert len(await _unparsed(w)) == 1
        assert await w.scalar("SELECT count(*) FROM messages WHERE body = 'mais uma'") == 1

        report = await replay_dead_letters(w.pipeline, w.store, w.registry)
        assert report.rejected == 1 and report.new == 0
        assert f"dead letter {row.id}:" in report.errors[0]

        # The parser can read it now (here: the row as the provider meant it).
        fixed = json.loads(bytes(row.body))
        fixed_id = "3EB0FIXED00000001"
        if provider == "waha":
            fixed["id"] = f"false_{fixed['from']}_{fixed_id}"
        else:
            fixed["key"]["id"] = fixed_id
        async with w.store.write() as conn:
            await conn.execute(
                text("UPDATE dead_letters SET body = :b WHERE id = :i"),
                {"b": json.dumps(fixed).encode(), "i": row.id},
            )
        report = await replay_dead_letters(w.pipeline, w.store, w.registry)
        assert (report.new, report.rejected) == (1, 0), report.errors
        assert (
            await w.scalar("SELECT body FROM messages WHERE provider_message_id = :p", p=fixed_id)
            == "mensagem ruim"
        )
        assert (
            await w.scalar(
                "SELECT count(*) FROM dead_letters WHERE kind = 'unparsed' AND replayed_at IS NULL"
            )
            == 0
        )


def _ts(w: World, n: int) -> int:
    """After the world's own messages (they are dated up to 600 s ago)."""
    return int(w.sim.clock()) - 100 + n
