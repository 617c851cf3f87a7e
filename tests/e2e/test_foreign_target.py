"""The harness against a token service it was not written with: the foreign test service.

The default smoke suite runs against the foreign service (tests/foreign) through its
profile, exactly as a user would run ``tokenchaos run --target foreign.toml`` against a
deployment of theirs: the service and the provider simulator are running already, and
the harness is given their URLs, the provider's control key, the database URL of the SQL
observer and the staging token in the environment. The correct service must exit 0 on
every seed; each flaw written into it must be caught (exit 1) by a checker it names, on
the smoke scenarios that catch it (``CATCHING_SCENARIOS``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.campaign import RunOutcome, RunPlan, run_plan
from tests.foreign.flaws import FLAWS
from tests.foreign.stack import PROFILE_PATH, STAGING_TOKEN_ENV, foreign_stack

pytestmark = pytest.mark.e2e

CORRECT_SEEDS = (1, 2, 3, 4, 5)


# Per flaw, the smoke scenarios that catch it, from the matrix that `python -m
# tests.foreign.zoo` writes into the README (where each flaw runs the whole suite): a
# flaw's test runs only these, which keeps the suite within its time budget.
CATCHING_SCENARIOS: dict[str, tuple[str, ...]] = {
    "tip_lost_update": ("concurrent-tips", "hot-creator"),
    "tip_to_nobody_debits": ("missing-recipient", "bad-input"),
    "credit_every_delivery": ("duplicate-purchase", "webhook-replay"),
    "credit_ignores_owed": ("refund-after-spend",),
    "fee_rounds_both_up": ("concurrent-tips", "tip-cycle"),
    "owing_state_kept": ("dispute",),
    "bundle_bonus_dropped": ("duplicate-purchase", "partial-refunds"),
    # Its worker runs a second behind, so every scenario that buys shows it; two suffice.
    "inbox_counts_due_only": ("duplicate-purchase", "refund-after-spend"),
    "refund_not_idempotent": ("webhook-replay", "partial-refunds"),
    "minute_billed_again": ("mid-call-refund",),
    "global_client_keys": ("key-collision",),
    "negative_tip_accepted": ("bad-input",),
    "webhook_signature_ignored": ("forged-webhooks", "webhook-replay"),
}


async def _run(pg_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
               seed: int, flaws: tuple[str, ...] = (),
               only: tuple[str, ...] = ()) -> RunOutcome:
    from scenarios import get_scenario, get_suite

    suite = get_suite("smoke").with_seeds([seed])
    runs = tuple((get_scenario(name), params) for name, params in suite.runs()
                 if not only or name in only)
    async with foreign_stack(pg_admin_url, flaws=flaws) as stack:
        monkeypatch.setenv(STAGING_TOKEN_ENV, stack.staging_token)
        plan = RunPlan(runs=runs, suite="smoke", profile=str(PROFILE_PATH), local=False,
                       target_url=stack.url, provider_url=stack.provider_url,
                       provider_key=stack.provider_key, database_url=stack.database_url,
                       report_dir=tmp_path,
                       command=f"tokenchaos run --target {PROFILE_PATH.name} --seed {seed}")
        return await run_plan(plan)


def _fired(outcome: RunOutcome) -> set[str]:
    return {name for scenario in outcome.record.scenarios
            for name, verdict in scenario.verdicts.items() if verdict.valid is False}


def _findings(outcome: RunOutcome) -> str:
    lines = [f"exit {outcome.exit_code}; report in {outcome.report_dir}"]
    for scenario in outcome.record.scenarios:
        for name, verdict in scenario.verdicts.items():
            if verdict.valid is not True:
                lines.append(f"{scenario.name} {name} {verdict.valid}: {verdict.note or ''}")
                lines += [f"    {anomaly.explanation}" for anomaly in verdict.anomalies[:2]]
    return "\n".join(lines)


@pytest.mark.parametrize("seed", CORRECT_SEEDS)
async def test_correct_foreign_service_passes_the_smoke_suite(
        seed: int, pg_admin_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = await _run(pg_admin_url, tmp_path, monkeypatch, seed=seed)
    assert outcome.exit_code == 0, _findings(outcome)
    stats = [s.stats for s in outcome.record.scenarios if s.not_run_reason is None]
    assert all("settle_polls_count" in s for s in stats), "[settle] was not asked"
    assert sum(int(s["settle_wait_ms"]) for s in stats) > 0, "the inbox was never late"
    assert not any(s.get("settle_timeouts_count") for s in stats)


@pytest.mark.parametrize("name", list(FLAWS))
async def test_smoke_suite_catches_foreign_flaw_by_a_checker_it_names(
        name: str, pg_admin_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = await _run(pg_admin_url, tmp_path, monkeypatch, seed=1, flaws=(name,),
                         only=CATCHING_SCENARIOS[name])
    assert outcome.exit_code == 1, _findings(outcome)
    assert _fired(outcome) & set(FLAWS[name].caught_by), (
        f"{name} names {FLAWS[name].caught_by}\n{_findings(outcome)}")


def test_every_foreign_flaw_names_the_smoke_scenarios_that_catch_it() -> None:
    from scenarios import get_suite

    smoke = set(get_suite("smoke").scenarios)
    assert set(CATCHING_SCENARIOS) == set(FLAWS), "add the flaw's catching scenarios"
    for name, scenarios in CATCHING_SCENARIOS.items():
        assert scenarios and set(scenarios) <= smoke, (name, scenarios)
