"""One scenario's part of the report page: facts, charts, checkers, anomalies, timelines.

``html.py`` lays out the page and calls ``scenario_section`` once per scenario. Every
string from the run is escaped here before it meets markup; the charts come from
``svg.py`` and their data from ``series.py``. The caps below bound the work per scenario,
whatever the size of the history.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from html import escape
from typing import Protocol

from harness.model import (
    Anomaly,
    Delivery,
    Event,
    F,
    FaultWindow,
    Observation,
    ProviderTruth,
    Validity,
    Verdict,
)
from harness.report.record import ScenarioRecord
from harness.report.series import (
    OpSpan,
    OpSummary,
    balance_reads,
    latency_by_f,
    op_spans,
    op_summaries,
    supply_from_history,
    throughput_by_f,
)
from harness.report.svg import PALETTE, Band, Bar, BarState, Series, line_chart, timeline

__all__ = [
    "ScenarioRunLike",
    "badge",
    "checker_anchor",
    "command_box",
    "not_run_block",
    "scenario_anchor",
    "scenario_section",
    "validity_class",
]

ANOMALY_TIMELINES_MAX = 30  # per scenario; further anomalies are listed without a timeline
TIMELINE_BARS_MAX = 2_000
TIMELINE_LANES_MAX = 24
TIMELINE_DELIVERIES_MAX = 8  # webhook deliveries drawn per anomaly, one lane each
ANOMALY_OPS_LISTED_MAX = 12
_NS_PER_S = 1_000_000_000
_F_COLOURS = {str(f): PALETTE[i % len(PALETTE)] for i, f in enumerate(F)}


class ScenarioRunLike(Protocol):
    """What the page needs from one scenario of a loaded history."""

    @property
    def name(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def events(self) -> Sequence[Event]: ...
    @property
    def truth(self) -> ProviderTruth | None: ...
    @property
    def initial(self) -> Observation | None: ...
    @property
    def faults(self) -> Sequence[FaultWindow]: ...


def validity_class(valid: Validity) -> str:
    """"true", "false" or "unknown": the CSS class suffix of a verdict."""
    return {True: "true", False: "false", "unknown": "unknown"}[valid]


def badge(valid: Validity, *, big: bool = False) -> str:
    text = {True: "✓ PASS", False: "✗ FAIL", "unknown": "? UNKNOWN"}[valid]
    size = " big" if big else ""
    return f'<span class="badge{size} v-{validity_class(valid)}">{text}</span>'


def command_box(label: str, command: str) -> str:
    return (f'<div class="cmd"><span class="label">{escape(label)}</span>'
            f'<code>{escape(command)}</code><button type="button" data-copy>copy</button></div>')


def scenario_anchor(position: int, name: str) -> str:
    """A fragment id for a scenario: its position and name, reduced to [a-z0-9-]."""
    return f"s{position}-{_slug(name)}"


def checker_anchor(scenario_anchor: str, checker: str) -> str:
    """A fragment id for one checker's verdict within a scenario."""
    return f"{scenario_anchor}-{_slug(checker)}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


@dataclass(frozen=True, slots=True)
class _Context:
    """One scenario's history, prepared once for every chart and anomaly."""

    spans: list[OpSpan]
    starts_ns: list[int]
    duration_ns_max: int
    t0_ns: int
    t1_ns: int
    by_index: Mapping[int, OpSpan]  # only the indexes some anomaly names
    truth: ProviderTruth | None
    wall_offset_ns: int  # wall-clock ns at the history clock's zero
    faults: Sequence[FaultWindow]
    bands: Sequence[Band]  # the faults, in seconds since t0, for every chart


