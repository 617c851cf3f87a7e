"""run.json: the record round-trips exactly and what we write matches run.schema.json."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.latency import LatencyFigures, Performance, SlowOp
from harness.errors import UsageError
from harness.model import Anomaly, Verdict
from harness.report.record import (
    SCHEMA_PATH,
    SCHEMA_VERSION,
    NotRunPart,
    RunRecord,
    Sample,
    ScenarioRecord,
    TargetInfo,
    iso_utc,
    load_run_json,
    ns_from_iso_utc,
    write_run_json,
)

PERFORMANCE = Performance(
    latency_ms_slow=5_000, latency_ms_max=None, ops_measured_count=12, slow_ops_count=1,
    by_f=(LatencyFigures(f="purchase", ops_count=4, latency_ms_p50=40, latency_ms_p99=5_364,
                         latency_ms_max=5_364, slow_ops_count=1),
          LatencyFigures(f="tip", ops_count=8, latency_ms_p50=3, latency_ms_p99=9,
                         latency_ms_max=9, slow_ops_count=0)),
    slowest=(SlowOp(index=4, f="purchase", kind="ok", latency_ms=5_364, status_code=201),
             SlowOp(index=30, f="tip", kind="info", latency_ms=9, error="read_timeout")))


SCHEMA_DEFECT = Verdict(valid=False, counts={"defects": 1, "not_checked": 0}, anomalies=(
    Anomaly(kind="intent_unique_deferrable", event_indexes=(), expected="as the deployment "
            "guide asks", observed="intent_unique_deferrable",
            explanation="the unique constraint payments_intent_key on payments.intent_id is "
                        "DEFERRABLE: PostgreSQL refuses it as an ON CONFLICT arbiter"),))


def make_record(**overrides: Any) -> RunRecord:
    anomaly = Anomaly(kind="duplicated_credit", event_indexes=(3, 9), expected=500,
                      observed="1000 tokens", explanation="Let A be purchase #3 …",
                      user="fan_0", delivery_indexes=(0, 1))
    failing = ScenarioRecord(
        name="webhook-replay", seed=8141, params={"seed": 8141, "scale": 1, "tags": ["a"]},
        started_ns=12, duration_s=1.25, ops_count=40, stats={"ok_count": 38, "rate": 12.5},
        verdicts={"exactly_once_credit": Verdict(valid=False, counts={"duplicated": 1},
                                                 anomalies=(anomaly,)),
                  "coverage": Verdict(valid="unknown", note="never provoked: replay_absorbed"),
                  "conservation": Verdict(valid=True, counts={"accounts": 4})},
        reproduce="tokenchaos run --scenario webhook-replay --seed 8141 --target reference",
        samples=(Sample(20, 500, 0), Sample(90, 1000, 30)), performance=PERFORMANCE,
        not_run=(NotRunPart(part="tips retried with the same key",
                            reason='tips carry no idempotency key: [ops.tip] idempotency = '
                                   '"none" in shop.toml'),))
    crashed = ScenarioRecord(name="tip-cycle", seed=1, params={}, started_ns=2_000_000_000,
                             duration_s=0.0, ops_count=0, stats={}, verdicts={},
                             reproduce="tokenchaos run --scenario tip-cycle --seed 1")
    values: dict[str, Any] = dict(
        run_id="20260501-120000-ab12", started_at="2026-05-01T12:00:00.123456Z",
        finished_at="2026-05-01T12:01:02.000001Z", tokenchaos_version="0.1.0",
        target=TargetInfo(profile="reference", service_url="http://127.0.0.1:8000",
                          provider_url=None),
        suite="smoke", command="tokenchaos run --suite smoke --target reference",
        valid=False, exit_code=1, scenarios=(failing, crashed), schema=SCHEMA_DEFECT)
    values.update(overrides)
    return RunRecord(**values)


def test_record_round_trips_exactly_through_json_text() -> None:
    record = make_record()
    text = json.dumps(record.to_json())
    assert RunRecord.from_json(json.loads(text)) == record


def test_record_round_trips_unknown_validity_and_unfinished_run() -> None:
    record = make_record(valid="unknown", finished_at=None, exit_code=None, suite=None)
    assert RunRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_write_and_load_run_json(tmp_path: Path) -> None:
    record = make_record()
    path = write_run_json(record, tmp_path / "run.json")
    assert load_run_json(path) == record
    assert not (tmp_path / "run.json.tmp").exists()


def test_from_json_refuses_another_schema_version() -> None:
    data = make_record().to_json()
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(UsageError, match=f"schema_version {SCHEMA_VERSION + 1}"):
        RunRecord.from_json(data)


def test_from_json_refuses_a_version_1_record_without_performance_findings() -> None:
    data = make_record().to_json()
    data["schema_version"] = 1
    for scenario in data["scenarios"]:
        del scenario["performance"]
    with pytest.raises(UsageError, match="schema_version 1; this tokenchaos reads version 5"):
        RunRecord.from_json(data)


def test_from_json_refuses_a_version_2_record_without_what_was_not_run() -> None:
    data = make_record().to_json()
    data["schema_version"] = 2
    for scenario in data["scenarios"]:
        del scenario["not_run"], scenario["not_run_reason"]
    with pytest.raises(UsageError, match="schema_version 2; this tokenchaos reads version 5"):
        RunRecord.from_json(data)


def test_from_json_refuses_a_version_3_record_without_the_schema_verdict() -> None:
    data = make_record(schema=None).to_json()
    data["schema_version"] = 3
    del data["schema"]
    with pytest.raises(UsageError, match="schema_version 3; this tokenchaos reads version 5"):
        RunRecord.from_json(data)


def test_the_schema_verdict_round_trips_and_none_is_written_as_null() -> None:
    record = make_record()
    assert record.to_json()["schema"]["anomalies"][0]["kind"] == "intent_unique_deferrable"
    assert RunRecord.from_json(json.loads(json.dumps(record.to_json()))).schema == SCHEMA_DEFECT
    unchecked = make_record(schema=None)
    assert unchecked.to_json()["schema"] is None
    assert RunRecord.from_json(json.loads(json.dumps(unchecked.to_json()))) == unchecked


def test_a_record_without_the_schema_key_is_malformed() -> None:
    data = make_record().to_json()
    del data["schema"]
    with pytest.raises(UsageError, match="malformed"):
        RunRecord.from_json(data)


NOT_RUN = ScenarioRecord(name="mid-call-refund", seed=1, params={"seed": 1}, started_ns=0,
                         duration_s=0.0, ops_count=0, stats={}, verdicts={},
                         reproduce="tokenchaos run --scenario mid-call-refund --seed 1",
                         not_run_reason="the profile shop.toml has no [ops.call_charge]")


def test_what_was_not_run_round_trips_and_is_never_unknown() -> None:
    base = make_record()
    record = make_record(scenarios=(base.scenarios[0], NOT_RUN, base.scenarios[1]))
    again = RunRecord.from_json(json.loads(json.dumps(record.to_json())))
    whole = again.scenarios[1]
    assert whole.not_run_reason == "the profile shop.toml has no [ops.call_charge]"
    assert whole.ran is False
    assert whole.valid is True  # broke nothing, judged nothing: never "unknown"
    assert again.scenarios[0].not_run[0].part == "tips retried with the same key"
    assert again.scenarios[2].valid == "unknown"  # a scenario that ran and was not judged
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert validate(record.to_json(), schema, schema) == []
    bad = record.to_json()
    bad["scenarios"][0]["not_run"] = [{"part": "x"}]
    assert validate(bad, schema, schema) != []


def test_performance_findings_round_trip_and_contradictions_are_malformed() -> None:
    record = make_record()
    loaded = RunRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert loaded.scenarios[0].performance == PERFORMANCE
    assert loaded.scenarios[1].performance is None
    data = record.to_json()
    data["scenarios"][0]["performance"]["slow_ops_count"] = 99  # more than were measured
    with pytest.raises(UsageError, match="malformed"):
        RunRecord.from_json(data)


def test_from_json_refuses_a_validity_that_is_not_tri_state() -> None:
    data = make_record().to_json()
    data["valid"] = "maybe"
    with pytest.raises(UsageError, match="true, false or"):
        RunRecord.from_json(data)


def test_scenario_validity_merges_false_over_unknown_and_unknown_when_unjudged() -> None:
    failing, crashed = make_record().scenarios
    assert failing.valid is False
    assert crashed.valid == "unknown"


def test_iso_utc_round_trips_to_the_microsecond() -> None:
    wall_ns = 1_780_000_000_123_456_789
    text = iso_utc(wall_ns)
    assert text == "2026-05-28T20:26:40.123456Z"
    assert ns_from_iso_utc(text) == wall_ns // 1_000 * 1_000


def test_ns_from_iso_utc_rejects_other_time_zones() -> None:
    with pytest.raises(ValueError, match="not in UTC"):
        ns_from_iso_utc("2026-05-01T12:00:00+02:00")


# ---------------------------------------------------------------------------------------
# The JSON Schema, checked with a validator for exactly the keywords run.schema.json uses.


def test_written_run_json_validates_against_the_schema(tmp_path: Path) -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    for record in (make_record(), make_record(valid="unknown", finished_at=None,
                                              exit_code=None, scenarios=(), schema=None)):
        data = json.loads(write_run_json(record, tmp_path / "run.json").read_text())
        assert validate(data, schema, schema) == []


def test_schema_rejects_what_the_record_never_writes() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    good = make_record().to_json()
    bad_validity = {**good, "valid": 1}
    missing = {k: v for k, v in good.items() if k != "command"}
    extra = {**good, "colour": "red"}
    bad_sample = json.loads(json.dumps(good))
    bad_sample["scenarios"][0]["samples"][0] = [1, 2]
    bad_time = {**good, "started_at": "yesterday"}
    bad_slow_op = json.loads(json.dumps(good))
    bad_slow_op["scenarios"][0]["performance"]["slowest"][0]["kind"] = "slow"
    no_performance = json.loads(json.dumps(good))
    del no_performance["scenarios"][0]["performance"]
    for data in (bad_validity, missing, extra, bad_sample, bad_time, bad_slow_op,
                 no_performance):
        assert validate(data, schema, schema) != [], data


def test_schema_requires_every_field_the_record_writes() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    record = make_record().to_json()
    assert set(schema["required"]) == set(record)
    scenario_def = schema["$defs"]["scenario"]
    assert set(scenario_def["required"]) == set(record["scenarios"][0])
    performance = record["scenarios"][0]["performance"]
    assert set(schema["$defs"]["performance"]["required"]) == set(performance)
    assert set(schema["$defs"]["latency_figures"]["required"]) == set(performance["by_f"][0])
    assert set(schema["$defs"]["slow_op"]["required"]) == set(performance["slowest"][0])
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def validate(value: Any, schema: dict[str, Any], root: dict[str, Any],
             where: str = "$") -> list[str]:
    """Errors of ``value`` against the JSON Schema subset run.schema.json uses."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return validate(value, root["$defs"][name], root, where)
    errors: list[str] = []
    if "anyOf" in schema and all(validate(value, s, root, where) for s in schema["anyOf"]):
        errors.append(f"{where}: matches none of anyOf")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        errors.append(f"{where}: {value!r} not in {schema['enum']!r}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [*errors, f"{where}: {value!r} is not of type {types}"]
    errors += _validate_object(value, schema, root, where)
    errors += _validate_array(value, schema, root, where)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if _is_type(value, "number") and value < schema.get("minimum", value):
        errors.append(f"{where}: {value} below {schema['minimum']}")
    return errors


def _validate_object(value: Any, schema: dict[str, Any], root: dict[str, Any],
                     where: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    errors = [f"{where}: missing {key}" for key in schema.get("required", ())
              if key not in value]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            errors += validate(item, properties[key], root, f"{where}.{key}")
        elif extra is False:
            errors.append(f"{where}: unexpected key {key}")
        elif isinstance(extra, dict):
            errors += validate(item, extra, root, f"{where}.{key}")
    return errors


def _validate_array(value: Any, schema: dict[str, Any], root: dict[str, Any],
                    where: str) -> list[str]:
    if not isinstance(value, list):
        return []
    errors = []
    if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
        errors.append(f"{where}: {len(value)} items")
    if "items" in schema:
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], root, f"{where}[{i}]")
    return errors


