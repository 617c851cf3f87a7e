"""hot-creator: two dozen fans tip one creator at the same moment, several times.

Every round is one burst in which each fan tips the hot creator once, with reads of the
creator racing the tips. A recipient balance written from a stale read loses credits
(conservation, reconciliation); a service that serialises badly on one hot row shows up
as latency past the bound (errors).

Only op generators and ``SCENARIO`` live here; the runner executes the steps.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping

from harness.model import Op
from harness.provider.policy import DeliveryPolicy
from harness.scenario import Scenario, ScenarioParams
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

__all__ = ["SCENARIO", "generate", "stampede", "users"]

NAME = "hot-creator"
FANS_PER_SCALE_COUNT = 24
FUND_TOKENS = 100
ROUNDS_COUNT = 3
TIP_TOKENS_MIN = 1
TIP_TOKENS_MAX = 30  # three rounds of at most 30 stay within the 100 each fan bought
CREATOR_READS_PER_ROUND_COUNT = 2


def users(params: ScenarioParams) -> Mapping[str, str]:
    """24 fans per unit of scale and two creators, the first of them the hot one."""
    return roster(fans=FANS_PER_SCALE_COUNT * params.scale, creators=2)


def stampede(rng: random.Random, ops: OpFactory, *, fans: list[str], hot: str) -> list[Op]:
    """Every fan tips ``hot`` once, in a seeded order, with reads of ``hot`` in between."""
    order = list(fans)
    rng.shuffle(order)
    burst = [ops.tip(sender=fan, recipient=hot,
                     amount_tokens=rng.randint(TIP_TOKENS_MIN, TIP_TOKENS_MAX))
             for fan in order]
    for _ in range(CREATOR_READS_PER_ROUND_COUNT):
        burst.insert(rng.randrange(len(burst) + 1), ops.read_balance(hot))
    return burst


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund every fan with 100 tokens, then three stampedes on the hot creator."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creators = fans_of(roles), creators_of(roles)
    hot, other = creators[0], creators[1]
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    yield from fund(ops, fans, FUND_TOKENS)
    for round_index in range(ROUNDS_COUNT):
        burst = stampede(rng, ops, fans=fans, hot=hot)
        if round_index == ROUNDS_COUNT - 1:
            # One fan also tips the quiet creator, so the hot row is not the only one moving.
            burst.append(ops.tip(sender=rng.choice(fans), recipient=other, amount_tokens=1))
        yield Batch(ops=tuple(burst))
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="two dozen fans tip one creator at the same moment, three times over",
    users=users,
    generator=generate,
    checkers=BASE_CHECKERS,
    provokes=("tip_succeeded",),
)
