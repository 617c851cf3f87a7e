"""The console's verdicts: each scenario printed as it is judged, "never credited" first."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.checkers.credit import check_exactly_once_credit
from harness.cli import _print_outcome, _ScenarioPrinter
from harness.model import Verdict
from harness.report.record import RunRecord, ScenarioRecord, TargetInfo
from tests.unit.conftest import SUCCEEDED, H, T, observe


def _never_credited() -> Verdict:
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1")
    truth = T().intent("pi_1", "fan_0", 500).deliver("evt_s", SUCCEEDED, "pi_1", 500).build()
    return check_exactly_once_credit(h.input(observe({"fan_0": 0}), truth))


def _scenario(name: str, verdicts: dict[str, Verdict]) -> ScenarioRecord:
    return ScenarioRecord(name=name, seed=1, params={}, started_ns=0, duration_s=0.0,
                          ops_count=1, stats={}, verdicts=verdicts,
                          reproduce=f"tokenchaos run --scenario {name} --seed 1")


def test_each_scenario_prints_as_judged_with_never_credited_first(
        capsys: pytest.CaptureFixture[str]) -> None:
    printer = _ScenarioPrinter()
    printer(_scenario("duplicate-purchase", {"exactly_once_credit": _never_credited(),
                                             "errors": Verdict(valid=True)}))
    first = capsys.readouterr().out
    assert first.lstrip().startswith("No purchase was ever credited: 1 succeeded intent")
    assert "[metadata]" in first  # printed as text, not read as console markup
    assert first.index("No purchase was ever credited") < first.index("duplicate-purchase")
    assert "reproduce: tokenchaos run --scenario duplicate-purchase --seed 1" in first
    printer(_scenario("tip-cycle", {"exactly_once_credit": _never_credited()}))
    second = capsys.readouterr().out
    assert second.count("No purchase was ever credited") == 1  # the anomaly, not the banner
    assert "tip-cycle" in second


def test_the_summary_states_never_credited_before_the_table(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    record = RunRecord(run_id="r1", started_at="2026-01-01T00:00:00Z", finished_at=None,
                       tokenchaos_version="0", target=TargetInfo(profile="p", service_url="u"),
                       suite="smoke", command="tokenchaos run", valid=False, exit_code=None,
                       scenarios=(_scenario("mixed-chaos",
                                            {"exactly_once_credit": _never_credited()}),))
    _print_outcome(record, tmp_path, details=False)
    out = capsys.readouterr().out
    assert out.lstrip().startswith("No purchase was ever credited")
    assert "mixed-chaos (seed 1): BROKE; reproduce: tokenchaos run --scenario mixed-chaos" in out


def test_the_summary_shows_the_schema_verdict_and_what_broke_it(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.unit.test_report_record import SCHEMA_DEFECT

    record = RunRecord(run_id="r1", started_at="2026-01-01T00:00:00Z", finished_at=None,
                       tokenchaos_version="0", target=TargetInfo(profile="p", service_url="u"),
                       suite="smoke", command="tokenchaos run", valid=False, exit_code=1,
                       scenarios=(_scenario("tip-cycle", {"errors": Verdict(valid=True)}),),
                       schema=SCHEMA_DEFECT)
    _print_outcome(record, tmp_path, details=False)
    out = capsys.readouterr().out
    assert "schema of the target's database: BROKE" in out
    assert "payments_intent_key on payments.intent_id is DEFERRABLE" in out
    assert out.index("schema of the target's database") < out.index("verdict: BROKE")


def test_a_schema_not_checked_says_why(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    record = RunRecord(run_id="r1", started_at="2026-01-01T00:00:00Z", finished_at=None,
                       tokenchaos_version="0", target=TargetInfo(profile="p", service_url="u"),
                       suite="smoke", command="tokenchaos run", valid="unknown", exit_code=2,
                       scenarios=(_scenario("tip-cycle", {"errors": Verdict(valid=True)}),),
                       schema=Verdict(valid="unknown", note="there is no table 'balances'"))
    _print_outcome(record, tmp_path, details=False)
    out = capsys.readouterr().out
    assert "schema of the target's database: unknown" in out
    assert "not checked: there is no table 'balances'" in out
