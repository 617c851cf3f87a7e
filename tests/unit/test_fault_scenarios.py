"""The fault scenarios: each fault lands inside a burst, is healed, and every keyed op of
the burst is re-sent with its key; what the run cannot inject is declared not run; and
the full suite injects every fault kind there is."""

from __future__ import annotations

import dataclasses
import random

import pytest

from harness.faults.spec import ALL_CAPABILITIES, FaultKind
from harness.scenario import ScenarioParams, TargetTraits
from harness.schedule import Batch, Heal, Inject, Step
from scenarios import SCENARIOS, SUITES

FAULT_SCENARIOS = ("crash-during-spends", "database-restart", "stalled-lock-holder",
                   "webhook-partition", "slow-database", "mixed-chaos")
EVERYTHING = TargetTraits(faults=ALL_CAPABILITIES)


def _steps(name: str, params: ScenarioParams) -> list[Step]:
    return list(SCENARIOS[name].generator(random.Random(params.seed), params))


@pytest.mark.parametrize("name", FAULT_SCENARIOS)
@pytest.mark.parametrize("scale", [1, 2])
def test_every_fault_lands_inside_a_burst_then_heals_then_the_burst_is_resent(
        name: str, scale: int) -> None:
    steps = _steps(name, ScenarioParams(seed=3, scale=scale, target=EVERYTHING))
    injects = [i for i, step in enumerate(steps) if isinstance(step, Inject)]
    assert injects, "no fault was scheduled"
    for i in injects:
        inject, burst, heal, retries = steps[i:i + 4]
        assert isinstance(inject, Inject) and isinstance(burst, Batch)
        assert isinstance(heal, Heal) and isinstance(retries, Batch)
        # Answers (or an acknowledged webhook) before it, ops in flight after it.
        assert inject.after_ops + inject.after_acks > 0 and inject.after_ops < len(burst.ops)
        keyed = [(op.f, op.idempotency_key) for op in burst.ops if op.idempotency_key]
        assert keyed == [(op.f, op.idempotency_key) for op in retries.ops]
    names = [steps[i].name for i in injects]  # type: ignore[union-attr]
    assert len(set(names)) == len(names)
    assert set(SCENARIOS[name].faults) >= {steps[i].fault for i in injects}  # type: ignore[union-attr]


@pytest.mark.parametrize("name", FAULT_SCENARIOS[:-1])
def test_without_a_nemesis_a_fault_scenario_is_not_run_and_says_why(name: str) -> None:
    params = ScenarioParams(seed=1)  # no faults can be injected
    whole = SCENARIOS[name].whole_not_run(params)
    assert whole is not None and whole.reason
    assert not any(isinstance(step, Inject) for step in _steps(name, params))


def test_mixed_chaos_runs_without_faults_and_leaves_out_only_the_durability_check() -> None:
    params = ScenarioParams(seed=1)
    scenario = SCENARIOS["mixed-chaos"]
    assert scenario.whole_not_run(params) is None
    adapted = scenario.adapted(params)
    assert "durability" not in adapted.checkers and "fault_healed" not in adapted.provokes
    assert "durability" in scenario.adapted(dataclasses.replace(params, target=EVERYTHING)).checkers


def test_a_target_that_can_only_kill_runs_only_the_kill_and_declares_the_rest() -> None:
    params = ScenarioParams(seed=1, target=TargetTraits(
        faults=frozenset({FaultKind.KILL_SERVICE.value}),
        fault_reasons={cap: "no proxy" for cap in ALL_CAPABILITIES}))
    parts = SCENARIOS["mixed-chaos"].not_run(params)
    assert {part.part for part in parts} == {"latency 100±50 ms on service",
                                             "slow close 200 ms on service",
                                             "timeout 200 ms on service"}
    kinds = {step.fault.kind for step in _steps("mixed-chaos", params)
             if isinstance(step, Inject)}
    assert kinds == {FaultKind.KILL_SERVICE}


def test_the_full_suite_injects_every_fault_kind_and_smoke_keeps_a_few() -> None:
    def kinds(suite: str) -> set[FaultKind]:
        return {step.fault.kind for name, params in SUITES[suite].runs()
                for step in _steps(name, params.for_target(EVERYTHING))
                if isinstance(step, Inject)}

    assert kinds("full") == set(FaultKind)
    assert FaultKind.KILL_SERVICE in kinds("smoke")
    assert FaultKind.DATABASE_CRASH in kinds("smoke")
    assert len(kinds("smoke")) < len(FaultKind)


def test_the_full_suite_gets_the_time_its_faults_take() -> None:
    assert SUITES["smoke"].duration_s_max == 300.0
    assert SUITES["full"].duration_s_max >= 6 * SUITES["smoke"].duration_s_max
