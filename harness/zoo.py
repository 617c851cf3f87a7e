"""The flaw zoo's detection matrix: the smoke suite against every flaw and the correct service.

``run_zoo`` runs the smoke suite (``harness.campaign.run_plan``) once against the correct
reference service and once per flaw of ``reference_impl.flaws.FLAWS``, one after another,
each on a fresh local stack. ``zoo_row`` reduces one run to a row of the matrix: which
scenarios caught the flaw (verdict false), which checkers fired, how many ops the suite
had invoked by the time the first anomaly could be seen, and the wall time. A flaw is
*caught* when some checker is false, and *caught as described* when one of the checkers
its ``caught_by`` names is; the correct service is *clean* when every verdict holds and
no anomaly was found.

``reports/zoo.json`` (``write_zoo``; schema below, ``ZOO_SCHEMA_VERSION``) and
``reports/zoo.md`` (``zoo_markdown``) hold the matrix; ``update_readme`` rewrites the
block between ``README_BEGIN`` and ``README_END`` in the README. Everything but
``run_zoo`` and the two writers is pure.

zoo.json, version 1::

    {"schema_version": 1, "generated_at": ISO-8601 UTC, "tokenchaos_version",
     "suite": "smoke", "seed", "ok": bool (correct clean and every flaw caught as described),
     "correct": row, "flaws": [row, ...]}
    row = {"flaw": name | null, "operation": name | null, "description", "caught_by": [...],
           "valid": true | false | "unknown", "caught": bool,
           "caught_as_described": bool (null for the correct service),
           "clean": bool, "scenarios_caught": [...], "scenarios_unknown": [...],
           "checkers_fired": [...], "anomalies_count", "ops_to_detection": int | null,
           "ops_count", "wall_s", "run_id", "report_dir"}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from harness.campaign import VERSION, RunOutcome, RunPlan, run_plan
from harness.checkers import CHECKERS
from harness.errors import UsageError
from harness.history import ScenarioRun, load
from harness.limits import DEFAULT_LIMITS, Limits
from harness.model import Kind, Validity
from harness.progress import Progress
from harness.report.record import RunRecord, ScenarioRecord
from reference_impl.flaws import FLAWS

__all__ = [
    "README_BEGIN",
    "README_END",
    "ZOO_SCHEMA_VERSION",
    "FlawLike",
    "Zoo",
    "ZooRow",
    "ops_to_first_detection",
    "readme_block",
    "replace_readme_block",
    "run_zoo",
    "smoke_plan",
    "update_readme",
    "write_zoo",
    "zoo_markdown",
    "zoo_row",
    "zoo_to_json",
]

ZOO_SCHEMA_VERSION = 1
SUITE = "smoke"
README_BEGIN = "<!-- zoo:begin -->"
README_END = "<!-- zoo:end -->"
_FLAWED_LOG_LEVEL = "error"
_CORRECT_DESCRIPTION = "the reference service as it is: every operation correct"


class FlawLike(Protocol):
    """What a row needs of a flaw: ``reference_impl.flaws.Flaw`` or another target's."""

    @property
    def name(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def caught_by(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ZooRow:
    """One line of the matrix: the smoke suite against one flaw (or the correct service)."""

    flaw: str | None  # None: the correct service
    operation: str | None
    description: str
    caught_by: tuple[str, ...]
    valid: Validity  # the suite's verdict
    scenarios_caught: tuple[str, ...]  # scenarios whose verdict is false, in run order
    scenarios_unknown: tuple[str, ...]
    checkers_fired: tuple[str, ...]  # checkers false in some scenario, in registry order
    anomalies_count: int  # sampled anomalies over every verdict
    ops_to_detection: int | None  # None: nothing was detected
    ops_count: int
    wall_s: float
    run_id: str
    report_dir: str

    def __post_init__(self) -> None:
        assert self.ops_count >= 0, self.ops_count
        if self.ops_to_detection is not None:
            assert 0 < self.ops_to_detection <= self.ops_count, self
        if self.scenarios_caught:
            assert self.checkers_fired, self
        assert self.wall_s >= 0, self.wall_s

    @property
    def caught(self) -> bool:
        """Some checker said false."""
        return bool(self.checkers_fired)

    @property
    def caught_as_described(self) -> bool:
        """A checker the flaw's ``caught_by`` names said false."""
        return any(name in self.checkers_fired for name in self.caught_by)

    @property
    def clean(self) -> bool:
        """Every verdict held and no anomaly was found (what the correct service must be)."""
        return self.valid is True and self.anomalies_count == 0

    def to_json(self) -> dict[str, Any]:
        return {"flaw": self.flaw, "operation": self.operation,
                "description": self.description, "caught_by": list(self.caught_by),
                "valid": self.valid, "caught": self.caught,
                "caught_as_described": None if self.flaw is None else self.caught_as_described,
                "clean": self.clean,
                "scenarios_caught": list(self.scenarios_caught),
                "scenarios_unknown": list(self.scenarios_unknown),
                "checkers_fired": list(self.checkers_fired),
                "anomalies_count": self.anomalies_count,
                "ops_to_detection": self.ops_to_detection, "ops_count": self.ops_count,
                "wall_s": round(self.wall_s, 2), "run_id": self.run_id,
                "report_dir": self.report_dir}


@dataclass(frozen=True, slots=True, kw_only=True)
class Zoo:
    """The whole matrix: the correct service's row and one row per flaw."""

    seed: int
    generated_at: str
    correct: ZooRow
    flaws: tuple[ZooRow, ...]

    def __post_init__(self) -> None:
        assert self.correct.flaw is None, self.correct
        for row in self.flaws:
            assert row.flaw is not None, row

    @property
    def ok(self) -> bool:
        """The correct service is clean and every flaw was caught as its description says."""
        return self.correct.clean and all(row.caught_as_described for row in self.flaws)


def smoke_plan(*, seed: int, flaws: tuple[str, ...] = (), report_dir: Path,
               limits: Limits = DEFAULT_LIMITS,
               local_database_url: str | None = None,
               only: Sequence[str] = ()) -> RunPlan:
    """The smoke suite with one seed against the local stack with these flaws installed
    (``only`` those of its scenarios, when given, with the suite's own parameters)."""
    from scenarios import get_scenario, get_suite

    suite = get_suite(SUITE).with_seeds([seed])
    if only:
        suite = suite.only(only)
    runs = tuple((get_scenario(name), params) for name, params in suite.runs())
    words = ["tokenchaos", "run", "--seed", str(seed)]
    for name in only:
        words += ["--scenario", name]
    for name in flaws:
        words += ["--flaw", name]
    # A flawed service warns of every deadlock and lock wait it causes; the matrix and each
    # run's report say what went wrong, so a flawed service logs errors only.
    return RunPlan(runs=runs, suite=SUITE, local=True, flaws=flaws, report_dir=report_dir,
                   limits=limits, local_database_url=local_database_url,
                   local_log_level=_FLAWED_LOG_LEVEL if flaws else None,
                   command=" ".join(words))


async def run_zoo(*, flaws: Sequence[str] | None = None, seed: int = 1,
                  report_dir: Path = Path("reports"), limits: Limits = DEFAULT_LIMITS,
                  progress: Progress | None = None,
                  on_row: Callable[[ZooRow], None] | None = None) -> Zoo:
    """Run the smoke suite against the correct service, then against each flaw, in turn.

    Args:
        flaws: names from ``FLAWS`` (all of them by default), in the order to run.
        seed: the suite's seed, the same for every run.
        report_dir: where every run writes its report (``<report_dir>/<run-id>/``).
        limits: the runs' limits.
        progress: passed to each run's runner.
        on_row: called with each row as its run ends.

    Raises:
        UsageError: an unknown flaw name.
        TokenchaosError: a run could not be made (its stack did not start, …).
    """
    names = list(FLAWS) if flaws is None else list(flaws)
    unknown = [name for name in names if name not in FLAWS]
    if unknown:
        raise UsageError(f"unknown flaw {unknown[0]!r}; known flaws: {', '.join(FLAWS)}")
    generated_at = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows: list[ZooRow] = []
    for flaw in [None, *(FLAWS[name] for name in names)]:
        plan = smoke_plan(seed=seed, flaws=() if flaw is None else (flaw.name,),
                          report_dir=report_dir, limits=limits)
        started_s = time.monotonic()
        outcome = await run_plan(plan, progress=progress)
        wall_s = time.monotonic() - started_s
        row = zoo_row(flaw, outcome, load(outcome.report_dir / "history.jsonl"), wall_s=wall_s)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return Zoo(seed=seed, generated_at=generated_at, correct=rows[0], flaws=tuple(rows[1:]))


def zoo_row(flaw: FlawLike | None, outcome: RunOutcome, runs: Sequence[ScenarioRun], *,
            wall_s: float, correct_description: str = _CORRECT_DESCRIPTION) -> ZooRow:
    """The matrix row of one finished run (``runs``: its history, loaded).

    ``correct_description`` describes the service when ``flaw`` is None.
    """
    record = outcome.record
    fired = {name for scenario in record.scenarios
             for name, verdict in scenario.verdicts.items() if verdict.valid is False}
    return ZooRow(
        flaw=None if flaw is None else flaw.name,
        operation=None if flaw is None else flaw.operation,
        description=correct_description if flaw is None else flaw.description,
        caught_by=() if flaw is None else flaw.caught_by,
        valid=record.valid,
        scenarios_caught=tuple(s.name for s in record.scenarios if s.valid is False),
        scenarios_unknown=tuple(s.name for s in record.scenarios if s.valid == "unknown"),
        checkers_fired=tuple(name for name in CHECKERS if name in fired),
        anomalies_count=sum(len(v.anomalies) for s in record.scenarios
                            for v in s.verdicts.values()),
        ops_to_detection=ops_to_first_detection(record, runs),
        ops_count=sum(s.ops_count for s in record.scenarios),
        wall_s=wall_s, run_id=record.run_id, report_dir=str(outcome.report_dir))


def ops_to_first_detection(record: RunRecord, runs: Sequence[ScenarioRun]) -> int | None:
    """Ops the suite had invoked when the first anomaly could be seen.

    Scenarios before the first one with a false verdict count in full. In that scenario,
    an anomaly can be seen once the last op it names has been invoked (a double charge
    needs both charges; a lost credit only its purchase): the earliest such op of any of
    its anomalies ends the count. Anomalies that name only webhook deliveries or the end
    state are seen at the scenario's end, its last op.

    Returns:
        The count, or None when no scenario's verdict is false.
    """
    ops_before = 0
    for position, scenario in enumerate(record.scenarios):
        if scenario.valid is not False:
            ops_before += scenario.ops_count
            continue
        first_index = _detection_index(scenario)
        run = runs[position] if position < len(runs) else None  # a crash may cut it short
        if run is not None:
            assert run.name == scenario.name, (run.name, scenario.name)
        if first_index is None or run is None:
            return ops_before + scenario.ops_count
        invoked = sum(1 for event in run.events
                      if event.kind == Kind.INVOKE and event.index <= first_index)
        assert invoked <= scenario.ops_count, (invoked, scenario.ops_count)
        return ops_before + max(invoked, 1)
    return None


def _detection_index(scenario: ScenarioRecord) -> int | None:
    """The earliest history index at which one of the scenario's anomalies was complete."""
    indexes = [max(anomaly.event_indexes) for verdict in scenario.verdicts.values()
               if verdict.valid is False for anomaly in verdict.anomalies
               if anomaly.event_indexes]
    return min(indexes) if indexes else None


def zoo_to_json(zoo: Zoo) -> dict[str, Any]:
    """The matrix as the JSON of ``reports/zoo.json`` (see the module docstring)."""
    return {"schema_version": ZOO_SCHEMA_VERSION, "generated_at": zoo.generated_at,
            "tokenchaos_version": VERSION, "suite": SUITE, "seed": zoo.seed, "ok": zoo.ok,
            "correct": zoo.correct.to_json(), "flaws": [row.to_json() for row in zoo.flaws]}


def zoo_markdown(zoo: Zoo, *, generated_by: str = "`tokenchaos zoo`") -> str:
    """The matrix as a Markdown table, with a line per flaw saying what it breaks."""
    lines = [
        f"Smoke suite, seed {zoo.seed}, generated by {generated_by} on "
        f"{zoo.generated_at[:10]}. Checkers in **bold** are the ones the flaw's "
        "description names. Ops to first detection: the ops the suite had invoked when the "
        "last op named by the earliest complete anomaly was invoked (the end of its "
        "scenario when an anomaly names no op).",
        "",
        "| flaw | replaces | scenarios that caught it | checkers that fired "
        "| ops to first detection | wall time |",
        "|---|---|---|---|--:|--:|",
        _markdown_line(zoo.correct),
        *(_markdown_line(row) for row in zoo.flaws),
        "",
    ]
    lines += [f"- `{row.flaw}`: {row.description.rstrip('.')}." for row in zoo.flaws]
    return "\n".join(lines) + "\n"


def _markdown_line(row: ZooRow) -> str:
    if row.flaw is None:
        name, replaces = "correct service", "—"
        scenarios = "none: clean" if row.clean else f"**not clean** ({_word(row.valid)})"
    else:
        name, replaces = f"`{row.flaw}`", f"`{row.operation}`"
        scenarios = ", ".join(row.scenarios_caught) or "**not caught**"
        if row.caught and not row.caught_as_described:
            scenarios += " (**not by the checker its description names**)"
    checkers = ", ".join(f"**{name}**" if name in row.caught_by else name
                         for name in row.checkers_fired) or "—"
    detection = "—" if row.ops_to_detection is None else str(row.ops_to_detection)
    return (f"| {name} | {replaces} | {scenarios} | {checkers} | {detection} "
            f"| {row.wall_s:.1f} s |")


def _word(valid: Validity) -> str:
    return "held" if valid is True else "broke" if valid is False else "unknown"


def write_zoo(zoo: Zoo, report_dir: Path) -> tuple[Path, Path]:
    """Write ``zoo.json`` and ``zoo.md`` into ``report_dir``; return their paths."""
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = report_dir / "zoo.json", report_dir / "zoo.md"
    _write_atomically(json_path, json.dumps(zoo_to_json(zoo), indent=2) + "\n")
    _write_atomically(markdown_path, zoo_markdown(zoo))
    return json_path, markdown_path


def replace_readme_block(text: str, markdown: str, *, begin: str = README_BEGIN,
                         end: str = README_END) -> str:
    """``text`` with the block between the zoo markers replaced by ``markdown``.

    ``begin`` and ``end`` name another block's markers (the foreign target's matrix).

    Raises:
        UsageError: the markers are missing, doubled, or out of order.
    """
    begin_count, end_count = text.count(begin), text.count(end)
    if begin_count != 1 or end_count != 1:
        raise UsageError(f"the README must hold {begin} and {end} once each "
                         f"(found {begin_count} and {end_count}); add them around the zoo "
                         "matrix")
    head, rest = text.split(begin)
    if end not in rest:
        raise UsageError(f"the README has {end} before {begin}; swap them")
    _, tail = rest.split(end)
    return f"{head}{begin}\n{markdown.strip()}\n{end}{tail}"


def readme_block(text: str, *, begin: str = README_BEGIN, end: str = README_END) -> str:
    """The text between the zoo markers (for tests and checks)."""
    replace_readme_block(text, "", begin=begin, end=end)  # raises on misplaced markers
    return text.split(begin)[1].split(end)[0]


def update_readme(path: Path, markdown: str, *, begin: str = README_BEGIN,
                  end: str = README_END) -> bool:
    """Rewrite the zoo block of the README at ``path``; whether its text changed.

    Raises:
        UsageError: the README is missing or has no zoo markers.
    """
    if not path.is_file():
        raise UsageError(f"{path}: no such file; run from the repository root or pass --readme")
    text = path.read_text(encoding="utf-8")
    updated = replace_readme_block(text, markdown, begin=begin, end=end)
    if updated == text:
        return False
    _write_atomically(path, updated)
    return True


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
