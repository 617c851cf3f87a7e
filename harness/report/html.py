"""``index.html``: the run as one self-contained page, and ``write_report`` for all three files.

The page opens with the overall verdict and the command that reproduces the run, then a
verdict table (scenario × checker), then one section per scenario: throughput, latency
and token supply over time, and every anomaly with its explanation, its ops and a
timeline of those ops among their neighbours. CSS and the few lines of script are inlined
from ``report.css`` and ``report.js`` beside this module; every chart is inline SVG drawn
by ``svg.py``. Nothing is fetched from anywhere, so the file can be mailed or archived.

Every piece of text from a run goes through ``html.escape``. What is drawn is capped
(``svg.py``, ``_sections.py``) so a million-op history renders in seconds.

This module lays out the page; it does not judge, and reads nothing but the history.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape
from pathlib import Path

from harness.checkers import CHECKERS, DESCRIPTIONS
from harness.history import load
from harness.model import Validity
from harness.report._sections import (
    ScenarioRunLike,
    badge,
    checker_anchor,
    command_box,
    scenario_anchor,
    scenario_section,
    validity_class,
)
from harness.report.junit import write_junit
from harness.report.record import (
    RunRecord,
    ScenarioRecord,
    iso_utc,
    ns_from_iso_utc,
    write_run_json,
)

__all__ = ["ReportPaths", "ScenarioRunLike", "Shrunk", "render_html", "write_report"]

_HERE = Path(__file__).parent
_SYMBOLS = {"true": "✓", "false": "✗", "unknown": "?", "none": "·"}
_VERDICT_WORDS = {True: "every invariant held", False: "an invariant broke",
                  "unknown": "the harness could not decide everything"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportPaths:
    """The files ``write_report`` wrote."""

    run_json: Path
    junit_xml: Path
    index_html: Path


Shrunk = Sequence[tuple[str, str, Sequence[str]]]  # (scenario, sentence, files beside)


def write_report(record: RunRecord, history_path: Path | None, out_dir: Path, *,
                 shrunk: Shrunk = ()) -> ReportPaths:
    """Write ``run.json``, ``junit.xml`` and ``index.html`` for a run into ``out_dir``.

    Args:
        record: the run's record.
        history_path: its ``history.jsonl``; when None or missing, the page is drawn from
            the record alone (no throughput, latency or timelines).
        out_dir: created if missing; usually ``reports/<run-id>/``.
        shrunk: the scenarios ``tokenchaos shrink`` shrank, each with its one-sentence
            result and the files it wrote beside the report, to link.

    Returns:
        The paths written.

    Raises:
        UsageError: the history exists but cannot be read.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = load(history_path) if history_path is not None and history_path.exists() else []
    paths = ReportPaths(run_json=out_dir / "run.json", junit_xml=out_dir / "junit.xml",
                        index_html=out_dir / "index.html")
    write_run_json(record, paths.run_json)
    write_junit(record, paths.junit_xml)
    paths.index_html.write_text(render_html(record, runs, shrunk=shrunk), encoding="utf-8")
    return paths


def render_html(record: RunRecord, runs: Sequence[ScenarioRunLike] = (), *,
                shrunk: Shrunk = ()) -> str:
    """The report page for ``record``, with plots and timelines from ``runs`` where given.

    Args:
        record: the run's record: verdicts, anomalies, samples, commands.
        runs: the scenarios as the history recorded them (anything with ``name``, ``seed``,
            ``events``, ``truth`` and ``initial``); each is matched to the record's
            scenario of the same name and seed, in order.
        shrunk: see ``write_report``.

    Returns:
        A complete HTML document.
    """
    paired = _pair(record.scenarios, runs)
    wall_offset_ns = ns_from_iso_utc(record.started_at)
    with _collector_paused():
        sections = [scenario_section(scenario, run, position=i, wall_offset_ns=wall_offset_ns)
                    for i, (scenario, run) in enumerate(paired)]
    css = (_HERE / "report.css").read_text(encoding="utf-8")
    script = (_HERE / "report.js").read_text(encoding="utf-8")
    title = f"tokenchaos {_verdict_word(record.valid)} · {record.run_id}"
    return "".join([
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{css}</style></head><body>",
        _header(record),
        "<main>",
        _schema_section(record),
        _verdict_table(record),
        _shrunk_section(shrunk),
        _not_run_summary(record),
        *sections,
        "</main>",
        f"<footer>tokenchaos {escape(record.tokenchaos_version)} · run.json schema "
        f"v{record.schema_version} · the same data: run.json, junit.xml, history.jsonl"
        "</footer>",
        f"<script>{script}</script></body></html>\n",
    ])


