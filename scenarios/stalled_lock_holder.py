"""stalled-lock-holder: the service is frozen (SIGSTOP) mid-burst with transactions open
and their row locks held, then thawed (SIGCONT).

The requests in flight wait; the database holds the frozen transactions' locks. After the
thaw every op must complete exactly once (or be resolved by its after-heal retry), and
nothing may be applied twice by a transaction that resumed after its client gave up.
"""

from __future__ import annotations

from harness.faults.spec import Fault, FaultKind
from harness.scenario import Scenario
from scenarios._common import BASE_CHECKERS
from scenarios._faults import FAULT_CHECKERS, FAULT_PROVOKES, Phase, phased, phases_not_run

__all__ = ["PHASES", "SCENARIO"]

NAME = "stalled-lock-holder"
# Frozen for 1.5 s: long for a transaction, well inside the client's op timeout.
PHASES = (Phase(fault=Fault(kind=FaultKind.PAUSE_SERVICE), hold_ms=1500, tips_per_fan=4),)
users, generate = phased(NAME, PHASES, fans_per_scale=6, creators=2, fund_tokens=1000)

SCENARIO = Scenario(
    name=NAME,
    summary="the service is frozen with SIGSTOP mid-burst, holding its locks, then thawed",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, *FAULT_CHECKERS),
    provokes=("tip_succeeded", *FAULT_PROVOKES),
    faults=tuple(phase.fault for phase in PHASES),
    not_run=phases_not_run(PHASES),
)
