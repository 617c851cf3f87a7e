"""`tokenchaos bench --part service`: one tiny run end to end; the figures are not judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_bench_service_prints_both_workloads_and_saves_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-c", "from harness.cli import main; main()", "bench",
         "--part", "service", "--reps", "1", "--duration", "0.5", "--clients", "2",
         "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
        env={k: v for k, v in os.environ.items() if k != "TOKENCHAOS_DATABASE_URL"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "uniform" in result.stdout
    assert "hot" in result.stdout
    rows = json.loads(out.read_text())["service"]["rows"]
    assert {(row["workload"], row["clients"]) for row in rows} == {("uniform", 2), ("hot", 2)}
    assert all(row["pgbench_tips_per_s"] > 0 for row in rows)
