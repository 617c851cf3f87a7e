"""partial-refunds: several partial refunds of each purchase, amounts drawn from the seed.

Every purchase (one of them a bonus package, where the clawback is a share of the minted
tokens, not of the price) is refunded in three rounds of seeded partial amounts, with
tips in between; one is then refunded for the rest. Each ``charge.refunded`` carries the
cumulative amount: a refund that claws back the whole purchase, or the cumulative share
again on every event, breaks refunds, conservation and reconciliation.

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

__all__ = ["SCENARIO", "generate", "partial_round", "users"]

NAME = "partial-refunds"
FANS_PER_SCALE_COUNT = 3
FUND_TOKENS = 1000
BONUS_PACKAGE_TOKENS = 5000
REFUND_ROUNDS_COUNT = 3
# Each round refunds 5–20% of the price: enough to move tokens, never all of it in three.
ROUND_SHARE_PERCENT_MIN = 5
ROUND_SHARE_PERCENT_MAX = 20
TIP_TOKENS_MIN = 5
TIP_TOKENS_MAX = 60


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Three fans per unit of scale, one creator."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=1)


def partial_round(rng: random.Random, ops: OpFactory, purchases: list[Op]) -> list[Op]:
    """One partial refund of each purchase, of a seeded number of cents."""
    refunds = []
    for purchase in purchases:
        price_cents = ops.price_cents(purchase)
        cents = rng.randint(price_cents * ROUND_SHARE_PERCENT_MIN // 100,
                            price_cents * ROUND_SHARE_PERCENT_MAX // 100)
        refunds.append(ops.refund(purchase, amount_cents=cents))
    rng.shuffle(refunds)
    return refunds


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund (plus one bonus package), three rounds of partial refunds and tips, the rest."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    funded = yield from fund(ops, fans, FUND_TOKENS)
    bonus_package = ops.target.pricing.bonus_package or ops.package_for(BONUS_PACKAGE_TOKENS)
    bonus = yield from fund(ops, [rng.choice(fans)], bonus_package.tokens)
    purchases = [funded[fan] for fan in fans] + list(bonus.values())
    for _ in range(REFUND_ROUNDS_COUNT):
        tips = [ops.tip(sender=fan, recipient=creator,
                        amount_tokens=rng.randint(TIP_TOKENS_MIN, TIP_TOKENS_MAX))
                for fan in fans]
        yield Batch(ops=(*partial_round(rng, ops, purchases), *tips))
        yield Settle()
    yield Batch(ops=(ops.refund(rng.choice(purchases), amount_cents=None),))
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="three seeded partial refunds per purchase, a bonus package, then the rest",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "refunds", "debt", "ledger_drift"),
    provokes=("partial_refund", "multiple_partial_refunds", "tip_succeeded"),
)
