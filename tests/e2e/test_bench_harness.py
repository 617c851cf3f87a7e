"""``tokenchaos bench --part harness`` end to end, tiny: it runs both sides and writes its
figures. No figure is asserted (they belong to the bench's output, not to a test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

_RUN_TIMEOUT_S = 300


def test_bench_harness_runs_both_sides_on_both_endpoints_and_writes_json(
        tmp_path: Path, database_url: str) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, "-c", "from harness.cli import main; main()", "bench",
               "--part", "harness", "--duration", "1", "--reps", "1", "--clients", "2",
               "--out", str(out)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                          timeout=_RUN_TIMEOUT_S, check=False,
                          env={**os.environ, "CI": "1", "TOKENCHAOS_DATABASE_URL": database_url})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "locust ops/s" in done.stdout
    rows = json.loads(out.read_text())["harness"]["rows"]
    assert sorted(row["endpoint"] for row in rows) == ["healthz", "tips"]
    for row in rows:
        assert row["concurrency"] == 2
        assert row["ours"]["ops"] >= 1
        assert row["locust"]["ops"] >= 0
