"""Reports of a run, under ``reports/<run-id>/``: ``run.json``, ``junit.xml``, ``index.html``.

``record`` holds the versioned run record and its JSON; ``junit`` writes one test case per
scenario × checker; ``html`` renders the self-contained page with ``svg`` charts drawn from
``series`` data. ``history.jsonl`` is written by the runner, never here: the report only
reads it. Nothing in this package judges a run; checkers do.
"""

from __future__ import annotations

from harness.report.html import ReportPaths, render_html, write_report
from harness.report.junit import junit_xml, write_junit
from harness.report.record import (
    SCHEMA_VERSION,
    RunRecord,
    Sample,
    ScenarioRecord,
    TargetInfo,
    iso_utc,
    load_run_json,
    write_run_json,
)

__all__ = [
    "SCHEMA_VERSION",
    "ReportPaths",
    "RunRecord",
    "Sample",
    "ScenarioRecord",
    "TargetInfo",
    "iso_utc",
    "junit_xml",
    "load_run_json",
    "render_html",
    "write_junit",
    "write_report",
    "write_run_json",
]
