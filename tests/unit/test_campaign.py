"""The run plan: what it refuses, and the command that reproduces one scenario."""

from __future__ import annotations

import dataclasses

import pytest

from harness.campaign import RunPlan, reproduce_command
from harness.errors import UsageError
from harness.limits import DEFAULT_LIMITS
from harness.scenario import ScenarioParams
from scenarios import get_scenario

_RUNS = ((get_scenario("parallel-spend"), ScenarioParams(seed=3)),)


def test_the_reproduce_command_carries_the_latency_bound_that_failed_the_run() -> None:
    bounded = RunPlan(runs=_RUNS, suite=None,
                      limits=dataclasses.replace(DEFAULT_LIMITS, latency_ms_max=250))
    assert "--latency-bound-ms 250" in reproduce_command(bounded, "parallel-spend",
                                                         ScenarioParams(seed=3))
    plain = RunPlan(runs=_RUNS, suite=None)
    assert "--latency-bound-ms" not in reproduce_command(plain, "parallel-spend",
                                                         ScenarioParams(seed=3))


def test_a_remote_provider_needs_its_control_key() -> None:
    with pytest.raises(UsageError, match="TOKENCHAOS_PROVIDER_KEY"):
        RunPlan(runs=_RUNS, suite=None, local=False, provider_url="http://127.0.0.1:9")
    keyed = RunPlan(runs=_RUNS, suite=None, local=False, provider_url="http://127.0.0.1:9",
                    provider_key="tck_" + "k" * 20)
    assert keyed.provider_key is not None
