"""mid-call-refund: a call charging minute by minute while its funding purchase is refunded.

Each fan opens a call and charges it in bursts of consecutive minutes; in every burst one
minute is sent twice at once with two keys and one with the same key (a minute must be
charged once, however it is sent). Mid-call the fan's purchase is refunded in full: the
clawback lands while the call is open and leaves the fan in debt; the next minute must be
refused for funds (ending the call) and the one after refused as ended. Another fan ends
a call and charges after it. Charging a minute twice, or without locking the account
row, breaks calls, conservation and reconciliation.

Only op generators and ``SCENARIO`` live here; the runner executes the steps.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping

from harness.model import F, Op
from harness.provider.policy import DeliveryPolicy
from harness.scenario import NotRun, Scenario, ScenarioParams
from harness.schedule import Batch, SetPolicy, Settle, Step
from scenarios._common import (
    BASE_CHECKERS,
    OpFactory,
    creators_of,
    fans_of,
    finish,
    fund,
    policy_seed,
    roster,
    scaled,
)

__all__ = ["SCENARIO", "generate", "minute_burst", "not_run", "users"]

NAME = "mid-call-refund"
FANS_PER_SCALE_COUNT = 2
FUND_TOKENS = 500
RATE_TOKENS_MIN = 10
RATE_TOKENS_MAX = 25
MINUTES_PER_BURST_COUNT = 4
BURSTS_BEFORE_REFUND_COUNT = 3  # at most 3 * 4 * 25 = 300 of the 500 spent before
MINUTES_BESIDE_REFUND_COUNT = 2
SHORT_CALL_MINUTES_COUNT = 2


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Two fans per unit of scale, plus one who ends a call; one creator."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale + 1, creators=1)


def not_run(params: ScenarioParams) -> tuple[NotRun, ...]:
    """No call charges: nothing to run. No key on them: no same-key retries. No end: no
    charge after the end."""
    target = params.target
    if not target.offers(F.CALL_CHARGE):
        return (NotRun(part=None, reason=target.missing_reason(F.CALL_CHARGE)),)
    parts: list[NotRun] = []
    if not target.keyed(F.CALL_CHARGE):
        parts.append(NotRun(part="call charges retried with the same key",
                            reason=target.keyless_reason(F.CALL_CHARGE),
                            provokes=("retry_with_same_key", "idempotent_replay"),
                            checkers=("idempotency",)))
    if not target.offers(F.CALL_END):
        parts.append(NotRun(part="a charge after the call ended",
                            reason=target.missing_reason(F.CALL_END),
                            provokes=("charge_after_end_rejected",)))
    return tuple(parts)


def minute_burst(rng: random.Random, ops: OpFactory, *, opened: Op,
                 first_minute: int) -> list[Op]:
    """Consecutive minutes charged at once, one of them sent twice with two keys and one
    sent twice with one key."""
    burst = [ops.call_charge(opened, minute=minute)
             for minute in range(first_minute, first_minute + MINUTES_PER_BURST_COUNT)]
    twice, retried = rng.sample(burst, 2)
    twice_minute = twice.value["minute"]
    assert isinstance(twice_minute, int)
    burst.append(ops.call_charge(opened, minute=twice_minute))  # another key, same minute
    if ops.keyed(F.CALL_CHARGE):
        burst.append(ops.again(retried))  # the same key and body
    rng.shuffle(burst)
    return burst


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund, open calls, charge bursts, refund mid-call, charge past the funds and end."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    callers, ender = fans[:-1], fans[-1]
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    funded = yield from fund(ops, fans, FUND_TOKENS)
    funded_tokens = ops.package_of(funded[fans[0]]).minted_tokens
    calls = {fan: ops.call_open(user=fan, creator=creator, rate_tokens_per_minute=scaled(
                 rng.randint(RATE_TOKENS_MIN, RATE_TOKENS_MAX), funded_tokens=funded_tokens,
                 nominal_tokens=FUND_TOKENS))
             for fan in fans}
    if ops.target.offers(F.CALL_OPEN):
        yield Batch(ops=tuple(calls.values()))
    minute = 1
    for burst_index in range(BURSTS_BEFORE_REFUND_COUNT):
        burst = [op for fan in callers
                 for op in minute_burst(rng, ops, opened=calls[fan], first_minute=minute)]
        yield Batch(ops=tuple(burst))
        if burst_index == 0 and ops.keyed(F.CALL_CHARGE):
            # A late retry, after the original answered: the same answer, charged once.
            yield Batch(ops=(ops.again(rng.choice(burst)),))
        minute += MINUTES_PER_BURST_COUNT
    # The refund races the next minutes; its clawback lands while the calls are open.
    beside = [ops.call_charge(calls[fan], minute=minute + offset) for fan in callers
              for offset in range(MINUTES_BESIDE_REFUND_COUNT)]
    refunds = [ops.refund(funded[fan], amount_cents=None) for fan in callers]
    yield Batch(ops=(*refunds, *beside))
    yield Settle()
    minute += MINUTES_BESIDE_REFUND_COUNT
    # Balance zero, debt left: the next minute ends the call, the one after is refused.
    for late_minute in (minute, minute + 1):
        yield Batch(ops=tuple(ops.call_charge(calls[fan], minute=late_minute)
                              for fan in callers))
    yield from _short_call(ops, calls[ender])
    yield from finish(ops, roles)


def _short_call(ops: OpFactory, opened: Op) -> Iterator[Step]:
    """A call charged for two minutes, ended by the fan, then charged once more."""
    for minute in range(1, SHORT_CALL_MINUTES_COUNT + 1):
        yield Batch(ops=(ops.call_charge(opened, minute=minute),))
    if not ops.target.offers(F.CALL_END):
        return
    yield Batch(ops=(ops.call_end(opened),))
    yield Batch(ops=(ops.call_charge(opened, minute=SHORT_CALL_MINUTES_COUNT + 1),))


SCENARIO = Scenario(
    name=NAME,
    summary="calls charged minute by minute, minutes sent twice, purchase refunded mid-call",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "calls", "refunds", "debt", "ledger_drift", "idempotency"),
    provokes=("call_charged", "duplicate_minute_absorbed", "refund_mid_call",
              "refund_into_debt", "call_ended_for_funds", "charge_after_end_rejected",
              "retry_with_same_key", "idempotent_replay"),
    not_run=not_run,
)
