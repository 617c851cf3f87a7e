"""index.html: self-contained, escaped, with the verdict table, charts and anomaly timelines."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

from harness.history import History, HistoryWriter, ScenarioRun, load
from harness.model import (
    AccountState,
    Anomaly,
    Delivery,
    DeliveryVariant,
    F,
    IntentTruth,
    Kind,
    Observation,
    ProviderTruth,
    Verdict,
)
from harness.report.demo import demo_run, write_demo
from harness.report.html import render_html, write_report
from harness.report.record import RunRecord, Sample, ScenarioRecord, TargetInfo
from tests.unit.test_report_series import MS, WALL_NS, Recorder

NASTY = "<script>alert('x')</script>&"
STARTED_AT = "2023-11-14T22:13:20.000000Z"  # WALL_NS of the series tests, as ISO-8601


def tip_history() -> Recorder:
    """Two overlapping tips by fan_0 (ops 1 and 2), a purchase, and a read, on two processes."""
    h = Recorder()
    h.invoke(0, 0, F.PURCHASE, 0, user="fan_0", purchase="p_0", amount_tokens=500)
    h.complete(0, 0, F.PURCHASE, 8, intent_id="pi_1", purchase_status="succeeded")
    h.invoke(1, 0, F.TIP, 20, sender="fan_0", recipient=NASTY, amount_tokens=60)
    h.invoke(2, 1, F.TIP, 22, sender="fan_0", recipient="creator_0", amount_tokens=60)
    h.complete(1, 0, F.TIP, 30, tip_id="t_1", balance_tokens=440)
    h.complete(2, 1, F.TIP, 31, kind=Kind.INFO, error="read_timeout")
    h.invoke(3, 0, F.READ_BALANCE, 40, user="fan_0")
    h.complete(3, 0, F.READ_BALANCE, 42, balance_tokens=440, debt_tokens=0)
    return h


def tip_truth() -> ProviderTruth:
    intent = IntentTruth(intent_id="pi_1", user="fan_0", amount_cents=2_500, minted_tokens=500,
                         status="succeeded")
    deliveries = tuple(
        Delivery(index=i, event_id="evt_1", event_type="payment_intent.succeeded",
                 intent_id="pi_1", variant=variant, status_code=200,
                 started_ns=WALL_NS + (10 + i) * MS, finished_ns=WALL_NS + (12 + i) * MS)
        for i, variant in enumerate((DeliveryVariant.GENUINE, DeliveryVariant.DUPLICATE)))
    return ProviderTruth(intents={"pi_1": intent}, deliveries=deliveries)


def failing_scenario(name: str = "concurrent-tips", samples: tuple[Sample, ...] = ()
                     ) -> ScenarioRecord:
    lost = Anomaly(kind="lost_update", event_indexes=(4, 5), expected=380, observed=440,
                   user="fan_0", explanation=f"Let A be tip #4 and B tip #5 to {NASTY} …")
    duplicated = Anomaly(kind="duplicated_credit", event_indexes=(1,), expected=500,
                         observed=1_000, user="fan_0", delivery_indexes=(0, 1),
                         explanation="Let A be purchase #1, whose webhook came twice.")
    return ScenarioRecord(
        name=name, seed=42, params={"scale": 1}, started_ns=0, duration_s=0.05, ops_count=4,
        stats={"ok_count": 3, "info_count": 1},
        verdicts={"conservation": Verdict(valid=False, anomalies=(lost,)),
                  "exactly_once_credit": Verdict(valid=False, anomalies=(duplicated,)),
                  "coverage": Verdict(valid="unknown", note=f"never provoked {NASTY}"),
                  "errors": Verdict(valid=True, counts={"ops": 4})},
        reproduce=f"tokenchaos run --scenario {name} --seed 42", samples=samples)


def passing_scenario() -> ScenarioRecord:
    return ScenarioRecord(name="dispute", seed=7, params={}, started_ns=0, duration_s=0.05,
                          ops_count=0, stats={}, verdicts={"errors": Verdict(valid=True)},
                          reproduce="tokenchaos run --scenario dispute --seed 7")


def record(*scenarios: ScenarioRecord) -> RunRecord:
    return RunRecord(run_id="r1", started_at=STARTED_AT, finished_at=STARTED_AT,
                     tokenchaos_version="0.1.0",
                     target=TargetInfo(profile="reference", service_url="http://127.0.0.1:1"),
                     suite="smoke", command=f"tokenchaos run --suite smoke {NASTY}",
                     valid=False, exit_code=1, scenarios=scenarios)


def scenario_run(name: str = "concurrent-tips") -> ScenarioRun:
    return ScenarioRun(name=name, seed=42, params={}, users={}, target_ids={},
                       history=History(tip_history().events), truth=tip_truth())


class _Cells(HTMLParser):
    """Collects the class of every verdict cell, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "tr":
            self.rows.append([])
        if tag == "td" and "cell" in classes and self.rows:
            self.rows[-1].append(next(c for c in classes if c.startswith("v-")))