def _shrunk_section(shrunk: Shrunk) -> str:
    """Links to the shrunk reproducers written beside the page (relative, so the folder
    can be moved or archived whole)."""
    if not shrunk:
        return ""
    items = []
    for scenario, sentence, files in shrunk:
        links = " · ".join(f'<a href="{escape(name, quote=True)}">{escape(name)}</a>'
                           for name in files)
        items.append(f"<li><strong>{escape(scenario)}</strong>: {escape(sentence)}<br>"
                     f"{links}</li>")
    return (f'<section class="card shrunk"><h2>Shrunk reproducers</h2><ul>{"".join(items)}'
            "</ul></section>")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the sections are built.

    They allocate a tuple per op; beside the millions of objects of a loaded history, each
    automatic collection rescans them all, which doubles the time for a large run. Nothing
    built here is cyclic, so nothing waits for the collector.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _pair(scenarios: Sequence[ScenarioRecord], runs: Sequence[ScenarioRunLike],
          ) -> list[tuple[ScenarioRecord, ScenarioRunLike | None]]:
    """Each scenario with the first unused run of the same name and seed (None if none)."""
    unused = list(runs)
    paired: list[tuple[ScenarioRecord, ScenarioRunLike | None]] = []
    for scenario in scenarios:
        match = next((r for r in unused if r.name == scenario.name and r.seed == scenario.seed),
                     None)
        if match is not None:
            unused.remove(match)
        paired.append((scenario, match))
    return paired


def _header(record: RunRecord) -> str:
    tally = _tally(record)
    duration = _run_duration(record)
    facts = [
        ("target", f"{record.target.profile} · {record.target.service_url}"),
        ("provider", record.target.provider_url or "real provider"),
        ("suite", record.suite or "scenarios named on the command line"),
        ("started", _when(record.started_at)),
        ("finished", _when(record.finished_at) if record.finished_at else "did not finish"),
        ("duration", duration),
        ("exit code", "running" if record.exit_code is None else str(record.exit_code)),
    ]
    meta = "".join(f'<div{" class=wide" if k == "target" else ""}><dt>{escape(k)}</dt>'
                   f'<dd title="{escape(v)}">{escape(v)}</dd></div>' for k, v in facts)
    cls = validity_class(record.valid)
    return (
        f'<header class="top v-{cls}"><div class="top-inner"><div class="headline">'
        f'{badge(record.valid, big=True)}'
        f'<h1>tokenchaos run <span class="run-id">{escape(record.run_id)}</span></h1>'
        f'<span class="tally">{escape(_VERDICT_WORDS[record.valid])} · {tally}</span></div>'
        f'<dl class="meta">{meta}</dl>'
        f'{command_box("reproduce the run", record.command)}</div></header>')


def _tally(record: RunRecord) -> str:
    held = broke = unknown = 0
    for scenario in record.scenarios:
        for verdict in scenario.verdicts.values():
            held += verdict.valid is True
            broke += verdict.valid is False
            unknown += verdict.valid == "unknown"
    return (f'{len(record.scenarios)} scenarios, {held + broke + unknown} checks: '
            f'<b class="ok">{held} held</b>, <b class="fail">{broke} broke</b>, '
            f'<b class="unknown">{unknown} unknown</b>')


def _verdict_table(record: RunRecord) -> str:
    checkers = _columns(record)
    head = "".join(f'<th title="{escape(DESCRIPTIONS.get(c, c))}">'
                   f"{escape(c).replace('_', '_<wbr>')}</th>" for c in checkers)
    rows = []
    for i, scenario in enumerate(record.scenarios):
        anchor = scenario_anchor(i, scenario.name)
        cells = "".join(_cell(scenario, checker, anchor) for checker in checkers)
        rows.append(
            f'<tr><td class="scn"><a href="#{anchor}">{escape(scenario.name)}</a> '
            f'<span class="seed">seed {scenario.seed}</span></td>{cells}'
            f'<td class="num">{scenario.ops_count:,} ops</td>'
            f'<td class="num">{scenario.duration_s:.1f} s</td></tr>')
    foot = "".join(f"<td>{_column_tally(record, c)}</td>" for c in checkers)
    table = (f'<div class="matrix-wrap"><table class="matrix"><thead><tr>'
             f'<th class="scn">scenario</th>{head}<th></th><th></th></tr></thead>'
             f'<tbody>{"".join(rows)}</tbody><tfoot><tr><td class="scn">per checker</td>'
             f'{foot}<td></td><td></td></tr></tfoot></table></div>')
    key = ('<div class="key"><span class="k-true">✓ held</span>'
           '<span class="k-false">✗ broke (number of anomalies)</span>'
           '<span class="k-unknown">? unknown: could not decide</span>'
           '<span class="k-none">· not run for this scenario</span></div>')
    if not record.scenarios:
        table = '<p class="empty">No scenario ran.</p>'
    return f'<section class="card" id="verdicts"><h2>Verdicts</h2>{table}{key}</section>'


