"""junit.xml: one test case per scenario × checker; failures explain, unknowns skip."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.model import Anomaly, Verdict
from harness.report.junit import junit_xml, write_junit
from harness.report.record import ScenarioRecord
from tests.unit.test_report_record import make_record


def cases(root: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {(c.get("classname", ""), c.get("name", "")): c for c in root.iter("testcase")}


def test_one_test_case_per_scenario_and_checker(tmp_path: Path) -> None:
    record = make_record(schema=None)
    root = ET.parse(write_junit(record, tmp_path / "junit.xml")).getroot()
    found = cases(root)
    expected = {("tokenchaos.webhook-replay", c) for c in
                ("exactly_once_credit", "coverage", "conservation")}
    assert expected <= set(found)
    assert len(root.findall("testsuite")) == 2
    assert root.get("tests") == "4"  # three checkers, plus the crashed scenario's error case


def test_failure_carries_every_anomaly_explanation_and_the_reproduce_command() -> None:
    root = ET.fromstring(junit_xml(make_record(schema=None)))
    failure = cases(root)[("tokenchaos.webhook-replay", "exactly_once_credit")].find("failure")
    assert failure is not None
    assert failure.get("type") == "duplicated_credit"
    assert "Let A be purchase #3" in failure.get("message", "")
    text = failure.text or ""
    assert "Let A be purchase #3" in text
    assert "ops #3, #9" in text
    assert "tokenchaos run --scenario webhook-replay --seed 8141" in text
    assert root.get("failures") == "1"


def test_unknown_verdict_is_skipped_with_the_checkers_note() -> None:
    root = ET.fromstring(junit_xml(make_record(schema=None)))
    case = cases(root)[("tokenchaos.webhook-replay", "coverage")]
    skipped = case.find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "never provoked: replay_absorbed"
    assert case.find("failure") is None
    assert root.get("skipped") == "1"


def test_passing_checker_has_neither_failure_nor_skipped() -> None:
    root = ET.fromstring(junit_xml(make_record(schema=None)))
    case = cases(root)[("tokenchaos.webhook-replay", "conservation")]
    assert list(case) == []


def test_scenario_no_checker_judged_is_an_error_not_a_pass() -> None:
    root = ET.fromstring(junit_xml(make_record(schema=None)))
    suite = next(s for s in root.iter("testsuite") if s.get("name") == "tip-cycle")
    (case,) = suite.findall("testcase")
    error = case.find("error")
    assert error is not None
    assert "tokenchaos run --scenario tip-cycle --seed 1" in error.get("message", "")
    assert suite.get("errors") == "1"


def test_suite_properties_name_seed_and_reproduce_command() -> None:
    root = ET.fromstring(junit_xml(make_record(schema=None)))
    suite = next(s for s in root.iter("testsuite") if s.get("name") == "webhook-replay")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["seed"] == "8141"
    assert properties["reproduce"].startswith("tokenchaos run --scenario webhook-replay")
    assert suite.get("time") == "1.250"


def test_markup_and_control_characters_in_text_still_parse() -> None:
    nasty = 'fan <"&"> \x00\x1b[31m'
    anomaly = Anomaly(kind="drift", event_indexes=(), expected=0, observed=1,
                      explanation=f"balance of {nasty} drifted")
    scenario = ScenarioRecord(
        name="a<b>&c", seed=1, params={}, started_ns=0, duration_s=0.1, ops_count=1, stats={},
        verdicts={"ledger_drift": Verdict(valid=False, anomalies=(anomaly,))},
        reproduce="tokenchaos run --scenario 'a<b>&c' --seed 1")
    root = ET.fromstring(junit_xml(make_record(schema=None, scenarios=(scenario,))))
    (case,) = root.iter("testcase")
    failure = case.find("failure")
    assert failure is not None
    assert 'fan <"&"> [31m' in failure.get("message", "")
    assert case.get("classname") == "tokenchaos.a<b>&c"


def test_same_scenario_twice_gets_seeded_names() -> None:
    first, _ = make_record(schema=None).scenarios
    second = ScenarioRecord(**{**{f: getattr(first, f) for f in first.__dataclass_fields__},
                               "seed": 9})
    root = ET.fromstring(junit_xml(make_record(schema=None, scenarios=(first, second))))
    names = {s.get("name") for s in root.iter("testsuite")}
    assert names == {"webhook-replay[seed=8141]", "webhook-replay[seed=9]"}
    assert len(cases(root)) == 6


def test_the_schema_check_is_one_test_case_schema_failed_by_a_defect() -> None:
    root = ET.fromstring(junit_xml(make_record()))  # its schema has a DEFERRABLE intent unique
    case = cases(root)[("tokenchaos.schema", "schema")]
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("type") == "intent_unique_deferrable"
    assert "DEFERRABLE" in (failure.get("message") or "")
    assert root.findall("testsuite")[0].get("name") == "schema"  # first, as it ran first
    assert root.get("tests") == "5" and root.get("failures") == "2"


def test_a_schema_that_could_not_be_checked_is_skipped_and_one_that_held_passes() -> None:
    unknown = Verdict(valid="unknown", note="there is no table 'balances' in this database")
    case = cases(ET.fromstring(junit_xml(make_record(schema=unknown))))[
        ("tokenchaos.schema", "schema")]
    skipped = case.find("skipped")
    assert skipped is not None and "no table 'balances'" in (skipped.get("message") or "")
    held = cases(ET.fromstring(junit_xml(make_record(schema=Verdict(valid=True)))))[
        ("tokenchaos.schema", "schema")]
    assert list(held) == []
