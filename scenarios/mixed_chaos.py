"""mixed-chaos: a seeded mix of every other scenario's moves under a chaotic delivery policy.

The provider duplicates, replays, delays, drops-then-retries, maybe reorders, and forges
every event and re-sends it stale. After funding, a fixed opening (a retry storm with a
late retry, a spend race, a call minute, forged webhooks, a partial refund) makes the
coverage certain; then the seed picks further moves from the menu: spend races, mutual
tips, retry storms, partial refunds, disputes, call bursts with duplicated minutes,
forgeries, reads. Where the run can inject them, faults land mid-burst among the moves
(the service killed, the harness's link to it slowed, its closes delayed, its requests
timed out), each healed and followed by same-key retries of the burst. Open disputes are
closed before the end. Every checker that applies is expected to hold.

Only op generators and ``SCENARIO`` live here; the runner executes the steps.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from harness.faults.spec import Fault, FaultKind, Link
from harness.model import DeliveryVariant, F, Op
from harness.provider.policy import DeliveryPolicy
from harness.scenario import NotRun, Scenario, ScenarioParams
from harness.schedule import Batch, Pause, SetPolicy, Settle, Step
from scenarios._common import (
    BASE_CHECKERS,
    EVENT_REFUNDED,
    EVENT_SUCCEEDED,
    OpFactory,
    creators_of,
    fans_of,
    finish,
    fund,
    policy_seed,
    roster,
)
from scenarios._faults import FAULT_PROVOKES, faulted_phase

__all__ = ["FAULTS", "MOVES", "SCENARIO", "chaotic_policy", "generate", "not_run", "users"]

NAME = "mixed-chaos"
FANS_PER_SCALE_COUNT = 4
FAN_FUND_TOKENS = 1000
CREATOR_FUND_TOKENS = 500
MOVES_PER_SCALE_COUNT = 6
TIP_TOKENS_MAX = 40
CALL_RATE_TOKENS_MAX = 15
CALL_BURST_MINUTES_COUNT = 3
REFUND_SHARE_PERCENT_MAX = 15
PAUSE_MS_MAX = 150  # lets replays and delayed deliveries land between moves
HOLD_MS_MAX = 500
POLICY_FORGERIES = (DeliveryVariant.UNSIGNED, DeliveryVariant.WRONG_SECRET,
                    DeliveryVariant.TAMPERED)
# (fault, hold ms): each lands mid-burst among the moves, where the run can inject it.
FAULTS = (
    (Fault(kind=FaultKind.KILL_SERVICE), 200),
    (Fault(kind=FaultKind.LATENCY, link=Link.SERVICE,
           attributes={"latency": 100, "jitter": 50}), 1000),
    (Fault(kind=FaultKind.SLOW_CLOSE, link=Link.SERVICE, attributes={"delay": 200}), 800),
    (Fault(kind=FaultKind.TIMEOUT, link=Link.SERVICE, attributes={"timeout": 200}), 500),
)


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Four fans per unit of scale, two creators (who also tip each other)."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=2)


def chaotic_policy(rng: random.Random) -> DeliveryPolicy:
    """Duplicates, replays, delays, one dropped answer per event, a stale copy, a forgery."""
    return DeliveryPolicy(duplicates_count=1, replays_count=1, replay_delay_ms=100,
                          delay_ms_max=50, drop_count=1, stale_count=1,
                          reorder=rng.random() < 0.5, hold_ms_max=HOLD_MS_MAX,
                          forgeries=(rng.choice(POLICY_FORGERIES),), seed=policy_seed(rng))


@dataclass(slots=True, kw_only=True)
class _World:
    """What the moves need to know: who exists, what can still be refunded or charged."""

    rng: random.Random
    ops: OpFactory
    fans: list[str]
    creators: list[str]
    refundable_cents: dict[str, int] = field(default_factory=dict)  # purchase name -> cents
    purchases: dict[str, Op] = field(default_factory=dict)  # purchase name -> op
    disputes_open: list[Op] = field(default_factory=list)
    calls: list[tuple[Op, int]] = field(default_factory=list)  # call, next minute

    def tip(self, sender: str, recipient: str) -> Op:
        return self.ops.tip(sender=sender, recipient=recipient,
                            amount_tokens=self.rng.randint(1, TIP_TOKENS_MAX))


def spend_race(world: _World) -> list[Op]:
    """Two fans each send three tips at once."""
    burst: list[Op] = []
    for fan in world.rng.sample(world.fans, 2):
        burst += [world.tip(fan, world.rng.choice(world.creators)) for _ in range(3)]
    return burst


def mutual_tips(world: _World) -> list[Op]:
    """The creators tip each other, both ways, twice."""
    first, second = world.creators[0], world.creators[1]
    return [op for _ in range(2) for op in (world.tip(first, second), world.tip(second, first))]


def retry_storm(world: _World) -> list[Op]:
    """One tip sent three times at once with one key (a spend race where tips carry none)."""
    if not world.ops.keyed(F.TIP):
        return spend_race(world)
    original = world.tip(world.rng.choice(world.fans), world.rng.choice(world.creators))
    return [original, world.ops.again(original), world.ops.again(original)]


def partial_refund(world: _World) -> list[Op]:
    """A partial refund of a purchase that is neither disputed nor refunded out."""
    names = sorted(name for name, cents in world.refundable_cents.items() if cents >= 100)
    if not names:
        return spend_race(world)
    name = world.rng.choice(names)
    cents_max = min(world.refundable_cents[name],
                    world.ops.price_cents(world.purchases[name]) * REFUND_SHARE_PERCENT_MAX // 100)
    cents = world.rng.randint(1, cents_max)
    world.refundable_cents[name] -= cents
    return [world.ops.refund(world.purchases[name], amount_cents=cents)]


def dispute(world: _World) -> list[Op]:
    """Open a dispute on an untouched purchase; it is closed, won or lost, before the end."""
    names = sorted(name for name, cents in world.refundable_cents.items()
                   if cents == world.ops.price_cents(world.purchases[name]))
    if not names:
        return spend_race(world)
    name = world.rng.choice(names)
    del world.refundable_cents[name]  # a disputed charge is never refunded as well
    opened = world.ops.dispute_open(world.purchases[name])
    world.disputes_open.append(opened)
    return [opened]


def call_burst(world: _World) -> list[Op]:
    """Open a call, or charge three minutes of an open one with one minute sent twice."""
    if not world.ops.target.offers(F.CALL_CHARGE):
        return spend_race(world)
    if not world.calls or world.rng.random() < 0.3:
        opened = _open_call(world)
        if world.ops.target.offers(F.CALL_OPEN):
            return [opened]
        return _charge_minutes(world, len(world.calls) - 1)  # a call the target never opens
    return _charge_minutes(world, world.rng.randrange(len(world.calls)))


def forgery(world: _World) -> list[Op]:
    """Forged webhooks: a refund of a real purchase and a success of an unknown intent."""
    variants = [v for v in DeliveryVariant if v.forged]
    purchase = world.purchases[world.rng.choice(sorted(world.purchases))]
    return [world.ops.webhook(purchase, event_type=EVENT_REFUNDED,
                              variant=world.rng.choice(variants)),
            world.ops.webhook(None, event_type=EVENT_SUCCEEDED,
                              variant=world.rng.choice(variants))]


def reads(world: _World) -> list[Op]:
    """Reads of a few accounts, taken while deliveries are still landing."""
    return [world.ops.read_balance(user)
            for user in world.rng.sample(world.fans + world.creators, 3)]


Move = Callable[[_World], list[Op]]
MOVES: dict[str, Move] = {
    "spend_race": spend_race,
    "mutual_tips": mutual_tips,
    "retry_storm": retry_storm,
    "partial_refund": partial_refund,
    "dispute": dispute,
    "call_burst": call_burst,
    "forgery": forgery,
    "reads": reads,
}


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund under chaos, play the opening, then seeded moves; close disputes; finish."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    world = _World(rng=rng, ops=ops, fans=fans_of(roles), creators=creators_of(roles))
    yield SetPolicy(policy=chaotic_policy(rng))
    for group, amount_tokens in ((world.fans, FAN_FUND_TOKENS),
                                 (world.creators, CREATOR_FUND_TOKENS)):
        bought = yield from fund(ops, group, amount_tokens)
        for purchase in bought.values():
            name = str(purchase.value["purchase"])
            world.purchases[name] = purchase
            world.refundable_cents[name] = ops.price_cents(purchase)
    yield from _opening(world)
    names = sorted(MOVES)
    for _ in range(MOVES_PER_SCALE_COUNT * params.scale):
        yield Batch(ops=tuple(MOVES[rng.choice(names)](world)))
        yield Pause(ms=rng.randint(0, PAUSE_MS_MAX))
    yield from _faulted(world)
    if world.disputes_open:
        yield Settle()  # the openings land before their closings
        yield Batch(ops=tuple(ops.dispute_close(opened, outcome=rng.choice(("won", "lost")))
                              for opened in world.disputes_open))
    yield from finish(ops, roles)


def _opening(world: _World) -> Iterator[Step]:
    """The moves every seed plays first, so what the scenario provokes surely happens."""
    storm = retry_storm(world) if world.ops.keyed(F.TIP) else _purchase_storm(world)
    if storm:
        yield Batch(ops=tuple(storm))
        yield Batch(ops=(world.ops.again(storm[0]),))  # a late retry: the same answer
    yield Batch(ops=tuple(spend_race(world) + mutual_tips(world)))
    if world.ops.target.offers(F.CALL_CHARGE):
        opened = _open_call(world)
        if world.ops.target.offers(F.CALL_OPEN):
            yield Batch(ops=(opened,))
        yield Batch(ops=tuple(_charge_minutes(world, 0)))
    yield Batch(ops=tuple(forgery(world)))
    yield Batch(ops=tuple(partial_refund(world)))  # so the refunds checker always has one


def _faulted(world: _World) -> Iterator[Step]:
    """Each fault the run can inject, mid-burst of spend races and mutual tips."""
    target = world.ops.target
    for index, (fault, hold_ms) in enumerate(f for f in FAULTS if target.can(f[0])):
        burst = spend_race(world) + mutual_tips(world)
        if not world.ops.keyed(F.TIP):
            break  # the after-heal retries need keyed tips (declared in not_run)
        yield from faulted_phase(world.ops, fault, name=f"f{index}", burst=burst,
                                 hold_ms=hold_ms, after_ops=len(burst) // 3)


def _purchase_storm(world: _World) -> list[Op]:
    """Where tips carry no key: the smallest package bought three times at once, one key."""
    if not world.ops.keyed(F.PURCHASE):
        return []
    smallest = world.ops.package_for(1)
    original = world.ops.purchase(user=world.rng.choice(world.fans),
                                  amount_tokens=smallest.tokens)
    return [original, world.ops.again(original), world.ops.again(original)]


def _open_call(world: _World) -> Op:
    opened = world.ops.call_open(user=world.rng.choice(world.fans),
                                 creator=world.rng.choice(world.creators),
                                 rate_tokens_per_minute=world.rng.randint(
                                     1, CALL_RATE_TOKENS_MAX))
    world.calls.append((opened, 1))
    return opened


def _charge_minutes(world: _World, call_index: int) -> list[Op]:
    opened, minute = world.calls[call_index]
    world.calls[call_index] = (opened, minute + CALL_BURST_MINUTES_COUNT)
    minutes = range(minute, minute + CALL_BURST_MINUTES_COUNT)
    burst = [world.ops.call_charge(opened, minute=m) for m in minutes]
    burst.append(world.ops.call_charge(opened, minute=world.rng.choice(minutes)))
    return burst


def not_run(params: ScenarioParams) -> tuple[NotRun, ...]:
    """Tip storms need keyed tips; call moves need call charges."""
    target = params.target
    parts: list[NotRun] = []
    if not target.keyed(F.TIP):
        # The opening's storm then retries a purchase instead, if purchases carry a key.
        storm_left = target.keyed(F.PURCHASE)
        parts.append(NotRun(part="tips retried with the same key",
                            reason=target.keyless_reason(F.TIP) if target.offers(F.TIP)
                            else target.missing_reason(F.TIP),
                            provokes=() if storm_left else
                            ("retry_with_same_key", "idempotent_replay"),
                            checkers=() if storm_left else ("idempotency",)))
    if not target.offers(F.CALL_CHARGE):
        parts.append(NotRun(part="call charges", reason=target.missing_reason(F.CALL_CHARGE),
                            provokes=("call_charged",), checkers=("calls",)))
    missing = [fault for fault, _ in FAULTS if not target.can(fault)]
    if len(missing) == len(FAULTS) or not target.keyed(F.TIP):
        if len(missing) == len(FAULTS):
            reason = target.fault_reason(missing[0])
        else:  # the after-heal retries need keyed tips
            reason = target.keyless_reason(F.TIP) if target.offers(F.TIP) \
                else target.missing_reason(F.TIP)
        parts.append(NotRun(part="faults among the moves", reason=reason,
                            provokes=FAULT_PROVOKES, checkers=("durability",)))
    else:
        parts += [NotRun(part=fault.describe(), reason=target.fault_reason(fault))
                  for fault in missing]
    return tuple(parts)


SCENARIO = Scenario(
    name=NAME,
    summary="a seeded mix of every move under duplicates, replays, drops, forgeries",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "idempotency", "refunds", "debt", "ledger_drift", "calls",
              "webhook_auth", "durability"),
    provokes=("tip_succeeded", "spend_race", "mutual_tips", "retry_with_same_key",
              "idempotent_replay", "call_charged", "duplicate_delivery_absorbed",
              "replay_absorbed", "stale_rejected", "forgery_rejected", *FAULT_PROVOKES),
    faults=tuple(fault for fault, _ in FAULTS),
    not_run=not_run,
)
