"""Steps: what a scenario's generator yields and the runner executes, in order.

A scenario is a generator of steps, like a Jepsen generator with phases:

- ``Batch(ops)``: invoke every op concurrently (bounded by ``Limits.ops_in_flight_max``)
  and wait until each has completed (ok, fail or info);
- ``Settle()``: wait until the provider has no webhook delivery pending (quiescence);
- ``Pause(ms)``: let time pass (for delayed or replayed deliveries);
- ``SetPolicy(policy)``: change how the provider delivers webhooks from now on;
- ``Inject(fault, name, after_ops, after_acks, hold_ms)``: in the background, as Jepsen's
  nemesis runs beside the clients: once ``after_ops`` more ops have completed (and
  ``after_acks`` more webhook deliveries were acknowledged), inject the fault, hold
  it ``hold_ms``, heal it, then wait until the target answers again;
- ``Heal()``: wait until every fault injected so far has healed and the target recovered.

A fault triggers on a count of ops or acknowledgements, never on a clock, so it lands
among the same ops on a busy machine as on an idle one. The runner heals whatever is still
injected before the scenario's end (an implicit ``Heal``), so the end state is always read
after healing.

Steps are data; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.faults.spec import Fault
from harness.model import Op
from harness.provider.policy import DeliveryPolicy

__all__ = ["Batch", "Heal", "Inject", "Pause", "SetPolicy", "Settle", "Step"]

PAUSE_MS_MAX = 30_000
HOLD_MS_MAX = 120_000
AFTER_OPS_MAX = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """Ops invoked at once; the step ends when all have completed.

    ``window``: at most this many of them in flight (None: as many as the run's
    concurrency), so that a long batch goes out in waves, the later ones after a fault
    that landed on the earlier ones' answers.
    """

    ops: tuple[Op, ...]
    window: int | None = None

    def __post_init__(self) -> None:
        assert len(self.ops) >= 1
        assert self.window is None or self.window >= 1, self.window
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Inject:
    """Fault, hold, heal, in the background; the scenario's next steps run meanwhile."""

    fault: Fault
    name: str  # unique within the scenario: "f0"
    hold_ms: int
    after_ops: int = 0  # ops completed after this step before the fault lands (0: at once)
    # and webhook deliveries the target acknowledged after this step (0: none needed): a
    # fault may land just after an acknowledgement, while what it acknowledged commits.
    after_acks: int = 0

    def __post_init__(self) -> None:
        assert self.name, "a fault needs a name"
        assert 0 <= self.hold_ms <= HOLD_MS_MAX, self.hold_ms
        assert 0 <= self.after_ops <= AFTER_OPS_MAX, self.after_ops
        assert 0 <= self.after_acks <= AFTER_OPS_MAX, self.after_acks


@dataclass(frozen=True, slots=True, kw_only=True)
class Heal:
    """Wait until every injected fault has healed and the target answers again."""


Step = Batch | Settle | Pause | SetPolicy | Inject | Heal
