"""The shipped ``seed`` profile passes ``doctor`` against a service shaped like the seed.

The service (``tests.seedlike``) has the seed's paths, bodies, answers, tables and intent
metadata; its users come from a file, as ``seed.toml`` says, and its end state is read by
the SQL observer, whose schema check runs first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
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
    assert report.schema == (), printed  # BIGINT, CHECK (balance >= 0), a plain UNIQUE
    readings = {step.name: step.reading for step in report.steps}
    for name in ("schema", "provision", "read_balance", "purchase", "credit (webhook)",
                 "tip", "call_charge", "refund (provider)", "read_balance after the refund",
                 "observer"):
        assert readings.get(name) == "OK", printed
    assert readings["tip retried with the same key"] == "SKIP", printed
    assert "sent: POST " + seedlike.url + "/api/tokens/purchase" in printed


async def test_a_deferrable_intent_constraint_is_named_and_breaks_the_purchase(
        seedlike: SeedlikeStack) -> None:
    # The seed's own migration declares the constraint DEFERRABLE; the hardened purchase
    # path's ON CONFLICT then errors on every call.
    with psycopg.connect(seedlike.database_url) as conn:
        conn.execute("ALTER TABLE token_transactions"
                     " DROP CONSTRAINT token_transactions_intent_key,"
                     " ADD CONSTRAINT token_transactions_intent_key"
                     " UNIQUE (stripe_payment_intent_id) DEFERRABLE INITIALLY IMMEDIATE")
    report = await _doctor(seedlike)
    printed = "\n".join(format_report(report))
    assert [f.kind for f in report.schema] == ["intent_unique_deferrable"], printed
    assert "token_transactions_intent_key" in report.schema[0].text
    assert not report.ok, printed
    assert any(p.startswith("purchase: ") for p in report.problems), printed
