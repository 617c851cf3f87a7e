"""parallel-spend: one sender spends more than it holds, many times at once.

Each fan buys 500 tokens and fires a burst of concurrent tips of 300 and 100 (more than
the balance, so some must be refused for funds), then a burst of concurrent call charges
of different minutes mixed with tips. A tip that reads, checks and writes its balance in
application code loses updates here (conservation, reconciliation); a call charge that
does not lock the account row overspends: where the schema forbids a negative balance that
surfaces as 5xx answers (errors), where it does not, as a balance below zero (non_negative).

Only op generators and ``SCENARIO`` live here; the runner executes the steps.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping

from harness.model import F, Op
from harness.provider.policy import DeliveryPolicy
from harness.scenario import NotRun, Scenario, ScenarioParams
from harness.schedule import Batch, SetPolicy, Step
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

__all__ = ["SCENARIO", "charge_burst", "generate", "not_run", "tip_burst", "users"]

NAME = "parallel-spend"
FUND_TOKENS = 500
TIP_AMOUNTS_TOKENS = (300, 100)
TIPS_PER_BURST_COUNT = 8  # 8 tips of at least 100 from 500: several must be refused
CALL_RATE_TOKENS = 100
CHARGES_PER_BURST_COUNT = 8  # 800 tokens of minutes against 500: the call ends for funds
TIPS_BESIDE_CHARGES_COUNT = 2
FANS_COUNT = 3  # 3 * (8 tips + 1 read) and 3 * (8 charges + 2 tips) both stay within 32
ROUNDS_PER_SCALE_COUNT = 2


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Three fans and two creators: one burst of all three fits the runner's window."""
    del params  # scale adds rounds, not fans, so every burst stays concurrent
    return roster(fans=FANS_COUNT, creators=2)


def not_run(params: ScenarioParams) -> tuple[NotRun, ...]:
    """Without call charges, the call bursts are left out."""
    target = params.target
    if target.offers(F.CALL_CHARGE):
        return ()
    return (NotRun(part="call charges racing tips", reason=target.missing_reason(F.CALL_CHARGE),
                   provokes=("call_charged", "call_ended_for_funds"), checkers=("calls",)),)


def tip_burst(rng: random.Random, ops: OpFactory, *, sender: str,
              creators: list[str], funded_tokens: int = FUND_TOKENS) -> list[Op]:
    """Concurrent tips of 3/5 and 1/5 of the fund from one sender, summing to well over it."""
    amounts = [scaled(TIP_AMOUNTS_TOKENS[i % 2], funded_tokens=funded_tokens,
                      nominal_tokens=FUND_TOKENS) for i in range(TIPS_PER_BURST_COUNT)]
    rng.shuffle(amounts)
    return [ops.tip(sender=sender, recipient=rng.choice(creators), amount_tokens=amount)
            for amount in amounts]


def charge_burst(rng: random.Random, ops: OpFactory, *, opened: Op,
                 creators: list[str], funded_tokens: int = FUND_TOKENS) -> list[Op]:
    """Concurrent charges of different minutes of one call, plus tips from the same fan."""
    sender = opened.value["user"]
    assert isinstance(sender, str)
    burst = [ops.call_charge(opened, minute=minute)
             for minute in range(1, CHARGES_PER_BURST_COUNT + 1)]
    tip_tokens = scaled(100, funded_tokens=funded_tokens, nominal_tokens=FUND_TOKENS)
    burst += [ops.tip(sender=sender, recipient=rng.choice(creators), amount_tokens=tip_tokens)
              for _ in range(TIPS_BESIDE_CHARGES_COUNT)]
    rng.shuffle(burst)
    return burst


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund, burst tips; fund again, burst call charges; two rounds per unit of scale.

    Each burst keeps every fan's ops next to each other, so they are in flight together
    even when the runner bounds how many ops run at once.
    """
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creators = fans_of(roles), creators_of(roles)
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    funded_tokens = ops.package_for(FUND_TOKENS).minted_tokens
    rate_tokens = scaled(CALL_RATE_TOKENS, funded_tokens=funded_tokens,
                         nominal_tokens=FUND_TOKENS)
    calling = ops.target.offers(F.CALL_CHARGE)
    for _ in range(ROUNDS_PER_SCALE_COUNT * params.scale):
        yield from fund(ops, fans, FUND_TOKENS)
        burst: list[Op] = []
        for fan in fans:
            burst += tip_burst(rng, ops, sender=fan, creators=creators,
                               funded_tokens=funded_tokens)
            burst.append(ops.read_balance(fan))  # a read mid-race: never negative
        yield Batch(ops=tuple(burst))
        if not calling:
            continue
        yield from fund(ops, fans, FUND_TOKENS)
        calls = [ops.call_open(user=fan, creator=rng.choice(creators),
                               rate_tokens_per_minute=rate_tokens) for fan in fans]
        if ops.target.offers(F.CALL_OPEN):
            yield Batch(ops=tuple(calls))
        burst = [op for opened in calls
                 for op in charge_burst(rng, ops, opened=opened, creators=creators,
                                        funded_tokens=funded_tokens)]
        yield Batch(ops=tuple(burst))
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="fans with 500 tokens fire concurrent tips and call charges worth far more",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "calls"),
    provokes=("tip_succeeded", "tip_refused_for_funds", "spend_race", "call_charged",
              "call_ended_for_funds"),
    not_run=not_run,
)
