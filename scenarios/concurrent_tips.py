"""concurrent-tips: many fans tip many creators at once, round after round.

Every burst pairs tips by sender (two tips from one fan to two creators) so each burst
surely races spends of one sender, while different senders hit shared recipients. A tip
that loses an update on either side breaks conservation and reconciliation; reads taken
during the bursts are checked against their bounds.

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

__all__ = ["SCENARIO", "generate", "tip_pairs", "users"]

NAME = "concurrent-tips"
FUND_TOKENS = 1000
TIP_TOKENS_MIN = 1
TIP_TOKENS_MAX = 40
ROUNDS_PER_SCALE_COUNT = 4
READS_PER_ROUND_COUNT = 2
PAIRS_PER_ROUND_MIN = 4  # even a tiny concurrency setting races several senders


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Six fans plus two per unit of scale; three creators plus one per unit of scale."""
    return roster(fans=6 + 2 * params.scale, creators=3 + params.scale)


def tip_pairs(rng: random.Random, ops: OpFactory, *, fans: list[str], creators: list[str],
              pairs_count: int) -> list[Op]:
    """``pairs_count`` pairs of tips, each pair from one fan to two different creators."""
    burst: list[Op] = []
    for _ in range(pairs_count):
        sender = rng.choice(fans)
        for recipient in rng.sample(creators, 2):
            amount = rng.randint(TIP_TOKENS_MIN, TIP_TOKENS_MAX)
            burst.append(ops.tip(sender=sender, recipient=recipient, amount_tokens=amount))
    return burst


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund every fan, then rounds of paired tips with a few reads mixed in."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creators = fans_of(roles), creators_of(roles)
    # A burst fills the runner's window: pairs of tips plus the reads.
    pairs_count = max(PAIRS_PER_ROUND_MIN, (params.concurrency - READS_PER_ROUND_COUNT) // 2)
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    yield from fund(ops, fans, FUND_TOKENS)
    for _ in range(ROUNDS_PER_SCALE_COUNT * params.scale):
        burst = tip_pairs(rng, ops, fans=fans, creators=creators, pairs_count=pairs_count)
        for user in rng.sample(list(roles), READS_PER_ROUND_COUNT):
            burst.insert(rng.randrange(len(burst) + 1), ops.read_balance(user))
        yield Batch(ops=tuple(burst))
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="many fans tip many creators at once, two tips per sender in every burst",
    users=users,
    generator=generate,
    checkers=BASE_CHECKERS,
    provokes=("tip_succeeded", "spend_race"),
)
