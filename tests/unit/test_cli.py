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