def _schema_section(record: RunRecord) -> str:
    """The schema check made before the first scenario, when the target had one."""
    verdict = record.schema
    if verdict is None:
        return ""
    items = "".join(f'<li><span class="kind">{escape(a.kind)}</span> '
                    f"{escape(a.explanation)}</li>" for a in verdict.anomalies)
    note = f'<p class="note">{escape(verdict.note)}</p>' if verdict.note else ""
    held = ("<p>Balances are bigint with CHECK (balance &gt;= 0), and one row per payment "
            "intent is enforced by a constraint ON CONFLICT can use.</p>"
            if verdict.valid is True else "")
    return (f'<section class="card" id="schema"><h2>{badge(verdict.valid)} Schema of the '
            "target's database</h2><p>Checked before the first scenario; part of the "
            f"run's verdict.</p>{held}{note}"
            + (f"<ul>{items}</ul>" if items else "") + "</section>")


def _not_run_summary(record: RunRecord) -> str:
    """Every scenario, or part of one, not run for this target, with the reason."""
    items: list[str] = []
    for i, scenario in enumerate(record.scenarios):
        link = f'<a href="#{scenario_anchor(i, scenario.name)}">{escape(scenario.name)}</a>'
        if scenario.not_run_reason is not None:
            items.append(f"<li>{link}: {escape(scenario.not_run_reason)}</li>")
        items.extend(f"<li>{link}, {escape(part.part)}: {escape(part.reason)}</li>"
                     for part in scenario.not_run)
    if not items:
        return ""
    return ('<section class="card" id="not-run"><h2>Not run for this target</h2>'
            "<p>What the target's profile declares it cannot do: not tested, not judged, "
            f'and no part of the verdict.</p><ul>{"".join(items)}</ul></section>')


def _columns(record: RunRecord) -> list[str]:
    """Checkers that judged any scenario: in the registry's order, then unknown names."""
    seen = dict.fromkeys(c for s in record.scenarios for c in s.verdicts)
    order = {name: i for i, name in enumerate(CHECKERS)}
    return sorted(seen, key=lambda c: order.get(c, len(order)))


def _cell(scenario: ScenarioRecord, checker: str, anchor: str) -> str:
    verdict = scenario.verdicts.get(checker)
    if verdict is None:
        return f'<td class="cell v-none" title="{escape(checker)} did not run">·</td>'
    cls = validity_class(verdict.valid)
    text = _SYMBOLS[cls]
    if verdict.valid is False:
        text += f" {len(verdict.anomalies)}" if verdict.anomalies else ""
    tip = f"{checker}: {_verdict_word(verdict.valid)}"
    if verdict.note:
        tip += f" — {verdict.note}"
    href = checker_anchor(anchor, checker)
    return f'<td class="cell v-{cls}" title="{escape(tip)}"><a href="#{href}">{text}</a></td>'


def _column_tally(record: RunRecord, checker: str) -> str:
    verdicts = [s.verdicts[checker] for s in record.scenarios if checker in s.verdicts]
    held = sum(v.valid is True for v in verdicts)
    broke = sum(v.valid is False for v in verdicts)
    unknown = sum(v.valid == "unknown" for v in verdicts)
    parts = [f"{held}✓"] + ([f"{broke}✗"] if broke else []) + ([f"{unknown}?"] if unknown else [])
    return " ".join(parts)


def _verdict_word(valid: Validity) -> str:
    return {True: "PASS", False: "FAIL", "unknown": "UNKNOWN"}[valid]


def _run_duration(record: RunRecord) -> str:
    if record.finished_at is None:
        return "—"
    seconds = (ns_from_iso_utc(record.finished_at) - ns_from_iso_utc(record.started_at)) / 1e9
    minutes, rest = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)} min {rest:.1f} s" if minutes else f"{rest:.1f} s"


def _when(timestamp: str) -> str:
    """An ISO-8601 UTC timestamp as people read it: to the second, in UTC."""
    return iso_utc(ns_from_iso_utc(timestamp))[:19].replace("T", " ") + " UTC"
