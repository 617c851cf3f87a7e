"""Steps: what a scenario's generator yields and the runner executes, in order.

A scenario is a generator of steps, like a Jepsen generator with phases:

- ``Batch(ops)``: invoke every op concurrently (bounded by ``Limits.ops_in_flight_max``)
  and wait until each has completed (ok, fail or info);
- ``Settle()``: wait until the provider has no webhook delivery pending (quiescence);
- ``Pause(ms)``: let time pass (for delayed or replayed deliveries);
- ``SetPolicy(policy)``: change how the provider delivers webhooks from now on.

Steps are data; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.model import Op
from harness.provider.policy import DeliveryPolicy

__all__ = ["Batch", "Pause", "SetPolicy", "Settle", "Step"]

PAUSE_MS_MAX = 30_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """Ops invoked at once; the step ends when all have completed."""

    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        assert len(self.ops) >= 1
        assert len({op.id for op in self.ops}) == len(self.ops), "op ids repeat in a batch"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settle:
    """Wait until the provider has delivered (or given up on) every webhook."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    """Let time pass, so delayed and replayed deliveries happen in between."""

    ms: int

    def __post_init__(self) -> None:
        assert 0 <= self.ms <= PAUSE_MS_MAX, self.ms


@dataclass(frozen=True, slots=True, kw_only=True)
class SetPolicy:
    """Deliver webhooks by this policy from now on."""

    policy: DeliveryPolicy


Step = Batch | Settle | Pause | SetPolicy
