"""Provider simulators: stateful WAHA and Evolution API servers for tests, benchmarks and the demo.

`WahaSim` and `EvolutionSim` serve the endpoints wasync uses (`.app`, a Starlette app) with the
real payload shapes and quirks, fire webhooks (`deliver()`), inject faults (`.faults`) and count
requests (`.requests`); `seed_*` fill them with deterministic Portuguese conversations and
`serve()` runs an app on a loopback port.

Each room imports only rooms above it: `faults`, `directory` and `base` (the `Simulator` base,
app, errors, webhook delivery); `content` (what a message carries, proto JSON, ids); `waha/` and
`evolution/` (state, render, guard, params, hooks, route handlers, routes, phone actions as
each engine keeps them, simulator); `world`
(planning a world) and `seed` (loading a plan into a simulator).
"""

from wasync.sim.base import Delivery, DeliveryAttempt, SentRequest, serve
from wasync.sim.content import Content, contact_card, location, media, reaction, text
from wasync.sim.evolution import EvoInstance, EvolutionSim
from wasync.sim.faults import Fault, Faults, SimulatedReset
from wasync.sim.seed import seed_evolution, seed_evolution_bulk, seed_waha, seed_waha_bulk
from wasync.sim.waha import WahaSession, WahaSim, sign_body, webhook_config

__all__ = [
    "Content",
    "Delivery",
    "DeliveryAttempt",
    "EvoInstance",
    "EvolutionSim",
    "Fault",
    "Faults",
    "SentRequest",
    "SimulatedReset",
    "WahaSession",
    "WahaSim",
    "contact_card",
    "location",
    "media",
    "reaction",
    "seed_evolution",
    "seed_evolution_bulk",
    "seed_waha",
    "seed_waha_bulk",
    "serve",
    "sign_body",
    "text",
    "webhook_config",
]
