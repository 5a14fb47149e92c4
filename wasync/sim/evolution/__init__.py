"""A stateful Evolution API (v2.3.7, Baileys channel) simulator.

Instances hold Evolution's own `Message` rows (what `findMessages`/`findChats` read), Brazilian
number forms and LID addressing; the app serves the endpoints wasync uses with the quirks of
/work/shared/providers/evolution.md (cited as "evolution.md §n"), and `deliver()` posts the
webhook envelope the way `webhook.controller.ts emit()` does, JWT header included.
"""

from wasync.sim.evolution.hooks import EVENTS, SUBSCRIBABLE
from wasync.sim.evolution.instance import STATES, STATUS_NAMES, EvoInstance, create_jid
from wasync.sim.evolution.simulator import EvolutionSim

# The route that serves files (`Faults(routes=DOWNLOAD_ROUTES)` fails a share of downloads).
DOWNLOAD_ROUTES = frozenset({"chat.getBase64FromMediaMessage"})

__all__ = [
    "DOWNLOAD_ROUTES",
    "EVENTS",
    "STATES",
    "STATUS_NAMES",
    "SUBSCRIBABLE",
    "EvoInstance",
    "EvolutionSim",
    "create_jid",
]
