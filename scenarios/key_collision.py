"""key-collision: two accounts send the same idempotency key with different requests.

Keys are chosen by clients, so two users may well pick the same one. Pairs of fans each
buy a different package with one shared key, then tip with one shared key and different
amounts, at once and one after the other. Each request is its own account's: each must be
applied once, to its own account. A service that dedupes keys globally answers the second
account with the first's answer (``key_scope``: the same tip or intent id) and never
applies it (``reconciliation``, ``conservation``); one that refuses the second as a key
reuse is caught by ``key_scope`` too.

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
    fund,
    policy_seed,
    roster,
)

__all__ = ["SCENARIO", "generate", "not_run", "shared_key_tips", "users"]

NAME = "key-collision"
PAIRS_PER_SCALE_COUNT = 2
FUND_TOKENS = 500
TIP_TOKENS_MIN = 5
TIP_TOKENS_MAX = 40


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Two pairs of fans per unit of scale, one creator."""
    return roster(fans=2 * PAIRS_PER_SCALE_COUNT * params.scale, creators=1)


def not_run(params: ScenarioParams) -> tuple[NotRun, ...]:
    """A key can only collide on an op kind that carries one."""
    target = params.target
    tips, purchases = target.keyed(F.TIP), target.keyed(F.PURCHASE)
    reasons = {f: target.keyless_reason(f) if target.offers(f) else target.missing_reason(f)
               for f in (F.TIP, F.PURCHASE) if not target.keyed(f)}
    if not tips and not purchases:
        return (NotRun(part=None, reason=reasons[F.TIP]),)
    if not tips:
        return (NotRun(part="tips of two accounts sharing a key", reason=reasons[F.TIP],
                       provokes=("tip_succeeded",)),)
    if not purchases:
        return (NotRun(part="purchases of two accounts sharing a key",
                       reason=reasons[F.PURCHASE]),)
    return ()


def shared_key_tips(rng: random.Random, ops: OpFactory, *, pair: tuple[str, str],
                    creator: str) -> list[Op]:
    """One tip of each fan of ``pair`` with one key, the second one token more."""
    key = ops.key()
    amount = rng.randint(TIP_TOKENS_MIN, TIP_TOKENS_MAX)
    first, second = pair
    return [ops.tip(sender=first, recipient=creator, amount_tokens=amount, key=key),
            ops.tip(sender=second, recipient=creator, amount_tokens=amount + 1, key=key)]


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund; shared-key purchases, then tips, each at once and then one after the other."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    pairs = [(fans[i], fans[i + 1]) for i in range(0, len(fans), 2)]
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    yield from fund(ops, fans, FUND_TOKENS)
    if ops.keyed(F.PURCHASE):
        yield Batch(ops=tuple(op for pair in pairs for op in _shared_key_purchases(ops, pair)))
        # One after the other: a service that looks keys up across accounts (not only one
        # that races) answers the second with the first's purchase.
        for pair in pairs:
            first, second = _shared_key_purchases(ops, pair)
            yield Batch(ops=(first,))
            yield Batch(ops=(second,))
        yield Settle()
    if ops.keyed(F.TIP):
        # At once: whichever arrives first, the other is another account's request.
        yield Batch(ops=tuple(op for pair in pairs
                              for op in shared_key_tips(rng, ops, pair=pair, creator=creator)))
        # One after the other: the second comes when the first's answer is stored.
        for pair in pairs:
            first, second = shared_key_tips(rng, ops, pair=pair, creator=creator)
            yield Batch(ops=(first,))
            yield Batch(ops=(second,))
    yield from finish(ops, roles)


def _shared_key_purchases(ops: OpFactory, pair: tuple[str, str]) -> list[Op]:
    """Two different packages bought by the two fans of ``pair`` with one key."""
    key = ops.key()
    packages = ops.target.pricing.packages
    first, second = packages[0], packages[1 % len(packages)]
    return [ops.purchase(user=pair[0], amount_tokens=first.tokens, key=key),
            ops.purchase(user=pair[1], amount_tokens=second.tokens, key=key)]


SCENARIO = Scenario(
    name=NAME,
    summary="two accounts send one idempotency key with different requests: both applied",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "key_scope"),
    provokes=("tip_succeeded",),
    not_run=not_run,
)
