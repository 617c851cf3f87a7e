"""The run plan: what it refuses, the command that reproduces one scenario, and how the
schema check joins the run's verdict."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest

from harness.campaign import (
    RunPlan,
    check_users_file,
    plan_for_target,
    reproduce_command,
    run_validity,
    schema_lines,
    users_needed,
)
from harness.errors import ProvisioningFailed, UsageError
from harness.limits import DEFAULT_LIMITS
from harness.model import F, Validity, Verdict
from harness.report.record import ScenarioRecord
from harness.scenario import ScenarioParams
from harness.targets.profile import load_profile
from harness.targets.schema_check import SchemaFinding, schema_verdict
from harness.targets.session import TargetSession
from scenarios import get_scenario

_RUNS = ((get_scenario("parallel-spend"), ScenarioParams(seed=3)),)


def test_the_reproduce_command_carries_the_latency_bound_that_failed_the_run() -> None:
    bounded = RunPlan(runs=_RUNS, suite=None,
                      limits=dataclasses.replace(DEFAULT_LIMITS, latency_ms_max=250))
    assert "--latency-bound-ms 250" in reproduce_command(bounded, "parallel-spend",
                                                         ScenarioParams(seed=3))
    plain = RunPlan(runs=_RUNS, suite=None)
    assert "--latency-bound-ms" not in reproduce_command(plain, "parallel-spend",
                                                         ScenarioParams(seed=3))


def test_a_remote_provider_needs_its_control_key() -> None:
    with pytest.raises(UsageError, match="TOKENCHAOS_PROVIDER_KEY"):
        RunPlan(runs=_RUNS, suite=None, local=False, provider_url="http://127.0.0.1:9")
    keyed = RunPlan(runs=_RUNS, suite=None, local=False, provider_url="http://127.0.0.1:9",
                    provider_key="tck_" + "k" * 20)
    assert keyed.provider_key is not None


# -- users of their own, counted before the run -------------------------------------------


def _users_file(tmp_path: Path, fans: int, creators: int) -> Path:
    users = [{"id": f"f{i}", "token": f"tf{i}", "kind": "fan"} for i in range(fans)]
    users += [{"id": f"c{i}", "token": f"tc{i}", "kind": "creator"} for i in range(creators)]
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": users}))
    return path


def test_a_users_file_too_small_for_the_run_fails_before_it_naming_both_counts(
        tmp_path: Path) -> None:
    path = _users_file(tmp_path, fans=10, creators=10)
    profile = load_profile("seed", environ={"TOKENCHAOS_USERS_FILE": str(path)})
    runs = plan_for_target([(get_scenario(name), ScenarioParams(seed=1))
                            for name in ("parallel-spend", "retry-storm")], profile)
    # parallel-spend: 3 fans 2 creators; retry-storm: 4 fans 2 creators: 7 + 4 in all.
    assert users_needed(runs) == {"fan": 7, "creator": 4}
    check_users_file(profile, runs)  # 10 fans and 10 creators are enough
    small = load_profile("seed", environ={
        "TOKENCHAOS_USERS_FILE": str(_users_file(tmp_path, fans=6, creators=10))})
    with pytest.raises(UsageError) as raised:
        check_users_file(small, runs)
    assert "holds 10 creators, 6 fans; this run of 2 scenario runs needs 4 creators, " \
           "7 fans" in str(raised.value)


def test_a_scenario_not_run_for_the_target_takes_no_users(tmp_path: Path) -> None:
    profile = load_profile("seed", environ={
        "TOKENCHAOS_USERS_FILE": str(_users_file(tmp_path, fans=50, creators=50))})
    runs = plan_for_target([(get_scenario("retry-storm"), ScenarioParams(seed=1))], profile)
    scenario, params = runs[0]
    assert params.target.keyless == {F.TIP, F.CALL_CHARGE}  # from the profile
    assert scenario.whole_not_run(params) is None  # purchases still storm
    assert users_needed(runs) == {"fan": 4, "creator": 2}


async def test_each_provisioning_of_a_session_takes_the_next_users_of_the_file(
        tmp_path: Path) -> None:
    path = _users_file(tmp_path, fans=3, creators=1)
    profile = load_profile("seed", environ={"TOKENCHAOS_USERS_FILE": str(path)})
    # The observer is never used here; its URL only has to be there (nothing connects).
    async with TargetSession.open(profile, limits=DEFAULT_LIMITS,
                                  database_url="postgresql://127.0.0.1:9/none") as session:
        first = await session.provision({"fan_0": "fan", "creator_0": "creator"},
                                        concurrency=1)
        second = await session.provision({"fan_0": "fan", "fan_1": "fan"}, concurrency=1)
        assert [c.target_id for c in first.values()] == ["f0", "c0"]
        assert [c.target_id for c in second.values()] == ["f1", "f2"]  # never f0 again
        with pytest.raises(ProvisioningFailed, match="earlier scenarios of the run took 3"):
            await session.provision({"fan_0": "fan"}, concurrency=1)


# -- the reproduce command runs as printed ------------------------------------------------


def _parse_run(command: str) -> dict[str, object]:
    """The run command's options as the CLI parses them (nothing is run)."""
    import typer.main

    from harness import cli

    words = shlex.split(command)
    assert words[:2] == ["tokenchaos", "run"], words
    group = typer.main.get_command(cli.app)
    run = group.commands["run"]  # type: ignore[attr-defined]
    context = run.make_context("run", words[2:])
    return dict(context.params)


