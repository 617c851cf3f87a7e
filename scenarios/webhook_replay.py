"""webhook-replay: every event comes back twice later, and once more signed too long ago.

The provider replays each event twice after it was acknowledged and re-sends one copy
with a timestamp past the tolerance window. Fans buy packages (one with the 5% bonus),
tip, and have their purchases refunded: in part, twice in part, or in full after
spending. Crediting per delivery breaks exactly_once_credit; a refund applied per
delivery (or as its cumulative amount each time) claws back twice (conservation,
refunds); accepting the stale copy breaks webhook_auth.

Only op generators and ``SCENARIO`` live here; the runner executes the steps.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping

from harness.model import Op
from harness.provider.policy import DeliveryPolicy
from harness.scenario import Scenario, ScenarioParams
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
)

__all__ = ["SCENARIO", "generate", "refund_plan", "users"]

NAME = "webhook-replay"
REPLAYS_COUNT = 2
STALE_COUNT = 1
REPLAY_DELAY_MS = 100
FANS_PER_SCALE_COUNT = 4
FUND_TOKENS = 1000
BONUS_PACKAGE_TOKENS = 5000  # 5% bonus: the clawback is a share of the minted tokens
TIP_TOKENS_MIN = 50
TIP_TOKENS_MAX = 300
PARTIAL_SHARE_MIN_PERCENT = 10
PARTIAL_SHARE_MAX_PERCENT = 30
PARTIAL_JITTER_CENTS_MAX = 99


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Four fans per unit of scale, one creator."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=1)


def refund_plan(rng: random.Random, ops: OpFactory,
                purchases: list[Op]) -> tuple[list[Op], list[Op]]:
    """Two rounds of refunds over ``purchases``: partial, partial twice, full, none.

    Returns:
        The first round's refunds and the second's (the second part of the twice-partial
        ones), each round at most one refund per purchase.
    """
    first: list[Op] = []
    second: list[Op] = []
    for index, purchase in enumerate(purchases):
        kind = index % 4
        if kind == 3:
            continue  # kept whole: replays of its success alone must change nothing
        if kind == 2:
            first.append(ops.refund(purchase, amount_cents=None))  # full, after spending
            continue
        price_cents = ops.price_cents(purchase)
        first.append(ops.refund(purchase, amount_cents=_partial_cents(rng, price_cents)))
        if kind == 1:
            second.append(ops.refund(purchase, amount_cents=_partial_cents(rng, price_cents)))
    return first, second


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund under replays, buy a bonus package, tip, refund in two rounds."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    yield SetPolicy(policy=DeliveryPolicy(replays_count=REPLAYS_COUNT, stale_count=STALE_COUNT,
                                          replay_delay_ms=REPLAY_DELAY_MS,
                                          seed=policy_seed(rng)))
    funded = yield from fund(ops, fans, FUND_TOKENS)
    bonus_package = ops.target.pricing.bonus_package or ops.package_for(BONUS_PACKAGE_TOKENS)
    bonus = yield from fund(ops, [rng.choice(fans)], bonus_package.tokens)
    tips = [ops.tip(sender=fan, recipient=creator,
                    amount_tokens=rng.randint(TIP_TOKENS_MIN, TIP_TOKENS_MAX)) for fan in fans]
    yield Batch(ops=tuple(tips))
    purchases = [funded[fan] for fan in fans] + list(bonus.values())
    first, second = refund_plan(rng, ops, purchases)
    yield Batch(ops=tuple(first))
    yield Settle()
    yield Batch(ops=tuple(second))
    yield from finish(ops, roles)


def _partial_cents(rng: random.Random, price_cents: int) -> int:
    """10-30% of the price plus a few cents (at most 2% more): two of them stay below it,
    so the provider never refuses one as larger than what is left of the charge."""
    percent = rng.randint(PARTIAL_SHARE_MIN_PERCENT, PARTIAL_SHARE_MAX_PERCENT)
    jitter_cents_max = min(PARTIAL_JITTER_CENTS_MAX, price_cents // 50)
    return max(1, price_cents * percent // 100 + rng.randint(0, jitter_cents_max))


SCENARIO = Scenario(
    name=NAME,
    summary="every webhook replayed twice and re-sent stale once, across partial refunds",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "refunds", "debt", "ledger_drift", "webhook_auth"),
    provokes=("replay_absorbed", "duplicate_delivery_absorbed", "stale_rejected",
              "partial_refund", "multiple_partial_refunds", "tip_succeeded"),
)
