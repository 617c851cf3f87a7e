"""What the fault scenarios share: a faulted phase, and what is not run without a nemesis.

A faulted phase is Jepsen's nemesis pattern made into steps: schedule a fault to land once
``after_ops`` ops of the burst have been answered (so some are acknowledged and the rest
in flight when it lands, on a busy machine as on an idle one), run the burst, wait until
it has healed and the target answers again, then send every keyed op of the burst once
more with its own key. Those after-heal retries are the final read of Jepsen's set
checker: an acknowledged op must be answered with its first answer, an indeterminate one
is resolved, and the ``durability`` checker counts what was lost, recovered or applied
twice.

Nothing here draws randomness or does I/O.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from harness.faults.spec import Fault
from harness.model import F, Op
from harness.provider.policy import DeliveryPolicy
from harness.scenario import NotRun, Scenario, ScenarioParams, StepGenerator
from harness.schedule import Batch, Heal, Inject, SetPolicy, Step
from scenarios._common import (
    BASE_CHECKERS,
    OpFactory,
    creators_of,
    fans_of,
    finish,
    fund,
    policy_seed,
    roster,
)

__all__ = ["FAULT_CHECKERS", "FAULT_PROVOKES", "Phase", "faulted_phase", "faults_not_run",
           "keyed_tips_not_run", "phased_scenario", "phases_not_run", "spend_burst"]

# Every fault scenario judges these beside BASE_CHECKERS.
FAULT_CHECKERS = ("durability", "idempotency")
FAULT_PROVOKES = ("fault_healed", "op_during_fault")


def faulted_phase(ops: OpFactory, fault: Fault, *, name: str, burst: Sequence[Op],
                  hold_ms: int, after_ops: int, after_acks: int = 0) -> Iterator[Step]:
    """Fault → burst → heal → every keyed op of the burst re-sent with its key.

    A fault landing on ``after_ops`` answers sends the burst in waves of that many, so
    however fast the target answers, the ops after the first wave are in flight when the
    fault lands or sent while it is in force (the driver holds them while it lands).
    """
    assert burst, "a faulted phase needs ops in flight"
    assert after_ops < len(burst), "the fault must land while the burst is running"
    yield Inject(fault=fault, name=name, hold_ms=hold_ms, after_ops=after_ops,
                 after_acks=after_acks)
    yield Batch(ops=tuple(burst), window=after_ops or None)
    yield Heal()
    retries = tuple(ops.again(op) for op in burst if op.idempotency_key is not None)
    if retries:
        yield Batch(ops=retries)


def faults_not_run(params: ScenarioParams, faults: Sequence[Fault]) -> tuple[NotRun, ...]:
    """Each fault the run cannot inject is a part not run; all of them: the whole scenario."""
    target = params.target
    missing = [fault for fault in faults if not target.can(fault)]
    if len(missing) == len(faults):
        reasons = "; ".join(dict.fromkeys(target.fault_reason(fault) for fault in missing))
        return (NotRun(part=None, reason=f"{missing[0].describe()}: {reasons}"),)
    return tuple(NotRun(part=fault.describe(), reason=target.fault_reason(fault))
                 for fault in missing)


@dataclass(frozen=True, slots=True, kw_only=True)
class Phase:
    """One faulted burst: the fault, how long it is held, and what the burst holds."""

    fault: Fault
    hold_ms: int
    tips_per_fan: int = 3
    purchases: bool = False  # a purchase per fan first, whose webhooks land in the burst
    # Land on the burst's first acknowledged webhook instead of a third of its answers:
    # the moment a service that acknowledges before it commits has not committed yet.
    on_first_ack: bool = False

    def __post_init__(self) -> None:
        assert self.purchases or not self.on_first_ack, "acknowledgements need purchases"


def phased_scenario(name: str, summary: str, phases: Sequence[Phase], *,
                    fans_per_scale: int, creators: int, fund_tokens: int) -> Scenario:
    """A scenario made of faulted phases: fund the fans, then per unit of scale every
    phase the run can inject, each a ``faulted_phase``; judged by the base and fault
    checkers, not run where none of its faults can be injected (``phases_not_run``)."""
    users, generate = _phased(name, phases, fans_per_scale=fans_per_scale,
                              creators=creators, fund_tokens=fund_tokens)
    return Scenario(name=name, summary=summary, users=users, generator=generate,
                    checkers=(*BASE_CHECKERS, *FAULT_CHECKERS),
                    provokes=("tip_succeeded", *FAULT_PROVOKES),
                    faults=tuple(phase.fault for phase in phases),
                    not_run=phases_not_run(phases))


def _phased(name: str, phases: Sequence[Phase], *, fans_per_scale: int, creators: int,
            fund_tokens: int) -> tuple[Callable[[ScenarioParams], Mapping[str, str]],
                                       StepGenerator]:
    assert phases, "a phased scenario needs a phase"

    def users(params: ScenarioParams) -> Mapping[str, str]:
        return roster(fans=fans_per_scale * params.scale, creators=creators)

    def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
        ops = OpFactory.of(name, params)
        roles = users(params)
        fans, creators_ = fans_of(roles), creators_of(roles)
        yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
        yield from fund(ops, fans, fund_tokens)
        index = 0
        for _ in range(params.scale):
            for phase in phases:
                if not params.target.can(phase.fault):
                    continue  # declared by faults_not_run
                burst = spend_burst(rng, ops, fans=fans, creators=creators_,
                                    tips_per_fan=phase.tips_per_fan, purchases=phase.purchases)
                yield from faulted_phase(
                    ops, phase.fault, name=f"f{index}", burst=burst, hold_ms=phase.hold_ms,
                    after_ops=0 if phase.on_first_ack else len(burst) // 3,
                    after_acks=1 if phase.on_first_ack else 0)
                index += 1
        yield from finish(ops, roles)

    return users, generate


def phases_not_run(phases: Sequence[Phase]) -> Callable[[ScenarioParams], tuple[NotRun, ...]]:
    """The ``not_run`` of a phased scenario: faults it cannot inject, and keyless tips."""
    faults = [phase.fault for phase in phases]

    def not_run(params: ScenarioParams) -> tuple[NotRun, ...]:
        return keyed_tips_not_run(params) or faults_not_run(params, faults)

    return not_run

TIP_TOKENS_MAX = 40


def spend_burst(rng: random.Random, ops: OpFactory, *, fans: Sequence[str],
                creators: Sequence[str], tips_per_fan: int,
                purchases: bool = False) -> list[Op]:
    """Each fan's tips side by side (and a purchase first, whose webhook then lands
    during the burst): ops of one sender race each other and the fault."""
    burst: list[Op] = []
    if purchases and ops.keyed(F.PURCHASE):
        smallest = ops.package_for(1)
        burst += [ops.purchase(user=fan, amount_tokens=smallest.tokens) for fan in fans]
    for fan in fans:
        burst += [ops.tip(sender=fan, recipient=rng.choice(list(creators)),
                          amount_tokens=rng.randint(1, TIP_TOKENS_MAX))
                  for _ in range(tips_per_fan)]
    return burst


def keyed_tips_not_run(params: ScenarioParams) -> tuple[NotRun, ...]:
    """A fault scenario re-sends its tips after the heal: it needs tips with a key."""
    target = params.target
    if target.keyed(F.TIP):
        return ()
    reason = target.keyless_reason(F.TIP) if target.offers(F.TIP) \
        else target.missing_reason(F.TIP)
    return (NotRun(part=None, reason=f"the after-heal retries need keyed tips: {reason}"),)
