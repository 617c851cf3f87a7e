"""The runner against the real local stack: the reference service, the provider, PostgreSQL.

A tiny scenario buys tokens (one card declined), settles the webhooks, then tips from
two fans to two creators concurrently, more than the fans can afford, and reads every
balance. The history must be well formed and loadable, and the observation at quiescence
must equal what the history's OK ops imply, with the provider's truth agreeing on what
was minted.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.history import History, HistoryWriter, load
from harness.limits import Limits
from harness.model import F, Kind, Op
from harness.runner import ScenarioResult, run_scenario
from harness.scenario import Scenario, ScenarioParams
from harness.schedule import Batch, Settle, Step
from harness.stack import LocalStack, StackConfig
from harness.targets.profile import load_profile
from harness.targets.session import TargetSession

pytestmark = pytest.mark.integration

LIMITS = Limits(op_timeout_s=15.0, run_duration_s_max=120.0, quiescence_timeout_s=30.0)
USERS = {"fan_0": "fan", "fan_1": "fan", "creator_0": "creator", "creator_1": "creator"}


def _steps(rng: random.Random, params: ScenarioParams) -> Iterator[Step]:
    ids = iter(range(1_000))

    def op(f: F, value: dict[str, object], key: bool = True) -> Op:
        op_id = next(ids)
        return Op(id=op_id, f=f, value=value,
                  idempotency_key=f"runner-ref-{params.seed}-{op_id}" if key else None)

    yield Batch(ops=(
        op(F.PURCHASE, {"user": "fan_0", "purchase": "p_0", "amount_tokens": 500,
                        "payment_method": "pm_card_visa"}),
        op(F.PURCHASE, {"user": "fan_1", "purchase": "p_1", "amount_tokens": 100,
                        "payment_method": "pm_card_visa"}),
        op(F.PURCHASE, {"user": "fan_1", "purchase": "p_2", "amount_tokens": 1000,
                        "payment_method": "pm_card_chargeDeclined"}),
    ))
    yield Settle()
    tips = [op(F.TIP, {"sender": fan, "recipient": rng.choice(["creator_0", "creator_1"]),
                       "amount_tokens": amount})
            for fan, amount, count in (("fan_0", 90, 7), ("fan_1", 40, 4))
            for _ in range(count)]
    rng.shuffle(tips)
    yield Batch(ops=tuple(tips))
    yield Settle()
    yield Batch(ops=tuple(op(F.READ_BALANCE, {"user": user}, key=False) for user in USERS))


SCENARIO = Scenario(name="runner-reference", summary="purchases, then concurrent tips",
                    users=lambda params: USERS, generator=_steps, checkers=())


async def _run(database_url: str, tmp_path: Path) -> ScenarioResult:
    from harness.provider.client import ProviderClient

    stack = LocalStack(StackConfig(database_url=database_url))
    async with stack as info:
        profile = load_profile("reference", environ={})
        async with TargetSession.open(profile, limits=LIMITS, base_url=info.service_url,
                                      admin_key=info.admin_key,
                                      provider_url=info.provider_url) as session:
            await session.check_health()
            provider = ProviderClient(info.provider_url, control_key=info.control_key)
            try:
                with HistoryWriter(tmp_path / "history.jsonl") as writer:
                    return await run_scenario(SCENARIO, ScenarioParams(seed=11, concurrency=8),
                                              session=session, provider=provider,
                                              writer=writer, limits=LIMITS)
            finally:
                await provider.aclose()


async def test_runner_against_the_reference_service_records_what_the_audit_shows(
        database_url: str, tmp_path: Path) -> None:
    result = await _run(database_url, tmp_path)

    (loaded,) = load(tmp_path / "history.jsonl")
    assert loaded.complete
    assert loaded.history == result.history
    assert loaded.observation == result.observation
    assert loaded.truth == result.truth
    History(list(result.history))  # well formed, asserted again
    assert not result.history.outstanding()

    completions = [e for e in result.history if e.kind != Kind.INVOKE]
    purchases = {e.value["purchase"]: e for e in completions if e.f == F.PURCHASE}
    assert (purchases["p_0"].kind, purchases["p_1"].kind) == (Kind.OK, Kind.OK)
    assert (purchases["p_2"].kind, purchases["p_2"].error) == (Kind.FAIL, "card_declined")
    tips = [e for e in completions if e.f == F.TIP]
    assert len(tips) == 11
    assert {e.kind for e in tips} == {Kind.OK, Kind.FAIL}  # more asked than affordable
    assert {e.error for e in tips if e.kind == Kind.FAIL} == {"insufficient_funds"}

    # The end state is exactly what the OK ops imply.
    expected = Counter({"fan_0": 500, "fan_1": 100})
    for tip in tips:
        if tip.kind == Kind.OK:
            expected[str(tip.value["sender"])] -= int(tip.value["amount_tokens"])
            expected[str(tip.value["recipient"])] += int(tip.value["amount_tokens"])
    observation = result.observation
    assert observation is not None
    assert {user: account.balance_tokens for user, account in observation.accounts.items()} \
        == {user: expected[user] for user in USERS}
    assert all(account.ledger_sum_tokens == account.balance_tokens
               for account in observation.accounts.values())
    reads = {e.value["user"]: e.value["balance_tokens"] for e in completions
             if e.f == F.READ_BALANCE}
    assert reads == {user: expected[user] for user in USERS}
    for fan in ("fan_0", "fan_1"):  # no fan could afford one more tip of its size
        assert expected[fan] < {"fan_0": 90, "fan_1": 40}[fan]

    # The provider agrees on what was paid for.
    truth = result.truth
    assert truth is not None
    assert truth.pending_deliveries_count == 0
    succeeded = {i.intent_id: i for i in truth.intents.values() if i.succeeded}
    assert {i.user for i in succeeded.values()} == {"fan_0", "fan_1"}
    assert sum(i.minted_tokens for i in succeeded.values()) == 600
    assert observation.totals is not None
    assert observation.totals.minted_tokens == 600
    assert result.stats["ops_invoked_count"] == 3 + 11 + 4
    assert result.stats.get("end_quiescence_timeouts_count", 0) == 0
