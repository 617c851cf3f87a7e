"""slow-database: the service's link to PostgreSQL turns slow, jittery, narrow, and then
cuts connections mid-transaction.

Per unit of scale, a burst of racing tips under each of: latency with jitter, jitter
alone, a bandwidth cap, connections reset, and connections closed after a few kilobytes.
Slowness widens every race window; a reset during a transaction or its COMMIT must end in
a clear answer (or an indeterminate one that the same-key retry resolves), never a lost
or doubled spend.
"""

from __future__ import annotations

from harness.faults.spec import Fault, FaultKind, Link
from scenarios._faults import Phase, phased_scenario

__all__ = ["PHASES", "SCENARIO"]

NAME = "slow-database"
_DB = Link.DATABASE
PHASES = (
    Phase(fault=Fault(kind=FaultKind.LATENCY, link=_DB,
                      attributes={"latency": 30, "jitter": 20}), hold_ms=1500),
    Phase(fault=Fault(kind=FaultKind.JITTER, link=_DB, attributes={"jitter": 40}),
          hold_ms=1000),
    Phase(fault=Fault(kind=FaultKind.BANDWIDTH, link=_DB, attributes={"rate": 64}),
          hold_ms=1000),
    Phase(fault=Fault(kind=FaultKind.RESET_PEER, link=_DB, attributes={"timeout": 0}),
          hold_ms=300),
    Phase(fault=Fault(kind=FaultKind.LIMIT_DATA, link=_DB, attributes={"bytes": 4096}),
          hold_ms=500),
)

SCENARIO = phased_scenario(
    NAME, "the database link turns slow, narrow, then resets connections mid-transaction",
    PHASES, fans_per_scale=4, creators=2, fund_tokens=1000)
