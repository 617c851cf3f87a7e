"""The console entry point's exit codes: a command's ``typer.Exit`` code is the process's."""

from __future__ import annotations

import sys

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
