"""The shipped ``seed`` profile passes ``doctor`` against a service shaped like the seed.

The service (``tests.seedlike``) has the seed's paths, bodies, answers, tables and intent
metadata; its users come from a file, as ``seed.toml`` says, and its end state is read by
the SQL observer, whose schema check runs first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.doctor import DoctorPlan, DoctorReport, format_report, run_doctor
from tests.seedlike.stack import SeedlikeStack, seedlike_stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def seedlike(pg_admin_url: str, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SeedlikeStack]:
    async with seedlike_stack(pg_admin_url, tmp_path / "users.json") as stack:
        monkeypatch.setenv("TOKENCHAOS_USERS_FILE", str(stack.users_file))
        yield stack


async def _doctor(stack: SeedlikeStack) -> DoctorReport:
    return await run_doctor(DoctorPlan(
        profile="seed", target_url=stack.url, provider_url=stack.provider_url,
        provider_key=stack.provider_key, database_url=stack.database_url))


async def test_the_seed_profile_passes_doctor_against_a_seed_shaped_service(
        seedlike: SeedlikeStack) -> None:
    report = await _doctor(seedlike)
    printed = "\n".join(format_report(report))
    assert report.problems == (), printed
    assert report.ok, printed
    assert report.schema == () or all(f.severity != "defect" for f in report.schema), printed
    readings = {step.name: step.reading for step in report.steps}
    for name in ("schema", "provision", "read_balance", "purchase", "credit (webhook)",
                 "tip", "call_charge", "refund (provider)", "read_balance after the refund",
                 "observer"):
        assert readings.get(name) == "OK", printed
    assert readings["tip retried with the same key"] == "SKIP", printed
    assert "sent: POST " + seedlike.url + "/api/tokens/purchase" in printed
