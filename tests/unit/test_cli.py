"""The console entry point's exit codes: a command's ``typer.Exit`` code is the process's."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import typer

from harness import cli


@pytest.mark.parametrize("code", [0, 1, 2])
def test_main_exits_with_the_code_the_command_exits_with(
        code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    app = typer.Typer()

    @app.command()
    def judge() -> None:
        raise typer.Exit(code)

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(sys, "argv", ["tokenchaos"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == code


def test_main_exits_0_when_the_command_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    app = typer.Typer()

    @app.command()
    def quiet() -> None:
        return None

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(sys, "argv", ["tokenchaos"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 0


def test_zoo_refuses_to_rewrite_the_readme_with_part_of_the_matrix(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["tokenchaos", "zoo", "--update-readme",
                                      "--flaw", "tip_lost_update"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    assert "without --flaw" in capsys.readouterr().err


def test_run_against_a_remote_provider_without_its_key_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TOKENCHAOS_PROVIDER_KEY", raising=False)
    monkeypatch.setattr(sys, "argv", ["tokenchaos", "run", "--target", "reference",
                                      "--scenario", "parallel-spend",
                                      "--provider-url", "http://127.0.0.1:9"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--provider-key" in err
    assert "TOKENCHAOS_PROVIDER_KEY" in err


def _history_with_one_slow_purchase(path: Path) -> Path:
    from harness.history import HistoryWriter
    from harness.model import F, Kind
    from tests.unit.conftest import H

    h = H()
    h.op(F.PURCHASE, {"user": "fan_0", "tokens": 500}, Kind.OK, {"intent_id": "pi_1"},
         status=201, latency_ms=5_363)  # 5,364 ms, as on a busy 2-core machine
    with HistoryWriter(path) as writer:
        writer.begin(name="parallel-spend", seed=1, params={}, users={}, target_ids={})
        for event in h.events:
            writer.event(event)
        writer.end({})
    return path


def test_check_reports_a_slow_op_as_a_finding_not_a_broken_invariant(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    history = _history_with_one_slow_purchase(tmp_path / "history.jsonl")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENCHAOS_LATENCY_BOUND_MS", raising=False)
    monkeypatch.setattr(sys, "argv", ["tokenchaos", "check", str(history)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    out, err = capsys.readouterr()
    assert exited.value.code != 1, out  # nothing broke; other checkers lack data (2)
    assert re.search(r"errors\s+held", out), out
    assert "1 of 1 ops took longer than 5000 ms" in err
    assert "purchase #0 5364 ms (ok)" in err


@pytest.mark.parametrize("how", ["flag", "pyproject"])
def test_a_latency_bound_the_user_asks_for_makes_the_slow_op_break_the_run(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    history = _history_with_one_slow_purchase(tmp_path / "history.jsonl")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENCHAOS_LATENCY_BOUND_MS", raising=False)
    argv = ["tokenchaos", "check", str(history)]
    if how == "flag":
        argv += ["--latency-bound-ms", "5000"]
    else:
        (tmp_path / "pyproject.toml").write_text("[tool.tokenchaos]\nlatency_bound_ms = 5000\n")
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    out, err = capsys.readouterr()
    assert exited.value.code == 1, out
    assert re.search(r"errors\s+BROKE", out), out
    assert "past the 5000 ms latency bound" in out
    assert "slow_op anomaly" in err


@pytest.mark.parametrize("bound", ["0", "-5"])
def test_run_refuses_a_latency_bound_that_is_not_positive(
        bound: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["tokenchaos", "run", "--scenario", "parallel-spend",
                                      "--latency-bound-ms", bound])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    assert "--latency-bound-ms" in capsys.readouterr().err


# -- which flags apply where (one table) ------------------------------------------------


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a run starts: a usage error must come before any stage."""
    import harness.campaign

    async def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a run started although its flags were wrong")

    monkeypatch.setattr(harness.campaign, "run_plan", refuse)


