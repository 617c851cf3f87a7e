"""crash-during-spends: the service is SIGKILLed while tips and purchases are in flight.

Fans are funded; then, per unit of scale, a burst of purchases and tips during which the
service is killed once a third of the burst has been answered (so answers, commits and
webhook acknowledgements are all in flight), and a second burst during which it is
killed the moment it acknowledges its first webhook; each time it is started again and
every keyed op of the burst re-sent with its own key. Nothing acknowledged may be lost or
applied twice, every acknowledged webhook's credit must be there, and the books must
balance.
"""

from __future__ import annotations

from harness.faults.spec import Fault, FaultKind
from scenarios._faults import Phase, phased_scenario

__all__ = ["PHASES", "SCENARIO"]

NAME = "crash-during-spends"
# Dead for 200 ms, then started again (its start-up adds its own time).
PHASES = (Phase(fault=Fault(kind=FaultKind.KILL_SERVICE), hold_ms=200, tips_per_fan=4,
                purchases=True),
          Phase(fault=Fault(kind=FaultKind.KILL_SERVICE), hold_ms=200, tips_per_fan=2,
                purchases=True, on_first_ack=True))

SCENARIO = phased_scenario(
    NAME, "the service is SIGKILLed mid-burst of tips and purchases, then restarted",
    PHASES, fans_per_scale=6, creators=3, fund_tokens=1000)
