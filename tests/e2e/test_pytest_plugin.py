"""The pytest plugin, as a user's project would use it: pytester runs a test file that asks
the ``tokenchaos_run`` fixture for a scenario, or ``tokenchaos_machine`` for an exploration
by the state machine, against the local stack."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e
pytest_plugins = ["pytester"]


def test_tokenchaos_run_fixture_runs_a_scenario_and_reports(
        pytester: pytest.Pytester, pg_admin_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.pg import create_database

    monkeypatch.setenv("TOKENCHAOS_DATABASE_URL", create_database(pg_admin_url))
    pytester.makepyfile(test_user="""
        def test_hot_creator_holds(tokenchaos_run):
            outcome = tokenchaos_run("hot-creator", seed=2)
            assert outcome.valid is True, outcome.summary
            assert outcome.exit_code == 0
            assert (outcome.report_dir / "index.html").is_file()
    """)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tokenchaos-report-dir", str(pytester.path / "out"))
    result.assert_outcomes(passed=1)


def test_tokenchaos_machine_fixture_explores_the_target_with_the_state_machine(
        pytester: pytest.Pytester, pg_admin_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.pg import create_database

    monkeypatch.setenv("TOKENCHAOS_DATABASE_URL", create_database(pg_admin_url))
    pytester.makepyfile(test_user="""
        def test_no_program_breaks_an_invariant(tokenchaos_machine):
            result = tokenchaos_machine(profile="ci")
            assert result.valid is True, result.program + result.anomaly + result.note
            assert result.exit_code == 0
            assert result.program == "" and result.anomaly == ""
            assert set(result.checkers) >= {"conservation", "reconciliation", "idempotency",
                                            "calls"}
            assert result.programs_count >= 30  # every program of the ci profile ran
            assert result.history_path.is_file()
    """)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tokenchaos-report-dir", str(pytester.path / "out"))
    result.assert_outcomes(passed=1)


def test_options_are_prefixed_tokenchaos(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    options = [line.split()[0].split("=")[0] for line in result.outlines
               if line.strip().startswith("--tokenchaos")]
    assert set(options) == {"--tokenchaos-target", "--tokenchaos-target-url",
                            "--tokenchaos-provider-url", "--tokenchaos-provider-key",
                            "--tokenchaos-report-dir", "--tokenchaos-flaw"}
