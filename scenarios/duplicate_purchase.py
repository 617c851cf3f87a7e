"""duplicate-purchase: one purchase sent twice at once, and every webhook delivered thrice.

Each fan double-submits one purchase concurrently with one idempotency key, retries it
once more after both answered, and separately buys the same package twice with two keys
(two real purchases, both to be credited). The provider delivers every event with two
concurrent duplicates. Crediting on every delivery, or per purchase call instead of per
intent, breaks exactly_once_credit and conservation; crediting at the purchase call
instead of the webhook breaks them too.

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
    PACKAGES_TOKENS,
    OpFactory,
    creators_of,
    fans_of,
    finish,
    policy_seed,
    roster,
)

__all__ = ["SCENARIO", "double_submit", "generate", "users"]

NAME = "duplicate-purchase"
DUPLICATES_COUNT = 2
FANS_PER_SCALE_COUNT = 4
PACKAGE_CHOICES_TOKENS = PACKAGES_TOKENS[:3]  # 100, 500, 1000
SECOND_PACKAGE_TOKENS = 500
TIP_TOKENS = 50


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Four fans per unit of scale, one creator."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=1)


def double_submit(rng: random.Random, ops: OpFactory, *, fan: str) -> tuple[Op, Op]:
    """A purchase and its exact copy (same key, same body), to send at once."""
    first = ops.purchase(user=fan, amount_tokens=rng.choice(PACKAGE_CHOICES_TOKENS))
    return first, ops.again(first)


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Double submits, a late retry, two honest purchases of one package, then tips."""
    ops = OpFactory(scenario=NAME, seed=params.seed)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    yield SetPolicy(policy=DeliveryPolicy(duplicates_count=DUPLICATES_COUNT,
                                          seed=policy_seed(rng)))
    pairs = [double_submit(rng, ops, fan=fan) for fan in fans]
    yield Batch(ops=tuple(op for pair in pairs for op in pair))
    yield Settle()
    # The same request once more, after both copies answered: the same intent, no credit.
    yield Batch(ops=tuple(ops.again(first) for first, _ in pairs))
    # Two purchases of the same package with two keys are two payments: both credit.
    honest = [ops.purchase(user=fan, amount_tokens=SECOND_PACKAGE_TOKENS)
              for fan in fans for _ in range(2)]
    yield Batch(ops=tuple(honest))
    yield Settle()
    tips = [ops.tip(sender=fan, recipient=creator, amount_tokens=TIP_TOKENS) for fan in fans]
    rng.shuffle(tips)
    yield Batch(ops=tuple(tips))
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="one purchase submitted twice at once with one key, every webhook tripled",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "idempotency"),
    provokes=("duplicate_delivery_absorbed", "idempotent_replay", "retry_with_same_key",
              "tip_succeeded"),
)
