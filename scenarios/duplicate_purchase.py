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
    policy_seed,
    roster,
)

__all__ = ["SCENARIO", "double_submit", "generate", "not_run", "users"]

NAME = "duplicate-purchase"
DUPLICATES_COUNT = 2
FANS_PER_SCALE_COUNT = 4
PACKAGE_CHOICES_COUNT = 3  # the target's three smallest packages (100, 500, 1000 tokens)
SECOND_PACKAGE_TOKENS = 500
TIP_TOKENS = 50


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Four fans per unit of scale, one creator."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=1)


def not_run(params: ScenarioParams) -> tuple[NotRun, ...]:
    """Without a key on purchases, no copy is sent: only the tripled webhooks are tested."""
    target = params.target
    if target.keyed(F.PURCHASE):
        return ()
    return (NotRun(part="purchases submitted twice with one key",
                   reason=target.keyless_reason(F.PURCHASE),
                   provokes=("idempotent_replay", "retry_with_same_key"),
                   checkers=("idempotency",)),)


def double_submit(rng: random.Random, ops: OpFactory, *, fan: str) -> tuple[Op, ...]:
    """A purchase and its exact copy (same key, same body), to send at once; the purchase
    alone where purchases carry no key."""
    choices = ops.target.pricing.packages[:PACKAGE_CHOICES_COUNT]
    first = ops.purchase(user=fan, amount_tokens=rng.choice(choices).tokens)
    return (first, ops.again(first)) if ops.keyed(F.PURCHASE) else (first,)


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Double submits, a late retry, two honest purchases of one package, then tips."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    yield SetPolicy(policy=DeliveryPolicy(duplicates_count=DUPLICATES_COUNT,
                                          seed=policy_seed(rng)))
    pairs = [double_submit(rng, ops, fan=fan) for fan in fans]
    yield Batch(ops=tuple(op for pair in pairs for op in pair))
    yield Settle()
    if ops.keyed(F.PURCHASE):
        # The same request once more, after both copies answered: the same intent, no credit.
        yield Batch(ops=tuple(ops.again(pair[0]) for pair in pairs))
    # Two purchases of the same package with two keys are two payments: both credit.
    second = ops.package_for(SECOND_PACKAGE_TOKENS)
    honest = [ops.purchase(user=fan, amount_tokens=second.tokens)
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
    not_run=not_run,
)
