"""dispute: chargebacks opened, then won or lost, on whole and on spent purchases.

Fans come in fours, one per story: a purchase disputed and won; disputed and lost; spent
then disputed and lost (the account ends in debt); spent then disputed and won (the debt
is reinstated away). A dispute takes back every token not yet taken and a won dispute
gives them back: a service that ignores either, takes back only what the balance holds
without recording debt, or reinstates twice breaks conservation, refunds, ledger_drift.

Only op generators and ``SCENARIO`` live here; the runner executes the steps.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Literal

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
    fund,
    policy_seed,
    roster,
)

__all__ = ["SCENARIO", "STORIES", "generate", "users"]

NAME = "dispute"
# Per story: tokens bought, tokens tipped away before the dispute, how the dispute ends.
STORIES: tuple[tuple[int, int, Literal["won", "lost"]], ...] = (
    (1000, 0, "won"),
    (1000, 0, "lost"),
    (500, 400, "lost"),  # ends in debt
    (500, 300, "won"),
)
DURING_DISPUTE_TIP_TOKENS = 50
AFTER_TIP_TOKENS_MIN = 10
AFTER_TIP_TOKENS_MAX = 100


def users(params: ScenarioParams) -> Mapping[str, str]:
    """One fan per story per unit of scale, two creators."""
    return roster(fans=len(STORIES) * params.scale, creators=2)


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund, spend, open the disputes, try to spend, close them, spend again."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creators = fans_of(roles), creators_of(roles)
    story_of = {fan: STORIES[index % len(STORIES)] for index, fan in enumerate(fans)}
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    purchases: dict[str, Op] = {}
    for amount_tokens in sorted({story[0] for story in STORIES}):
        buyers = [fan for fan in fans if story_of[fan][0] == amount_tokens]
        purchases |= yield from fund(ops, buyers, amount_tokens)
    spends = [ops.tip(sender=fan, recipient=rng.choice(creators), amount_tokens=story[1])
              for fan, story in story_of.items() if story[1] > 0]
    yield Batch(ops=tuple(spends))
    opened = {fan: ops.dispute_open(purchases[fan]) for fan in fans}
    yield Batch(ops=tuple(opened.values()))
    yield Settle()
    # While disputed, nothing is left to spend.
    during = [ops.tip(sender=fan, recipient=rng.choice(creators),
                      amount_tokens=DURING_DISPUTE_TIP_TOKENS) for fan in fans]
    yield Batch(ops=(*during, *(ops.read_balance(fan) for fan in fans)))
    closes = [ops.dispute_close(opened[fan], outcome=story_of[fan][2]) for fan in fans]
    rng.shuffle(closes)
    yield Batch(ops=tuple(closes))
    yield Settle()
    winners = [fan for fan in fans if story_of[fan][2] == "won" and story_of[fan][1] == 0]
    after = [ops.tip(sender=fan, recipient=rng.choice(creators),
                     amount_tokens=rng.randint(AFTER_TIP_TOKENS_MIN, AFTER_TIP_TOKENS_MAX))
             for fan in winners]
    yield Batch(ops=tuple(after))
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="disputes opened then won or lost, on whole purchases and on spent ones",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "refunds", "debt", "ledger_drift"),
    provokes=("dispute_opened", "dispute_won", "dispute_lost", "refund_into_debt",
              "tip_succeeded", "tip_refused_for_funds"),
)
