"""refund-after-spend: a purchase refunded after its tokens were tipped away.

Fans buy, tip most of it to a creator, and then the purchase is refunded in full (or, for
every other fan, in part): the clawback exceeds the balance, so the account must go to
zero with the shortfall recorded as debt, and every token moved must have a ledger
entry. A refund that zeroes the balance without recording the rest breaks conservation
and ledger_drift. A fan in debt then tries to tip (refused) and one buys again, which
pays the debt first.

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
    scaled,
)

__all__ = ["SCENARIO", "clawbacks", "generate", "users"]

NAME = "refund-after-spend"
FANS_PER_SCALE_COUNT = 4
FUND_TOKENS = 500
SPEND_TOKENS_MIN = 300
SPEND_TOKENS_MAX = 450  # the full refund of 500 always exceeds what is left
PARTIAL_SHARE_PERCENT_MIN = 90  # 90% of 500 is 450 tokens, more than is left
PARTIAL_SHARE_PERCENT_MAX = 99
AFTER_DEBT_TIP_TOKENS = 10
REPURCHASE_TOKENS = 100


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Four fans per unit of scale, two creators."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=2)


def clawbacks(rng: random.Random, ops: OpFactory, purchases: list[Op]) -> list[Op]:
    """Refund each purchase: in full for even positions, 90–99% for odd ones."""
    refunds: list[Op] = []
    for index, purchase in enumerate(purchases):
        if index % 2 == 0:
            refunds.append(ops.refund(purchase, amount_cents=None))
            continue
        percent = rng.randint(PARTIAL_SHARE_PERCENT_MIN, PARTIAL_SHARE_PERCENT_MAX)
        refunds.append(ops.refund(purchase,
                                  amount_cents=ops.price_cents(purchase) * percent // 100))
    return refunds


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund, spend most of it, refund past the balance, try to spend, buy again."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creators = fans_of(roles), creators_of(roles)
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    funded = yield from fund(ops, fans, FUND_TOKENS)
    funded_tokens = ops.package_of(funded[fans[0]]).minted_tokens
    spends = [ops.tip(sender=fan, recipient=rng.choice(creators),
                      amount_tokens=scaled(rng.randint(SPEND_TOKENS_MIN, SPEND_TOKENS_MAX),
                                           funded_tokens=funded_tokens,
                                           nominal_tokens=FUND_TOKENS))
              for fan in fans]
    yield Batch(ops=tuple(spends))
    yield Batch(ops=tuple(clawbacks(rng, ops, [funded[fan] for fan in fans])))
    yield Settle()
    # In debt with a zero balance: every tip is refused for funds.
    refused = [ops.tip(sender=fan, recipient=rng.choice(creators),
                       amount_tokens=AFTER_DEBT_TIP_TOKENS) for fan in fans]
    yield Batch(ops=(*refused, *(ops.read_balance(fan) for fan in fans)))
    # One fan buys again: the new credit pays the debt first (it stays in debt).
    yield from fund(ops, [rng.choice(fans)], REPURCHASE_TOKENS)
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="purchases refunded after their tokens were tipped away: debt, not drift",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "refunds", "debt", "ledger_drift"),
    provokes=("refund_into_debt", "tip_succeeded", "tip_refused_for_funds"),
)
