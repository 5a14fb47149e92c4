"""Live traffic in running simulators: customers writing (text and media), acks moving on the
messages wasync sent, customers editing what they wrote, and optionally each change fired as
a webhook (signed by the simulator as the provider signs: WAHA's HMAC, Evolution's JWT).

`Traffic` says how much of each; `run_traffic` goes on until cancelled, telling `note` one
line per change. A `drop_share` of the webhooks is never fired, as providers lose webhooks
(WAHA #671, Evolution #2647): polling, as reconciliation, repairs those.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from wasync.sim.evolution import EvolutionSim
from wasync.sim.evolution.instance import STATUS_NAMES
from wasync.sim.waha import WahaSim
from wasync.sim.world import customer_line, person

_MEDIA = (("image", "Olha essa foto"), ("voice", None), ("document", None), ("video", None))


@dataclass(frozen=True, slots=True, kw_only=True)
class Traffic:
    """How much happens per minute, and which share of it is media, edits or new numbers."""

    per_minute: float = 20.0
    media_share: float = 0.2
    edit_share: float = 0.1
    new_number_share: float = 0.2
    ack_share: float = 0.5
    webhooks: bool = False
    drop_share: float = 0.0
    webhook_delay_s: float = 1.0


@dataclass(slots=True)
class Stage:
    """The simulators and the addresses traffic goes to: one WAHA session, one instance."""

    waha: WahaSim
    evo: EvolutionSim
    session: str
    instance: str
    customers: list[str]
    rng: random.Random
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


async def run_traffic(
    stage: Stage, traffic: Traffic, note: Callable[[str], None], http: httpx.AsyncClient
) -> None:
    """Make changes until cancelled; webhook deliveries run beside, owned by `stage.tasks`."""
    if traffic.per_minute <= 0:
        await asyncio.Event().wait()
    try:
        while True:
            await asyncio.sleep(stage.rng.expovariate(traffic.per_minute / 60))
            change = _one_change(stage, traffic)
            if change is None:
                continue
            line, fire = change
            if traffic.webhooks and stage.rng.random() >= traffic.drop_share:
                _fire(stage, fire, http, traffic.webhook_delay_s)
            elif traffic.webhooks:
                line += " (webhook lost: polling will repair it)"
            note(line)
    finally:
        for task in stage.tasks:
            task.cancel()
        await asyncio.gather(*stage.tasks, return_exceptions=True)


_Fire = tuple[str, str, str, Any]  # (provider, target, event, payload)


def _one_change(stage: Stage, traffic: Traffic) -> tuple[str, _Fire] | None:
    rng = stage.rng
    roll = rng.random()
    if roll < traffic.ack_share:
        change = _ack(stage)
        if change is not None:
            return change
    if rng.random() < traffic.edit_share:
        change = _edit(stage)
        if change is not None:
            return change
    return _incoming(stage, traffic)


def _incoming(stage: Stage, traffic: Traffic) -> tuple[str, _Fire]:
    rng = stage.rng
    if rng.random() < traffic.new_number_share or not stage.customers:
        stage.customers.append(person(rng).phone)
    phone = rng.choice(stage.customers)
    media = rng.choice(_MEDIA) if rng.random() < traffic.media_share else None
    what = f"[{media[0]}]" if media else customer_line(rng)
    if rng.random() < 0.5:
        sim, target = stage.waha, stage.session
        if media:
            mid = sim.add_incoming_media(target, phone, kind=media[0], caption=media[1])
        else:
            mid = sim.add_incoming(target, phone, text=what, push_name="Cliente")
        payload = stage.waha.webhook_payload(target, mid)
        return f"waha {target} <- +{phone}: {what}", ("waha", target, "message.any", payload)
    if media:
        key = stage.evo.add_incoming_media(stage.instance, phone, kind=media[0], caption=media[1])
    else:
        key = stage.evo.add_incoming(stage.instance, phone, text=what)
    data = stage.evo.upsert_payload(stage.instance, key)
    return (
        f"evolution {stage.instance} <- +{phone}: {what}",
        ("evolution", stage.instance, "messages.upsert", data),
    )


def _ack(stage: Stage) -> tuple[str, _Fire] | None:
    """One step right (SERVER -> DEVICE -> READ) on a message wasync sent."""
    rng = stage.rng
    sess = stage.waha.session(stage.session)
    waha = [m for m in sess.order[-200:] if m.get("fromMe") and m.get("ack") in (1, 2)]
    inst = stage.evo.instance(stage.instance)
    evo = [
        r
        for r in inst.messages[-200:]
        if r["key"].get("fromMe") and r.get("status") in ("SERVER_ACK", "DELIVERY_ACK")
    ]
    if waha and (not evo or rng.random() < 0.5):
        msg = rng.choice(waha)
        ack = int(msg["ack"]) + 1
        payload = stage.waha.set_ack(stage.session, str(msg["id"]), ack)
        line = f"waha {stage.session} ack {payload['ackName']} on {msg['id']}"
        return line, ("waha", stage.session, "message.ack", payload)
    if evo:
        row = rng.choice(evo)
        ack = 3 if row["status"] == "DELIVERY_ACK" else 2
        key_id = str(row["key"]["id"])
        data = stage.evo.set_status(stage.instance, key_id, ack)
        line = f"evolution {stage.instance} ack {STATUS_NAMES[ack]} on {key_id}"
        return line, ("evolution", stage.instance, "messages.update", data)
    return None


def _edit(stage: Stage) -> tuple[str, _Fire] | None:
    """A customer corrects a recent text of theirs (Evolution keeps edits in its rows)."""
    inst = stage.evo.instance(stage.instance)
    rows = [
        r
        for r in inst.messages[-50:]
        if not r["key"].get("fromMe") and "conversation" in (r.get("message") or {})
    ]
    if not rows:
        return None
    row = stage.rng.choice(rows)
    key = dict(row["key"])
    new = f"{customer_line(stage.rng)} (editado)"
    stage.evo.edit_message(stage.instance, str(key["id"]), text=new)
    data = {  # evolution.md 4.2: messages.edited carries the protocolMessage
        "key": {k: key[k] for k in ("remoteJid", "fromMe", "id") if k in key},
        "type": "MESSAGE_EDIT",
        "editedMessage": {"conversation": new},
        "timestampMs": int(time.time() * 1000),
    }
    line = f"evolution {stage.instance} edit {key['id']}: {new}"
    return line, ("evolution", stage.instance, "messages.edited", data)


def _fire(stage: Stage, fire: _Fire, http: httpx.AsyncClient, delay_s: float) -> None:
    provider, target, event, payload = fire
    if provider == "waha":
        coro: Any = stage.waha.deliver(target, event, payload, delay_s=delay_s, http=http)
    else:
        coro = stage.evo.deliver(target, event, payload, delay_s=delay_s, http=http)
    task = asyncio.create_task(coro)
    stage.tasks.add(task)
    task.add_done_callback(stage.tasks.discard)
