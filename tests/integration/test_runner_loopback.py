"""The runner's mechanics over real HTTP on loopback, against a tiny in-memory token service.

The stand-in speaks the reference service's API, credits purchases at once (there is no
provider here), and never answers a tip of exactly ``HANG_TOKENS``, so timeouts are
provoked deterministically. The reference service itself is exercised in
``test_runner_reference.py``; this file pins what the runner does whatever the target.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse

from harness.errors import UsageError
from harness.history import History, HistoryWriter, load
from harness.limits import Limits
from harness.loop_lag import LagSummary
from harness.model import F, Kind, Op
from harness.provider.policy import DeliveryPolicy
from harness.runner import RunDeadlineExceeded, ScenarioResult, run_scenario
from harness.scenario import Scenario, ScenarioParams
from harness.schedule import Batch, Pause, SetPolicy, Settle, Step
from harness.targets.profile import load_profile
from harness.targets.session import TargetSession

pytestmark = pytest.mark.integration

ADMIN_KEY = "adm-test"
HANG_TOKENS = 13
DEADLOCK_TOKENS = 17  # a tip of this amount answers 503 with the service's own error body
LIMITS = Limits(op_timeout_s=1.0, connect_timeout_s=1.0, run_duration_s_max=60.0,
                recovery_timeout_s=30.0)


def _stand_in(release: asyncio.Event) -> FastAPI:
    app = FastAPI()
    users: dict[int, dict[str, Any]] = {}
    ids = itertools.count(1)

    def caller(authorization: str | None) -> dict[str, Any]:
        for user in users.values():
            if authorization == f"Bearer {user['token']}":
                return user
        raise HTTPException(401)

    @app.post("/v1/users", status_code=201)
    async def create_user(body: dict[str, Any], authorization: str = Header(None)) -> Any:
        assert authorization == f"Bearer {ADMIN_KEY}"
        user_id = next(ids)
        users[user_id] = {"id": user_id, "token": f"tok{user_id}", "kind": body["kind"],
                          "balance": 0}
        return {"id": user_id, "token": f"tok{user_id}"}

    @app.post("/v1/purchases", status_code=201)
    async def purchase(body: dict[str, Any], authorization: str = Header(None)) -> Any:
        user = caller(authorization)
        if body["payment_method"] == "pm_card_chargeDeclined":
            raise HTTPException(402)
        user["balance"] += body["tokens"]
        return {"purchase_id": next(ids), "intent_id": f"pi_{next(ids)}", "status": "succeeded"}

    @app.post("/v1/tips", status_code=201)
    async def tip(body: dict[str, Any], authorization: str = Header(None)) -> Any:
        sender = caller(authorization)
        if body["amount"] == HANG_TOKENS:
            await release.wait()
        if body["amount"] == DEADLOCK_TOKENS:
            return JSONResponse(status_code=503, content={"error": {
                "code": "deadlock_detected", "message": "gave up after 10 retries"}})
        if sender["balance"] < body["amount"]:
            raise HTTPException(402)
        sender["balance"] -= body["amount"]
        users[body["to"]]["balance"] += body["amount"]
        return {"tip_id": f"t{next(ids)}", "balance": sender["balance"]}

    @app.post("/v1/calls", status_code=201)
    async def call_open(body: dict[str, Any], authorization: str = Header(None)) -> Any:
        caller(authorization)
        if body["rate_per_minute"] <= 0:
            raise HTTPException(422)
        return {"call_id": next(ids)}

    @app.get("/v1/me")
    async def me(authorization: str = Header(None)) -> Any:
        user = caller(authorization)
        return {"id": user["id"], "balance": user["balance"], "debt": 0, "status": "active"}

    @app.get("/v1/audit/accounts")
    async def accounts(request: Request) -> Any:
        return [{"id": u["id"], "balance": u["balance"], "debt": 0, "status": "active",
                 "ledger_sum": u["balance"]} for u in users.values()]

    @app.get("/v1/audit/totals")
    async def totals() -> Any:
        balances = sum(u["balance"] for u in users.values())
        return {"minted": balances, "clawed_back": 0, "balances": balances, "debts": 0,
                "drift_accounts": 0}

    return app


@pytest.fixture
async def stand_in_url() -> AsyncIterator[str]:
    release = asyncio.Event()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound here, so no other test can take the port meanwhile
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_stand_in(release), log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):  # bounded: until uvicorn says it listens
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "the stand-in service did not start"
    yield f"http://127.0.0.1:{port}"
    release.set()
    server.should_exit = True
    await task
    sock.close()


def _scenario(steps: list[Step], users: dict[str, str] | None = None) -> Scenario:
    roster = users or {"fan_0": "fan", "fan_1": "fan", "creator_0": "creator"}

    def generate(rng: Any, params: ScenarioParams) -> Iterator[Step]:
        yield from steps

    return Scenario(name="loopback", summary="runner mechanics", users=lambda params: roster,
                    generator=generate, checkers=())


def _tip(op_id: int, amount: int, sender: str = "fan_0") -> Op:
    return Op(id=op_id, f=F.TIP, value={"sender": sender, "recipient": "creator_0",
                                        "amount_tokens": amount}, idempotency_key=f"k{op_id}")


def _purchase(op_id: int, user: str = "fan_0", tokens: int = 100,
              method: str = "pm_card_visa") -> Op:
    return Op(id=op_id, f=F.PURCHASE, value={"user": user, "purchase": f"p_{op_id}",
                                             "amount_tokens": tokens, "payment_method": method},
              idempotency_key=f"k{op_id}")


async def _run(url: str, tmp_path: Path, scenario: Scenario, *, concurrency: int = 8,
               limits: Limits = LIMITS, **kwargs: Any) -> ScenarioResult:
    profile = load_profile("reference", environ={})
    async with TargetSession.open(profile, limits=limits, base_url=url,
                                  admin_key=ADMIN_KEY) as session:
        with HistoryWriter(tmp_path / "history.jsonl") as writer:
            return await run_scenario(scenario, ScenarioParams(seed=3, concurrency=concurrency),
                                      session=session, provider=None, writer=writer,
                                      limits=limits, **kwargs)


async def test_runner_records_a_well_formed_history_and_observes_the_end(
        stand_in_url: str, tmp_path: Path) -> None:
    steps: list[Step] = [Batch(ops=(_purchase(0), _purchase(1, "fan_1", 500))),
                         Batch(ops=tuple(_tip(2 + i, 30) for i in range(4))),
                         Batch(ops=(Op(id=9, f=F.READ_BALANCE, value={"user": "fan_0"}),))]
    result = await _run(stand_in_url, tmp_path, _scenario(steps))
    (loaded,) = load(tmp_path / "history.jsonl")
    assert loaded.history == result.history
    assert loaded.complete
    assert loaded.target_ids == result.target_ids
    completions = [e for e in result.history if e.kind != Kind.INVOKE]
    tips = [e for e in completions if e.f == F.TIP]
    assert sorted(e.kind for e in tips) == [Kind.FAIL, Kind.OK, Kind.OK, Kind.OK]
    assert {e.error for e in tips if e.kind == Kind.FAIL} == {"insufficient_funds"}
    read = next(e for e in completions if e.f == F.READ_BALANCE)
    assert read.value["balance_tokens"] == 10
    assert result.observation is not None
    assert {u: a.balance_tokens for u, a in result.observation.accounts.items()} == \
        {"fan_0": 10, "fan_1": 500, "creator_0": 90}
    assert result.initial is not None
    assert all(a.balance_tokens == 0 for a in result.initial.accounts.values())
    assert result.observation.totals is not None
    assert result.stats["ops_invoked_count"] == 7
    assert result.stats["http_requests_count"] == 7
    assert result.truth is None


async def test_a_5xx_keeps_its_code_and_a_body_excerpt_in_the_saved_history(
        stand_in_url: str, tmp_path: Path) -> None:
    steps: list[Step] = [Batch(ops=(_purchase(0),)), Batch(ops=(_tip(1, DEADLOCK_TOKENS),))]
    await _run(stand_in_url, tmp_path, _scenario(steps))
    (loaded,) = load(tmp_path / "history.jsonl")
    tip = next(e for e in loaded.events if e.f == F.TIP and e.kind != Kind.INVOKE)
    assert tip.kind == Kind.INFO
    assert tip.error == "server_error_5xx: deadlock_detected"
    assert tip.body_excerpt is not None
    assert "gave up after 10 retries" in tip.body_excerpt


async def test_completions_carry_the_ops_arguments_merged_with_results(
        stand_in_url: str, tmp_path: Path) -> None:
    result = await _run(stand_in_url, tmp_path, _scenario([Batch(ops=(_purchase(0),))]))
    done = result.history[1]
    assert done.value == {"user": "fan_0", "purchase": "p_0", "amount_tokens": 100,
                          "payment_method": "pm_card_visa", "intent_id": done.value["intent_id"],
                          "purchase_status": "succeeded"}
    assert str(done.value["intent_id"]).startswith("pi_")
    assert done.time_ns >= result.history[0].time_ns
    assert done.idempotency_key == "k0"


async def test_an_op_past_its_timeout_is_info_and_its_worker_continues_as_a_new_process(
        stand_in_url: str, tmp_path: Path) -> None:
    limits = dataclasses.replace(LIMITS, op_timeout_s=0.3, connect_timeout_s=0.3)
    steps: list[Step] = [Batch(ops=(_purchase(0),)),
                         Batch(ops=(_tip(1, HANG_TOKENS), _tip(2, 5)))]
    result = await _run(stand_in_url, tmp_path, _scenario(steps), concurrency=1, limits=limits)
    History(list(result.history))  # well formed
    hung = next(e for e in result.history if e.op_id == 1 and e.kind != Kind.INVOKE)
    assert (hung.kind, hung.error) == (Kind.INFO, "read_timeout")
    after = next(e for e in result.history if e.op_id == 2 and e.kind == Kind.INVOKE)
    assert hung.process == 0
    assert after.process == 1  # one worker: its next op runs as a fresh process
    assert result.stats["processes_count"] == 2


async def test_an_op_whose_referent_failed_is_skipped_and_never_invoked(
        stand_in_url: str, tmp_path: Path) -> None:
    opened = Op(id=0, f=F.CALL_OPEN, value={"user": "fan_0", "creator": "creator_0",
                                            "call": "c_0", "rate_tokens_per_minute": 0},
                idempotency_key="k0")
    charge = Op(id=1, f=F.CALL_CHARGE, value={"user": "fan_0", "creator": "creator_0",
                                              "call": "c_0", "minute": 1, "amount_tokens": 0},
                idempotency_key="k1")
    result = await _run(stand_in_url, tmp_path, _scenario([Batch(ops=(opened,)),
                                                           Batch(ops=(charge,))]))
    assert [(e.op_id, e.kind) for e in result.history] == [(0, Kind.INVOKE), (0, Kind.FAIL)]
    assert result.stats["ops_skipped_count"] == 1
    assert "c_0" in str(result.stats["first_skipped"])


async def test_without_a_provider_provider_ops_are_unsupported_and_settle_is_immediate(
        stand_in_url: str, tmp_path: Path) -> None:
    refund = Op(id=1, f=F.REFUND, value={"purchase": "p_0", "amount_cents": None})
    steps: list[Step] = [Batch(ops=(_purchase(0),)), Settle(), Batch(ops=(refund,))]
    result = await _run(stand_in_url, tmp_path, _scenario(steps))
    assert result.stats["ops_unsupported_count"] == 1
    assert len(result.history) == 2


async def test_setting_a_delivery_policy_without_a_provider_is_a_usage_error(
        stand_in_url: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no provider"):
        await _run(stand_in_url, tmp_path, _scenario([SetPolicy(policy=DeliveryPolicy())]))


async def test_the_run_deadline_raises_a_clear_error_and_leaves_a_loadable_history(
        stand_in_url: str, tmp_path: Path) -> None:
    steps: list[Step] = [Batch(ops=(_purchase(0),)), Pause(ms=30_000)]
    with pytest.raises(RunDeadlineExceeded, match=r"pause 30000 ms.*run_duration_s_max"):
        await _run(stand_in_url, tmp_path, _scenario(steps),
                   deadline_s=time.monotonic() + 2.0)
    (run,) = load(tmp_path / "history.jsonl")
    assert not run.complete
    assert len(run.history) == 2
    assert run.observation is None


async def test_concurrency_bounds_the_ops_in_flight(stand_in_url: str, tmp_path: Path) -> None:
    steps: list[Step] = [Batch(ops=(_purchase(0, tokens=1000),)),
                         Batch(ops=tuple(_tip(1 + i, 1) for i in range(12)))]
    result = await _run(stand_in_url, tmp_path, _scenario(steps), concurrency=3)
    in_flight = in_flight_max = 0
    for event in result.history:
        in_flight += 1 if event.kind == Kind.INVOKE else -1
        in_flight_max = max(in_flight_max, in_flight)
    assert in_flight_max <= 3
    assert {e.process for e in result.history} <= {0, 1, 2}


async def test_a_concurrency_over_the_bound_is_refused_never_lowered(
        stand_in_url: str, tmp_path: Path) -> None:
    steps: list[Step] = [Batch(ops=(_purchase(0),))]
    with pytest.raises(UsageError, match=r"concurrency 65 is over Limits.ops_in_flight_max"):
        await _run(stand_in_url, tmp_path, _scenario(steps), concurrency=65)


async def test_the_stats_say_how_many_workers_ran_and_the_harness_loop_lag(
        stand_in_url: str, tmp_path: Path) -> None:
    steps: list[Step] = [Batch(ops=(_purchase(0, tokens=1000),)), Pause(ms=50),
                         Batch(ops=tuple(_tip(1 + i, 1) for i in range(6)))]
    result = await _run(stand_in_url, tmp_path, _scenario(steps), concurrency=5)
    assert result.stats["workers_count"] == 5
    lag = LagSummary.from_stats(result.stats)
    assert lag is not None
    assert lag.samples_count >= 1
