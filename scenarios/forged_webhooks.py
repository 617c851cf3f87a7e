"""forged-webhooks: unsigned, wrong-secret, tampered and stale webhooks, from both sides.

The provider sends, beside every genuine event, an unsigned, a wrong-secret and a
tampered copy, and one copy signed too long ago. The harness itself then posts forged
webhooks: successes for 3-D Secure purchases the card holder never finished (accepting
one credits a real user for money never paid), refunds and disputes that never
happened, and successes of intents the provider never saw. Every forgery must be
rejected and change nothing: a service that skips the signature or the timestamp check
breaks webhook_auth, and the money it moves breaks conservation and exactly_once_credit.

Only op generators and ``SCENARIO`` live here; the runner executes the steps.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping

from harness.model import DeliveryVariant, Op
from harness.provider.policy import DeliveryPolicy
from harness.scenario import Scenario, ScenarioParams
from harness.schedule import Batch, SetPolicy, Settle, Step
from scenarios._common import (
    BASE_CHECKERS,
    EVENT_DISPUTE_CREATED,
    EVENT_REFUNDED,
    EVENT_SUCCEEDED,
    PM_THREE_D_SECURE,
    OpFactory,
    creators_of,
    fans_of,
    finish,
    fund,
    policy_seed,
    roster,
)

__all__ = ["FORGED_VARIANTS", "SCENARIO", "forgeries", "generate", "users"]

NAME = "forged-webhooks"
FORGED_VARIANTS = (DeliveryVariant.UNSIGNED, DeliveryVariant.WRONG_SECRET,
                   DeliveryVariant.TAMPERED, DeliveryVariant.STALE)
POLICY_FORGERIES = (DeliveryVariant.UNSIGNED, DeliveryVariant.WRONG_SECRET,
                    DeliveryVariant.TAMPERED)
FANS_PER_SCALE_COUNT = 3
FUND_TOKENS = 500
UNPAID_TOKENS = 1000
FABRICATED_PER_VARIANT_COUNT = 2
TIP_TOKENS = 100


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Three fans per unit of scale, one creator."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=1)


def forgeries(rng: random.Random, ops: OpFactory, *, paid: list[Op],
              unpaid: list[Op]) -> list[Op]:
    """Forged webhooks: every variant against unpaid, paid and fabricated intents."""
    forged: list[Op] = []
    for purchase in unpaid:
        forged += [ops.webhook(purchase, event_type=EVENT_SUCCEEDED, variant=variant)
                   for variant in FORGED_VARIANTS]
    for purchase in paid:
        forged += [ops.webhook(purchase, event_type=rng.choice((EVENT_REFUNDED,
                                                                EVENT_DISPUTE_CREATED)),
                               variant=variant) for variant in FORGED_VARIANTS]
    for variant in FORGED_VARIANTS:
        forged += [ops.webhook(None, event_type=EVENT_SUCCEEDED, variant=variant)
                   for _ in range(FABRICATED_PER_VARIANT_COUNT)]
    rng.shuffle(forged)
    return forged


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund under a forging policy, leave 3-D Secure purchases unpaid, post forgeries."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    yield SetPolicy(policy=DeliveryPolicy(forgeries=POLICY_FORGERIES, stale_count=1,
                                          seed=policy_seed(rng)))
    funded = yield from fund(ops, fans, FUND_TOKENS)
    # Answered requires_action and never authenticated: these must never credit.
    unpaid = [ops.purchase(user=fan, amount_tokens=ops.package_for(UNPAID_TOKENS).tokens,
                           payment_method=PM_THREE_D_SECURE) for fan in fans]
    yield Batch(ops=tuple(unpaid))
    yield Settle()
    yield Batch(ops=tuple(forgeries(rng, ops, paid=[funded[fan] for fan in fans],
                                    unpaid=unpaid)))
    yield Settle()
    tips = [ops.tip(sender=fan, recipient=creator, amount_tokens=TIP_TOKENS) for fan in fans]
    yield Batch(ops=tuple(tips))
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="unsigned, wrong-secret, tampered and stale webhooks, for real and fake intents",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "webhook_auth"),
    provokes=("forgery_rejected", "stale_rejected", "tip_succeeded"),
)