def test_the_reproduce_command_of_a_remote_target_names_every_address_and_no_secret(
        tmp_path: Path) -> None:
    users = _users_file(tmp_path, fans=1, creators=1)
    environ = {"TOKENCHAOS_USERS_FILE": str(users)}
    profile = load_profile("seed", environ=environ)
    plan = RunPlan(runs=_RUNS, suite=None, profile="seed", local=False,
                   target_url="http://10.0.0.5:3000", provider_url="http://10.0.0.6:12111",
                   provider_key="tck_" + "s" * 20, database_url="postgresql://u:pw@db/x",
                   allowed_hosts=("10.0.0.5", "10.0.0.6"))
    command = reproduce_command(plan, "parallel-spend", ScenarioParams(seed=3),
                                profile=profile, environ=environ)
    assert "tck_" not in command
    assert "pw" not in command
    prefix, _, rest = command.partition(" tokenchaos ")
    assert prefix == f"TOKENCHAOS_USERS_FILE={shlex.quote(str(users))}"
    expanded = ("tokenchaos " + rest).replace('"$TOKENCHAOS_PROVIDER_KEY"', "tck_key") \
        .replace('"$TOKENCHAOS_TARGET_DATABASE_URL"', "postgresql://db/x")
    parsed = _parse_run(expanded)
    assert parsed["target"] == "seed"
    assert parsed["target_url"] == "http://10.0.0.5:3000"
    assert parsed["provider_url"] == "http://10.0.0.6:12111"
    assert parsed["provider_key"] == "tck_key"
    assert parsed["database_url"] == "postgresql://db/x"
    assert parsed["allow_remote"] == ["10.0.0.5", "10.0.0.6"]
    assert parsed["scenario"] == ["parallel-spend"]
    assert parsed["seed"] == [3]


def test_the_reproduce_command_of_the_local_stack_parses_as_it_is() -> None:
    plan = RunPlan(runs=_RUNS, suite=None, flaws=("tip_lost_update",))
    command = reproduce_command(plan, "parallel-spend", ScenarioParams(seed=3, scale=2))
    parsed = _parse_run(command)
    assert parsed["target"] == "local"
    assert parsed["flaw"] == ["tip_lost_update"]
    assert parsed["scale"] == 2


# ---------------------------------------------------------------------------------------
# The schema check's verdict joins the run's.


def _judged(valid: Validity, name: str = "tip-cycle") -> ScenarioRecord:
    return ScenarioRecord(name=name, seed=1, params={}, started_ns=0, duration_s=1.0,
                          ops_count=4, stats={}, reproduce="tokenchaos run",
                          verdicts={"conservation": Verdict(valid=valid)})


_NOT_RUN = ScenarioRecord(name="mid-call-refund", seed=1, params={}, started_ns=0,
                          duration_s=0.0, ops_count=0, stats={}, verdicts={},
                          reproduce="tokenchaos run", not_run_reason="no [ops.call_open]")


@pytest.mark.parametrize(("scenarios", "schema", "expected"), [
    ((True,), None, True),
    ((True,), True, True),
    ((True,), False, False),  # every scenario held; a schema defect still breaks the run
    ((True,), "unknown", "unknown"),  # could not be checked: not a pass
    (("unknown",), False, False),
    ((False,), True, False),
    ((False,), "unknown", False),
    ((), None, "unknown"),  # nothing ran: nothing was judged
    ((), True, "unknown"),
    ((), False, False),  # nothing ran, but the schema already broke
])
def test_the_schema_verdict_merges_into_the_runs(scenarios: tuple[Validity, ...],
                                                 schema: Validity | None,
                                                 expected: Validity) -> None:
    records = [_NOT_RUN, *(_judged(v) for v in scenarios)]
    verdict = None if schema is None else Verdict(valid=schema)
    assert run_validity(records, verdict) == expected


def test_schema_lines_name_each_finding_in_plain_words() -> None:
    findings = (SchemaFinding(kind="balance_not_bigint", severity="defect",
                              text="accounts.balance is numeric, not bigint"),
                SchemaFinding(kind="column_not_found", severity="cannot_check",
                              text="table payments has no column 'intent'"))
    assert schema_lines(findings, schema_verdict(findings)) == [
        "tokenchaos: schema DEFECT: accounts.balance is numeric, not bigint",
        "tokenchaos: schema NOT CHECKED: table payments has no column 'intent'"]
