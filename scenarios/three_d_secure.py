"""three-d-secure: purchases that need the card holder, and one that the bank declines.

Each fan buys with a 3-D Secure card (the purchase answers ``requires_action`` and must
credit nothing yet) and tries to tip before authenticating: that tip must be refused for
funds. Half of the card holders then authenticate, the others fail; only the first are
credited, by the success webhook. One fan also tries a declined card. A service that
credits at the purchase call, or on ``requires_action`` or ``payment_failed``, breaks
exactly_once_credit and conservation.

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
    PM_DECLINED,
    PM_THREE_D_SECURE,
    OpFactory,
    creators_of,
    fans_of,
    finish,
    policy_seed,
    roster,
)

__all__ = ["SCENARIO", "authentications", "generate", "users"]

NAME = "three-d-secure"
FANS_PER_SCALE_COUNT = 4
PURCHASE_TOKENS = 1000
DECLINED_TOKENS = 500
EARLY_TIP_TOKENS = 100  # tried before authentication: nothing is credited yet
TIP_TOKENS_MIN = 10
TIP_TOKENS_MAX = 200


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Four fans per unit of scale, one creator."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=1)


def authentications(rng: random.Random, ops: OpFactory, purchases: list[Op]) -> list[Op]:
    """Half the card holders authenticate, the other half fail, in a seeded order."""
    order = list(purchases)
    rng.shuffle(order)
    # Alternating outcomes: at least one of each, whatever the seed.
    return [ops.authenticate(purchase, outcome="succeed" if index % 2 == 0 else "fail")
            for index, purchase in enumerate(order)]


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """3-D Secure purchases and a declined card; early tips; authenticate; tips again."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    purchases = [ops.purchase(user=fan, amount_tokens=ops.package_for(PURCHASE_TOKENS).tokens,
                              payment_method=PM_THREE_D_SECURE) for fan in fans]
    declined = ops.purchase(user=rng.choice(fans),
                            amount_tokens=ops.package_for(DECLINED_TOKENS).tokens,
                            payment_method=PM_DECLINED)
    yield Batch(ops=(*purchases, declined))
    yield Settle()
    # Nothing is credited before the card holder authenticates: every tip is refused.
    early = [ops.tip(sender=fan, recipient=creator, amount_tokens=EARLY_TIP_TOKENS)
             for fan in fans]
    yield Batch(ops=(*early, *(ops.read_balance(fan) for fan in fans)))
    yield Batch(ops=tuple(authentications(rng, ops, purchases)))
    yield Settle()
    tips = [ops.tip(sender=fan, recipient=creator,
                    amount_tokens=rng.randint(TIP_TOKENS_MIN, TIP_TOKENS_MAX))
            for fan in fans]  # the fans whose authentication failed are refused again
    yield Batch(ops=tuple(tips))
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="3-D Secure purchases credit only after authentication; a declined card never",
    users=users,
    generator=generate,
    checkers=BASE_CHECKERS,
    provokes=("requires_action", "card_declined", "tip_refused_for_funds", "tip_succeeded"),
)
