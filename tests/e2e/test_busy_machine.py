"""A verdict never depends on how busy the machine is.

While busy processes keep every core at 100%, the correct service must still pass the
smoke suite clean: slow answers are performance findings, never anomalies, and the
service must not shed the suite's load with 503s. Both the command a user runs
(``tokenchaos run``) and the zoo's correct-service row read from the same run are
checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.campaign import RunOutcome
from harness.history import load
from harness.report.record import load_run_json
from harness.zoo import zoo_row

pytestmark = pytest.mark.e2e

_HOG_LIFETIME_S = 900  # a hog that outlives its test by accident still stops by itself
_CLI_TIMEOUT_S = 600
_HOG_SOURCE = (
    "import time\n"
    f"end = time.monotonic() + {_HOG_LIFETIME_S}\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


@pytest.fixture
def cpu_hog() -> Iterator[int]:
    """One busy process per core for the test's duration; every one is killed after it."""
    count = os.cpu_count() or 2
    hogs = [subprocess.Popen([sys.executable, "-c", _HOG_SOURCE]) for _ in range(count)]
    try:
        time.sleep(0.2)  # let the hogs get going before the stack starts
        assert all(hog.poll() is None for hog in hogs), "a CPU hog died at start"
        yield count
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait(timeout=30)


def _not_clean(report_dir: Path) -> str:
    record = load_run_json(report_dir / "run.json")
    lines = []
    for scenario in record.scenarios:
        for name, verdict in scenario.verdicts.items():
            if verdict.valid is not True:
                lines.append(f"{scenario.name} {name} {verdict.valid}: {verdict.note or ''}")
                lines += [f"    {a.explanation}" for a in verdict.anomalies[:3]]
    return "\n".join(lines)


def test_smoke_run_and_its_zoo_row_stay_clean_while_every_core_is_busy(
        cpu_hog: int, database_url: str, tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from harness.cli import main; main()", "run",
               "--report-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                          timeout=_CLI_TIMEOUT_S, check=False,
                          env={**os.environ, "CI": "1", "TOKENCHAOS_DATABASE_URL": database_url})
    reports = [path.parent for path in tmp_path.glob("*/run.json")]
    detail = _not_clean(reports[0]) if reports else ""
    assert done.returncode == 0, f"{detail}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert len(reports) == 1
    # The same run read as the zoo reads its correct-service row: clean, no anomaly at all.
    (report_dir,) = reports
    outcome = RunOutcome(record=load_run_json(report_dir / "run.json"), report_dir=report_dir,
                         exit_code=done.returncode)
    row = zoo_row(None, outcome, load(report_dir / "history.jsonl"), wall_s=0.0)
    assert row.clean, detail
    assert row.anomalies_count == 0
