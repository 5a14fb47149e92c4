"""Loading a planned world into a simulator: `apply_world` for any session/instance and the
`seed_*` helpers that plan and load one (`WahaSim.add_message`, `EvolutionSim.add_message`)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol

from wasync.sim.content import Content
from wasync.sim.evolution import EvolutionSim
from wasync.sim.waha import WahaSim
from wasync.sim.world import PlannedChat, plan_world


class SimWorld(Protocol):
    """What a simulator offers for seeding; both `WahaSim` and `EvolutionSim` fit."""

    def add_contact(
        self,
        target: str,
        phone: str,
        *,
        name: str | None = None,
        push_name: str | None = None,
        lid: str | None = None,
        lid_known: bool = True,
    ) -> None: ...

    def add_group(
        self, target: str, group_id: str, *, subject: str, participants: Sequence[str]
    ) -> None: ...

    def add_message(
        self,
        target: str,
        chat: str,
        content: Content,
        *,
        from_me: bool = False,
        ts: int | None = None,
        sender: str | None = None,
        push_name: str | None = None,
        ack: int | None = None,
        message_id: str | None = None,
        device: str | None = None,
    ) -> str: ...


def _rng(seed: int | str | random.Random, target: str) -> random.Random:
    if isinstance(seed, random.Random):
        return seed
    return random.Random(f"{seed}:{target}")


def apply_world(
    sim: SimWorld, target: str, world: Sequence[PlannedChat], *, split_addressing: bool
) -> None:
    """Load a planned world into one session/instance of a simulator.

    With `split_addressing`, the first messages of a LID chat whose phone is known are added under
    the phone (Evolution stores rows by the address each message actually used).
    """
    for chat in world:
        for person in chat.members:
            sim.add_contact(
                target,
                person.phone,
                name=person.name,
                push_name=person.push_name,
                lid=person.lid,
                lid_known=person.lid_known,
            )
        if chat.kind == "group":
            addresses = [m.lid if m.lid and m.lid_known else m.phone for m in chat.members]
            sim.add_group(target, chat.address, subject=chat.subject or "", participants=addresses)
        for index, msg in enumerate(chat.messages):
            address = chat.address
            if split_addressing and chat.person is not None and index < chat.pn_until:
                address = chat.person.phone
            sim.add_message(
                target,
                address,
                msg.content,
                from_me=msg.from_me,
                ts=msg.ts,
                sender=msg.sender,
                ack=msg.ack,
                message_id=msg.raw_id,
                device=msg.device,
            )


def seed_waha(
    sim: WahaSim,
    session: str,
    *,
    chats: int = 20,
    messages_per_chat: int = 50,
    now: float | None = None,
    span_s: int = 14 * 86_400,
    seed: int | str | random.Random = 0,
) -> list[PlannedChat]:
    """Fill an existing WAHA session with a deterministic world; returns the plan.

    WEBJS sessions get no reaction messages: whatsapp-web.js does not list reactions as messages.
    """
    engine = sim.session(session).engine
    when = int(now if now is not None else sim.clock())
    world = plan_world(
        _rng(seed, session),
        chats=chats,
        messages_per_chat=messages_per_chat,
        now=when,
        span_s=span_s,
        reactions=engine != "WEBJS",
    )
    apply_world(sim, session, world, split_addressing=False)
    return world


def seed_evolution(
    sim: EvolutionSim,
    instance: str,
    *,
    chats: int = 20,
    messages_per_chat: int = 50,
    now: float | None = None,
    span_s: int = 14 * 86_400,
    seed: int | str | random.Random = 0,
) -> list[PlannedChat]:
    """Fill an existing Evolution instance with a deterministic world; returns the plan."""
    when = int(now if now is not None else sim.clock())
    world = plan_world(
        _rng(seed, instance),
        chats=chats,
        messages_per_chat=messages_per_chat,
        now=when,
        span_s=span_s,
    )
    apply_world(sim, instance, world, split_addressing=True)
    return world


def seed_waha_bulk(
    sim: WahaSim,
    *,
    sessions: int = 500,
    chats: int = 20,
    messages_per_chat: int = 2,
    engine: str = "GOWS",
    prefix: str = "bench",
    now: float | None = None,
    span_s: int = 14 * 86_400,
    seed: int = 0,
) -> list[str]:
    """Create `sessions` WORKING sessions named `<prefix>-0000`… and seed each one (benchmarks)."""
    names = [f"{prefix}-{i:04d}" for i in range(sessions)]
    for name in names:
        sim.add_session(name, engine=engine)
        seed_waha(
            sim,
            name,
            chats=chats,
            messages_per_chat=messages_per_chat,
            now=now,
            span_s=span_s,
            seed=seed,
        )
    return names


def seed_evolution_bulk(
    sim: EvolutionSim,
    *,
    instances: int = 500,
    chats: int = 20,
    messages_per_chat: int = 2,
    prefix: str = "bench",
    now: float | None = None,
    span_s: int = 14 * 86_400,
    seed: int = 0,
) -> list[str]:
    """Create `instances` open instances named `<prefix>-0000`… and seed each one (benchmarks)."""
    names = [f"{prefix}-{i:04d}" for i in range(instances)]
    for name in names:
        sim.add_instance(name)
        seed_evolution(
            sim,
            name,
            chats=chats,
            messages_per_chat=messages_per_chat,
            now=now,
            span_s=span_s,
            seed=seed,
        )
    return names
