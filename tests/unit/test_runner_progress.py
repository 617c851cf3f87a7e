"""Progress: plain lines in CI or when not on a terminal, a live view on a terminal."""

from __future__ import annotations

import io

from harness.model import Event, F, Kind
from harness.progress import PlainProgress, RichProgress, make_progress, not_sent_summary


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _done(index: int, kind: Kind) -> Event:
    return Event(index=index, time_ns=index, process=0, kind=kind, f=F.TIP, op_id=index,
                 value={}, error=None if kind == Kind.OK else "x")


def test_ci_gets_plain_lines_even_on_a_terminal() -> None:
    assert isinstance(make_progress(stream=_Terminal(), environ={"CI": "true"}), PlainProgress)


def test_a_stream_that_is_not_a_terminal_gets_plain_lines() -> None:
    assert isinstance(make_progress(stream=io.StringIO(), environ={}), PlainProgress)


def test_a_terminal_outside_ci_gets_the_live_view() -> None:
    assert isinstance(make_progress(stream=_Terminal(), environ={}), RichProgress)


def test_plain_progress_prints_start_every_n_ops_and_the_end() -> None:
    stream = io.StringIO()
    progress = PlainProgress(stream, ops_per_line=2)
    progress.scenario_started("tip-cycle", seed=4, users_count=3)
    progress.step_started("batch of 3 tip")
    for index, kind in enumerate([Kind.OK, Kind.FAIL, Kind.INFO]):
        progress.op_completed(_done(index, kind))
    progress.scenario_finished("tip-cycle", stats={"duration_ms": 12, "ops_skipped_count": 1})
    assert stream.getvalue().splitlines() == [
        "tokenchaos: scenario tip-cycle (seed 4, 3 users): started",
        "tokenchaos: scenario tip-cycle: 1 ok, 1 fail, 0 info",
        "tokenchaos: scenario tip-cycle: done in 12 ms, 1 ok, 1 fail, 1 info, 1 skipped "
        "(1 whose referent failed, 0 the profile or run has no way to send)",
    ]


def test_the_console_counts_ops_the_profile_cannot_send_as_run_json_does() -> None:
    # run.json counts ops_unsupported_count apart from ops_skipped_count; the console said
    # "0 skipped" while three ops were never sent.
    stats = {"duration_ms": 5, "ops_skipped_count": 0, "ops_unsupported_count": 3}
    stream = io.StringIO()
    PlainProgress(stream).scenario_finished("dispute", stats=stats)
    assert "3 skipped (0 whose referent failed, 3 the profile or run has no way to send)" \
        in stream.getvalue()
    assert not_sent_summary({"ops_skipped_count": 0, "ops_unsupported_count": 0}) == \
        "0 skipped"


def test_the_live_view_renders_two_scenarios_in_a_row() -> None:
    stream = _Terminal()
    progress = RichProgress(stream)
    for name in ("tip-cycle", "dispute"):
        progress.scenario_started(name, seed=1, users_count=2)
        progress.step_started("settle")
        progress.op_completed(_done(0, Kind.OK))
        progress.scenario_finished(name, stats={"duration_ms": 5})
    assert "tip-cycle" in stream.getvalue()
    assert "dispute" in stream.getvalue()
