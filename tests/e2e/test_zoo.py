"""The detection matrix, end to end: the smoke suite catches every flaw, and the correct
service is clean under several seeds.

Each test runs smoke scenarios, with the suite's own settings, against a local stack (a
fresh database on this worker's PostgreSQL, the provider, the reference service as a
child process) with one flaw installed through ``TOKENCHAOS_FLAWS``, exactly as
``tokenchaos run --flaw NAME`` does. The correct service runs the whole suite; a flaw runs
the smoke scenarios that catch it (``CATCHING_SCENARIOS``, taken from the matrix that
``tokenchaos zoo`` writes into the README, where each flaw runs the whole suite), which
keeps the suite's time within its budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.campaign import run_plan
from harness.history import load
from harness.zoo import ZooRow, smoke_plan, zoo_row
from reference_impl.flaws import FLAWS
from scenarios import SMOKE_SEED

pytestmark = pytest.mark.e2e

# Seed 1 (the suite's own) also runs clean in the CLI and busy-machine tests.
CORRECT_SEEDS = (2, 3)

# For each flaw a fault does not reveal: smoke scenarios that catch it by a checker its
# description names (the README's matrix lists every scenario that does). A flaw only a
# fault reveals runs the scenarios its ``Flaw.scenarios`` names.
CATCHING_SCENARIOS: dict[str, tuple[str, ...]] = {
    "tip_lost_update": ("concurrent-tips", "hot-creator"),
    "call_charge_no_lock": ("parallel-spend", "mid-call-refund"),
    "credit_every_delivery": ("duplicate-purchase", "webhook-replay"),
    "refund_not_idempotent": ("webhook-replay", "refund-after-spend"),
    "refund_zeroes_balance_without_ledger": ("refund-after-spend", "partial-refunds"),
    "purchase_blocks_credit": ("parallel-spend", "duplicate-purchase"),
    "tip_lock_order_deadlock": ("tip-cycle",),
    "tip_ignores_idempotency_key": ("retry-storm",),
    "partial_refund_claws_whole": ("refund-after-spend", "partial-refunds"),
    "call_minute_charged_twice": ("mid-call-refund",),
    "refund_before_success_dropped": ("webhook-reorder",),
    "webhook_signature_not_verified": ("forged-webhooks",),
    "webhook_timestamp_not_enforced": ("forged-webhooks",),
    "dispute_won_not_reinstated": ("dispute",),
    "refund_ignores_bonus": ("partial-refunds", "webhook-replay"),
}
_CLI_TIMEOUT_S = 300


async def _run(database_url: str | None, tmp_path: Path, *, seed: int,
               flaw: str | None, only: tuple[str, ...] = ()) -> ZooRow:
    plan = smoke_plan(seed=seed, flaws=() if flaw is None else (flaw,), report_dir=tmp_path,
                      local_database_url=database_url, only=only)
    started_s = time.monotonic()
    outcome = await run_plan(plan)
    wall_s = time.monotonic() - started_s
    runs = load(outcome.report_dir / "history.jsonl")
    return zoo_row(None if flaw is None else FLAWS[flaw], outcome, runs, wall_s=wall_s)


def _findings(row: ZooRow) -> str:
    from harness.report.record import load_run_json

    record = load_run_json(Path(row.report_dir) / "run.json")
    lines = [f"verdict {row.valid}; checkers that fired: {row.checkers_fired}; "
             f"scenarios: {row.scenarios_caught}; unknown: {row.scenarios_unknown}"]
    for scenario in record.scenarios:
        for name, verdict in scenario.verdicts.items():
            if verdict.valid is not True:
                lines.append(f"{scenario.name} {name} {verdict.valid}: {verdict.note or ''}")
                lines += [f"    {a.explanation}" for a in verdict.anomalies[:2]]
    return "\n".join(lines)


def test_every_flaw_names_the_smoke_scenarios_that_catch_it() -> None:
    from scenarios import get_suite

    smoke = {name for name, _ in get_suite("smoke").runs()}
    for name, flaw in FLAWS.items():
        scenarios = flaw.scenarios or CATCHING_SCENARIOS.get(name, ())
        assert scenarios, f"add the smoke scenarios that catch {name} to CATCHING_SCENARIOS"
        assert set(scenarios) <= smoke, (name, sorted(set(scenarios) - smoke))
    assert not set(CATCHING_SCENARIOS) - set(FLAWS), "a flaw left the zoo"


@pytest.mark.parametrize("name", list(FLAWS))
async def test_smoke_suite_catches_flaw_by_the_checker_its_description_names(
        name: str, database_url: str, tmp_path: Path) -> None:
    # A flaw only a fault reveals passes every other scenario (the matrix of `tokenchaos
    # zoo` shows it on the whole smoke suite); it runs on a durable embedded PostgreSQL of
    # its own, so every database fault runs.
    only = FLAWS[name].scenarios or CATCHING_SCENARIOS[name]
    row = await _run(None if FLAWS[name].scenarios else database_url, tmp_path,
                     seed=SMOKE_SEED, flaw=name, only=only)
    assert row.valid is False, _findings(row)
    assert row.caught_as_described, (
        f"{name} names {FLAWS[name].caught_by}\n{_findings(row)}")
    assert row.ops_to_detection is not None
    if FLAWS[name].scenarios:  # only a fault reveals it: every other scenario holds
        assert set(row.scenarios_caught) <= set(FLAWS[name].scenarios), _findings(row)


@pytest.mark.parametrize("seed", CORRECT_SEEDS)
async def test_correct_service_passes_the_smoke_suite_without_an_anomaly(
        seed: int, database_url: str, tmp_path: Path) -> None:
    row = await _run(database_url, tmp_path, seed=seed, flaw=None)
    assert row.clean, _findings(row)
    assert row.valid is True
    assert row.anomalies_count == 0
    assert row.ops_to_detection is None


def test_run_with_a_flaw_on_the_command_line_breaks_and_exits_1(
        database_url: str, tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from harness.cli import main; main()", "run",
               "--scenario", "dispute", "--flaw", "dispute_won_not_reinstated",
               "--report-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                          timeout=_CLI_TIMEOUT_S, check=False,
                          env={**os.environ, "CI": "1", "TOKENCHAOS_DATABASE_URL": database_url})
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    reproduce = done.stdout.split("reproduce:", 1)[-1]
    assert "dispute_won_not_reinstated" in reproduce, done.stdout