def test_page_is_self_contained() -> None:
    page = render_html(record(failing_scenario()), [scenario_run()])
    assert page.startswith("<!doctype html>")
    assert not re.search(r"\bsrc\s*=", page)
    assert "<link" not in page
    assert "@import" not in page
    assert "url(" not in page
    assert "<style>" in page


def test_every_text_from_the_run_is_escaped() -> None:
    page = render_html(record(failing_scenario(name=NASTY)), [scenario_run(name=NASTY)])
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in page
    assert page.count("<script>") == 1  # ours, at the end


def test_verdict_table_has_a_coloured_cell_per_scenario_and_checker() -> None:
    page = render_html(record(failing_scenario(), passing_scenario()), [scenario_run()])
    parser = _Cells()
    parser.feed(page)
    rows = [r for r in parser.rows if r]
    # Columns in the registry's order: conservation, exactly_once_credit, errors, coverage.
    assert rows == [["v-false", "v-false", "v-true", "v-unknown"],
                    ["v-none", "v-none", "v-true", "v-none"]]
    assert "✗ 1" in page
    assert "2 held</b>" in page  # counted over the whole run
    assert "2 broke</b>" in page
    assert "1 unknown</b>" in page


def test_header_shows_overall_verdict_and_reproduce_command() -> None:
    page = render_html(record(failing_scenario()), [scenario_run()])
    header = page[page.index("<header"):page.index("</header>")]
    assert "✗ FAIL" in header
    assert "tokenchaos run --suite smoke &lt;script&gt;" in header
    assert "2023-11-14 22:13:20 UTC" in header


def test_charts_and_anomaly_timelines_are_inline_svg() -> None:
    page = render_html(record(failing_scenario()), [scenario_run()])
    svgs = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    titles = [re.search(r'aria-label="([^"]*)"', s).group(1) for s in svgs]  # type: ignore[union-attr]
    assert "Throughput: completed ops per second" in titles
    assert any(t.startswith("Latency") for t in titles)
    assert "Tokens: supply, and balances as read" in titles
    assert "Ops by kind" in page
    assert sum(t.startswith("Timeline") for t in titles) == 2
    for svg in svgs:
        ET.fromstring(svg)  # each is well-formed XML


def test_timeline_labels_the_anomalys_ops_by_the_indexes_it_names() -> None:
    page = render_html(record(failing_scenario()), [scenario_run()])
    lost = page[page.index("Timeline of the ops of this lost_update"):]
    lost = lost[:lost.index("</svg>")]
    assert ">#4 tip<" in lost
    assert ">#5 tip<" in lost
    duplicated = page[page.index("Timeline of the ops of this duplicated_credit"):]
    duplicated = duplicated[:duplicated.index("</svg>")]
    assert ">webhook 0<" in duplicated
    assert ">webhook 1<" in duplicated
    assert ">#1 purchase<" in duplicated


def test_anomaly_lists_its_ops_and_deliveries() -> None:
    page = render_html(record(failing_scenario()), [scenario_run()])
    assert "read_timeout" in page  # op #5, the indeterminate tip
    assert "payment_intent.succeeded" in page
    assert ">duplicate<" in page


def test_samples_replace_the_derived_supply_when_present() -> None:
    samples = (Sample(0, 0, 0), Sample(20 * MS, 500, 0), Sample(40 * MS, 440, 60))
    page = render_html(record(failing_scenario(samples=samples)), [scenario_run()])
    assert "Tokens: total balance and total debt" in page
    assert "minted − clawed back" not in page


def test_passed_scenarios_are_folded_and_failed_ones_open() -> None:
    page = render_html(record(failing_scenario(), passing_scenario()), [scenario_run()])
    assert re.search(r'<details class="card scenario" id="s0-concurrent-tips" open>', page)
    assert re.search(r'<details class="card scenario" id="s1-dispute">', page)


def test_write_report_reads_the_history_and_writes_three_files(tmp_path: Path) -> None:
    with HistoryWriter(tmp_path / "history.jsonl") as writer:
        writer.begin(name="concurrent-tips", seed=42, params={}, users={}, target_ids={})
        for event in tip_history().events:
            writer.event(event)
        writer.observation(Observation(accounts={
            "fan_0": AccountState(user="fan_0", balance_tokens=440)}))
        writer.truth(tip_truth())
        writer.end({"ok_count": 3})
    paths = write_report(record(failing_scenario()), tmp_path / "history.jsonl", tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"run.json", "junit.xml", "index.html"}
    page = paths.index_html.read_text(encoding="utf-8")
    assert "Timeline of the ops of this lost_update" in page
    assert RunRecord.from_json(__import__("json").loads(paths.run_json.read_text())) == record(
        failing_scenario())


