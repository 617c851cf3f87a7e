"""webhook-reorder: refunds and disputes that reach the service before the payment did.

The provider holds every ``payment_intent.succeeded`` until a later event of its intent
has been sent. Fans buy, and before the held success is released their purchases are
refunded in full, refunded in part, or disputed (a dispute later won or lost). A service
that drops a refund (or dispute) arriving before its success keeps tokens the provider
took back (conservation, refunds); one that credits on the late success without
netting the early clawback does the same.

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
    policy_seed,
    roster,
)

__all__ = ["SCENARIO", "early_clawbacks", "generate", "users"]

NAME = "webhook-reorder"
HOLD_MS_MAX = 3_000  # every held success gets a later event long before this
FANS_PER_SCALE_COUNT = 4
PACKAGE_CHOICES_TOKENS = (500, 1000, 5000)
TIP_TOKENS_MIN = 10
TIP_TOKENS_MAX = 100


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Four fans per unit of scale, one creator."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=1)


def early_clawbacks(rng: random.Random, ops: OpFactory,
                    purchases: list[Op]) -> tuple[list[Op], list[Op]]:
    """For each purchase, in turn: a full refund, a partial refund, or a dispute.

    Returns:
        The refunds and dispute openings, and the dispute openings alone (to close later).
    """
    early: list[Op] = []
    disputes: list[Op] = []
    for index, purchase in enumerate(purchases):
        kind = index % 4
        if kind == 0:
            early.append(ops.refund(purchase, amount_cents=None))
        elif kind == 3:
            opened = ops.dispute_open(purchase)
            early.append(opened)
            disputes.append(opened)
        else:
            cents = rng.randint(1, max(1, ops.price_cents(purchase) // 2))
            early.append(ops.refund(purchase, amount_cents=cents))
    return early, disputes


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Buy under reorder, claw back before the successes land, settle, then spend."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    yield SetPolicy(policy=DeliveryPolicy(reorder=True, hold_ms_max=HOLD_MS_MAX,
                                          seed=policy_seed(rng)))
    choices = [ops.package_for(tokens).tokens for tokens in PACKAGE_CHOICES_TOKENS]
    purchases = [ops.purchase(user=fan, amount_tokens=rng.choice(choices)) for fan in fans]
    yield Batch(ops=tuple(purchases))
    # No Settle here: the successes are still held when the clawbacks are sent.
    early, disputes = early_clawbacks(rng, ops, purchases)
    yield Batch(ops=tuple(early))
    yield Settle()
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    closes = [ops.dispute_close(opened, outcome=rng.choice(("won", "lost")))
              for opened in disputes]
    tips = [ops.tip(sender=fan, recipient=creator,
                    amount_tokens=rng.randint(TIP_TOKENS_MIN, TIP_TOKENS_MAX)) for fan in fans]
    yield Batch(ops=(*closes, *tips))
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="refunds and disputes delivered before the payment's own success",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "refunds", "debt", "ledger_drift"),
    provokes=("refund_before_success", "dispute_before_success", "partial_refund"),
)
