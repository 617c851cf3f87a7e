"""The state machine against the local stack: it finds flaws from scratch within the ``ci``
profile's budget, through the API and through ``tokenchaos machine``. That every checker
holds on the correct service is shown through the plugin's ``tokenchaos_machine`` fixture
(``tests/e2e/test_pytest_plugin.py``), as a user's test would ask for it.

Each test starts a local stack on a fresh database of this worker's PostgreSQL, with the
flaw installed as ``tokenchaos machine --flaw NAME`` installs it, and runs the ``ci``
settings profile (derandomized: the same programs every run; shrinking bounded by count).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.history import load
from harness.stateful import MachineResult, format_result, machine_plan, run_machine
from reference_impl.flaws import FLAWS

pytestmark = pytest.mark.e2e

_CLI_TIMEOUT_S = 900


def _explore(database_url: str, tmp_path: Path, *flaws: str) -> MachineResult:
    plan = machine_plan(flaws=flaws, report_dir=tmp_path, local_database_url=database_url)
    return run_machine(plan, profile="ci")


def _broken(result: MachineResult) -> set[str]:
    return {name for name, valid in result.checkers.items() if valid is False}


def test_machine_finds_a_lost_update_from_scratch_within_the_ci_budget(
        database_url: str, tmp_path: Path) -> None:
    flaw = "tip_lost_update"
    result = _explore(database_url, tmp_path, flaw)
    report = "\n".join(format_result(result))
    assert result.valid is False, report
    assert result.exit_code == 1, report
    assert _broken(result) & set(FLAWS[flaw].caught_by), report
    assert "state = TokenMachine()" in result.program, report
    assert "state.start(" in result.program, report
    assert "did not hold" in result.anomaly, report
    assert result.programs_to_failure is not None
    assert result.programs_to_failure <= 30  # within ci's examples, before any shrinking
    runs = load(result.history_path)
    assert runs, "every program is written to the history"
    assert {run.name for run in runs} == {"machine"}


def test_machine_command_finds_an_ignored_key_from_scratch_prints_it_and_exits_1(
        database_url: str, tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from harness.cli import main; main()", "machine",
               "--profile", "ci", "--flaw", "tip_ignores_idempotency_key",
               "--report-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                          timeout=_CLI_TIMEOUT_S, check=False,
                          env={**os.environ, "CI": "1", "TOKENCHAOS_DATABASE_URL": database_url})
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "state = TokenMachine()" in done.stdout
    assert "verdict: BROKE (exit 1)" in done.stdout
    assert "idempotency BROKE" in done.stdout  # a checker the flaw's description names
    found = re.search(r"first anomaly after [0-9.]+ s, in program (\d+)", done.stdout)
    assert found is not None, done.stdout[-3000:]
    assert int(found.group(1)) <= 30  # within ci's examples, before any shrinking
