"""The scenario registry and every scenario's steps: pure data, checked without any I/O."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator

import pytest

from harness.faults.spec import ALL_CAPABILITIES
from harness.model import DeliveryVariant, F, Op
from harness.provider.policy import DeliveryPolicy
from harness.scenario import Scenario, ScenarioParams
from harness.schedule import Batch, Pause, SetPolicy, Settle, Step
from scenarios import SCENARIOS, SUITES, Suite, get_scenario, get_suite
from scenarios._common import OpFactory, fund

DESIGN_ORDER = (
    "parallel-spend", "concurrent-tips", "hot-creator", "tip-cycle", "duplicate-purchase",
    "three-d-secure", "webhook-replay", "webhook-reorder", "refund-after-spend",
    "partial-refunds", "dispute", "mid-call-refund", "retry-storm", "forged-webhooks",
    "mixed-chaos", "bad-input", "key-collision", "missing-recipient", "crash-during-spends",
    "database-restart", "stalled-lock-holder", "webhook-partition", "slow-database",
)
FULL_ONLY = ("stalled-lock-holder", "webhook-partition", "slow-database")
CHECKER_NAMES = frozenset({
    "non_negative", "conservation", "exactly_once_credit", "reconciliation", "idempotency",
    "ledger_drift", "refunds", "debt", "calls", "webhook_auth", "errors", "coverage", "refusals",
    "key_scope", "durability",
})
ALWAYS_CHECKED = ("non_negative", "conservation", "reconciliation", "errors")
COVERAGE_TAGS = frozenset({
    "tip_succeeded", "tip_refused_for_funds", "spend_race", "mutual_tips", "requires_action",
    "card_declined", "duplicate_delivery_absorbed", "replay_absorbed", "refund_before_success",
    "dispute_before_success", "partial_refund", "multiple_partial_refunds", "refund_into_debt",
    "dispute_opened", "dispute_won", "dispute_lost", "forgery_rejected", "stale_rejected",
    "idempotent_replay", "key_reuse_rejected", "call_charged", "call_ended_for_funds",
    "charge_after_end_rejected", "duplicate_minute_absorbed", "refund_mid_call",
    "retry_with_same_key", "indeterminate_op", "fault_healed", "op_during_fault",
})
VALUE_KEYS = {
    F.PURCHASE: {"user", "purchase", "amount_tokens", "payment_method"},
    F.AUTHENTICATE: {"purchase", "outcome"},
    F.REFUND: {"purchase", "amount_cents"},
    F.DISPUTE_OPEN: {"purchase", "dispute"},
    F.DISPUTE_CLOSE: {"dispute", "outcome"},
    F.TIP: {"sender", "recipient", "amount_tokens"},
    F.CALL_OPEN: {"user", "creator", "call", "rate_tokens_per_minute"},
    F.CALL_CHARGE: {"user", "creator", "call", "minute", "amount_tokens"},
    F.CALL_END: {"user", "call"},
    F.READ_BALANCE: {"user"},
    F.WEBHOOK: {"purchase", "event_type", "variant"},
}
KEYED_FS = frozenset({F.PURCHASE, F.TIP, F.CALL_OPEN, F.CALL_CHARGE})
SPENDING_FS = frozenset({F.TIP, F.CALL_OPEN, F.CALL_CHARGE})
PACKAGES_TOKENS = frozenset({100, 500, 1000, 5000, 10000})
SMOKE_OPS_MAX = 400
FULL_OPS_MAX = 2_000
SMOKE = SUITES["smoke"].params[0]


def _known_checkers() -> frozenset[str]:
    """The brief's names, and the registry's too once it exists."""
    try:
        from harness.checkers import CHECKERS  # type: ignore[attr-defined]
    except ImportError:
        return CHECKER_NAMES
    return CHECKER_NAMES & frozenset(CHECKERS)


def _steps(scenario: Scenario, params: ScenarioParams = SMOKE) -> list[Step]:
    """The steps against a target the run can inject every fault on (the local stack)."""
    params = params.for_target(dataclasses.replace(params.target, faults=ALL_CAPABILITIES))
    return list(scenario.generator(random.Random(params.seed), params))


def _ops(steps: list[Step]) -> Iterator[Op]:
    for step in steps:
        if isinstance(step, Batch):
            yield from step.ops


def _shape(steps: list[Step]) -> list[object]:
    """The steps without idempotency keys and policy seeds: what the seed really chose."""
    shape: list[object] = []
    for step in steps:
        if isinstance(step, Batch):
            shape.append(tuple((op.f, tuple(sorted(op.value.items(), key=str)))
                               for op in step.ops))
        elif isinstance(step, SetPolicy):
            shape.append(("policy", {**step.policy.to_json(), "seed": None}))
        else:
            shape.append(step)
    return shape


every_scenario = pytest.mark.parametrize("name", DESIGN_ORDER)


def test_every_scenario_of_the_design_is_registered_in_design_order() -> None:
    assert tuple(SCENARIOS) == DESIGN_ORDER
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name
        assert scenario.summary


def test_unknown_scenario_or_suite_name_is_a_usage_error_listing_the_known_ones() -> None:
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="tip-cycle"):
        get_scenario("tip-cylce")
    with pytest.raises(UsageError, match="smoke"):
        get_suite("smok")
    assert get_scenario("dispute") is SCENARIOS["dispute"]


@every_scenario
def test_scenario_is_deterministic_for_a_seed(name: str) -> None:
    scenario = SCENARIOS[name]
    assert _steps(scenario) == _steps(scenario)


@every_scenario
def test_scenario_differs_for_another_seed_beyond_keys_and_policy_seeds(name: str) -> None:
    scenario = SCENARIOS[name]
    first = _shape(_steps(scenario, ScenarioParams(seed=1)))
    assert any(first != _shape(_steps(scenario, ScenarioParams(seed=seed)))
               for seed in (2, 3, 4))


@every_scenario
def test_scenario_does_not_touch_the_global_random(name: str) -> None:
    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    _steps(SCENARIOS[name])
    assert random.random() == expected


@every_scenario
def test_op_ids_are_unique_within_a_run(name: str) -> None:
    ids = [op.id for op in _ops(_steps(SCENARIOS[name], ScenarioParams(seed=5, scale=2)))]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == list(range(len(ids)))


@every_scenario
def test_checkers_are_known_and_include_the_ones_every_scenario_needs(name: str) -> None:
    scenario = SCENARIOS[name]
    assert set(scenario.checkers) <= _known_checkers()
    assert len(set(scenario.checkers)) == len(scenario.checkers)
    for checker in ALWAYS_CHECKED:
        assert checker in scenario.checkers
    if scenario.provokes:
        assert "coverage" in scenario.checkers


@every_scenario
def test_provokes_only_known_coverage_tags(name: str) -> None:
    scenario = SCENARIOS[name]
    assert scenario.provokes
    assert set(scenario.provokes) <= COVERAGE_TAGS
    assert len(set(scenario.provokes)) == len(scenario.provokes)
    # Nothing in a scenario surely times out: that tag belongs to fault runs.
    assert "indeterminate_op" not in scenario.provokes


@every_scenario
def test_op_values_have_exactly_the_keys_of_their_kind(name: str) -> None:
    for op in _ops(_steps(SCENARIOS[name])):
        if "bad_input" in op.value:  # what is wrong, and an id the target never gave out
            assert set(op.value) - VALUE_KEYS[op.f] <= {"bad_input", "recipient_id"}, op
        else:
            assert set(op.value) == VALUE_KEYS[op.f], op
        if op.f in KEYED_FS:
            assert op.idempotency_key, op
        else:
            assert op.idempotency_key is None, op


@every_scenario
def test_op_values_are_well_typed(name: str) -> None:
    scenario = SCENARIOS[name]
    users = scenario.users(SMOKE)
    for op in _ops(_steps(scenario)):
        if "bad_input" in op.value:
            continue  # bad on purpose; tests/unit/test_scenarios_target.py checks them
        for key in ("user", "sender", "recipient", "creator"):
            if key in op.value:
                assert op.value[key] in users, op
        if op.f == F.PURCHASE:
            assert op.value["amount_tokens"] in PACKAGES_TOKENS, op
        if op.f == F.TIP:
            assert users[str(op.value["recipient"])] == "creator", op
            assert op.value["sender"] != op.value["recipient"], op
        if op.f == F.WEBHOOK:
            assert DeliveryVariant(op.value["variant"]).forged, op
        for value in op.value.values():
            assert value is None or type(value) in (int, str), op


@every_scenario
def test_users_are_named_by_their_kind(name: str) -> None:
    for scale in (1, 4):
        users = SCENARIOS[name].users(ScenarioParams(scale=scale))
        assert users
        assert set(users.values()) <= {"fan", "creator"}
        for user, kind in users.items():
            assert user.startswith(f"{kind}_"), user


@every_scenario
def test_every_reference_is_made_in_an_earlier_step(name: str) -> None:
    made: dict[str, set[object]] = {"purchase": set(), "call": set(), "dispute": set()}
    makers = {F.PURCHASE: "purchase", F.CALL_OPEN: "call", F.DISPUTE_OPEN: "dispute"}
    for step in _steps(SCENARIOS[name]):
        if not isinstance(step, Batch):
            continue
        for op in step.ops:
            for ref, names in made.items():
                if ref in op.value and makers.get(op.f) != ref and op.value[ref] is not None:
                    assert op.value[ref] in names, op
        for op in step.ops:
            if op.f in makers:
                made[makers[op.f]].add(op.value[makers[op.f]])


@every_scenario
def test_spenders_are_funded_by_a_settled_purchase_first(name: str) -> None:
    bought: set[object] = set()  # purchased in an earlier batch
    settled: set[object] = set()  # ...and a Settle came after
    for step in _steps(SCENARIOS[name]):
        if isinstance(step, Settle):
            settled |= bought
        if not isinstance(step, Batch):
            continue
        for op in step.ops:
            if op.f in SPENDING_FS:
                spender = op.value["sender"] if op.f == F.TIP else op.value["user"]
                assert spender in settled, op
        bought |= {op.value["user"] for op in step.ops if op.f == F.PURCHASE}


@every_scenario
def test_scenario_sets_its_policy_first_and_ends_with_settle_and_reads(name: str) -> None:
    scenario = SCENARIOS[name]
    steps = _steps(scenario)
    assert isinstance(steps[0], SetPolicy)
    assert isinstance(steps[-2], Settle)
    last = steps[-1]
    assert isinstance(last, Batch)
    assert {op.f for op in last.ops} == {F.READ_BALANCE}
    assert sorted(str(op.value["user"]) for op in last.ops) == sorted(scenario.users(SMOKE))


@every_scenario
def test_scenario_funds_through_purchases_and_waits_for_webhooks(name: str) -> None:
    steps = _steps(SCENARIOS[name])
    fs = {op.f for op in _ops(steps)}
    assert F.PURCHASE in fs
    assert sum(isinstance(step, Settle) for step in steps) >= 2


@every_scenario
def test_op_repr_is_python_that_gives_the_op_back(name: str) -> None:
    for op in _ops(_steps(SCENARIOS[name])):
        assert eval(repr(op), {"Op": Op, "F": F}) == op


@every_scenario
def test_op_count_is_bounded(name: str) -> None:
    for suite, ops_max in (("smoke", SMOKE_OPS_MAX), ("full", FULL_OPS_MAX)):
        for params in SUITES[suite].params:
            count = sum(1 for _ in _ops(_steps(SCENARIOS[name], params)))
            assert 10 <= count < ops_max, (suite, params, count)


@every_scenario
def test_pauses_are_short(name: str) -> None:
    total_ms = sum(step.ms for step in _steps(SCENARIOS[name]) if isinstance(step, Pause))
    assert total_ms <= 2_000


def test_smoke_runs_every_scenario_once_small_and_full_is_bigger_with_three_seeds() -> None:
    smoke, full = SUITES["smoke"], SUITES["full"]
    assert full.scenarios == DESIGN_ORDER
    assert smoke.scenarios == tuple(name for name in DESIGN_ORDER if name not in FULL_ONLY)
    assert [params.scale for params in smoke.params] == [1]
    assert smoke.runs_count == len(smoke.scenarios)
    assert {params.scale for params in full.params} == {4}
    assert len({params.seed for params in full.params}) == 3
    for suite in SUITES.values():
        assert set(suite.scenarios) <= set(SCENARIOS)


@every_scenario
def test_smoke_bursts_fit_the_runners_window_so_they_really_run_at_once(name: str) -> None:
    for step in _steps(SCENARIOS[name]):
        if isinstance(step, Batch):
            assert len(step.ops) <= SMOKE.concurrency, step


def test_smoke_suite_stays_small() -> None:
    total = sum(sum(1 for _ in _ops(_steps(SCENARIOS[name], params)))
                for name, params in SUITES["smoke"].runs())
    assert total < len(DESIGN_ORDER) * 100


def test_suite_runs_go_seed_by_seed_and_can_be_reseeded_or_narrowed() -> None:
    full = SUITES["full"]
    runs = list(full.runs())
    assert len(runs) == full.runs_count
    assert runs[0] == (DESIGN_ORDER[0], full.params[0])
    assert runs[len(DESIGN_ORDER)] == (DESIGN_ORDER[0], full.params[1])
    reseeded = full.with_seeds([42])
    assert [(p.seed, p.scale) for p in reseeded.params] == [(42, 4)]
    narrowed = full.only(["dispute", "tip-cycle"])
    assert narrowed.scenarios == ("tip-cycle", "dispute")
    with pytest.raises(ValueError, match="no scenario"):
        full.only(["nope"])


def test_suite_refuses_an_empty_or_repeated_scenario_list() -> None:
    with pytest.raises(ValueError, match="names no scenario"):
        Suite(name="x", summary="", scenarios=(), params=(SMOKE,))
    with pytest.raises(ValueError, match="twice"):
        Suite(name="x", summary="", scenarios=("dispute", "dispute"), params=(SMOKE,))
    with pytest.raises(ValueError, match="no params"):
        Suite(name="x", summary="", scenarios=("dispute",), params=())


def test_fund_buys_for_each_user_then_settles_and_returns_the_purchases() -> None:
    ops = OpFactory(scenario="t", seed=7)
    steps = fund(ops, ["fan_0", "fan_1"], 500)
    batch = next(steps)
    assert isinstance(batch, Batch)
    assert [op.value["payment_method"] for op in batch.ops] == ["pm_card_visa"] * 2
    assert isinstance(next(steps), Settle)
    with pytest.raises(StopIteration) as stop:
        next(steps)
    assert {user: op.value["purchase"] for user, op in stop.value.value.items()} == {
        "fan_0": "p_0", "fan_1": "p_1"}


def test_op_factory_keys_depend_on_scenario_and_seed_only() -> None:
    def keys(scenario: str, seed: int) -> list[str | None]:
        ops = OpFactory(scenario=scenario, seed=seed)
        return [ops.tip(sender="fan_0", recipient="creator_0", amount_tokens=1).idempotency_key
                for _ in range(3)]

    assert keys("a", 1) == keys("a", 1)
    assert len(set(keys("a", 1))) == 3
    assert set(keys("a", 1)).isdisjoint(keys("a", 2))
    assert set(keys("a", 1)).isdisjoint(keys("b", 1))


def test_op_factory_refuses_a_size_that_is_not_a_package() -> None:
    ops = OpFactory(scenario="t", seed=0)
    with pytest.raises(ValueError, match="not a package"):
        ops.purchase(user="fan_0", amount_tokens=250)


def test_again_is_the_same_request_under_a_new_op_id() -> None:
    ops = OpFactory(scenario="t", seed=0)
    original = ops.tip(sender="fan_0", recipient="creator_0", amount_tokens=5)
    copy = ops.again(original)
    assert copy.id != original.id
    assert (copy.f, dict(copy.value), copy.idempotency_key) == (
        original.f, dict(original.value), original.idempotency_key)


def test_policies_are_valid_and_travel_as_json() -> None:
    for name in DESIGN_ORDER:
        for step in _steps(SCENARIOS[name]):
            if isinstance(step, SetPolicy):
                assert DeliveryPolicy.from_json(step.policy.to_json()) == step.policy
