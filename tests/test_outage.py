"""`Outage`: one WARNING when the store goes away, one INFO when it is back, and a store that
flaps while it comes back (connections cut one by one) is still one outage."""

from __future__ import annotations

import logging

import pytest

from wasync.outage import SETTLE_S, Outage

log = logging.getLogger("wasync.test_outage")


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]


def test_a_flap_right_after_recovery_is_the_same_outage(caplog: pytest.LogCaptureFixture):
    """Down, back, down again within SETTLE_S, back: one WARNING and one INFO; a failure after
    the store stayed up for SETTLE_S is a new outage with its own pair."""
    caplog.set_level(logging.INFO, logger="wasync.test_outage")
    now = [100.0]
    outage = Outage(log, "sender", clock=lambda: now[0])
    boom = ConnectionError("refused")
    outage.failed(boom)
    outage.failed(boom)
    now[0] += 0.1
    outage.ok()
    now[0] += 0.3
    outage.failed(boom)  # a lingering connection answered once: still the same outage
    now[0] += 2.0
    outage.ok()
    outage.ok()
    assert _lines(caplog) == [
        ("WARNING", "sender: store unavailable"),
        ("INFO", "sender: store is back"),
    ]
    now[0] += SETTLE_S + 1
    outage.failed(boom)
    outage.ok()
    assert _lines(caplog)[2:] == [
        ("WARNING", "sender: store unavailable"),
        ("INFO", "sender: store is back"),
    ]


def test_a_database_error_repeated_with_other_parameters_is_logged_once(
    caplog: pytest.LogCaptureFixture,
):
    """The same failing statement run again with new times (a loop's retry) is the same
    error: its traceback once. Another statement or another driver error is news."""
    import sqlalchemy.exc

    caplog.set_level(logging.INFO, logger="wasync.test_outage")
    outage = Outage(log, "look")

    def failure(statement: str, when: str, what: str = "no such table: outbox") -> Exception:
        return sqlalchemy.exc.OperationalError(statement, {"now": when}, Exception(what))

    outage.broken(failure("SELECT 1 FROM outbox", "12:00:00.1"))
    outage.broken(failure("SELECT 1 FROM outbox", "12:00:01.2"))
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    outage.broken(failure("SELECT 2 FROM outbox", "12:00:02.3"))
    outage.broken(failure("SELECT 2 FROM outbox", "12:00:03.4", "disk is full"))
    assert len(caplog.records) == 3
    assert all("12:00" not in r.getMessage() for r in caplog.records)
