"""The ledger fold's quick way for tips whose key no other op carries equals the general way.

The fold takes most tips of a large run through its own quick way (``run``, ``_complete_tip``);
on generated histories (keys sent once and reused, odd amounts and accounts, answers in
and out of bounds, refusals, timeouts, ops never answered, reads, a call) its result must
be the one that ``invoke`` and ``complete`` alone give, in every field and every order.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.checkers.base import CheckInput, key_uses, op_pairs
from harness.checkers.intents import model_intents
from harness.checkers.ledger import _Fold, fold_ledger
from harness.checkers.ledger_records import Ledger
from harness.model import AccountState, F, Kind, Observation
from tests.unit.conftest import H

_USERS = ["fan_0", "fan_1", "creator_0"]
_AMOUNTS = st.sampled_from([1, 5, 40, 0, -3, True, "7", None])
_BALANCES = st.sampled_from([None, 0, 3, 10, 30, 55, 200, -1, 10**6, True, "9"])
_OUTCOMES = st.sampled_from(["ok", "ok", "ok", "fail", "info", "never"])


def _folded(inp: CheckInput, *, quick: bool) -> tuple[object, ...]:
    """The fold's bounds per account and every field of its result, mappings in order;
    without ``quick``, every event goes through ``invoke`` and ``complete``."""
    fold = _Fold(inp, model_intents(inp))
    if quick:
        fold.run(inp.history)
    else:
        for event in inp.history:
            if event.kind == Kind.INVOKE:
                fold.invoke(event)
            else:
                fold.complete(event)
    bounds = list(fold.bounds.items())
    return (bounds, *_as_compared(fold.result()))


def _as_compared(ledger: Ledger) -> tuple[object, ...]:
    return (list(ledger.sure_tokens.items()), ledger.unknowns, ledger.users,
            ledger.transfer_users, list(ledger.recent.items()), ledger.logical_ops_count,
            ledger.reads_checked_count, ledger.reads.anomalies(), ledger.reads.totals)


@st.composite
def _histories(draw: st.DrawFn) -> CheckInput:
    h = H()
    h.call_open("fan_0", "creator_0", "c1", 10)
    for _ in range(draw(st.integers(1, 5))):
        batch: list[tuple[int, str, object]] = []
        for _ in range(draw(st.integers(1, 5))):
            what = draw(st.sampled_from(["tip", "tip", "tip", "read", "charge"]))
            if what == "read":
                h.read(draw(st.sampled_from(_USERS)), draw(st.integers(-5, 300)))
                continue
            if what == "charge":
                op = h.invoke(F.CALL_CHARGE, {"user": "fan_0", "creator": "creator_0",
                                              "call": "c1", "minute": draw(st.integers(1, 2)),
                                              "amount_tokens": 10},
                              key=draw(st.sampled_from(["m1", "m2", "k0"])))
            else:
                value = {"sender": draw(st.sampled_from([*_USERS, None])),
                         "recipient": draw(st.sampled_from(_USERS)),
                         "amount_tokens": draw(_AMOUNTS)}
                key = draw(st.sampled_from([None, "k0", "k1", "k2", *(f"u{i}" for i in
                                                                      range(12))]))
                op = h.invoke(F.TIP, value, key=key)
            batch.append((op, draw(_OUTCOMES), draw(_BALANCES)))
        for op, outcome, balance in draw(st.permutations(batch)):
            if outcome == "ok":
                h.complete(op, Kind.OK, {"tip_id": f"t{op}"} if balance is None
                           else {"tip_id": f"t{op}", "balance_tokens": balance})  # type: ignore[dict-item]
            elif outcome == "fail":
                h.complete(op, Kind.FAIL, error="insufficient_funds")
            elif outcome == "info":
                h.complete(op, Kind.INFO, error="read_timeout")
    start = {user: AccountState(user=user, balance_tokens=draw(st.sampled_from([0, 50])))
             for user in _USERS}
    return h.input(initial=Observation(accounts=start))


@given(_histories())
def test_the_quick_way_for_tips_sent_once_gives_what_the_general_fold_gives(
        inp: CheckInput) -> None:
    assert _folded(inp, quick=True) == _folded(inp, quick=False)
    assert _as_compared(fold_ledger(inp, model_intents(inp))) == _folded(inp, quick=True)[1:]


def test_the_quick_way_takes_the_tips_sent_once_and_finds_what_the_general_one_finds() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 5, key="a", balance=45)  # in bounds: the quick way
    h.tip("fan_0", "creator_0", 5, key="b", balance=900)  # out of bounds: an impossible read
    h.tip("fan_0", "creator_0", 5, key="c", kind=Kind.INFO, error="read_timeout")
    inp = h.input(initial=Observation(accounts={
        "fan_0": AccountState(user="fan_0", balance_tokens=50)}))
    assert all(key_uses(inp)[k] == 1 for k in "abc") and len(op_pairs(inp)) == 3
    ledger = fold_ledger(inp, None)
    assert _folded(inp, quick=True) == _folded(inp, quick=False)
    assert ledger.reads.totals == {"impossible_read": 1}
    assert [u.label for u in ledger.unknowns] == ["tip #4 (fan_0 → creator_0, 5 tokens)"]