def _main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["tokenchaos", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert isinstance(exited.value.code, int)
    return exited.value.code


@pytest.mark.parametrize(("args", "flag"), [
    (["--target-url", "http://10.9.9.9:1"], "--target-url"),
    (["--provider-url", "http://127.0.0.1:9"], "--provider-url"),
    (["--database-url", "postgresql://127.0.0.1/x"], "--database-url"),
    (["--target", "reference", "--database-url", "postgresql://127.0.0.1/x"],
     "--database-url"),
    (["--target", "seed", "--flaw", "tip_lost_update"], "--flaw"),
    (["--provider-key", "tck_0123456789abcdef0123"], "--provider-key"),
])
def test_a_flag_that_does_not_apply_to_the_target_exits_2_naming_it(
        args: list[str], flag: str, nothing_runs: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = _main(monkeypatch, "run", "--scenario", "concurrent-tips", *args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"the flag {flag} does not apply" in err
    assert "Traceback" not in err


def test_a_target_url_in_the_environment_does_not_apply_to_the_local_stack(
        nothing_runs: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TOKENCHAOS_TARGET_URL", "http://10.9.9.9:1")
    assert _main(monkeypatch, "run", "--scenario", "concurrent-tips") == 2
    assert "TOKENCHAOS_TARGET_URL does not apply to --target local" in capsys.readouterr().err


def test_a_provider_key_in_the_environment_is_the_local_stacks_own_key_not_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.campaign

    plans: list[object] = []

    async def capture(plan: object, **kwargs: object) -> None:
        plans.append(plan)
        raise AssertionError("stop here")

    monkeypatch.setattr(harness.campaign, "run_plan", capture)
    monkeypatch.setenv("TOKENCHAOS_PROVIDER_KEY", "tck_0123456789abcdef0123")
    assert _main(monkeypatch, "run", "--scenario", "concurrent-tips") == 2  # the crash above
    assert len(plans) == 1
    assert plans[0].provider_key is None  # type: ignore[attr-defined]


def test_zoo_readme_without_update_readme_does_not_apply(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(monkeypatch, "zoo", "--readme", "OTHER.md") == 2
    assert "--readme does not apply" in capsys.readouterr().err


def test_every_rule_of_the_table_names_a_flag_its_command_has() -> None:
    import typer.main

    group = typer.main.get_command(cli.app)
    for rule in cli.FLAG_RULES:
        if rule.flag.startswith("TOKENCHAOS_"):
            continue
        command = group.commands[rule.command]  # type: ignore[attr-defined]
        flags = {opt for param in command.params for opt in param.opts}
        assert rule.flag in flags, rule


def test_check_flags_apply_passes_flags_where_they_apply() -> None:
    cli.check_flags_apply("run", {"--target-url", "--provider-url"}, {cli.REMOTE})
    cli.check_flags_apply("run", {"--database-url"}, {cli.REMOTE, cli.SQL_OBSERVER})
    cli.check_flags_apply("run", {"--flaw"}, {cli.LOCAL})
    cli.check_flags_apply("zoo", {"--readme"}, {cli.UPDATE_README})


# -- crashes of the harness: exit 2, one line, the traceback in a log -------------------


def _crashing_app(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def crash() -> None:
        raise exc

    return app


@pytest.mark.parametrize("exc", [KeyError("name"), OverflowError("port must be 0-65535"),
                                 SystemExit(1), AssertionError()])
def test_a_crash_exits_2_with_one_line_and_the_traceback_in_a_log(
        exc: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(cli, "app", _crashing_app(exc))
    monkeypatch.setattr(cli, "_OPTIONS", cli._GlobalOptions(debug=False))
    assert _main(monkeypatch) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "internal error, not a verdict" in err
    assert "Traceback" not in err
    (log,) = tmp_path.glob("tokenchaos-crash-*.log")
    assert str(log) in err
    assert "Traceback" in log.read_text()
    assert "test_cli.py" in err  # where it was raised


def test_debug_prints_the_traceback_instead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(cli, "_OPTIONS", cli._GlobalOptions(debug=True))
    monkeypatch.setattr(cli, "app", _crashing_app(KeyError("name")))
    assert _main(monkeypatch) == 2
    assert "Traceback" in capsys.readouterr().err
    assert not list(tmp_path.glob("tokenchaos-crash-*.log"))


def test_the_global_debug_flag_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_OPTIONS", cli._GlobalOptions(debug=False))
    assert _main(monkeypatch, "--debug", "list") == 0
    assert cli._OPTIONS.debug is True


def test_a_group_of_our_errors_exits_2_with_their_message(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.errors import TargetUnreachable

    group = ExceptionGroup("tasks", [TargetUnreachable("the target at X does not answer")])
    monkeypatch.setattr(cli, "app", _crashing_app(group))
    assert _main(monkeypatch) == 2
    assert capsys.readouterr().err == "tokenchaos: the target at X does not answer\n"


# -- URLs are validated up front, and a remote target must be opted into ----------------


@pytest.fixture
def no_connection(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record (and refuse) every connection and name lookup the code under test tries."""
    import socket

    tried: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        tried.append(args)
        raise AssertionError(f"tried to connect: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tried


@pytest.mark.parametrize(("args", "message"), [
    (["--target-url", "http://127.0.0.1:99999"], "the port must be a number from 1 to 65535"),
    (["--target-url", "http://127.0.0.1:0"], "the port must be a number from 1 to 65535"),
    (["--target-url", "ftp://127.0.0.1:8000"], "the scheme must be http or https"),
    (["--target-url", "http://:8000"], "has no host"),
    (["--target-url", "http://127.0.0.1:8000", "--provider-url", "127.0.0.1:9"],
     "--provider-url"),
    (["--target-url", "http://10.9.9.9:1"], "add --allow-remote 10.9.9.9"),
    (["--target-url", "http://10.1.2.3"], "add --allow-remote 10.1.2.3"),
    (["--target-url", "http://staging.example:8000"], "add --allow-remote staging.example"),
    (["--target-url", "http://127.0.0.1:8000", "--provider-url", "http://10.9.9.9:1"],
     "--provider-url names 10.9.9.9"),
    (["--target-url", "http://10.9.9.9:1", "--allow-remote", "10.9.9.8"],
     "--allow-remote 10.9.9.8: no address of this run is on that host"),
])
def test_a_bad_or_remote_address_exits_2_before_any_connection(
        args: list[str], message: str, no_connection: list[object], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TOKENCHAOS_PROVIDER_KEY", "tck_0123456789abcdef0123")
    code = _main(monkeypatch, "run", "--target", "reference", "--scenario", "concurrent-tips",
                 "--report-dir", str(tmp_path), *args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert no_connection == []
    assert not list(tmp_path.iterdir())  # not even a report directory


def test_a_remote_database_url_needs_the_opt_in_too(
        no_connection: list[object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = _main(monkeypatch, "run", "--target", "seed", "--scenario", "concurrent-tips",
                 "--target-url", "http://127.0.0.1:3000",
                 "--database-url", "postgresql://ro:pw@10.9.9.9:5432/seed")
    assert code == 2
    assert "--database-url names 10.9.9.9" in capsys.readouterr().err
    assert no_connection == []


def test_a_production_profile_is_refused_even_with_allow_remote(
        no_connection: list[object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import resources

    text = resources.files("harness.targets").joinpath("reference.toml").read_text()
    profile = tmp_path / "prod.toml"
    profile.write_text(text.replace('[target]\n', '[target]\nenvironment = "production"\n', 1))
    code = _main(monkeypatch, "run", "--target", str(profile), "--scenario", "concurrent-tips",
                 "--target-url", "http://10.9.9.9:1", "--allow-remote", "10.9.9.9")
    assert code == 2
    assert "never loads production" in capsys.readouterr().err
    assert no_connection == []


@pytest.mark.parametrize("args", [["serve", "--service-port", "99999"],
                                  ["serve", "--provider-port", "0"],
                                  ["provider", "--port", "70000"],
                                  ["provider", "--webhook-url", "http://127.0.0.1:99999/hook"]])
def test_serve_and_provider_refuse_impossible_ports_before_starting(
        args: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(monkeypatch, *args) == 2
    err = capsys.readouterr().err
    assert "65535" in err
    assert "Traceback" not in err


def test_check_judges_without_what_the_run_left_out_for_its_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from harness.history import HistoryWriter
    from harness.model import Kind
    from tests.unit.conftest import H

    h = H()
    h.tip("fan_0", "creator_0", 10, Kind.FAIL, error="insufficient_funds")
    part = {"part": "tips retried with the same key", "reason": "tips carry no key",
            "provokes": ["retry_with_same_key", "idempotent_replay", "key_reuse_rejected"],
            "checkers": ["idempotency"]}
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        writer.begin(name="retry-storm", seed=1, params={}, users={}, target_ids={},
                     not_run=[part])
        for event in h.events:
            writer.event(event)
        writer.end({})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["tokenchaos", "check", str(path)])
    with pytest.raises(SystemExit):
        cli.main()
    out = capsys.readouterr().out
    assert re.search(r"retry-storm\s+conservation", out), out
    assert "idempotency" not in out  # the run left it out: check does too


def _faulted_history(path: Path, *, with_fault: bool) -> None:
    """A tip answered 503 while the service was down, re-sent after the heal and replayed."""
    from harness.history import HistoryWriter
    from harness.model import F, FaultWindow, Kind
    from tests.unit.conftest import H

    h = H()
    started = h.wait(1)
    h.op(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 10}, Kind.INFO,
         key="k1", error="server_error_5xx", status=503)
    healed = h.wait(1)
    recovered = h.wait(5)
    h.op(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 10}, Kind.OK,
         {"tip_id": "t_1", "replayed": 1}, key="k1", status=201)
    with HistoryWriter(path) as writer:
        writer.begin(name="retry-storm", seed=1, params={}, users={}, target_ids={})
        for event in h.events:
            writer.event(event)
        if with_fault:
            writer.fault(FaultWindow(name="f0", kind="kill_service", link=None,
                                     description="SIGKILL the service", started_ns=started,
                                     healed_ns=healed, recovered_ns=recovered))
        writer.end({})


def test_check_re_judges_a_history_with_its_fault_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    import scenarios
    from harness.history import load
    from harness.judge import judge

    storm = scenarios.SCENARIOS["retry-storm"]
    monkeypatch.setitem(scenarios.SCENARIOS, "retry-storm", dataclasses.replace(
        storm, checkers=("errors", "durability"), provokes=()))
    monkeypatch.chdir(tmp_path)
    outs = {}
    for with_fault in (True, False):
        path = tmp_path / f"history-{with_fault}.jsonl"
        _faulted_history(path, with_fault=with_fault)
        monkeypatch.setattr(sys, "argv", ["tokenchaos", "check", str(path)])
        with pytest.raises(SystemExit):
            cli.main()
        outs[with_fault] = capsys.readouterr().out
    assert re.search(r"retry-storm\s+errors\s+held", outs[True]), outs[True]
    assert re.search(r"retry-storm\s+durability\s+held", outs[True]), outs[True]
    assert re.search(r"retry-storm\s+errors\s+BROKE", outs[False]), outs[False]
    assert re.search(r"retry-storm\s+durability\s+unknown", outs[False]), outs[False]
    loaded = load(tmp_path / "history-True.jsonl")[0]
    assert len(loaded.faults) == 1
    verdicts = judge(scenarios.SCENARIOS["retry-storm"], loaded, latency_ms_max=None)
    assert verdicts["durability"].counts["recovered"] == 1
    assert verdicts["errors"].counts["during_fault"] == 1


def test_run_refuses_a_concurrency_over_the_runners_bound_before_starting_anything(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.limits import DEFAULT_LIMITS

    asked = DEFAULT_LIMITS.ops_in_flight_max + 1
    monkeypatch.setattr(cli, "asyncio", None)  # nothing may start: no event loop at all
    monkeypatch.setattr(sys, "argv", ["tokenchaos", "run", "--scenario", "hot-creator",
                                      "--concurrency", str(asked)])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"--concurrency {asked} is more than the runner keeps in flight" in err
    assert f"give --concurrency {DEFAULT_LIMITS.ops_in_flight_max} or less" in err


def test_check_concurrency_passes_the_bound_itself_and_no_flag() -> None:
    from harness.limits import DEFAULT_LIMITS

    cli.check_concurrency(DEFAULT_LIMITS.ops_in_flight_max, DEFAULT_LIMITS)
    cli.check_concurrency(None, DEFAULT_LIMITS)