def scenario_section(scenario: ScenarioRecord, run: ScenarioRunLike | None, *, position: int,
                     wall_offset_ns: int) -> str:
    """The scenario's section; failed and unknown scenarios open, passed ones folded."""
    anchor = scenario_anchor(position, scenario.name)
    if not scenario.ran:
        return _not_run_section(scenario, anchor)
    context = _context(scenario, run, wall_offset_ns)
    facts = (f'seed {scenario.seed} · {scenario.ops_count:,} ops · '
             f'{scenario.duration_s:.1f} s')
    if scenario.performance is not None and scenario.performance.slow_ops_count:
        facts += f' · {scenario.performance.slow_ops_count:,} slow'
    summary = (f'<summary>{badge(scenario.valid)}<h2>{escape(scenario.name)}</h2>'
               f'<span class="facts">{escape(facts)}</span></summary>')
    body = [command_box("reproduce", scenario.reproduce), not_run_block(scenario),
            _chips(scenario), _faults_table(context),
            _charts(scenario, run, context, wall_offset_ns), _performance_block(scenario),
            _loop_lag_block(scenario)]
    verdicts = sorted(scenario.verdicts.items(), key=lambda kv: _rank(kv[1].valid))
    timelines_left = ANOMALY_TIMELINES_MAX
    passed: list[tuple[str, Verdict]] = []
    for checker, verdict in verdicts:
        if verdict.valid is True:
            passed.append((checker, verdict))
            continue
        html, timelines_left = _checker_block(checker, verdict, context, anchor,
                                              timelines_left)
        body.append(html)
    if not scenario.verdicts:
        body.append('<p class="empty">No checker judged this scenario: it stopped before '
                    'its end. Run the command above to try again.</p>')
    body.append(_passed_block(passed, anchor))
    opened = " open" if scenario.valid is not True else ""
    return (f'<details class="card scenario" id="{anchor}"{opened}>{summary}'
            f'{"".join(body)}</details>')


def _not_run_section(scenario: ScenarioRecord, anchor: str) -> str:
    """A scenario the target's profile cannot support: its name and why, nothing judged."""
    reason = scenario.not_run_reason or ""
    return (f'<details class="card scenario not-run" id="{anchor}"><summary>'
            f'<span class="badge v-none">– NOT RUN</span><h2>{escape(scenario.name)}</h2>'
            f'<span class="facts">{escape("not run for this target")}</span></summary>'
            f'<p class="not-run">Not run for this target: {escape(reason)}. Nothing of it '
            "was tested or judged.</p></details>")


def not_run_block(scenario: ScenarioRecord) -> str:
    """The parts of a scenario not run for this target, with their reasons (or nothing)."""
    if not scenario.not_run:
        return ""
    items = "".join(f"<li><b>{escape(part.part)}</b>: {escape(part.reason)}</li>"
                    for part in scenario.not_run)
    return (f'<div class="not-run"><p>Not run for this target (not tested, not judged):</p>'
            f"<ul>{items}</ul></div>")


def _rank(valid: Validity) -> int:
    return {False: 0, "unknown": 1, True: 2}[valid]


def _context(scenario: ScenarioRecord, run: ScenarioRunLike | None,
             wall_offset_ns: int) -> _Context:
    events = run.events if run is not None else ()
    spans = op_spans(events)
    wanted = {i for v in scenario.verdicts.values() for a in v.anomalies
              for i in a.event_indexes}
    by_index: dict[int, OpSpan] = {}
    for span in spans:
        if span.invoke_index in wanted:
            by_index[span.invoke_index] = span
        if span.completion_index is not None and span.completion_index in wanted:
            by_index[span.completion_index] = span
    t0_ns = min([scenario.started_ns] + ([spans[0].start_ns] if spans else []))
    ends = [s.end_ns if s.end_ns is not None else s.start_ns for s in spans]
    t1_ns = max(t0_ns + int(scenario.duration_s * _NS_PER_S), max(ends, default=t0_ns))
    faults = tuple(run.faults) if run is not None else ()
    return _Context(spans=spans, starts_ns=[s.start_ns for s in spans],
                    duration_ns_max=max((e - s.start_ns for s, e in zip(spans, ends, strict=True)),
                                        default=0),
                    t0_ns=t0_ns, t1_ns=t1_ns, by_index=by_index,
                    truth=run.truth if run is not None else None,
                    wall_offset_ns=wall_offset_ns, faults=faults,
                    bands=[_band(fault, t0_ns) for fault in faults])


def _band(fault: FaultWindow, t0_ns: int) -> Band:
    """A fault from injection to recovery (to the end, if the target never recovered)."""
    end_ns = fault.recovered_ns if fault.recovered_ns is not None else fault.healed_ns
    never = "never recovered" if fault.error is None else fault.error
    recovery = (f"recovered {fault.recovery_ns / 1e6:,.0f} ms after the heal"
                if fault.recovery_ns is not None else never)
    return Band(start_s=(fault.started_ns - t0_ns) / _NS_PER_S,
                end_s=None if end_ns is None else (end_ns - t0_ns) / _NS_PER_S,
                label=f"{fault.name} {fault.kind.replace('_', ' ')}",
                tooltip=f"{fault.name}: {fault.description}; {recovery}")