def test_write_report_without_a_history_still_renders(tmp_path: Path) -> None:
    paths = write_report(record(failing_scenario()), tmp_path / "missing.jsonl", tmp_path / "o")
    page = paths.index_html.read_text(encoding="utf-8")
    assert "No history was recorded for this scenario." in page
    assert "Let A be tip #4" in page
    assert "not in the recorded history" in page


def test_timeline_of_a_crowded_history_is_capped() -> None:
    h = Recorder()  # one long op (#0) while 20 processes run 300 short ops each beside it
    h.invoke(0, 0, F.TIP, 0)
    op_id = 1
    for step in range(300):
        for process in range(1, 21):
            h.invoke(op_id, process, F.TIP, step * 0.3 + 0.01)
            op_id += 1
        for process in range(1, 21):
            h.complete(op_id - 21 + process, process, F.TIP, step * 0.3 + 0.2)
    h.complete(0, 0, F.TIP, 100)
    anomaly = Anomaly(kind="lost_update", event_indexes=(0,), expected=1, observed=2,
                      explanation="crowded")
    scenario = ScenarioRecord(
        name="hot-creator", seed=1, params={}, started_ns=0, duration_s=0.1, ops_count=op_id,
        stats={}, verdicts={"conservation": Verdict(valid=False, anomalies=(anomaly,))},
        reproduce="tokenchaos run --scenario hot-creator --seed 1")
    run = ScenarioRun(name="hot-creator", seed=1, params={}, users={}, target_ids={},
                      history=History(h.events))
    page = render_html(record(scenario), [run])
    svg = page[page.index('aria-label="Timeline'):]
    svg = svg[:svg.index("</svg>")]
    assert 1_900 <= svg.count("<g><title>") <= 2_000
    assert ">#0 tip<" in svg


def test_demo_report_renders_from_its_own_history(tmp_path: Path) -> None:
    paths = write_demo(tmp_path, ops_per_scenario=60)
    runs = load(tmp_path / "history.jsonl")
    assert [r.name for r in runs] == [s.name for s in demo_run(ops_per_scenario=60)
                                      .record.scenarios]
    page = paths.index_html.read_text(encoding="utf-8")
    assert page.count('class="anomaly"') == 2


def test_slow_ops_are_a_performance_finding_beside_a_passing_verdict() -> None:
    import dataclasses

    from harness.checkers.latency import LatencyFigures, Performance, SlowOp

    performance = Performance(
        latency_ms_slow=5_000, latency_ms_max=None, ops_measured_count=3, slow_ops_count=1,
        by_f=(LatencyFigures(f="purchase", ops_count=3, latency_ms_p50=40,
                             latency_ms_p99=5_364, latency_ms_max=5_364, slow_ops_count=1),),
        slowest=(SlowOp(index=4, f="purchase", kind="ok", latency_ms=5_364),))
    passing = dataclasses.replace(passing_scenario(), performance=performance)
    page = render_html(record(passing))
    assert "Performance findings" in page
    assert "1 of 3 ops took longer than 5,000 ms" in page
    assert "not a broken invariant" in page
    assert "purchase #4: 5,364 ms (ok)" in page
    assert '<details class="card scenario" id="s0-dispute">' in page  # still folded: it held
    judged = dataclasses.replace(performance, latency_ms_slow=100, latency_ms_max=100)
    judged_page = render_html(record(dataclasses.replace(passing, performance=judged)))
    assert "latency bound of 100 ms" in judged_page
    assert "Performance findings" not in render_html(record(passing_scenario()))


def test_the_schema_verdict_has_its_own_section_before_the_verdict_table() -> None:
    from tests.unit.test_report_record import make_record

    page = render_html(make_record())  # its schema has a DEFERRABLE intent unique
    assert '<section class="card" id="schema">' in page
    assert "intent_unique_deferrable" in page
    assert "payments_intent_key on payments.intent_id is DEFERRABLE" in page
    assert page.index('id="schema"') < page.index('id="verdicts"')
    assert 'id="schema"' not in render_html(make_record(schema=None))


def test_the_harness_loop_lag_and_workers_show_as_a_finding_about_the_harness() -> None:
    import dataclasses

    stats = {"workers_count": 32, "loop_lag_samples_count": 90, "loop_lag_us_p50": 800,
             "loop_lag_us_p99": 12_000, "loop_lag_us_max": 20_500}
    page = render_html(record(dataclasses.replace(passing_scenario(), stats=stats)))
    assert "p99 12.0 ms, max 20.5 ms over 90 samples" in page
    assert "(32 workers)" in page
    assert "not a verdict" in page
    assert "event-loop lag" not in render_html(record(passing_scenario()))
