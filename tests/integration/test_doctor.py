"""``tokenchaos doctor`` against the real reference service: its profile passes, broken ones
are told what to fix, and the doctor exits 0 or 2, never 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.doctor import DoctorPlan, DoctorReport, format_report, run_doctor
from harness.stack import StackInfo
from tests.integration.stackapi import StackThread

pytestmark = pytest.mark.integration

REFERENCE_TOML = Path(__file__).parents[2] / "harness" / "targets" / "reference.toml"


@pytest.fixture
def info(stack_thread: StackThread, monkeypatch: pytest.MonkeyPatch) -> StackInfo:
    assert stack_thread.stack.info is not None
    monkeypatch.setenv("TOKENCHAOS_ADMIN_KEY", stack_thread.stack.info.admin_key)
    return stack_thread.stack.info


def _plan(info: StackInfo, profile: str | Path = "reference") -> DoctorPlan:
    return DoctorPlan(profile=str(profile), target_url=info.service_url,
                      provider_url=info.provider_url, provider_key=info.control_key)


def _broken(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = REFERENCE_TOML.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _step(report: DoctorReport, name: str) -> str:
    step = next(s for s in report.steps if s.name == name)  # the first of that name
    return "\n".join((step.reading, *step.problems, *step.notes))


async def test_the_reference_profile_passes_against_the_reference_service(
        info: StackInfo) -> None:
    report = await run_doctor(_plan(info))
    assert report.problems == ()
    assert report.ok
    names = [step.name for step in report.steps]
    for name in ("provision", "read_balance", "purchase", "credit (webhook)", "tip",
                 "tip retried with the same key", "call_open", "call_charge", "call_end",
                 "refund (provider)", "read_balance after the refund", "observer"):
        assert name in names
    assert all(step.reading == "OK" for step in report.steps), format_report(report)
    assert _step(report, "credit (webhook)") == "OK"


async def test_what_was_sent_is_printed_with_secrets_masked(info: StackInfo) -> None:
    report = await run_doctor(_plan(info))
    text = "\n".join(format_report(report))
    assert "sent: POST " + info.service_url + "/v1/tips" in text
    assert "got:  201 {" in text
    assert info.admin_key not in text
    assert info.control_key not in text
    (provision,) = [s for s in report.steps if s.name == "provision"]
    assert '"token":"' in provision.exchanges[0].answer  # the answer is shown ...
    for exchange in report.steps[-1].exchanges:
        assert dict(exchange.headers)["authorization"].endswith("****")  # ... masked


async def test_a_wrong_result_path_and_a_wrong_status_list_are_named_with_the_fix(
        info: StackInfo, tmp_path: Path) -> None:
    profile = _broken(
        tmp_path,
        ('result = { charge_id = "charge_id", balance_tokens = "balance" }',
         'result = { charge_id = "charge_id", balance_tokens = "new_balance" }'),
        ('body = { to = "{recipient_id:int}", amount = "{amount_tokens}" }\nstatus_ok = [201]',
         'body = { to = "{recipient_id:int}", amount = "{amount_tokens}" }\nstatus_ok = [200]'))
    report = await run_doctor(_plan(info, profile))
    assert not report.ok
    charge = _step(report, "call_charge")
    assert "result balance_tokens: path 'new_balance' is not in the answer" in charge
    assert "the answer has keys balance, charge_id" in charge
    assert "fix result.balance_tokens in [ops.call_charge]" in charge
    tip = _step(report, "tip")
    assert tip.startswith("INFO")
    assert "answered 201" in tip
    assert "is in neither status_ok [200]" in tip
    assert "add it to status_ok" in tip


async def test_a_wrong_auth_scheme_is_told_to_check_auth(info: StackInfo,
                                                         tmp_path: Path) -> None:
    profile = _broken(tmp_path, ('scheme = "Bearer"', 'scheme = "Token"'))
    report = await run_doctor(_plan(info, profile))
    assert not report.ok
    provision = _step(report, "provision")
    assert "the target refused our credentials (401): check [auth]" in provision
    assert 'scheme = "Token"' in provision


async def test_wrong_metadata_keys_are_named_from_the_intents_metadata(
        info: StackInfo, tmp_path: Path) -> None:
    profile = _broken(tmp_path, ('user_key = "user_id"', 'user_key = "userId"'))
    report = await run_doctor(_plan(info, profile))
    credit = _step(report, "credit (webhook)")
    assert "[metadata] user_key = 'userId'" in credit
    assert "its keys are" in credit and "user_id" in credit


def _tokenchaos(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from harness.cli import main; main()", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env}, check=False)


def test_the_command_exits_2_for_a_broken_profile_and_0_for_the_right_one(
        info: StackInfo, tmp_path: Path) -> None:
    profile = _broken(tmp_path, ('path = "/v1/me"\nstatus_ok = [200]',
                                 'path = "/v1/me"\nstatus_ok = [204]'))
    flags = ["--target-url", info.service_url, "--provider-url", info.provider_url]
    env = {"TOKENCHAOS_ADMIN_KEY": info.admin_key, "TOKENCHAOS_PROVIDER_KEY": info.control_key}
    broken = _tokenchaos("doctor", "--target", str(profile), *flags, cwd=tmp_path, env=env)
    assert broken.returncode == 2, broken.stdout[-3000:] + broken.stderr[-2000:]
    assert "MISSING: answered 200" in broken.stdout
    assert "cannot run the suite yet" in broken.stdout
    fixed = _tokenchaos("doctor", "--target", "reference", *flags, cwd=tmp_path, env=env)
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-2000:]
    assert "verdict: the profile can run the suite" in fixed.stdout


def test_a_remote_address_needs_the_same_opt_in_as_run(tmp_path: Path) -> None:
    done = _tokenchaos("doctor", "--target", "reference", "--target-url",
                       "http://192.0.2.1:8000", cwd=tmp_path, env={})
    assert done.returncode == 2
    assert "--allow-remote" in done.stderr


@pytest.mark.e2e
def test_doctor_target_local_passes(tmp_path: Path, pg_admin_url: str) -> None:
    from harness.pg import create_database

    env = {"TOKENCHAOS_DATABASE_URL": create_database(pg_admin_url)}
    done = _tokenchaos("doctor", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "verdict: the profile can run the suite" in done.stdout


_SQL_OBSERVER = '''[observer]
kind = "sql"
database_url_env = "TOKENCHAOS_DOCTOR_TEST_DATABASE_URL"
accounts_query = """
SELECT id::text AS user_id, balance AS balance_tokens, debt AS debt_tokens, status
  FROM accounts WHERE id::text = ANY(%(user_ids)s)