def _chips(scenario: ScenarioRecord) -> str:
    items = [*scenario.params.items(), *scenario.stats.items()]
    if not items:
        return ""
    chips = "".join(f'<span class="chip">{escape(str(k))} <b>{escape(_short(v))}</b></span>'
                    for k, v in items)
    return f'<div class="chips">{chips}</div>'


def _charts(scenario: ScenarioRecord, run: ScenarioRunLike | None, context: _Context,
            wall_offset_ns: int) -> str:
    x_range = (0.0, max((context.t1_ns - context.t0_ns) / _NS_PER_S, 1e-3))
    figures = []
    if context.spans:
        throughput = throughput_by_f(context.spans, t0_ns=context.t0_ns, t1_ns=context.t1_ns)
        figures.append(line_chart(
            [Series(name=f, points=p, colour=_F_COLOURS.get(f, "#555555"))
             for f, p in throughput.items()],
            title="Throughput: completed ops per second", x_label="seconds since start",
            y_label="ops/s", x_range=x_range, bands=context.bands))
        latency = latency_by_f(context.spans, t0_ns=context.t0_ns)
        figures.append(line_chart(
            [Series(name=f, points=p, colour=_F_COLOURS.get(f, "#555555"), mode="points")
             for f, p in latency.items()],
            title="Latency of each op, by invoke time (log scale)",
            x_label="seconds since start", y_label="ms", x_range=x_range, y_log=True,
            bands=context.bands))
    supply = _supply_chart(scenario, run, context, wall_offset_ns, x_range)
    if supply:
        figures.append(supply)
    if context.spans:
        figures.append(_ops_table(op_summaries(context.spans)))
    if not figures:
        return '<p class="empty">No history was recorded for this scenario.</p>'
    return '<div class="charts">' + "".join(f"<figure>{f}</figure>" for f in figures) + "</div>"


