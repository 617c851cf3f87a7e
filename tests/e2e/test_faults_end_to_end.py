"""Every fault kind, injected into the correct reference service on a durable embedded
PostgreSQL: every fault heals, the service recovers, nothing acknowledged is lost or
applied twice, and the run exits 0 (the acceptance of the fault scenarios, at smoke size).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.campaign import run_plan
from harness.faults.spec import FaultKind
from harness.zoo import smoke_plan
from scenarios import SCENARIOS

pytestmark = pytest.mark.e2e

FAULT_SCENARIOS = tuple(name for name, scenario in SCENARIOS.items() if scenario.faults)


async def test_the_correct_service_survives_every_fault_kind(tmp_path: Path) -> None:
    smoke = smoke_plan(seed=1, report_dir=tmp_path)
    params = smoke.runs[0][1]  # the smoke suite's, for the full-only scenarios too
    plan = dataclasses.replace(smoke, runs=tuple((SCENARIOS[name], params)
                                                 for name in FAULT_SCENARIOS))
    outcome = await run_plan(plan)
    record = outcome.record
    findings = [f"{s.name} {name}: {v.valid} {v.note or ''} "
                + "; ".join(a.explanation for a in v.anomalies[:2])
                for s in record.scenarios for name, v in s.verdicts.items()
                if v.valid is not True]
    assert outcome.exit_code == 0, "\n".join(findings)
    windows = [w for s in record.scenarios for w in s.faults]
    assert {FaultKind(w.kind) for w in windows} == set(FaultKind)
    assert all(w.error is None and w.recovered_ns is not None for w in windows)
    for scenario in record.scenarios:
        counts = scenario.verdicts["durability"].counts
        assert counts["faults"] >= 1 and counts["acknowledged"] >= 1, scenario.name
        assert counts["lost"] == counts["duplicated"] == counts["unexpected"] == 0
