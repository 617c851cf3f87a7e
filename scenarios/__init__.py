"""The scenario registry and the suites: every workload the harness can run, by name.

Each module here defines one ``SCENARIO`` (op generators that are pure functions of a
seeded ``random.Random`` and ``ScenarioParams``, shaped like Jepsen's bank workload);
``_common`` holds what they share; ``suites`` defines ``Suite``. Nothing in this package
does I/O, reads a clock or uses the global ``random``: importing it only builds data.
"""

from __future__ import annotations

from harness.errors import UsageError
from harness.scenario import Scenario, ScenarioParams
from scenarios import (
    bad_input,
    concurrent_tips,
    crash_during_spends,
    database_restart,
    dispute,
    duplicate_purchase,
    forged_webhooks,
    hot_creator,
    key_collision,
    mid_call_refund,
    missing_recipient,
    mixed_chaos,
    parallel_spend,
    partial_refunds,
    refund_after_spend,
    retry_storm,
    slow_database,
    stalled_lock_holder,
    three_d_secure,
    tip_cycle,
    webhook_partition,
    webhook_reorder,
    webhook_replay,
)
from scenarios.suites import Suite

__all__ = ["SCENARIOS", "SUITES", "Suite", "get_scenario", "get_suite"]

_IN_DESIGN_ORDER = (
    parallel_spend.SCENARIO,
    concurrent_tips.SCENARIO,
    hot_creator.SCENARIO,
    tip_cycle.SCENARIO,
    duplicate_purchase.SCENARIO,
    three_d_secure.SCENARIO,
    webhook_replay.SCENARIO,
    webhook_reorder.SCENARIO,
    refund_after_spend.SCENARIO,
    partial_refunds.SCENARIO,
    dispute.SCENARIO,
    mid_call_refund.SCENARIO,
    retry_storm.SCENARIO,
    forged_webhooks.SCENARIO,
    mixed_chaos.SCENARIO,
    bad_input.SCENARIO,
    key_collision.SCENARIO,
    missing_recipient.SCENARIO,
    crash_during_spends.SCENARIO,
    database_restart.SCENARIO,
    stalled_lock_holder.SCENARIO,
    webhook_partition.SCENARIO,
    slow_database.SCENARIO,
)

SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in _IN_DESIGN_ORDER}
assert len(SCENARIOS) == len(_IN_DESIGN_ORDER), "two scenarios share a name"

SMOKE_SEED = 1
FULL_SEEDS = (1, 2, 3)
FULL_SCALE = 4
LOAD_SCALE = 8
# As many ops in flight as the runner allows by default (Limits.ops_in_flight_max), so the
# widest bursts (two dozen fans tipping one creator) really are at once.
SUITE_CONCURRENCY = 32
# The fault scenarios whose faults take seconds each run in full only; smoke keeps the
# crash and the database restarts (and mixed-chaos's faults), which catch every
# fault-only flaw of the zoo in a few seconds.
FULL_ONLY = ("stalled-lock-holder", "webhook-partition", "slow-database")

SUITES: dict[str, Suite] = {
    "smoke": Suite(
        name="smoke",
        summary="every scenario once, small (the slowest fault scenarios left to full): "
                "a CI gate that runs in seconds",
        scenarios=tuple(name for name in SCENARIOS if name not in FULL_ONLY),
        params=(ScenarioParams(seed=SMOKE_SEED, scale=1, concurrency=SUITE_CONCURRENCY),),
    ),
    "full": Suite(
        name="full",
        summary="every scenario at four times the size, three seeds",
        scenarios=tuple(SCENARIOS),
        params=tuple(ScenarioParams(seed=seed, scale=FULL_SCALE, concurrency=SUITE_CONCURRENCY)
                     for seed in FULL_SEEDS),
        # Three seeds of every scenario at four times the size, the faulted ones holding
        # and healing dozens of faults: several minutes on two cores.
        duration_s_max=1800.0,
    ),
    "load": Suite(
        name="load",
        summary="the contention scenarios, large, for load runs against staging",
        scenarios=("parallel-spend", "concurrent-tips", "hot-creator", "tip-cycle"),
        params=(ScenarioParams(seed=SMOKE_SEED, scale=LOAD_SCALE,
                               concurrency=SUITE_CONCURRENCY),),
    ),
}


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``.

    Raises:
        UsageError: no scenario has that name; the message lists the known ones.
    """
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UsageError(f"unknown scenario {name!r}; known scenarios: "
                         f"{', '.join(SCENARIOS)}") from None


def get_suite(name: str) -> Suite:
    """The suite called ``name``.

    Raises:
        UsageError: no suite has that name; the message lists the known ones.
    """
    try:
        return SUITES[name]
    except KeyError:
        raise UsageError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)}") from None