def _faults_table(context: _Context) -> str:
    """Every fault of the scenario: what, when, how long, and when the target answered."""
    if not context.faults:
        return ""

    def at(ns: int | None) -> str:
        return "–" if ns is None else f"{(ns - context.t0_ns) / _NS_PER_S:.2f} s"

    rows = []
    for fault in context.faults:
        recovery = "–" if fault.recovery_ns is None else f"{fault.recovery_ns / 1e6:,.0f} ms"
        outcome = fault.error or ("never answered again" if fault.recovered_ns is None
                                  else "recovered")
        rows.append(f"<tr><td>{escape(fault.name)}</td><td>{escape(fault.description)}</td>"
                    f"<td>{at(fault.started_ns)}</td><td>{at(fault.healed_ns)}</td>"
                    f"<td>{recovery}</td><td>{escape(outcome)}</td></tr>")
    return ('<table class="faults"><caption>Faults (shaded on the charts and timelines)'
            '</caption><thead><tr><th>fault</th><th>what</th><th>injected</th><th>healed</th>'
            '<th>time to recover</th><th>outcome</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _ops_table(summaries: Sequence[OpSummary]) -> str:
    """How each kind of op ended and how long it took, beside the charts."""
    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value:,.1f}"

    rows = []
    for s in summaries:
        errors = ", ".join(f"{code} ×{n:,}" for code, n in s.errors)
        rows.append(
            f'<tr><td><span class="swatch" style="background:{_F_COLOURS.get(s.f, "#555")}">'
            f'</span>{escape(s.f)}</td><td>{s.ops_count:,}</td><td class="s-ok">{s.ok_count:,}</td>'
            f'<td class="s-fail">{s.fail_count or ""}</td>'
            f'<td class="s-info">{s.info_count or ""}</td>'
            f"<td>{ms(s.latency_ms_p50)}</td><td>{ms(s.latency_ms_p99)}</td>"
            f'<td>{ms(s.latency_ms_max)}</td><td class="errs">{escape(errors)}</td></tr>')
    return ('<div class="ops-table"><h4>Ops by kind <span>(latency in ms; info = '
            'indeterminate)</span></h4><table><thead><tr><th>op</th><th>count</th><th>ok</th>'
            '<th>fail</th><th>info</th><th>p50</th><th>p99</th><th>max</th><th>errors</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _performance_block(scenario: ScenarioRecord) -> str:
    """Slow ops as performance findings: figures and the slowest ops, apart from verdicts."""
    performance = scenario.performance
    if performance is None or performance.slow_ops_count == 0:
        return ""
    if performance.judged:
        how = (f"The run was given a latency bound of {performance.latency_ms_slow:,} ms, so "
               "each of these is also a <code>slow_op</code> anomaly of the errors checker.")
    else:
        how = ("A performance finding, not a broken invariant: latency depends on the "
               "machine as much as on the service, so it does not change the verdict. "
               "<code>--latency-bound-ms N</code> makes a slower op fail the run.")
    rows = "".join(
        f"<tr><td>{escape(f.f)}</td><td>{f.ops_count:,}</td><td>{f.latency_ms_p50:,}</td>"
        f"<td>{f.latency_ms_p99:,}</td><td>{f.latency_ms_max:,}</td>"
        f"<td>{f.slow_ops_count or ''}</td></tr>" for f in performance.by_f)
    slowest = "".join(
        f"<li>{escape(op.f)} #{op.index}: {op.latency_ms:,} ms ({escape(op.kind)}"
        f"{': ' + escape(op.error) if op.error else ''})</li>" for op in performance.slowest)
    return (f'<div class="ops-table performance"><h4>Performance findings <span>'
            f'({performance.slow_ops_count:,} of {performance.ops_measured_count:,} ops took '
            f'longer than {performance.latency_ms_slow:,} ms)</span></h4><p>{how}</p>'
            '<table><thead><tr><th>op</th><th>count</th><th>p50 ms</th><th>p99 ms</th>'
            f'<th>max ms</th><th>slow</th></tr></thead><tbody>{rows}</tbody></table>'
            f'<p>Slowest ops:</p><ol class="slowest">{slowest}</ol></div>')


def _loop_lag_block(scenario: ScenarioRecord) -> str:
    """The harness's own event-loop lag (a finding about the harness, never a verdict)."""
    from harness.loop_lag import LagSummary, lag_line

    summary = LagSummary.from_stats(scenario.stats)
    if summary is None:
        return ""
    return (f'<p class="loop-lag"><b>Harness</b> · {escape(lag_line(summary))} '
            f'({escape(str(scenario.stats.get("workers_count", "?")))} workers).</p>')


def _supply_chart(scenario: ScenarioRecord, run: ScenarioRunLike | None, context: _Context,
                  wall_offset_ns: int, x_range: tuple[float, float]) -> str:
    """Total balance and debt: from the record's samples, else derived from the history."""
    title = "Tokens: total balance and total debt"
    if scenario.samples:
        t0 = context.t0_ns
        rows = [((s.time_ns - t0) / _NS_PER_S, s.balances_tokens, s.debts_tokens)
                for s in scenario.samples]
        rows.append((max(x_range[1], rows[-1][0]), rows[-1][1], rows[-1][2]))
        series = [
            Series(name="total balance", mode="step", colour="#0072B2",
                   points=[(t, b) for t, b, _ in rows]),
            Series(name="total debt", mode="step", colour="#D55E00",
                   points=[(t, d) for t, _, d in rows]),
        ]
        return line_chart(series, title=title, x_label="seconds since start",
                          y_label="tokens", x_range=x_range)
    if run is None or not context.spans:
        return ""
    series = []
    if run.truth is not None:
        supply = supply_from_history(context.spans, run.truth, t0_ns=context.t0_ns,
                                     wall_offset_ns=wall_offset_ns, initial=run.initial)
        supply.append((x_range[1], supply[-1][1]))
        series.append(Series(name="minted − clawed back (balance − debt, derived)",
                             mode="step", colour="#0072B2", points=supply))
    balances, debts = balance_reads(context.spans, t0_ns=context.t0_ns)
    series.append(Series(name="one account's balance, as read", mode="points",
                         colour="#009E73", points=balances))
    if debts:
        series.append(Series(name="one account's debt, as read", mode="points",
                             colour="#D55E00", points=debts))
    return line_chart(series, title="Tokens: supply, and balances as read",
                      x_label="seconds since start", y_label="tokens", x_range=x_range)


def _checker_block(checker: str, verdict: Verdict, context: _Context, anchor: str,
                   timelines_left: int) -> tuple[str, int]:
    counts = ", ".join(f"{k} {v:,}" for k, v in verdict.counts.items())
    head = (f'<h3>{badge(verdict.valid)} {escape(checker)}'
            + (f' <span class="counts">{escape(counts)}</span>' if counts else "") + "</h3>")
    parts = [f'<div class="checker" id="{checker_anchor(anchor, checker)}">{head}']
    if verdict.note:
        parts.append(f'<p class="note">{escape(verdict.note)}</p>')
    if verdict.valid is False and not verdict.anomalies and not verdict.note:
        parts.append('<p class="note">The checker found its invariant broken but named no '
                     'single anomaly.</p>')
    for anomaly in verdict.anomalies:
        with_timeline = timelines_left > 0 and bool(
            (anomaly.event_indexes and context.spans)
            or (anomaly.delivery_indexes and context.truth))
        timelines_left -= with_timeline
        parts.append(_anomaly_card(anomaly, context, with_timeline=with_timeline))
    parts.append("</div>")
    return "".join(parts), timelines_left


def _anomaly_card(anomaly: Anomaly, context: _Context, *, with_timeline: bool) -> str:
    user = f'<span>account <b>{escape(anomaly.user)}</b></span>' if anomaly.user else ""
    nums = (f'<span class="nums">expected <b>{escape(_short(anomaly.expected))}</b>, '
            f'observed <b>{escape(_short(anomaly.observed))}</b></span>')
    parts = [f'<article class="anomaly"><div class="what"><span class="kind">'
             f'{escape(anomaly.kind)}</span>{user}{nums}</div>'
             f'<p class="explanation">{escape(anomaly.explanation)}</p>']
    rows = [_op_row(i, context.by_index.get(i), context.t0_ns)
            for i in anomaly.event_indexes[:ANOMALY_OPS_LISTED_MAX]]
    rows += [_delivery_row(i, context.truth)
             for i in anomaly.delivery_indexes[:ANOMALY_OPS_LISTED_MAX]]
    hidden = (len(anomaly.event_indexes) + len(anomaly.delivery_indexes)) - len(rows)
    if hidden > 0:
        rows.append(f'<li class="val">… and {hidden} more</li>')
    if rows:
        parts.append(f'<ul class="ops">{"".join(rows)}</ul>')
    if with_timeline:
        parts.append(_anomaly_timeline(anomaly, context))
    parts.append("</article>")
    return "".join(parts)


def _op_row(index: int, span: OpSpan | None, t0_ns: int) -> str:
    if span is None:
        return (f'<li><span class="idx mono">#{index}</span>'
                f'<span class="val">not in the recorded history</span></li>')
    latency = f"{span.latency_ms:,.1f} ms" if span.latency_ms is not None else "never completed"
    at_s = (span.start_ns - t0_ns) / _NS_PER_S
    error = f" {span.error}" if span.error else ""
    status = f" {span.status_code}" if span.status_code is not None else ""
    return (f'<li><span class="idx mono">#{index}</span><b>{escape(span.f)}</b>'
            f'<span class="state s-{escape(span.state)}">{escape(span.state)}'
            f'{escape(status + error)}</span><span>p{span.process} · at {at_s:.3f} s · '
            f'{escape(latency)}</span><span class="val mono">{escape(_value_text(span.value))}'
            f'</span></li>')


def _delivery_row(index: int, truth: ProviderTruth | None) -> str:
    found = next((d for d in truth.deliveries if d.index == index), None) if truth else None
    if found is None:
        return (f'<li><span class="idx mono">webhook {index}</span>'
                f'<span class="val">delivery not in the recorded truth</span></li>')
    answer = str(found.status_code) if found.status_code is not None else (found.error or "none")
    return (f'<li><span class="idx mono">webhook {index}</span><b>{escape(found.event_type)}</b>'
            f'<span class="chip">{escape(str(found.variant))}</span>'
            f'<span>answered {escape(answer)}</span><span class="val mono">'
            f'{escape(found.event_id)} · {escape(found.intent_id or "no intent")}</span></li>')


def _anomaly_timeline(anomaly: Anomaly, context: _Context) -> str:
    """The anomaly's ops among the ops that overlapped them, one lane per process.

    Each webhook delivery the anomaly names gets a lane of its own, placed on the
    history's clock through the run's wall-clock start.
    """
    named = {context.by_index[i].op_id: i for i in anomaly.event_indexes if i in context.by_index}
    own = {context.by_index[i].op_id: context.by_index[i] for i in anomaly.event_indexes
           if i in context.by_index}
    deliveries = _named_deliveries(anomaly, context)
    moments = [s.start_ns for s in own.values()] + [d.started_ns for d in deliveries]
    moments += [s.end_ns if s.end_ns is not None else context.t1_ns for s in own.values()]
    moments += [d.finished_ns for d in deliveries]
    if not moments:
        return ""
    lo, hi = min(moments), max(moments)
    pad = max((hi - lo) // 4, 2_000_000)
    w0, w1 = max(lo - pad, context.t0_ns), hi + pad
    first = bisect.bisect_left(context.starts_ns, w0 - context.duration_ns_max)
    last = bisect.bisect_right(context.starts_ns, w1)
    nearby = [s for s in context.spans[first:last]
              if (s.end_ns is None or s.end_ns >= w0) and s.op_id not in own]
    room = TIMELINE_BARS_MAX - len(own) - len(deliveries)
    if len(nearby) > room:
        middle = (lo + hi) // 2
        nearby.sort(key=lambda s: abs(s.start_ns - middle))
        nearby = nearby[:max(room, 0)]
    chosen = sorted([*own.values(), *nearby], key=lambda s: (s.process, s.start_ns))
    bars = [_delivery_bar(d, context.t0_ns) for d in deliveries]
    bars += [_bar(s, context.t0_ns, named=named.get(s.op_id)) for s in chosen]
    x_range = ((w0 - context.t0_ns) / _NS_PER_S, (w1 - context.t0_ns) / _NS_PER_S)
    svg = timeline(bars, title=f"Timeline of the ops of this {anomaly.kind}, seconds since start",
                   x_range=x_range, bars_max=TIMELINE_BARS_MAX, lanes_max=TIMELINE_LANES_MAX,
                   bands=context.bands)
    return f'<div class="timeline">{svg}</div>'


def _named_deliveries(anomaly: Anomaly, context: _Context) -> list[Delivery]:
    """The anomaly's deliveries (the first few), their times moved onto the history's clock."""
    if context.truth is None or not anomaly.delivery_indexes:
        return []
    wanted = set(anomaly.delivery_indexes[:TIMELINE_DELIVERIES_MAX])
    offset = context.wall_offset_ns
    return [replace(d, started_ns=d.started_ns - offset, finished_ns=d.finished_ns - offset)
            for d in context.truth.deliveries if d.index in wanted]


def _delivery_bar(delivery: Delivery, t0_ns: int) -> Bar:
    state: BarState = "info"
    if delivery.acknowledged:
        state = "ok"
    elif delivery.status_code is not None and 400 <= delivery.status_code < 500:
        state = "fail"
    answer = delivery.status_code if delivery.status_code is not None else delivery.error
    tooltip = (f"webhook delivery {delivery.index}: {delivery.event_type} "
               f"({delivery.variant}) of {delivery.intent_id or 'no intent'}, answered {answer}")
    return Bar(lane=f"webhook {delivery.index}",
               start_s=(delivery.started_ns - t0_ns) / _NS_PER_S,
               end_s=(delivery.finished_ns - t0_ns) / _NS_PER_S, state=state,
               label=f"{delivery.variant} → {answer}", tooltip=tooltip, highlighted=True)


def _bar(span: OpSpan, t0_ns: int, *, named: int | None) -> Bar:
    """A timeline bar; ``named`` is the history index the anomaly names this op by, if any."""
    end = None if span.end_ns is None else (span.end_ns - t0_ns) / _NS_PER_S
    latency = f"{span.latency_ms:,.1f} ms" if span.latency_ms is not None else "no completion"
    done = f" → #{span.completion_index}" if span.completion_index is not None else ""
    tooltip = (f"#{span.invoke_index}{done} {span.f} (process {span.process}): {span.state}"
               f"{' ' + span.error if span.error else ''}, {latency}\n{_value_text(span.value)}")
    return Bar(lane=f"p{span.process}", start_s=(span.start_ns - t0_ns) / _NS_PER_S,
               end_s=end, state=span.state,
               label=f"#{named if named is not None else span.invoke_index} {span.f}",
               tooltip=tooltip, highlighted=named is not None)


def _passed_block(passed: list[tuple[str, Verdict]], anchor: str) -> str:
    if not passed:
        return ""
    rows = "".join(
        f'<tr id="{checker_anchor(anchor, c)}"><td>✓ <b>{escape(c)}</b></td><td>'
        f'{escape(", ".join(f"{k} {n:,}" for k, n in verdict.counts.items()))}</td></tr>'
        for c, verdict in passed)
    return (f'<details class="passed"><summary>{len(passed)} checkers held: '
            f'{escape(", ".join(c for c, _ in passed))}</summary><table>{rows}</table>'
            f'</details>')


def _value_text(value: Mapping[str, object]) -> str:
    text = json.dumps(dict(value), separators=(", ", ": "), default=str, ensure_ascii=False)
    return _short(text, 160)


def _short(value: object, chars_max: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= chars_max else text[:chars_max - 1] + "…"
