"""A run driven step by step against the real local stack: the same history as the runner's.

One program: provision, buy, settle, tip twice at once, snapshot, then a step that names a
call never opened (skipped, never sent), then end. The history file holds one complete
scenario whose events, end state and truth are the last snapshot's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.history import History, HistoryWriter, load
from harness.limits import Limits
from harness.model import F, Kind, Op
from harness.scenario import Scenario, ScenarioParams
from harness.schedule import Step
from harness.stack import LocalStack, StackConfig
from harness.stepwise import StepwiseRun
from harness.targets.profile import load_profile
from harness.targets.session import TargetSession

pytestmark = pytest.mark.integration

LIMITS = Limits(op_timeout_s=15.0, run_duration_s_max=120.0, quiescence_timeout_s=30.0)
USERS = {"fan_0": "fan", "creator_0": "creator"}


def _no_steps(rng: object, params: object) -> Iterator[Step]:
    return iter(())


SCENARIO = Scenario(name="stepwise", summary="steps from the caller",
                    users=lambda params: USERS, generator=_no_steps, checkers=())


def _tip(op_id: int, amount: int) -> Op:
    return Op(id=op_id, f=F.TIP, value={"sender": "fan_0", "recipient": "creator_0",
                                        "amount_tokens": amount},
              idempotency_key=f"stepwise-{op_id}")


async def test_stepwise_run_records_each_step_and_ends_with_the_last_snapshot(
        database_url: str, tmp_path: Path) -> None:
    from harness.provider.client import ProviderClient

    async with LocalStack(StackConfig(database_url=database_url)) as info:
        profile = load_profile("reference", environ={})
        async with TargetSession.open(profile, limits=LIMITS, base_url=info.service_url,
                                      admin_key=info.admin_key,
                                      provider_url=info.provider_url) as session:
            provider = ProviderClient(info.provider_url, control_key=info.control_key)
            try:
                with HistoryWriter(tmp_path / "history.jsonl") as writer:
                    program = StepwiseRun(SCENARIO, ScenarioParams(seed=3, concurrency=4),
                                          session=session, provider=provider,
                                          writer=writer, limits=LIMITS)
                    await program.begin()
                    await program.batch([Op(id=0, f=F.PURCHASE, value={
                        "user": "fan_0", "purchase": "p_0", "amount_tokens": 100,
                        "payment_method": "pm_card_visa"}, idempotency_key="stepwise-p0")])
                    assert await program.settle() is True
                    await program.batch([_tip(1, 30), _tip(2, 40)])
                    snapshot = await program.snapshot()
                    await program.batch([Op(id=3, f=F.CALL_END,
                                            value={"user": "fan_0", "call": "c_never"})])
                    last = await program.snapshot()
                    program.end(last)
            finally:
                await provider.aclose()

    assert program.ops_invoked_count == 3  # the end of a call never opened was not sent
    assert snapshot.observation is not None
    balances = {user: a.balance_tokens for user, a in snapshot.observation.accounts.items()}
    assert balances == {"fan_0": 30, "creator_0": 70}
    (loaded,) = load(tmp_path / "history.jsonl")
    assert loaded.complete
    assert loaded.history == History(list(last.history))
    assert loaded.observation == last.observation
    assert loaded.truth == last.truth
    assert [e.kind for e in loaded.history if e.f == F.TIP] == [Kind.INVOKE, Kind.INVOKE,
                                                                Kind.OK, Kind.OK]
    assert loaded.stats["ops_skipped_count"] == 1
