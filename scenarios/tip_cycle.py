"""tip-cycle: accounts pay each other in a ring and in both directions at once.

Creators can both receive and spend, so four of them tip around a ring (A→B, B→C, C→D,
D→A), back the other way, and one pair twice more in each direction, all in one burst,
round after round. A tip that locks the sender's row and then the recipient's deadlocks
here (errors: 5xx or latency past the bound); a lost update breaks conservation.

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
    finish,
    fund,
    policy_seed,
    roster,
)

__all__ = ["SCENARIO", "generate", "ring_burst", "users"]

NAME = "tip-cycle"
MEMBERS_COUNT = 4
FUND_TOKENS = 1000
ROUNDS_PER_SCALE_COUNT = 10
TIP_TOKENS_MIN = 1
TIP_TOKENS_MAX = 20
EXTRA_MUTUAL_COUNT = 2  # more A↔B pairs per round, to make lock-order cycles likely


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Four creators: every one of them both sends and receives."""
    del params  # scale adds rounds; a bigger ring would spread the contention thinner
    return roster(fans=0, creators=MEMBERS_COUNT)


def ring_burst(rng: random.Random, ops: OpFactory, *, members: list[str]) -> list[Op]:
    """Tips around a shuffled ring, both ways, plus extra A↔B pairs, in a seeded order."""
    ring = list(members)
    rng.shuffle(ring)
    burst: list[Op] = []
    for index, sender in enumerate(ring):
        recipient = ring[(index + 1) % len(ring)]
        burst.append(_tip(rng, ops, sender=sender, recipient=recipient))
        burst.append(_tip(rng, ops, sender=recipient, recipient=sender))
    first, second = ring[0], ring[1]
    for _ in range(EXTRA_MUTUAL_COUNT):
        burst.append(_tip(rng, ops, sender=first, recipient=second))
        burst.append(_tip(rng, ops, sender=second, recipient=first))
    rng.shuffle(burst)
    return burst


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund the ring, then ten bursts per unit of scale, with a read mid-way."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    members = creators_of(roles)
    rounds_count = ROUNDS_PER_SCALE_COUNT * params.scale
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    yield from fund(ops, members, FUND_TOKENS)
    for round_index in range(rounds_count):
        burst = ring_burst(rng, ops, members=members)
        if round_index == rounds_count // 2:
            burst += [ops.read_balance(member) for member in members]
        yield Batch(ops=tuple(burst))
    yield from finish(ops, roles)


def _tip(rng: random.Random, ops: OpFactory, *, sender: str, recipient: str) -> Op:
    return ops.tip(sender=sender, recipient=recipient,
                   amount_tokens=rng.randint(TIP_TOKENS_MIN, TIP_TOKENS_MAX))


SCENARIO = Scenario(
    name=NAME,
    summary="creators tip around a ring and both ways at once, round after round",
    users=users,
    generator=generate,
    checkers=BASE_CHECKERS,
    provokes=("tip_succeeded", "mutual_tips", "spend_race"),
)