"""
balances_table = "accounts"
balance_column = "balance"
intents_table = "payments"
intent_column = "intent_id"
'''


def _sql_profile(tmp_path: Path, **overrides: str) -> Path:
    text = REFERENCE_TOML.read_text(encoding="utf-8")
    text = text[:text.index("[observer]")] + _SQL_OBSERVER
    for old, new in overrides.items():
        text = text.replace(old, new)
    path = tmp_path / "sql.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_with_an_sql_observer_the_schema_is_checked_first(
        info: StackInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENCHAOS_DOCTOR_TEST_DATABASE_URL", info.database_url)
    report = await run_doctor(_plan(info, _sql_profile(tmp_path)))
    assert report.steps[0].name == "schema"
    assert report.steps[0].reading == "OK"
    assert report.schema == ()
    assert report.ok, format_report(report)
    notes = _step(report, "observer")
    assert "no credited_tokens" in notes  # and what that costs: exactly_once_credit
    assert "exactly_once_credit" in notes


async def test_a_schema_table_the_profile_names_wrongly_is_a_problem(
        info: StackInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENCHAOS_DOCTOR_TEST_DATABASE_URL", info.database_url)
    profile = _sql_profile(tmp_path, **{'intents_table = "payments"':
                                        'intents_table = "token_transactions"'})
    report = await run_doctor(_plan(info, profile))
    assert not report.ok
    assert "there is no table 'token_transactions'" in _step(report, "schema")
    assert "SCHEMA NOT CHECKED" in "\n".join(format_report(report))
