"""database-restart: the service's database sessions are terminated, then PostgreSQL is
restarted fast, then crashed (immediate stop, crash recovery on start), each mid-burst.

Each fault lands once a third of a burst of tips is in flight; after it heals the service
must answer again by itself (it reconnects), every keyed op of the burst is re-sent with
its key, and nothing acknowledged may be lost: a commit acknowledged before the crash
must survive crash recovery.
"""

from __future__ import annotations

from harness.faults.spec import Fault, FaultKind
from harness.scenario import Scenario
from scenarios._common import BASE_CHECKERS
from scenarios._faults import FAULT_CHECKERS, FAULT_PROVOKES, Phase, phased, phases_not_run

__all__ = ["PHASES", "SCENARIO"]

NAME = "database-restart"
PHASES = (
    Phase(fault=Fault(kind=FaultKind.TERMINATE_SESSIONS), hold_ms=0),
    Phase(fault=Fault(kind=FaultKind.DATABASE_RESTART), hold_ms=500),
    Phase(fault=Fault(kind=FaultKind.DATABASE_CRASH), hold_ms=500),
)
users, generate = phased(NAME, PHASES, fans_per_scale=6, creators=3, fund_tokens=1000)

SCENARIO = Scenario(
    name=NAME,
    summary="database sessions terminated, PostgreSQL restarted and crashed, mid-burst",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, *FAULT_CHECKERS),
    provokes=("tip_succeeded", *FAULT_PROVOKES),
    faults=tuple(phase.fault for phase in PHASES),
    not_run=phases_not_run(PHASES),
)
