"""What the checkers derive once and share: the op pairing, the account model, the pause."""

from __future__ import annotations

import dataclasses
import gc

import pytest

from harness.bench.checkers import synthetic_input
from harness.checkers import check_all
from harness.checkers.base import key_uses, memoised, op_pairs, pairs
from harness.checkers.ledger import account_model
from harness.model import DeliveryVariant, F, Kind
from tests.unit.conftest import H


def _mixed_history() -> H:
    """Ops completed out of order, refused, indeterminate and never completed."""
    h = H()
    h.purchase("fan_0", "p_1", 500, "pi_1")
    slow = h.invoke(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 5},
                    key="k1")
    h.tip("fan_0", "creator_0", 5, key="k1")
    h.read("fan_0", 490)
    h.complete(slow, Kind.INFO, error="read_timeout")
    h.tip("fan_1", "creator_0", 900, Kind.FAIL, error="insufficient_funds")
    h.call_open("fan_0", "creator_0", "c1", 10)
    h.charge("fan_0", "creator_0", "c1", 1, 10)
    h.webhook("p_1", "payment_intent.succeeded", DeliveryVariant.UNSIGNED, Kind.FAIL, 400)
    h.invoke(F.READ_BALANCE, {"user": "fan_1"})  # the history ends before its answer
    h.invoke(F.TIP, {"sender": "fan_1", "recipient": "creator_0", "amount_tokens": 1})
    return h


def test_the_shared_pairing_gives_the_same_pairs_in_the_same_order() -> None:
    h = _mixed_history()
    inp = h.input()
    assert list(op_pairs(inp)) == list(pairs(h.events))
    assert [p.completion is None for p in op_pairs(inp)][-2:] == [True, True]
    synthetic = synthetic_input(1_000, seed=4)
    assert list(op_pairs(synthetic)) == list(pairs(synthetic.history))
    shared, made = op_pairs(inp)[0], next(pairs(h.events))
    assert shared == made and repr(shared) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        shared.completion = None  # type: ignore[misc]


def test_the_keys_counted_while_pairing_are_those_of_the_pairs() -> None:
    h = _mixed_history()
    h.tip("fan_1", "creator_0", 2, key="k1")
    h.invoke(F.TIP, {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": 1},
             key="k9")  # never answered
    for inp in (h.input(), synthetic_input(1_000, seed=4)):
        naive: dict[str, int] = {}
        for pair in pairs(inp.history):
            key = pair.invoke.idempotency_key
            if key is not None:
                naive[key] = naive.get(key, 0) + 1
        assert dict(key_uses(inp)) == naive
    assert key_uses(h.input())["k1"] == 3 and key_uses(h.input())["k9"] == 1


def test_the_pairing_is_built_once_per_input_and_again_for_a_longer_history() -> None:
    h = _mixed_history()
    inp = h.input()
    first = op_pairs(inp)
    assert op_pairs(inp) is first
    assert account_model(inp) is account_model(inp)
    assert op_pairs(dataclasses.replace(inp)) is not first  # a copy starts afresh
    assert op_pairs(dataclasses.replace(inp)) == first
    history = inp.history
    assert isinstance(history, list)
    history.append(dataclasses.replace(history[-1], index=len(history), kind=Kind.OK,
                                       time_ns=history[-1].time_ns + 1))
    assert len(op_pairs(inp)) == len(first)  # the same ops, one of them now completed
    assert op_pairs(inp)[-2].completion is history[-1]


def test_memoised_keeps_what_it_built_under_its_name() -> None:
    inp = _mixed_history().input()
    built: list[int] = []

    def build(_: object) -> int:
        built.append(1)
        return len(built)

    assert memoised(inp, "n", build) == memoised(inp, "n", build) == 1
    assert memoised(inp, "other", build) == 2
    assert inp == dataclasses.replace(inp)  # what is kept is no part of the input's value


def test_check_all_pauses_the_collector_and_restores_it() -> None:
    inp = _mixed_history().input()
    assert gc.isenabled()
    check_all(inp, raise_errors=True)
    assert gc.isenabled()
    gc.disable()
    try:
        check_all(inp, raise_errors=True)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_checkers_leave_no_cycles_for_the_collector() -> None:
    # The collector is paused while they run: whatever they drop must be freed by
    # reference counting alone.
    inps = [_mixed_history().input(), synthetic_input(500, seed=5)]
    gc.collect()
    gc.disable()
    try:
        for inp in inps:
            check_all(inp, raise_errors=True)
        del inps
        assert gc.collect() == 0
    finally:
        gc.enable()
