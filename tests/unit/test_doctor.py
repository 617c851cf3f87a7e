"""The doctor's pure parts: which flags apply, how secrets are masked, how a report reads."""

from __future__ import annotations

import pytest

from harness import cli
from harness.doctor import DoctorReport, Exchange, Step, _Recorder, format_report
from harness.errors import UsageError
from harness.targets.schema_check import SchemaFinding


@pytest.mark.parametrize("flag", ["--target-url", "--provider-url", "--provider-key",
                                  "--database-url"])
def test_doctor_target_local_refuses_the_flags_of_a_remote_target(flag: str) -> None:
    with pytest.raises(UsageError, match=rf"the flag {flag} does not apply to --target local"):
        cli.check_flags_apply("doctor", {flag}, {cli.LOCAL}, target="local")


def test_doctor_database_url_needs_an_sql_observer() -> None:
    cli.check_flags_apply("doctor", {"--database-url"}, {cli.REMOTE, cli.SQL_OBSERVER})
    with pytest.raises(UsageError, match="does not read the end state over SQL"):
        cli.check_flags_apply("doctor", {"--database-url"}, {cli.REMOTE}, target="x.toml")


def test_known_secrets_and_secret_headers_are_masked() -> None:
    recorder = _Recorder(["tc_user_token_123456", "adm_secret_key_abcdef"])
    assert recorder.mask('{"token":"tc_user_token_123456"}') == '{"token":"tc_u****"}'
    assert recorder._mask_header("Authorization", "Bearer anything-at-all") == "Bearer anyt****"
    assert recorder._mask_header("X-Staging-Token", "s3cr3t-value-x") == "s3cr****"
    assert recorder._mask_header("Idempotency-Key", "doctor-s0-k00001") == "doctor-s0-k00001"


def _report(*steps: Step, schema: tuple[SchemaFinding, ...] = ()) -> DoctorReport:
    return DoctorReport(profile="p.toml", target_url="http://127.0.0.1:1", schema=schema,
                        steps=steps)


def test_a_report_with_a_problem_cannot_run_the_suite_and_says_what_is_missing() -> None:
    step = Step(name="tip", reading="INFO", exchanges=(Exchange(
        method="POST", url="http://127.0.0.1:1/tips", headers=(("authorization", "Bearer x"),),
        body='{"amount":1}', status_code=201, answer="{}"),),
        problems=("answered 201, which is in neither status_ok [200] nor status_fail",))
    report = _report(step)
    assert not report.ok
    lines = format_report(report)
    assert "[INFO] tip" in lines
    assert "    sent: POST http://127.0.0.1:1/tips" in lines
    assert "    got:  201 {}" in lines
    assert any(line.startswith("    MISSING: answered 201") for line in lines)
    assert lines[-1].startswith("verdict: the profile cannot run the suite yet: 1 thing")


def test_schema_findings_print_first_and_a_defect_alone_does_not_fail_the_doctor() -> None:
    defect = SchemaFinding(kind="intent_unique_deferrable", severity="defect",
                           text="the unique constraint u on t.intent is DEFERRABLE")
    report = _report(Step(name="provision", reading="OK"), schema=(defect,))
    assert report.ok
    lines = format_report(report)
    assert lines[1] == "SCHEMA DEFECT: the unique constraint u on t.intent is DEFERRABLE"
    assert "the run will break on them" in lines[-1]
