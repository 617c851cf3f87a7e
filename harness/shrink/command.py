"""``tokenchaos shrink reports/<run-id>/``: from a failing run to its smallest schedule.

It reads the run's ``run.json``, picks the scenario to shrink (``--scenario``, or the
first that broke an invariant) and the anomaly it must keep (its first false checker's
first anomaly kind), replays the scenario's schedule on a fresh target of the same kind
(``harness.shrink.replay``), shrinks it, and writes into the report directory:

- ``test_shrunk_<scenario>.py``, the pytest file, and ``shrunk_<scenario>_httpx.py``,
  the plain script (``harness.shrink.writers``);
- ``shrunk-<scenario>.json``: the schedules before and after, what it cost, "fails k of
  n" (``SHRUNK_VERSION``);
- ``shrunk-<scenario>.history.jsonl``: the history of the confirmation runs;

and draws ``index.html`` again with links to them. Exit 0 when a smaller schedule that
still fails was written; 2 otherwise (the run broke nothing, it cannot be replayed, the
schedule did not fail on replay, or nothing could be removed), with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.history import HistoryWriter
from harness.report.record import RunRecord, load_run_json
from harness.shrink.replay import (
    Replayer,
    ShrinkBounds,
    ShrinkOutcome,
    broken_anomaly,
    choose_scenario,
    replay_spec,
    shrink_recorded,
)
from harness.shrink.schedule_json import recorded_to_json
from harness.shrink.writers import Reproducers, reproducer_names, write_reproducers

__all__ = ["SHRUNK_VERSION", "ShrinkReport", "shrink_command", "shrink_report",
           "shrunk_links"]

SHRUNK_VERSION = 1

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShrinkReport:
    """What ``shrink_report`` did: the outcome, the files, the exit code and why."""

    outcome: ShrinkOutcome
    reproducers: Reproducers
    summary_file: Path
    exit_code: int
    reason: str  # one sentence: what was shrunk to what, or why it did not count


def not_shrinkable(reproduce: str, *, injects_faults: bool) -> str | None:
    """Why a broken scenario cannot be shrunk (None: it can), so ``run`` never prints a
    shrink command that would only exit 2: a shrunk schedule is replayed by ``tokenchaos
    run``'s path, and without faults."""
    if not reproduce.startswith("tokenchaos run "):
        return "only a scenario of tokenchaos run is shrunk"
    if injects_faults:
        return "it injects faults, and a shrunk schedule is replayed without them"
    return None


def shrink_command(report_dir: Path | str, scenario: str) -> str:
    """The command that shrinks ``scenario`` of the run reported in ``report_dir``."""
    import shlex

    return shlex.join(["tokenchaos", "shrink", f"{report_dir}/", "--scenario", scenario])


async def shrink_report(report_dir: Path, *, scenario: str | None, bounds: ShrinkBounds,
                        say: Say) -> ShrinkReport:
    """Shrink one failing scenario of the run in ``report_dir`` and write the reproducers.

    Raises:
        UsageError: no run.json, the run broke nothing, or it cannot be replayed.
        TokenchaosError: the target could not be started or worked with.
    """
    from scenarios import get_scenario

    run_json = report_dir / "run.json"
    if not run_json.is_file():
        raise UsageError(f"{report_dir} holds no run.json: give the directory of a run "
                         "(reports/<run-id>/)")
    record = load_run_json(run_json)
    chosen = choose_scenario(record, scenario)
    checker, kind = broken_anomaly(chosen)
    spec = replay_spec(chosen.reproduce)
    base = get_scenario(spec.scenario)
    say(f"shrink: {chosen.name} (seed {chosen.seed}) of run {record.run_id}: keeping "
        f"{checker} ({kind}) broken; at most {bounds.candidates_max} candidates, "
        f"{bounds.runs_max} replays each, {bounds.time_limit_s:g} s")
    history_path = report_dir / f"shrunk-{chosen.name}.history.jsonl"
    history_path.unlink(missing_ok=True)
    async with Replayer(spec, base, report_dir=report_dir) as replayer:
        recorded = replayer.record(checker=checker, anomaly_kind=kind)
        with HistoryWriter(history_path) as confirm_writer:
            outcome = await shrink_recorded(replayer, recorded, bounds=bounds, say=say,
                                            confirm_writer=confirm_writer)
    header = _header(record, outcome, flaws=spec.flaws)
    reproducers = write_reproducers(outcome.shrunk, report_dir, header=header,
                                    runs=bounds.runs_max, flaws=spec.flaws)
    exit_code, reason = _verdict(outcome)
    summary_file = report_dir / f"shrunk-{chosen.name}.json"
    summary_file.write_text(json.dumps(_summary_json(record, outcome, reproducers, reason),
                                       indent=1) + "\n", encoding="utf-8")
    _redraw(record, report_dir)
    return ShrinkReport(outcome=outcome, reproducers=reproducers, summary_file=summary_file,
                        exit_code=exit_code, reason=reason)


