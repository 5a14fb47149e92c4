"""Three `wasync run` nodes on one Postgres against both simulators over loopback: polling plus
webhooks, 200 sends across the nodes and a CLI campaign, and `kill -9` of one node mid-run.

What it shows (issue 16's first acceptance point): the sessions are split between the nodes
and the killed node's are taken over within the lease TTL (plus one renewal); the simulators'
request logs show no session polled by two nodes in overlapping stretches; every message is
stored once; the simulators' send timestamps never exceed the configured rate per session.
And on SQLite, a daemon and a CLI campaign (two processes on one file) share the rate too.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from tests.daemon import start_daemon
from wasync.auth import issue_token
from wasync.sim import EvolutionSim, WahaSim, serve, sign_body
from wasync.sim.faults import RequestRecord

SECRET = "jwt-secret-for-the-cluster-test-32b!"
HMAC = "hmac-secret-of-at-least-32-bytes-long"
WAHA = [f"w{i}" for i in range(4)]
EVO = ["e0", "e1"]
TTL_S, RENEW_S = 4.0, 1.0
RATE_PER_MIN, BURST = 300, 2  # a send each 0.2 s per session, 2 at once
POLL_ROUTES = {
    "chats.overview",
    "chats.messages",
    "sessions.get",
    "chat.findChats",
    "chat.findMessages",
    "instance.connectionState",
}
PHONES = [f"55319888{n:05d}" for n in range(30)]


def _config(path: Path, node: str, pg_url: str, waha_url: str, evo_url: str) -> Path:
    sessions = "".join(
        f'[[tenants.sessions]]\nname = "{name}"\nprovider = "waha"\nbase_url = "{waha_url}"\n'
        f'api_key = "waha-sim-key"\nwebhook_secret = "{HMAC}"\n'
        for name in WAHA
    ) + "".join(
        f'[[tenants.sessions]]\nname = "{name}"\nprovider = "evolution"\n'
        f'base_url = "{evo_url}"\napi_key = "evolution-sim-key"\nwebhook_secret = "{HMAC}"\n'
        for name in EVO
    )
    path.write_text(
        f"""
[database]
url = "{pg_url}"
[poll]
reconcile_interval_s = 0.5
jitter_s = 0
status_interval_s = 5
ack_window_h = 0
[http]
port = 0
[webhook]
enabled = true
[auth]
jwt_secret = "{SECRET}"
[send]
rate_per_minute = {RATE_PER_MIN}
burst = {BURST}
timeout_s = 5
lease_s = 20
poll_interval_s = 0.2
[media]
enabled = false
[cluster]
node_id = "{node}"
lease_ttl_s = {TTL_S}
renew_interval_s = {RENEW_S}
[[tenants]]
id = "acme"
admins = ["u1"]
{sessions}"""
    )
    return path


async def _db(pg_url: str) -> asyncpg.Connection:
    url = make_url(pg_url).set(drivername="postgresql")
    return await asyncpg.connect(url.render_as_string(hide_password=False))


async def _lease_nodes(db: asyncpg.Connection) -> dict[str, str]:
    rows = await db.fetch(
        "SELECT s.name, l.node_id FROM session_leases l JOIN sessions s ON s.id = l.session_id"
        " WHERE l.expires_at > now()"
    )
    return {r["name"]: r["node_id"] for r in rows}


async def _until(check, timeout_s: float = 120, step_s: float = 0.1):  # type: ignore[no-untyped-def]
    """Ask `check()` every `step_s` until it answers something true; that answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(step_s)
    raise AssertionError(f"not true within {timeout_s} s: {check}")


