"""The checker registry, ``check_all``, the shared helpers, and the purity rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import harness.checkers as checkers
from harness.checkers import CHECKERS, DESCRIPTIONS, CheckInput, check_all
from harness.checkers.base import Sampler, conclude, pairs, reaches
from harness.errors import UsageError
from harness.model import Anomaly, F, Kind, Verdict
from tests.unit.conftest import H, T, observe

NAMES = ("non_negative", "conservation", "exactly_once_credit", "reconciliation",
         "idempotency", "ledger_drift", "refunds", "debt", "calls", "webhook_auth", "refusals",
         "key_scope", "durability", "errors", "coverage")
FORBIDDEN_MODULES = {"httpx", "psycopg", "psycopg_pool", "asyncio", "random", "time",
                     "datetime", "socket", "subprocess", "threading"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "monotonic", "monotonic_ns", "perf_counter",
                   "perf_counter_ns", "time_ns", "urandom", "open"}


def test_registry_names_every_checker_in_order_with_a_description() -> None:
    assert tuple(CHECKERS) == NAMES
    assert tuple(DESCRIPTIONS) == NAMES
    assert all(0 < len(text) <= 90 for text in DESCRIPTIONS.values())


def test_check_all_runs_the_named_checkers_in_registry_order() -> None:
    verdicts = check_all(H().input(None, None), ["coverage", "calls"])
    assert list(verdicts) == ["calls", "coverage"]
    assert all(v.valid == "unknown" for v in verdicts.values())


def test_check_all_rejects_an_unknown_name() -> None:
    with pytest.raises(UsageError, match="nope"):
        check_all(H().input(None, None), ["nope"])


def _crashing(inp: CheckInput) -> Verdict:
    raise RuntimeError("boom")


def test_check_all_turns_a_crash_into_unknown_and_tests_can_reraise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(checkers.CHECKERS, "calls", _crashing)
    verdicts = check_all(H().input(None, None), ["calls"])
    assert verdicts["calls"].valid == "unknown"
    assert verdicts["calls"].note == "checker crashed: RuntimeError: boom"
    with pytest.raises(RuntimeError, match="boom"):
        check_all(H().input(None, None), ["calls"], raise_errors=True)


def test_every_checker_is_unknown_on_an_empty_run() -> None:
    verdicts = check_all(CheckInput(history=[], observation=None, truth=None),
                         raise_errors=True)
    assert {name: v.valid for name, v in verdicts.items()} == {name: "unknown" for name in NAMES}
    assert all(v.note for v in verdicts.values())


def test_every_checker_tolerates_a_history_cut_short() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1")
    h.invoke(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 100},
             key="k")
    inp = h.input(observe({"fan_0": 400, "creator_0": 100}, credited={"fan_0": 500}),
                  T().paid("pi_1", "fan_0", 500).build())
    verdicts = check_all(inp, raise_errors=True)
    assert all(v.valid is not False for v in verdicts.values()), verdicts
    assert verdicts["reconciliation"].counts["indeterminate_ops"] == 1


def test_checkers_import_no_io_clock_or_randomness() -> None:
    package = Path(checkers.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                roots = set()
            assert not roots & FORBIDDEN_MODULES, f"{path.name} imports {roots}"
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                assert name not in FORBIDDEN_CALLS, f"{path.name} calls {name}()"


def test_pairs_matches_completions_and_yields_unfinished_ops_last() -> None:
    h = H()
    a = h.invoke(F.TIP, {"sender": "a", "recipient": "b", "amount_tokens": 1})
    h.invoke(F.READ_BALANCE, {"user": "a"})
    h.complete(a, Kind.FAIL, error="insufficient_funds")
    result = list(pairs(h.events))
    assert [p.f for p in result] == [F.TIP, F.READ_BALANCE]
    assert result[0].kind == Kind.FAIL
    assert result[1].kind == Kind.INFO
    assert result[1].completion is None


def _anomaly(kind: str, observed: int) -> Anomaly:
    return Anomaly(kind=kind, event_indexes=(observed,), expected=0, observed=observed,
                   explanation=f"#{observed}")


def test_sampler_keeps_first_worst_and_last_per_kind_and_counts_all() -> None:
    sampler = Sampler()
    for observed, badness in ((1, 5), (2, 9), (3, 1), (4, 2)):
        sampler.add(_anomaly("drift", observed), badness=badness)
    sampler.add(_anomaly("negative_balance", 7))
    kept = [(a.kind, a.observed) for a in sampler.anomalies()]
    assert kept == [("drift", 1), ("drift", 2), ("drift", 4), ("negative_balance", 7)]
    verdict = conclude(sampler, {"accounts_checked": 3}, checked=True)
    assert verdict.valid is False
    assert verdict.counts == {"accounts_checked": 3, "drift": 4, "negative_balance": 1}


def test_conclude_is_unknown_when_nothing_was_checked_or_something_undecided() -> None:
    assert conclude(Sampler(), {}, checked=False, unknown_note="x").valid == "unknown"
    assert conclude(Sampler(), {}, checked=True, unknown_note="x").valid == "unknown"
    assert conclude(Sampler(), {}, checked=True).valid is True


@pytest.mark.parametrize(("deltas", "low", "high", "expected"), [
    ([], 0, 0, True),
    ([], 1, 5, False),
    ([300, 200], 500, 500, True),
    ([300, 200], 400, 450, False),
    ([-300, 200], -100, -100, True),
    ([-300, 200], 100, 150, False),
    ([10, 20, 40], 70, 70, True),
    ([10, 20, 40], 25, 29, False),
    ([7] * 100, 693, 693, True),
    ([7] * 100, 694, 699, False),
])
def test_reaches_decides_subset_sums(deltas: list[int], low: int, high: int,
                                     expected: bool) -> None:
    assert reaches(deltas, low, high) is expected


def test_reaches_uses_a_set_of_sums_when_a_bitset_would_be_too_wide() -> None:
    deltas = [1 << k for k in range(0, 60, 6)]
    assert reaches(deltas, 1 + (1 << 54), 1 + (1 << 54)) is True
    assert reaches(deltas, 2, 63) is False


def test_reaches_falls_back_to_bounds_when_sums_get_too_many() -> None:
    deltas = [1 << k for k in range(40)] + [3]
    assert reaches(deltas, 5, 5) is None
    assert reaches(deltas, -5, -1) is False