def _verdict(outcome: ShrinkOutcome) -> tuple[int, str]:
    before, after = outcome.original.ops_count, outcome.shrunk.ops_count
    confirm = outcome.confirmation
    fails = f"fails {confirm.failed_count} of {confirm.runs_count}"
    if confirm.failed_count == 0:
        return 2, (f"the schedule of {after} ops did not fail in {confirm.runs_count} "
                   "confirmation replays: the failure is too rare to shrink at these bounds")
    if after >= before:
        return 2, f"no op of the {before} could be removed; the schedule {fails}"
    return 0, f"shrunk from {before} ops to {after}; the shrunk schedule {fails}"


def _header(record: RunRecord, outcome: ShrinkOutcome, *, flaws: tuple[str, ...]) -> str:
    shrunk = outcome.shrunk
    confirm = outcome.confirmation
    flaw = f" with flaw {', '.join(flaws)}" if flaws else ""
    return (f"{shrunk.scenario} (seed {shrunk.seed}), shrunk by tokenchaos shrink from run "
            f"{record.run_id} ({record.target.profile}{flaw}): {shrunk.ops_count} ops of "
            f"{outcome.original.ops_count} that still break {shrunk.checker} "
            f"({shrunk.anomaly_kind}); they broke it in {confirm.failed_count} of "
            f"{confirm.runs_count} replays.")


def _summary_json(record: RunRecord, outcome: ShrinkOutcome, reproducers: Reproducers,
                  reason: str) -> dict[str, Any]:
    return {"shrunk_version": SHRUNK_VERSION, "run_id": record.run_id,
            "scenario": outcome.shrunk.scenario, "checker": outcome.shrunk.checker,
            "anomaly_kind": outcome.shrunk.anomaly_kind,
            "ops_before": outcome.original.ops_count, "ops_after": outcome.shrunk.ops_count,
            "candidates_count": outcome.candidates_count, "runs_count": outcome.runs_count,
            "wall_s": round(outcome.wall_s, 1), "exhausted": outcome.exhausted,
            "stopped_by": outcome.stopped_by,
            "confirm_failed_count": outcome.confirmation.failed_count,
            "confirm_runs_count": outcome.confirmation.runs_count, "reason": reason,
            "pytest_file": reproducers.pytest_file.name,
            "script_file": reproducers.script_file.name,
            "schedule": recorded_to_json(outcome.shrunk)}


def shrunk_links(report_dir: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """Each ``shrunk-*.json`` of a report directory: (scenario, reason, files to link)."""
    links: list[tuple[str, str, tuple[str, ...]]] = []
    for path in sorted(report_dir.glob("shrunk-*.json"))[:100]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            scenario, reason = str(data["scenario"]), str(data["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours, or half written: the page simply does not link it
        test_name, script_name = reproducer_names(scenario)
        links.append((scenario, reason, (test_name, script_name, path.name)))
    return links


def _redraw(record: RunRecord, report_dir: Path) -> None:
    """Draw ``index.html`` again, linking every shrunk schedule of the directory."""
    from harness.report.html import write_report

    history = report_dir / "history.jsonl"
    write_report(record, history if history.exists() else None, report_dir,
                 shrunk=shrunk_links(report_dir))
