"""stalled-lock-holder: the service is frozen (SIGSTOP) mid-burst with transactions open
and their row locks held, then thawed (SIGCONT).

The requests in flight wait; the database holds the frozen transactions' locks. After the
thaw every op must complete exactly once (or be resolved by its after-heal retry), and
nothing may be applied twice by a transaction that resumed after its client gave up.
"""

from __future__ import annotations

from harness.faults.spec import Fault, FaultKind
from scenarios._faults import Phase, phased_scenario

__all__ = ["PHASES", "SCENARIO"]

NAME = "stalled-lock-holder"
# Frozen for 1.5 s: long for a transaction, well inside the client's op timeout.
PHASES = (Phase(fault=Fault(kind=FaultKind.PAUSE_SERVICE), hold_ms=1500, tips_per_fan=4),)

SCENARIO = phased_scenario(
    NAME, "the service is frozen with SIGSTOP mid-burst, holding its locks, then thawed",
    PHASES, fans_per_scale=6, creators=2, fund_tokens=1000)