class Traffic:
    """Customers writing to every session; WAHA messages also delivered by webhook to a random
    live node (a share of them), the rest found by polling."""

    def __init__(self, waha: WahaSim, evo: EvolutionSim, nodes: dict[str, str]) -> None:
        self.waha, self.evo, self.nodes = waha, evo, nodes
        self.sent: Counter[str] = Counter()
        self.rng = random.Random(16)
        self.webhooks = 0

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while not stop.is_set():
                await self.one(http)
                await asyncio.sleep(0.05)

    async def one(self, http: httpx.AsyncClient) -> None:
        session = self.rng.choice(WAHA + EVO)
        phone = self.rng.choice(PHONES)
        text = f"oi {self.sum()} de {phone}"
        self.sent[session] += 1
        if session in EVO:
            self.evo.add_incoming(session, phone, text=text)
            return
        message_id = self.waha.add_incoming(session, phone, text=text)
        if self.rng.random() < 0.6:
            body = json.dumps(
                {
                    "event": "message",
                    "session": session,
                    "payload": self.waha.webhook_payload(session, message_id),
                }
            ).encode()
            url = self.rng.choice(list(self.nodes.values()))
            headers = {
                "content-type": "application/json",
                "x-webhook-hmac": sign_body(HMAC, body),
                "x-webhook-hmac-algorithm": "sha512",
            }
            try:  # a node killed meanwhile: polling still finds the message
                resp = await http.post(f"{url}/api/webhooks/waha", content=body, headers=headers)
                self.webhooks += resp.status_code == 200
            except httpx.TransportError:
                pass

    def sum(self) -> int:
        return sum(self.sent.values())


def _runs(log: Sequence[RequestRecord]) -> dict[str, list[tuple[str, int]]]:
    """Per session, its poll requests in arrival order cut into runs of one node: (node, n)."""
    out: dict[str, list[tuple[str, int]]] = {}
    for rec in sorted(log, key=lambda r: r.at):
        if rec.route not in POLL_ROUTES or rec.target is None or rec.node is None:
            continue
        runs = out.setdefault(rec.target, [])
        if runs and runs[-1][0] == rec.node:
            runs[-1] = (rec.node, runs[-1][1] + 1)
        else:
            runs.append((rec.node, 1))
    return out


def _rate_violations(times: Sequence[float], slack_s: float) -> list[tuple[int, int, float]]:
    """Pairs of sends (i, j) closer than GCRA allows: j - i sends after i within less than
    (j - i - (burst - 1)) intervals, less `slack_s` for the arrival jitter."""
    interval = 60 / RATE_PER_MIN
    bad = []
    ts = sorted(times)
    for i in range(len(ts)):
        for j in range(i + BURST, len(ts)):
            need = (j - i - (BURST - 1)) * interval - slack_s
            if ts[j] - ts[i] < need:
                bad.append((i, j, ts[j] - ts[i]))
    return bad


async def _send_rest(urls: list[str], session: str, n: int, tag: str) -> None:
    """`n` sends through REST, spread over the nodes, 8 at a time: queued faster than the
    rate lets them go, so the limit is what paces them."""
    token = issue_token(SECRET, tenant_id="acme", user_id="u1", role="ADMIN", ttl_s=600)
    headers = {"authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(8)

    async def one(http: httpx.AsyncClient, i: int) -> None:
        body = {"to": PHONES[i % len(PHONES)], "session": session, "text": f"{tag} {i}"}
        async with gate:
            url = urls[i % len(urls)]
            resp = await http.post(f"{url}/api/messages", json=body, headers=headers)
        assert resp.status_code == 201, resp.text

    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(one(http, i) for i in range(n)))


def _busiest(times: Sequence[float], k: int = 10) -> float:
    """The shortest time `k` consecutive sends took (the limit at work when it is near
    `k` intervals)."""
    ts = sorted(times)
    return min(ts[i + k] - ts[i] for i in range(len(ts) - k))


