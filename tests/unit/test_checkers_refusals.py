"""refusals and key_scope on hand-written histories: what holds, what breaks, what is unknown."""

from __future__ import annotations

from harness.checkers.refusals import check_key_scope, check_refusals
from harness.model import F, FaultWindow, Kind
from tests.unit.conftest import H

_NEGATIVE = {"sender": "fan_0", "recipient": "creator_0", "amount_tokens": -5,
             "bad_input": "a negative amount"}


def test_bad_input_refused_with_a_4xx_holds_and_a_timeout_judges_nothing() -> None:
    h = H()
    h.op(F.TIP, _NEGATIVE, Kind.FAIL, error="invalid", status=422)
    h.op(F.TIP, {**_NEGATIVE, "amount_tokens": "9" * 10, "bad_input": "a big body"},
         Kind.INFO, error="unexpected_status", status=413)  # a 4xx the profile lacks
    h.op(F.TIP, {**_NEGATIVE, "amount_tokens": 0}, Kind.INFO, error="read_timeout")
    h.tip("fan_0", "creator_0", 5)  # not bad input: not judged here
    verdict = check_refusals(h.input())
    assert verdict.valid is True
    assert verdict.counts["refused_4xx"] == 2
    assert verdict.counts["indeterminate"] == 1


def test_an_acknowledged_or_crashing_bad_input_breaks_refusals() -> None:
    h = H()
    accepted = h.op(F.TIP, _NEGATIVE, Kind.OK, {"tip_id": "t1"}, status=201)
    h.op(F.TIP, {**_NEGATIVE, "amount_tokens": 2**63, "bad_input": "past 64 bits"},
         Kind.INFO, error="server_error_5xx", status=500)
    verdict = check_refusals(h.input())
    assert verdict.valid is False
    assert [a.kind for a in verdict.anomalies] == ["bad_input_accepted",
                                                   "bad_input_server_error"]
    assert verdict.anomalies[0].event_indexes[0] == accepted
    assert "a negative amount" in verdict.anomalies[0].explanation


def test_refusals_without_bad_input_or_only_timeouts_is_unknown() -> None:
    assert check_refusals(H().input()).valid == "unknown"
    h = H()
    h.op(F.TIP, _NEGATIVE, Kind.INFO, error="read_timeout")
    verdict = check_refusals(h.input())
    assert verdict.valid == "unknown"
    assert verdict.note and "no answer" in verdict.note


def test_two_accounts_sharing_a_key_each_get_their_own_answer() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 5, key="k1", tip_id="t1")
    h.tip("fan_1", "creator_0", 6, key="k1", tip_id="t2")
    verdict = check_key_scope(h.input())
    assert verdict.valid is True
    assert verdict.counts["keys_shared"] == 1


def test_the_other_account_s_answer_replayed_breaks_key_scope() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 5, key="k1", tip_id="t1")
    h.tip("fan_1", "creator_0", 6, key="k1", tip_id="t1")  # deduped across accounts
    verdict = check_key_scope(h.input())
    assert verdict.valid is False
    (anomaly,) = verdict.anomalies
    assert anomaly.kind == "answer_of_another_account"
    assert anomaly.user == "fan_1"


def test_refusing_one_account_for_another_s_key_breaks_key_scope() -> None:
    h = H()
    h.tip("fan_0", "creator_0", 5, key="k1", tip_id="t1")
    h.tip("fan_1", "creator_0", 6, Kind.FAIL, key="k1", error="idempotency_conflict")
    # One account reusing its own key with another body is refused rightly: not judged.
    h.tip("fan_2", "creator_0", 7, key="k2", tip_id="t3")
    h.tip("fan_2", "creator_0", 8, Kind.FAIL, key="k2", error="idempotency_conflict")
    verdict = check_key_scope(h.input())
    assert [a.kind for a in verdict.anomalies] == ["refused_for_another_accounts_key"]
    assert verdict.anomalies[0].user == "fan_1"


def test_bad_input_answered_5xx_during_a_fault_is_excused() -> None:
    h = H()
    started = h.wait(1)
    h.op(F.TIP, _NEGATIVE, Kind.INFO, error="server_error_5xx", status=503)
    window = FaultWindow(name="f0", kind="kill_service", link=None, description="kill",
                         started_ns=started, healed_ns=h.wait(1), recovered_ns=h.wait(1))
    crashed = h.op(F.TIP, _NEGATIVE, Kind.INFO, error="server_error_5xx", status=500)
    h.op(F.TIP, _NEGATIVE, Kind.FAIL, error="invalid", status=422)
    verdict = check_refusals(h.input(faults=(window,)))
    assert verdict.counts["during_fault"] == 1
    assert [a.event_indexes[0] for a in verdict.anomalies] == [crashed]