def _is_type(value: Any, name: str) -> bool:
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    return checks[name](value)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    return type(a) is type(b) and a == b


def test_from_json_names_what_is_malformed() -> None:
    data = make_record().to_json()
    data["started_at"] = "yesterday"
    with pytest.raises(UsageError, match=r"malformed.*yesterday"):
        RunRecord.from_json(data)
    del data["target"]
    with pytest.raises(UsageError, match=r"malformed.*target"):
        RunRecord.from_json(data)


def test_a_scenarios_faults_round_trip_and_match_the_schema() -> None:
    from harness.model import FaultWindow

    windows = (FaultWindow(name="f0", kind="kill_service", link=None, description="kill service",
                           started_ns=10, healed_ns=20, recovered_ns=35),
               FaultWindow(name="f1", kind="latency", link="database",
                           description="latency 30±20 ms on database",
                           attributes={"latency": 30, "jitter": 20}, started_ns=40,
                           healed_ns=None, recovered_ns=None, error="could not heal: x"))
    record = make_record()
    record = dataclasses.replace(record, scenarios=(
        dataclasses.replace(record.scenarios[0], faults=windows), *record.scenarios[1:]))
    data = json.loads(json.dumps(record.to_json()))
    assert data["scenarios"][0]["faults"][0]["recovered_ns"] == 35
    assert RunRecord.from_json(data) == record
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert validate(data, schema, schema) == []
