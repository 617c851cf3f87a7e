"""retry-storm: every tip sent three to five times at once with one idempotency key.

A client that times out and retries sends the same request (same key, same body) again
while the first is still running. Each fan's tips go out in storms of 3–5 concurrent
copies; some are retried once more after answering; one key is then reused with another
amount, which must be rejected. Purchases are stormed the same way. A tip that ignores
its key is applied once per copy (idempotency, reconciliation, conservation).

Only op generators and ``SCENARIO`` live here; the runner executes the steps.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping

from harness.model import F, Op
from harness.provider.policy import DeliveryPolicy
from harness.scenario import NotRun, Scenario, ScenarioParams, TargetTraits
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
)

__all__ = ["SCENARIO", "generate", "not_run", "storm", "users"]

NAME = "retry-storm"
FANS_PER_SCALE_COUNT = 4
FUND_TOKENS = 1000
TIPS_PER_FAN_COUNT = 3
COPIES_MIN = 3
COPIES_MAX = 5
# Even if every copy of every tip were applied: 3 tips * 5 copies * 50 = 750 < 1000, so a
# service ignoring keys is caught by the balance, not masked by a refusal for funds.
TIP_TOKENS_MIN = 5
TIP_TOKENS_MAX = 50
STORMED_PURCHASE_TOKENS = 100


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Four fans per unit of scale, two creators."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=2)


def not_run(params: ScenarioParams) -> tuple[NotRun, ...]:
    """Storms of an op kind that carries no key are left out; with neither, all of it."""
    target = params.target
    tips, purchases = target.keyed(F.TIP), target.keyed(F.PURCHASE)
    if not tips and not purchases:
        return (NotRun(part=None, reason=_reason(target, F.TIP)),)
    if not tips:
        return (NotRun(part="tips retried with the same key", reason=_reason(target, F.TIP),
                       provokes=("key_reuse_rejected", "tip_succeeded")),)
    if not purchases:
        return (NotRun(part="purchases retried with the same key",
                       reason=_reason(target, F.PURCHASE)),)
    return ()


def _reason(target: TargetTraits, f: F) -> str:
    return target.keyless_reason(f) if target.offers(f) else target.missing_reason(f)


def storm(rng: random.Random, ops: OpFactory, original: Op) -> list[Op]:
    """``original`` and 2–4 more copies of it (same key, same body), to send at once."""
    copies_count = rng.randint(COPIES_MIN, COPIES_MAX)
    return [original, *(ops.again(original) for _ in range(copies_count - 1))]


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund, storm tips fan by fan, retry late, reuse a key with another body."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creators = fans_of(roles), creators_of(roles)
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    yield from fund(ops, fans, FUND_TOKENS)
    if ops.keyed(F.TIP):
        yield from _tip_storms(rng, ops, fans=fans, creators=creators)
    if ops.keyed(F.PURCHASE):
        # Purchases storm too: one intent, one credit.
        package = ops.package_for(STORMED_PURCHASE_TOKENS)
        purchases = [ops.purchase(user=fan, amount_tokens=package.tokens)
                     for fan in rng.sample(fans, 2)]
        yield Batch(ops=tuple(op for purchase in purchases
                              for op in storm(rng, ops, purchase)))
    yield from finish(ops, roles)


def _tip_storms(rng: random.Random, ops: OpFactory, *, fans: list[str],
                creators: list[str]) -> Iterator[Step]:
    """Storm tips fan by fan, retry late, reuse a key with another body."""
    originals: list[Op] = []
    for fan in fans:
        tips = [ops.tip(sender=fan, recipient=rng.choice(creators),
                        amount_tokens=rng.randint(TIP_TOKENS_MIN, TIP_TOKENS_MAX))
                for _ in range(TIPS_PER_FAN_COUNT)]
        originals += tips
        yield Batch(ops=tuple(op for tip in tips for op in storm(rng, ops, tip)))
    # Late retries, after the originals answered: the same answer, applied once.
    late = rng.sample(originals, len(fans))
    yield Batch(ops=tuple(ops.again(op) for op in late))
    # One key reused with another amount: rejected, whatever the first copy did.
    reused = rng.choice(originals)
    amount = reused.value["amount_tokens"]
    assert isinstance(amount, int)
    yield Batch(ops=(ops.tip(sender=str(reused.value["sender"]),
                             recipient=str(reused.value["recipient"]),
                             amount_tokens=amount + 1, key=reused.idempotency_key),))


SCENARIO = Scenario(
    name=NAME,
    summary="every tip sent 3-5 times at once with one key, retried late, one key reused",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "idempotency"),
    provokes=("retry_with_same_key", "idempotent_replay", "key_reuse_rejected",
              "tip_succeeded"),
    not_run=not_run,
)
