"""bad-input: requests a correct service must refuse with a 4xx, changing nothing.

Funded fans send tips of a negative, zero, past-64-bit and far-too-large amount, of a
fractional and a non-numeric amount (as text), to themselves, to a recipient the service
never created, and one whose body is past any size limit; a fan charges a minute of
another fan's call. Every one is marked as bad input (``value["bad_input"]``): ``refusals``
wants each refused with a 4xx (an acknowledged one, or a 5xx, is an anomaly), and
``conservation`` and ``reconciliation``, for which a refused op was never applied, see
any that moved money anyway. Valid tips before and after show the accounts still work.

What the target's templates cannot express is left out and said: text amounts where the
profile casts ``{amount_tokens:int}``, an unknown recipient where it sends no
``{recipient_id}``, another user's call where calls are not objects with an id.

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

__all__ = ["SCENARIO", "bad_tips", "generate", "not_run", "users"]

NAME = "bad-input"
FUND_TOKENS = 100
TIP_TOKENS_MIN = 1
TIP_TOKENS_MAX = 10
CALL_RATE_TOKENS = 5
PAST_64_BITS_TOKENS = 2**63  # one past BIGINT: an overflow must be a 4xx, not a 500
FAR_TOO_MANY_FACTOR = 1000  # times what a fan bought: a valid number, refused for funds
UNKNOWN_ID = 2_000_000_000  # an id no provisioned user has (sent as the recipient's id)
# Past the usual body limits (64 KiB here, 100 KB in Express's body-parser, 1 MiB in nginx
# is beyond it): sent once, so the history stays small.
OVERSIZE_BODY_BYTES = 256 * 1024


def users(params: ScenarioParams) -> Mapping[str, str]:
    """Two fans (one's call is charged by the other) and one creator."""
    del params  # bad input is about kinds of request, not their number
    return roster(fans=2, creators=1)


def not_run(params: ScenarioParams) -> tuple[NotRun, ...]:
    """The kinds of bad input the profile's templates cannot express."""
    target = params.target
    if not target.offers(F.TIP):
        return (NotRun(part=None, reason=target.missing_reason(F.TIP)),)
    parts: list[NotRun] = []
    if not target.sends_text(F.TIP, "amount_tokens"):
        parts.append(NotRun(part="text amounts and a body past the size limit",
                            reason=f"the profile {target.source} casts the tip's "
                                   "{amount_tokens:int}, so a text amount cannot be sent"))
    if not target.sends(F.TIP, "recipient_id"):
        parts.append(NotRun(part="a tip to an unknown recipient",
                            reason=f"the profile {target.source} sends no {{recipient_id}} "
                                   "in [ops.tip]"))
    if not _call_objects(target):
        parts.append(NotRun(part="a charge of another user's call",
                            reason=f"the profile {target.source} has no call objects "
                                   "([ops.call_open] and {call_id} in [ops.call_charge])"))
    return tuple(parts)


def bad_tips(ops: OpFactory, *, fan: str, creator: str) -> list[Op]:
    """The tips of ``fan`` that a correct service refuses, as far as the profile can say."""
    target = ops.target
    tips = [
        ops.bad_tip(sender=fan, recipient=creator, amount=-5, why="a negative amount"),
        ops.bad_tip(sender=fan, recipient=creator, amount=0, why="a zero amount"),
        ops.bad_tip(sender=fan, recipient=creator, amount=PAST_64_BITS_TOKENS,
                    why="an amount past 64 bits"),
        ops.bad_tip(sender=fan, recipient=creator,
                    amount=ops.package_for(FUND_TOKENS).minted_tokens * FAR_TOO_MANY_FACTOR,
                    why="far more tokens than the sender holds"),
        ops.bad_tip(sender=fan, recipient=fan, amount=1, why="a tip to oneself"),
    ]
    if target.sends_text(F.TIP, "amount_tokens"):
        tips += [
            ops.bad_tip(sender=fan, recipient=creator, amount="2.5",
                        why="a fractional amount (as text)"),
            ops.bad_tip(sender=fan, recipient=creator, amount="ten",
                        why="an amount that is not a number"),
            ops.bad_tip(sender=fan, recipient=creator, amount="9" * OVERSIZE_BODY_BYTES,
                        why=f"a body of {OVERSIZE_BODY_BYTES // 1024} KiB, past the size "
                            "limit"),
        ]
    if target.sends(F.TIP, "recipient_id"):
        # Named as the creator, so every account the op names is observed; sent to an id
        # the service never gave out.
        tips.append(ops.bad_tip(sender=fan, recipient=creator, amount=1,
                                recipient_id=UNKNOWN_ID,
                                why="a recipient the service never created"))
    return tips


def generate(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    """Fund, tip validly, send every bad input at once, tip validly again, read."""
    ops = OpFactory.of(NAME, params)
    roles = users(params)
    fans, creator = fans_of(roles), creators_of(roles)[0]
    owner, intruder = fans
    yield SetPolicy(policy=DeliveryPolicy(seed=policy_seed(rng)))
    yield from fund(ops, fans, FUND_TOKENS)
    yield Batch(ops=tuple(_valid_tips(rng, ops, fans=fans, creator=creator)))
    bad = bad_tips(ops, fan=owner, creator=creator)
    if _call_objects(ops.target):
        opened = ops.call_open(user=owner, creator=creator,
                               rate_tokens_per_minute=CALL_RATE_TOKENS)
        yield Batch(ops=(opened,))
        bad.append(ops.bad_charge(opened, user=intruder, minute=1,
                                  why="a charge of another user's call"))
    rng.shuffle(bad)
    yield Batch(ops=tuple(bad))
    yield Batch(ops=tuple(_valid_tips(rng, ops, fans=fans, creator=creator)))
    yield from finish(ops, roles)


def _valid_tips(rng: random.Random, ops: OpFactory, *, fans: list[str],
                creator: str) -> list[Op]:
    return [ops.tip(sender=fan, recipient=creator,
                    amount_tokens=rng.randint(TIP_TOKENS_MIN, TIP_TOKENS_MAX)) for fan in fans]


def _call_objects(target: TargetTraits) -> bool:
    return target.offers(F.CALL_OPEN) and target.sends(F.CALL_CHARGE, "call_id")


SCENARIO = Scenario(
    name=NAME,
    summary="negative, zero, huge and text amounts, self tips, strangers: all refused, 4xx",
    users=users,
    generator=generate,
    checkers=(*BASE_CHECKERS, "refusals"),
    provokes=("tip_succeeded", "tip_refused_for_funds"),
    not_run=not_run,
)
