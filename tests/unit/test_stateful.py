"""The state machine's parts that need no target: settings, rules by traits, results."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from harness import cli
from harness._machine import (
    InvariantBroken,
    MachineContext,
    anomaly_text,
    machine_checkers,
    machine_class,
)
from harness.errors import UsageError
from harness.loop_thread import LoopThread
from harness.model import F, Verdict
from harness.scenario import TargetTraits
from harness.stateful import (
    MACHINE_PROFILES,
    MachineResult,
    _result,
    format_result,
    machine_settings,
)
from tests.unit.conftest import H


def _context(traits: TargetTraits = TargetTraits(), **fields: object) -> MachineContext:
    # Only the tallies are read here: no loop, session or writer is used.
    ctx = MachineContext(loop=None, session=None, provider=None, writer=None,  # type: ignore[arg-type]
                         limits=None, traits=traits, checkers=machine_checkers(traits),  # type: ignore[arg-type]
                         shrink_programs_max=1, deadline_s=0.0)
    for name, value in fields.items():
        setattr(ctx, name, value)
    return ctx


def _rules(machine: type) -> set[str]:
    return {name for name in dir(machine)
            if hasattr(getattr(machine, name), "hypothesis_stateful_rule")}


def test_machine_settings_ci_is_derandomized_bounded_and_has_no_deadline() -> None:
    ci = machine_settings("ci")
    assert ci.derandomize is True
    assert ci.deadline is None
    assert ci.max_examples == MACHINE_PROFILES["ci"].examples_max == 30
    assert ci.stateful_step_count == MACHINE_PROFILES["ci"].steps_max == 12
    assert ci.database is None  # every exploration starts from scratch
    assert machine_settings("nightly").max_examples > machine_settings("dev").max_examples


def test_machine_settings_refuses_an_unknown_profile() -> None:
    with pytest.raises(UsageError, match="dev, ci, nightly"):
        machine_settings("weekly")


def test_machine_has_call_and_key_rules_only_where_the_target_offers_them() -> None:
    full = _rules(machine_class(_context()))
    assert {"tip", "fund", "run_batch", "read_balance", "replay_tip", "tip_reusing_key",
            "open_call", "charge_minute", "end_call"} <= full
    bare = TargetTraits(ops=frozenset({F.PURCHASE, F.TIP}), keyless=frozenset({F.TIP}))
    rules = _rules(machine_class(_context(bare)))
    assert rules == {"tip", "fund", "run_batch"}
    assert machine_checkers(bare) == ("non_negative", "conservation", "exactly_once_credit",
                                      "reconciliation", "ledger_drift", "errors")
    assert {"idempotency", "calls"} <= set(machine_checkers(TargetTraits()))


def test_anomaly_text_names_the_checker_and_its_anomalies() -> None:
    h = H()
    h.call_open("fan_0", "creator_0", "c1", 60)
    h.charge("fan_0", "creator_0", "c1", 1, 60, charge_id="ch_a")
    h.charge("fan_0", "creator_0", "c1", 1, 60, charge_id="ch_b")
    from harness.checkers.calls import check_calls

    text = anomaly_text({"calls": check_calls(h.input(None, None))})
    assert text.startswith("calls did not hold:")
    assert "minute_charged_twice: Let A be call charge" in text


def test_a_broken_invariant_is_exit_1_with_its_program_and_anomaly(tmp_path: Path) -> None:
    ctx = _context(programs_count=3, first_failure_s=1.5, programs_to_failure=2,
                   ops_to_failure=40, held={"conservation": False})
    error = InvariantBroken("conservation did not hold:\n  tokens_created: ...")
    error.add_note("state.tip(sender=0, recipient=0, amount_tokens=5)")
    result = _result(ctx, error, ["state = TokenMachine()"], profile="ci",
                     history_path=tmp_path / "h.jsonl")
    assert (result.valid, result.exit_code) == (False, 1)
    assert result.program.splitlines() == ["state = TokenMachine()",
                                           "state.tip(sender=0, recipient=0, amount_tokens=5)"]
    lines = format_result(result)
    assert "Anomalies:" in lines
    assert any("first anomaly after 1.5 s, in program 2, 40 ops in" in line for line in lines)
    assert lines[-1] == "verdict: BROKE (exit 1)"


def test_an_error_that_is_no_anomaly_is_exit_2_never_1(tmp_path: Path) -> None:
    result = _result(_context(), ConnectionError("refused"), [], profile="ci",
                     history_path=tmp_path / "h.jsonl")
    assert (result.valid, result.exit_code) == ("unknown", 2)
    assert "ConnectionError: refused" in result.note


def test_every_checker_held_is_exit_0(tmp_path: Path) -> None:
    ctx = _context(held={"conservation": True, "calls": True})
    result = _result(ctx, None, [], profile="ci", history_path=tmp_path / "h.jsonl")
    assert (result.valid, result.exit_code, result.program) == (True, 0, "")


def test_a_checker_that_never_judged_anything_is_exit_2(tmp_path: Path) -> None:
    ctx = _context(held={"conservation": True, "calls": "unknown"})
    result = _result(ctx, None, [], profile="ci", history_path=tmp_path / "h.jsonl")
    assert (result.valid, result.exit_code) == ("unknown", 2)
    assert "calls" in result.note


def test_an_exploration_cut_short_by_its_time_bound_is_exit_2(tmp_path: Path) -> None:
    ctx = _context(held={"conservation": True}, deadline_hit=True)
    result: MachineResult = _result(ctx, None, [], profile="ci",
                                    history_path=tmp_path / "h.jsonl")
    assert result.exit_code == 2
    assert "time bound" in result.note


def test_note_verdicts_keeps_the_worst_then_the_best() -> None:
    ctx = _context()
    ctx.note_verdicts({"calls": Verdict(valid="unknown")})
    assert ctx.held["calls"] == "unknown"
    ctx.note_verdicts({"calls": Verdict(valid=True)})
    assert ctx.held["calls"] is True
    ctx.note_verdicts({"calls": Verdict(valid=False)})
    ctx.note_verdicts({"calls": Verdict(valid=True)})
    assert ctx.held["calls"] is False


def test_loop_thread_runs_coroutines_and_returns_or_raises_what_they_do() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def broken() -> None:
        raise KeyError("gone")

    with LoopThread() as loop:
        assert loop.run(answer(), timeout_s=10.0) == 42
        with pytest.raises(KeyError):
            loop.run(broken(), timeout_s=10.0)
    assert loop.closed
    with pytest.raises(RuntimeError, match="after close"):
        loop.run(answer(), timeout_s=10.0)


def test_loop_thread_cancels_a_coroutine_past_its_bound() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def was_cancelled() -> bool:
        await asyncio.wait_for(cancelled.wait(), timeout=10.0)
        return cancelled.is_set()

    with LoopThread() as loop:
        with pytest.raises(TimeoutError):
            loop.run(forever(), timeout_s=0.05)
        assert loop.run(was_cancelled(), timeout_s=10.0) is True


def test_machine_flags_that_do_not_apply_exit_2_naming_them(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["tokenchaos", "machine", "--target-url",
                                      "http://127.0.0.1:9"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    assert "the flag --target-url does not apply to --target local" in capsys.readouterr().err


def test_an_anomaly_whose_shrunk_program_passed_on_replay_still_exits_1(
        tmp_path: Path) -> None:
    from hypothesis.errors import FlakyFailure

    ctx = _context(first_failure_s=2.0, last_failure="reconciliation did not hold:",
                   held={"reconciliation": False})
    error = FlakyFailure("Inconsistent results", [InvariantBroken("reconciliation did not hold:")])
    result = _result(ctx, error, ["state = TokenMachine()"], profile="ci",
                     history_path=tmp_path / "h.jsonl")
    assert (result.valid, result.exit_code) == (False, 1)
    assert "timing-dependent" in result.note
    assert result.anomaly == "reconciliation did not hold:"
