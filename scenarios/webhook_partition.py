"""webhook-partition: the provider cannot reach the service for a while, then can again.

Per unit of scale: fans buy and tip while the webhooks link is down (connections refused
and cut), then while every webhook connection is reset, then while webhook requests hang
and time out. The provider retries with backoff; after each heal its retries must land,
every succeeded payment credited exactly once, and the end state agree with the provider.
"""

from __future__ import annotations

from harness.faults.spec import Fault, FaultKind, Link
from scenarios._faults import Phase, phased_scenario

__all__ = ["PHASES", "SCENARIO"]

NAME = "webhook-partition"
# Each outage stays well inside the provider's retry horizon (8 attempts, about 5 s).
PHASES = (
    Phase(fault=Fault(kind=FaultKind.DOWN, link=Link.WEBHOOKS), hold_ms=1500, purchases=True),
    Phase(fault=Fault(kind=FaultKind.RESET_PEER, link=Link.WEBHOOKS,
                      attributes={"timeout": 0}), hold_ms=800, purchases=True),
    Phase(fault=Fault(kind=FaultKind.TIMEOUT, link=Link.WEBHOOKS,
                      attributes={"timeout": 300}), hold_ms=800, purchases=True),
)

SCENARIO = phased_scenario(
    NAME, "the provider cannot reach the service for a while; its retries land after",
    PHASES, fans_per_scale=4, creators=2, fund_tokens=1000)