async def test_three_nodes_share_sessions_survive_a_kill_and_keep_the_send_rate(
    pg_url: str, tmp_path: Path
):
    """The whole cluster story on one Postgres, read back from the simulators' own logs."""
    waha = WahaSim(api_key="waha-sim-key")
    evo = EvolutionSim(api_key="evolution-sim-key")
    for name in WAHA:
        waha.add_session(name, engine="GOWS")
    for name in EVO:
        evo.add_instance(name)
    db = await _db(pg_url)
    procs: dict[str, asyncio.subprocess.Process] = {}
    async with serve(waha.app) as waha_url, serve(evo.app) as evo_url:
        urls: dict[str, str] = {}
        try:
            for node in ("n1", "n2", "n3"):
                cfg = _config(tmp_path / f"{node}.toml", node, pg_url, waha_url, evo_url)
                procs[node], urls[node] = await start_daemon(cfg, tmp_path / f"{node}.log")
            held = await _until(lambda: _spread(db, {"n1", "n2", "n3"}), timeout_s=60, step_s=0.2)
            assert max(Counter(held.values()).values()) <= 2  # ceil(6 / 3)

            traffic = Traffic(waha, evo, urls)
            stop_traffic = asyncio.Event()
            feeder = asyncio.create_task(traffic.run(stop_traffic))

            # 200 sends: REST on every node (w0 and e0) and a CLI campaign (w0) beside them.
            csv = tmp_path / "campaign.csv"
            csv.write_text("phone\n" + "".join(f"55119777{n:05d}\n" for n in range(66)))
            campaign = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wasync", "send", "--config", str(tmp_path / "n1.toml"),
                "--tenant", "acme", "--session", "w0", "--csv", str(csv),
                "--template", "Olá {phone}", "--timeout", "600",
                env={k: v for k, v in os.environ.items() if not k.startswith("WASYNC_")},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            nodes = list(urls.values())
            await asyncio.gather(
                _send_rest(nodes, "w0", 34, "rest"), _send_rest(nodes, "e0", 100, "rest")
            )
            out, err = await asyncio.wait_for(campaign.communicate(), 300)
            assert campaign.returncode == 0, err.decode()
            assert "sent=66" in out.decode(), out.decode()
            await _until(lambda: _all_sent(db, 200), timeout_s=300, step_s=0.5)

            # kill -9 the node holding sessions; the others take them over after the TTL.
            victim = "n2"
            lost = {s for s, n in (await _lease_nodes(db)).items() if n == victim}
            assert lost
            procs[victim].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await procs[victim].wait()
            del urls[victim]
            after = await _until(lambda: _spread(db, {"n1", "n3"}), timeout_s=60, step_s=0.1)
            took = time.monotonic() - killed
            print(f"takeover of {sorted(lost)} {took:.2f} s after kill -9 (TTL {TTL_S} s)")
            assert set(after.values()) <= {"n1", "n3"}
            assert took <= TTL_S + 3.0  # the TTL, and the test's own steps on a loaded machine
            await asyncio.sleep(5)  # more traffic on two nodes
            stop_traffic.set()
            await feeder
            expected = dict(traffic.sent)
            try:
                await _until(lambda: _stored(db, expected), timeout_s=120, step_s=0.5)
            except AssertionError:
                got = await db.fetch(
                    "SELECT s.name, count(*) AS n, max(m.sent_at) AS newest FROM messages m"
                    " JOIN sessions s ON s.id = m.session_id WHERE NOT m.from_me GROUP BY s.name"
                )
                leases = await _lease_nodes(db)
                raise AssertionError(
                    f"stored {[tuple(r) for r in got]} of {expected}; {leases}"
                ) from None
        finally:
            codes = {}
            for node, proc in procs.items():
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    codes[node] = await asyncio.wait_for(proc.wait(), 60)
            await db.close()
    assert all(code == 0 for code in codes.values()), codes

    # Every message once: inbound as the customers wrote them, our 200 sends.
    db = await _db(pg_url)
    try:
        inbound = await db.fetchval("SELECT count(*) FROM messages WHERE NOT from_me")
        outbound = await db.fetchval("SELECT count(*) FROM messages WHERE from_me")
    finally:
        await db.close()
    assert inbound == sum(expected.values()) and outbound == 200

    # No session polled by two nodes in overlapping stretches: each session's poll requests
    # fall into a few runs of one node (a handover each), never interleave.
    runs = _runs(list(waha.request_log) + list(evo.request_log))
    assert set(runs) == set(WAHA + EVO)
    for session, seq in runs.items():
        assert len(seq) <= 4, (session, seq)  # n1 → join of n2 → join of n3 → the kill
        assert sum(n for _, n in seq) >= 20, (session, seq)  # many cycles were watched

    # The send rate per session, from the simulators' arrival timestamps.
    per_session: dict[str, list[float]] = {}
    for record in [*waha.sends, *evo.sends]:
        per_session.setdefault(record.target, []).append(record.at)
    assert sorted(len(v) for v in per_session.values()) == [100, 100]
    for session, times in per_session.items():
        assert not _rate_violations(times, slack_s=1.0), session
        # ... and the limit, not the queueing, paced them: 10 sends in under 2x 10 intervals.
        assert _busiest(times) < 2 * 10 * 60 / RATE_PER_MIN, session
        span = max(times) - min(times)
        print(f"{session}: 100 sends over {span:.1f} s ({100 / span * 60:.0f}/min)")


