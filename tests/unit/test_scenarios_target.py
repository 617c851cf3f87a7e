"""Scenarios fit the target: its prices, the op kinds it has, the ops that carry no key.

A profile with other packages (1 token = 1 cent, 250/1000/4000 tokens, a bonus on the
largest) must get purchases of those packages and refunds within their cents; a profile
with keyless tips must get no same-key retry of a tip, and say so; one without calls must
get no call op, and say so. Everything here is pure: steps are generated, never run.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Iterator

import pytest

from harness.errors import UsageError
from harness.faults.spec import ALL_CAPABILITIES
from harness.model import TARGET_FS, F, Op
from harness.scenario import ScenarioParams, TargetTraits, traits_of
from harness.schedule import Batch
from harness.targets.pricing import (
    REFERENCE_PRICING,
    Package,
    Pricing,
    expected_clawback_tokens,
    parse_pricing,
)
from harness.targets.profile import load_profile, parse_profile
from scenarios import SCENARIOS, SUITES

FOREIGN_PRICING = Pricing(cents_per_token=1, packages=(
    Package(tokens=250, cents=250), Package(tokens=1000, cents=1000),
    Package(tokens=4000, cents=4000, bonus_tokens=400, name="big")))
FOREIGN = TargetTraits(pricing=FOREIGN_PRICING, source="shop.toml")
KEYLESS_TIPS = dataclasses.replace(FOREIGN, keyless=frozenset({F.TIP}))
NO_CALLS = dataclasses.replace(FOREIGN, ops=TARGET_FS - {F.CALL_OPEN, F.CALL_CHARGE,
                                                         F.CALL_END})
SEEDS = (1, 2, 3)


def _ops(name: str, target: TargetTraits, seed: int = 1, scale: int = 1) -> Iterator[Op]:
    params = ScenarioParams(seed=seed, scale=scale, concurrency=32, target=target)
    scenario = SCENARIOS[name]
    if scenario.whole_not_run(params) is not None:
        return
    for step in scenario.generator(random.Random(seed), params):
        if isinstance(step, Batch):
            yield from step.ops


every_scenario = pytest.mark.parametrize("name", list(SCENARIOS))


# -- pricing ------------------------------------------------------------------------------


def test_the_reference_pricing_is_the_design_s_price_list() -> None:
    assert [(p.tokens, p.cents, p.minted_tokens) for p in REFERENCE_PRICING.packages] == [
        (100, 500, 100), (500, 2500, 500), (1000, 5000, 1000), (5000, 25000, 5250),
        (10000, 50000, 10500)]
    assert REFERENCE_PRICING.cents_per_token == 5
    assert parse_pricing(None, where="x.toml") == REFERENCE_PRICING


def test_a_pricing_table_parses_sorted_and_picks_packages() -> None:
    pricing = parse_pricing({"cents_per_token": 1, "packages": [
        {"tokens": 4000, "cents": 4000, "bonus_tokens": 400, "name": "big"},
        {"tokens": 250, "cents": 250}, {"tokens": 1000, "cents": 1000}]}, where="shop.toml")
    assert pricing == FOREIGN_PRICING
    assert pricing.package_for(100).tokens == 250
    assert pricing.package_for(1000).tokens == 1000
    assert pricing.package_for(5000).tokens == 4000  # the largest when none is enough
    assert pricing.bonus_package == FOREIGN_PRICING.packages[2]
    # floor(minted * R / a), the minted tokens counting the bonus.
    assert expected_clawback_tokens(pricing.packages[2], 1000) == 1100
    assert expected_clawback_tokens(pricing.packages[2], 99_999) == 4400


@pytest.mark.parametrize(("table", "words"), [
    ({"packages": [{"tokens": 1, "cents": 1}]}, "cents_per_token"),
    ({"cents_per_token": 1, "packages": []}, "at least one package"),
    ({"cents_per_token": 1, "packages": [{"tokens": 0, "cents": 1}]}, "tokens = 0"),
    ({"cents_per_token": 1, "packages": [{"tokens": 5, "cents": 2.5}]}, "cents = 2.5"),
    ({"cents_per_token": 1, "packages": [{"tokens": 5, "cents": 5, "bonus": 1}]}, "bonus"),
    ({"cents_per_token": 1, "packages": [{"tokens": 5, "cents": 5}] * 2}, "twice"),
    ({"cents_per_token": 1, "packages": [], "currency": "eur"}, "currency"),
])
def test_a_wrong_pricing_table_is_a_usage_error_naming_the_key(table: dict[str, object],
                                                               words: str) -> None:
    with pytest.raises(UsageError, match=r"shop\.toml") as raised:
        parse_pricing(table, where="shop.toml")
    assert words in str(raised.value)


def test_a_profile_carries_its_pricing_and_defaults_to_the_reference() -> None:
    assert load_profile("reference").pricing == REFERENCE_PRICING
    import tomllib
    from importlib import resources
    text = resources.files("harness.targets").joinpath("reference.toml").read_text()
    data = tomllib.loads(text)
    data["pricing"] = {"cents_per_token": 1, "packages": [{"tokens": 250, "cents": 250}]}
    profile = parse_profile(data, source="shop.toml", environ={})
    assert profile.pricing.packages == (Package(tokens=250, cents=250),)
    assert traits_of(profile).pricing == profile.pricing


# -- amounts drawn from the target's prices -----------------------------------------------


@every_scenario
def test_every_purchase_is_one_of_the_target_s_packages(name: str) -> None:
    sizes = {package.tokens for package in FOREIGN_PRICING.packages}
    for seed in SEEDS:
        for op in _ops(name, FOREIGN, seed):
            if op.f == F.PURCHASE:
                assert op.value["amount_tokens"] in sizes, op


@every_scenario
def test_partial_refunds_never_add_up_past_the_package_s_cents(name: str) -> None:
    # A refund the provider refuses as too large was reported as "never provoked".
    for target in (FOREIGN, TargetTraits()):
        cents_by_size = {p.tokens: p.cents for p in target.pricing.packages}
        for seed in SEEDS:
            prices: dict[object, int] = {}
            refunded: defaultdict[object, int] = defaultdict(int)
            for op in _ops(name, target, seed, scale=2):
                if op.f == F.PURCHASE:
                    prices[op.value["purchase"]] = cents_by_size[int(str(
                        op.value["amount_tokens"]))]
                if op.f == F.REFUND and op.value["amount_cents"] is not None:
                    purchase = op.value["purchase"]
                    refunded[purchase] += int(str(op.value["amount_cents"]))
                    assert refunded[purchase] <= prices[purchase], (name, seed, op)


def test_bonus_scenarios_buy_the_target_s_bonus_package() -> None:
    for name in ("partial-refunds", "webhook-replay"):
        sizes = {op.value["amount_tokens"] for op in _ops(name, FOREIGN)
                 if op.f == F.PURCHASE}
        assert 4000 in sizes, (name, sizes)


def test_parallel_spend_still_overspends_a_bigger_package() -> None:
    # Bought 1000 tokens instead of 500: the bursts are scaled, so some are still refused.
    ops = list(_ops("parallel-spend", FOREIGN))
    tips = [op for op in ops if op.f == F.TIP]
    assert sum(int(str(op.value["amount_tokens"])) for op in tips[:8]) > 1000
    rates = {op.value["rate_tokens_per_minute"] for op in ops if op.f == F.CALL_OPEN}
    assert rates == {200}  # 8 minutes of 200 against 1000 tokens: ends for funds


def test_the_reference_target_gets_the_same_steps_as_before() -> None:
    # The default traits are the reference's own: nothing to scale, nothing left out
    # (on the local stack, where every fault can be injected).
    params = ScenarioParams(seed=1, target=TargetTraits(faults=ALL_CAPABILITIES))
    reference = dataclasses.replace(params, target=dataclasses.replace(
        traits_of(load_profile("reference")), faults=ALL_CAPABILITIES))
    for name, scenario in SCENARIOS.items():
        assert scenario.not_run(reference) == (), name
        mine = list(scenario.generator(random.Random(1), params))
        theirs = list(scenario.generator(random.Random(1), reference))
        assert mine == theirs, name


# -- what the profile cannot do is left out, and said ------------------------------------


@every_scenario
def test_no_tip_is_retried_with_one_key_where_tips_carry_none(name: str) -> None:
    for seed in SEEDS:
        for op in _ops(name, KEYLESS_TIPS, seed):
            if op.f == F.TIP:
                assert op.idempotency_key is None, op


@every_scenario
def test_no_call_op_is_sent_to_a_target_without_calls(name: str) -> None:
    for op in _ops(name, NO_CALLS):
        assert op.f not in (F.CALL_OPEN, F.CALL_CHARGE, F.CALL_END), op


def test_retry_storm_without_tip_keys_is_reported_with_the_profile_s_words() -> None:
    params = ScenarioParams(target=KEYLESS_TIPS)
    (part,) = SCENARIOS["retry-storm"].not_run(params)
    assert part.part == "tips retried with the same key"
    assert part.reason == ('tips carry no idempotency key: [ops.tip] idempotency = "none" '
                           "in shop.toml")
    adapted = SCENARIOS["retry-storm"].adapted(params)
    assert "key_reuse_rejected" not in adapted.provokes  # never "unknown" for want of it
    assert "retry_with_same_key" in adapted.provokes  # purchases still storm


def test_a_target_without_calls_runs_no_call_scenario_and_leaves_call_parts_out() -> None:
    params = ScenarioParams(target=NO_CALLS)
    whole = SCENARIOS["mid-call-refund"].whole_not_run(params)
    assert whole is not None
    assert whole.reason == "the profile shop.toml has no [ops.call_charge]"
    adapted = SCENARIOS["parallel-spend"].adapted(params)
    assert "calls" not in adapted.checkers
    assert "call_ended_for_funds" not in adapted.provokes
    assert SCENARIOS["parallel-spend"].whole_not_run(params) is None


def test_the_seed_profile_declares_keyless_tips_and_no_call_objects() -> None:
    traits = traits_of(load_profile("seed"))
    assert traits.keyless == {F.TIP, F.CALL_CHARGE}
    assert not traits.offers(F.CALL_OPEN)
    parts = {p.part for p in SCENARIOS["bad-input"].not_run(ScenarioParams(target=traits))}
    assert parts == {"a charge of another user's call"}


def test_smoke_has_the_new_scenarios() -> None:
    assert {"bad-input", "key-collision"} <= set(SUITES["smoke"].scenarios)


@every_scenario
def test_a_scenario_whose_every_provocation_was_left_out_is_not_judged_for_coverage(
        name: str) -> None:
    for traits in (KEYLESS_TIPS, NO_CALLS):
        adapted = SCENARIOS[name].adapted(ScenarioParams(target=traits))
        if "coverage" in adapted.checkers:
            assert adapted.provokes, (name, "coverage would be unknown: nothing to provoke")


def test_key_collision_without_tip_keys_still_judges_its_purchases() -> None:
    adapted = SCENARIOS["key-collision"].adapted(ScenarioParams(target=KEYLESS_TIPS))
    assert "coverage" not in adapted.checkers
    assert "key_scope" in adapted.checkers
