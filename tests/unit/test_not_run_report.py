"""What was not run for the target is stated: on the console, in the HTML report, in the
run's verdict (left out of it, never "unknown")."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.model import Verdict
from harness.report.html import render_html
from harness.report.record import NotRunPart, RunRecord, ScenarioRecord, TargetInfo

_REASON = 'tips carry no idempotency key: [ops.tip] idempotency = "none" in shop.toml'


def _record() -> RunRecord:
    storm = ScenarioRecord(
        name="retry-storm", seed=1, params={"seed": 1}, started_ns=0, duration_s=1.0,
        ops_count=30, stats={"ops_skipped_count": 0, "ops_unsupported_count": 0},
        verdicts={"conservation": Verdict(valid=True)},
        reproduce="tokenchaos run --scenario retry-storm --seed 1",
        not_run=(NotRunPart(part="tips retried with the same key", reason=_REASON),))
    calls = ScenarioRecord(
        name="mid-call-refund", seed=1, params={"seed": 1}, started_ns=0, duration_s=0.0,
        ops_count=0, stats={}, verdicts={},
        reproduce="tokenchaos run --scenario mid-call-refund --seed 1",
        not_run_reason="the profile shop.toml has no [ops.call_charge]")
    return RunRecord(run_id="20260501T120000Z-abcdef", started_at="2026-05-01T12:00:00.000000Z",
                     finished_at="2026-05-01T12:00:05.000000Z", tokenchaos_version="0.1.0",
                     target=TargetInfo(profile="shop.toml", service_url="http://127.0.0.1:1"),
                     suite="smoke", command="tokenchaos run --target shop.toml", valid=True,
                     exit_code=0, scenarios=(storm, calls))


def test_the_console_lists_what_was_not_run_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    cli._print_outcome(_record(), Path("reports/x"))
    out = " ".join(capsys.readouterr().out.split())
    assert "not run for this target" in out
    assert f"retry-storm: tips retried with the same key ({_REASON})" in out
    assert "mid-call-refund (the profile shop.toml has no [ops.call_charge])" in out
    assert "unknown" not in out
    assert "verdict: held" in out


def test_the_report_states_what_was_not_run_and_why() -> None:
    page = render_html(_record())
    assert "Not run for this target" in page
    assert "tips retried with the same key" in page
    assert "idempotency = &quot;none&quot; in shop.toml" in page
    assert "NOT RUN" in page
    assert "has no [ops.call_charge]" in page