async def _spread(db: asyncpg.Connection, nodes: set[str]) -> dict[str, str] | None:
    """The lease holders once every session is held, by these nodes only, each holding one."""
    held = await _lease_nodes(db)
    if set(held) == set(WAHA + EVO) and set(held.values()) == nodes:
        return held
    return None


async def _all_sent(db: asyncpg.Connection, n: int) -> bool:
    sent = await db.fetchval("SELECT count(*) FROM outbox WHERE status = 'SENT'")
    return bool(sent == n)


async def _stored(db: asyncpg.Connection, expected: dict[str, int]) -> bool:
    rows = await db.fetch(
        "SELECT s.name, count(*) AS n FROM messages m JOIN sessions s ON s.id = m.session_id"
        " WHERE NOT m.from_me GROUP BY s.name"
    )
    return {r["name"]: r["n"] for r in rows} == expected


async def test_a_daemon_and_a_cli_campaign_on_one_sqlite_file_share_the_send_rate(
    tmp_path: Path,
):
    """SQLite: `wasync run` sending REST-queued rows and a `wasync send --csv` beside it (two
    processes on one file) keep one session's rate together, by the simulator's clock."""
    waha = WahaSim(api_key="waha-sim-key")
    waha.add_session("w0", engine="GOWS")
    async with serve(waha.app) as waha_url:
        cfg = tmp_path / "solo.toml"
        cfg.write_text(
            f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "w.db"}"\n'
            f'[http]\nport = 0\n[auth]\njwt_secret = "{SECRET}"\n[media]\nenabled = false\n'
            f"[send]\nrate_per_minute = {RATE_PER_MIN}\nburst = {BURST}\npoll_interval_s = 0.2\n"
            '[[tenants]]\nid = "acme"\nadmins = ["u1"]\n'
            f'[[tenants.sessions]]\nname = "w0"\nprovider = "waha"\nbase_url = "{waha_url}"\n'
            'api_key = "waha-sim-key"\n'
        )
        proc, url = await start_daemon(cfg, tmp_path / "solo.log")
        try:
            csv = tmp_path / "campaign.csv"
            csv.write_text("phone\n" + "".join(f"55119777{n:05d}\n" for n in range(40)))
            campaign = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wasync", "send", "--config", str(cfg),
                "--tenant", "acme", "--session", "w0", "--csv", str(csv),
                "--template", "Olá {phone}", "--timeout", "600",
                env={k: v for k, v in os.environ.items() if not k.startswith("WASYNC_")},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await _send_rest([url], "w0", 40, "rest")
            out, err = await asyncio.wait_for(campaign.communicate(), 300)
            assert campaign.returncode == 0, err.decode()
            assert "sent=40" in out.decode(), out.decode()
            await _until(lambda: _accepted(waha, 80), timeout_s=300, step_s=0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
    times = [s.at for s in waha.sends]
    assert len(times) == 80
    assert not _rate_violations(times, slack_s=1.0)
    assert _busiest(times) < 2 * 10 * 60 / RATE_PER_MIN  # the limit paced them


async def _accepted(sim: WahaSim, n: int) -> bool:
    """The simulator accepted `n` sends."""
    return sum(s.status == 201 for s in sim.sends) >= n
