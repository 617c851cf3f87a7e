"""database-restart: the service's database sessions are terminated, then PostgreSQL is
restarted fast, then crashed (immediate stop, crash recovery on start), each mid-burst.

Each fault lands once a third of a burst of tips is in flight; after it heals the service
must answer again by itself (it reconnects), every keyed op of the burst is re-sent with
its key, and nothing acknowledged may be lost: a commit acknowledged before the crash
must survive crash recovery.
"""

from __future__ import annotations

from harness.faults.spec import Fault, FaultKind
from scenarios._faults import Phase, phased_scenario

__all__ = ["PHASES", "SCENARIO"]

NAME = "database-restart"
PHASES = (
    Phase(fault=Fault(kind=FaultKind.TERMINATE_SESSIONS), hold_ms=0),
    Phase(fault=Fault(kind=FaultKind.DATABASE_RESTART), hold_ms=500),
    Phase(fault=Fault(kind=FaultKind.DATABASE_CRASH), hold_ms=500),
)

SCENARIO = phased_scenario(
    NAME, "database sessions terminated, PostgreSQL restarted and crashed, mid-burst",
    PHASES, fans_per_scale=6, creators=3, fund_tokens=1000)
