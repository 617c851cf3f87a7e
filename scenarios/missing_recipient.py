"""missing-recipient: funded fans spend to accounts that do not exist, beside real spends.

Every burst pairs, per fan, a tip to an id the service never gave out with a tip to a real
creator, each worth most of what the fan holds, so a service that debits the sender before
it finds the recipient (or credits an account it makes up) leaves the real tip refused for
funds or tokens nowhere: ``conservation`` and ``reconciliation`` see tokens move, and
``refusals`` wants each missing-recipient tip refused with a 4xx. A keyed tip to nobody is
sent again with its key: the same refusal, still nothing moved.

Only op generators and ``SCENARIO`` live here; the runner executes the steps.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping

from harness.model import F, Op
from harness.provider.policy import DeliveryPolicy
from harness.scenario import NotRun, Scenario, ScenarioParams
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

__all__ = ["SCENARIO", "generate", "not_run", "users"]

NAME = "missing-recipient"
FUND_TOKENS = 100
SPEND_SHARE_PERCENT = 60  # each tip of a pair: more than half of what the fan holds
MISSING_ID_BASE = 2_000_000_000  # ids no provisioned user has, one per fan and round
ROUNDS_PER_SCALE_COUNT = 1


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Three fans plus one per unit of scale, and one creator."""
    return roster(fans=3 + params.scale, creators=1)


def not_run(params: ScenarioParams) -> tuple[NotRun, ...]:
    """Nothing without tips, or without a recipient id in the tip's template."""
    target = params.target
    if not target.offers(F.TIP):
        return (NotRun(part=None, reason=target.missing_reason(F.TIP)),)
    if not target.sends(F.TIP, "recipient_id"):
        return (NotRun(part=None, reason=f"the profile {target.source} sends no "
                                         "{recipient_id} in [ops.tip], so no tip can name "
                                         "an account that does not exist"),)
    return ()


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund, then rounds of (tip to nobody, tip to the creator) pairs at once, then read."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    yield from fund(ops, fans, FUND_TOKENS)
    held = {fan: ops.package_for(FUND_TOKENS).minted_tokens for fan in fans}
    for round_index in range(ROUNDS_PER_SCALE_COUNT * params.scale):
        burst: list[Op] = []
        for fan_index, fan in enumerate(fans):
            amount = max(1, held[fan] * SPEND_SHARE_PERCENT // 100)
            missing_id = MISSING_ID_BASE + round_index * len(fans) + fan_index
            burst.append(ops.bad_tip(sender=fan, recipient=creator, amount=amount,
                                     recipient_id=missing_id,
                                     why="a recipient the service never created"))
            burst.append(ops.tip(sender=fan, recipient=creator, amount_tokens=amount))
            held[fan] -= amount
        rng.shuffle(burst)
        yield Batch(ops=tuple(burst))
        retries = [ops.again(op) for op in burst if op.f == F.TIP and "bad_input" in op.value
                   and op.idempotency_key is not None]
        if retries:
            yield Batch(ops=tuple(retries))
        if ops.target.offers(F.READ_BALANCE):
            yield Batch(ops=tuple(ops.read_balance(fan) for fan in fans))
    yield from finish(ops, roles)


SCENARIO = Scenario(
    name=NAME,
    summary="tips to accounts that do not exist, beside real ones: refused, nothing moves",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "refusals"),
    provokes=("tip_succeeded",),
    not_run=not_run,
)
