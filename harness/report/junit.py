"""``junit.xml`` for CI dashboards: one test case per scenario × checker.

A checker that held passes; one that broke is a ``<failure>`` whose message is the first
anomaly's explanation and whose text lists every sampled anomaly and the command that
reproduces the scenario; an ``unknown`` verdict is ``<skipped message=...>`` with the
checker's note, so it is visible without failing the build. A scenario that no checker
judged (it crashed first) gets one ``<error>`` case, so it cannot pass unseen. The schema
check of an SQL-observed target, made before the first scenario, is one more suite
``schema`` with one test case ``schema``, failed, skipped or passed as its verdict says.

Built with ``xml.etree``, which escapes; characters XML 1.0 cannot carry are dropped.
Nothing here renders HTML or reads a history.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from harness.model import Verdict
from harness.report.record import RunRecord, ScenarioRecord

__all__ = ["junit_xml", "write_junit"]

_MESSAGE_CHARS_MAX = 500
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def write_junit(record: RunRecord, path: Path) -> Path:
    """Write the run as JUnit XML to ``path`` and return it."""
    path.write_text(junit_xml(record), encoding="utf-8")
    return path


def junit_xml(record: RunRecord) -> str:
    """The run as a JUnit XML document (``<testsuites>``, one ``<testsuite>`` per scenario)."""
    root = ET.Element("testsuites", name=_clean(f"tokenchaos {record.run_id}"))
    names = Counter(s.name for s in record.scenarios)
    totals: Counter[str] = Counter()
    suites = [_suite(scenario, record, ambiguous=names[scenario.name] > 1)
              for scenario in record.scenarios]
    if record.schema is not None:
        suites.insert(0, _schema_suite(record.schema, record))
    for suite in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            totals[key] += int(suite.get(key, "0"))
        root.append(suite)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(totals[key]))
    root.set("time", f"{sum(s.duration_s for s in record.scenarios):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _suite(scenario: ScenarioRecord, record: RunRecord, *, ambiguous: bool) -> ET.Element:
    label = f"{scenario.name}[seed={scenario.seed}]" if ambiguous else scenario.name
    suite = ET.Element("testsuite", name=_clean(label), timestamp=record.started_at,
                       time=f"{scenario.duration_s:.3f}")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("seed", str(scenario.seed)), ("reproduce", scenario.reproduce),
                        ("params", json.dumps(dict(scenario.params), sort_keys=True)),
                        ("ops_count", str(scenario.ops_count)),
                        ("target", record.target.profile)):
        ET.SubElement(properties, "property", name=name, value=_clean(value))
    classname = _clean(f"tokenchaos.{label}")
    counts: Counter[str] = Counter()
    for checker, verdict in scenario.verdicts.items():
        case = ET.SubElement(suite, "testcase", classname=classname, name=_clean(checker))
        counts["tests"] += 1
        if verdict.valid is False:
            counts["failures"] += 1
            _add_failure(case, checker, verdict, scenario.reproduce)
        elif verdict.valid == "unknown":
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=_clean(
                verdict.note or f"{checker} could not decide (unknown)"))
    if not scenario.verdicts:
        case = ET.SubElement(suite, "testcase", classname=classname, name="checkers")
        ET.SubElement(case, "error", type="not_judged", message=(
            "no checker judged this scenario; it stopped before its end. "
            f"Reproduce: {_clean(scenario.reproduce)}"))
        counts["tests"] += 1
        counts["errors"] += 1
    for key in ("tests", "failures", "errors", "skipped"):
        suite.set(key, str(counts[key]))
    out = ET.SubElement(suite, "system-out")
    out.text = _clean(f"Reproduce: {scenario.reproduce}\n")
    return suite


def _schema_suite(verdict: Verdict, record: RunRecord) -> ET.Element:
    """The schema check as a suite of one case, ``schema``."""
    suite = ET.Element("testsuite", name="schema", timestamp=record.started_at, time="0.000")
    case = ET.SubElement(suite, "testcase", classname="tokenchaos.schema", name="schema")
    counts = Counter(tests=1)
    if verdict.valid is False:
        counts["failures"] += 1
        _add_failure(case, "schema", verdict, record.command)
    elif verdict.valid == "unknown":
        counts["skipped"] += 1
        ET.SubElement(case, "skipped", message=_clean(
            verdict.note or "the schema could not be checked (unknown)"))
    for key in ("tests", "failures", "errors", "skipped"):
        suite.set(key, str(counts[key]))
    return suite


def _add_failure(case: ET.Element, checker: str, verdict: Verdict, reproduce: str) -> None:
    anomalies = verdict.anomalies
    if anomalies:
        noun = "anomaly" if len(anomalies) == 1 else "anomalies"
        message = f"{len(anomalies)} {noun}: {anomalies[0].explanation}"
        kind = anomalies[0].kind
    else:
        message = verdict.note or f"{checker} found its invariant broken"
        kind = "invalid"
    lines = [f"{checker} failed (anomalies are sampled: first, worst and last per kind)."]
    for anomaly in anomalies:
        ops = ", ".join(f"#{i}" for i in anomaly.event_indexes) or "none"
        who = f"; user {anomaly.user}" if anomaly.user else ""
        lines.append(f"- [{anomaly.kind}] {anomaly.explanation} (expected {anomaly.expected}, "
                     f"observed {anomaly.observed}; ops {ops}{who})")
    if verdict.counts:
        lines.append("counts: " + ", ".join(f"{k}={v}" for k, v in verdict.counts.items()))
    lines.append(f"Reproduce: {reproduce}")
    failure = ET.SubElement(case, "failure", type=_clean(kind),
                            message=_clean(_shorten(message)))
    failure.text = _clean("\n".join(lines))


def _shorten(text: str) -> str:
    if len(text) <= _MESSAGE_CHARS_MAX:
        return text
    return text[:_MESSAGE_CHARS_MAX - 1] + "…"


def _clean(text: str) -> str:
    """Text XML 1.0 can carry: control characters other than tab and newlines dropped."""
    return _XML_INVALID.sub("", text)
