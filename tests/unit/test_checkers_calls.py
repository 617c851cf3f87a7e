"""calls: a minute once, nothing after the end, no more charges than minutes."""

from __future__ import annotations

from harness.checkers.calls import check_calls
from harness.model import F, Kind
from tests.unit.conftest import H


def _call() -> H:
    h = H()
    h.call_open("fan_0", "creator_0", "c1", 60)
    return h


def test_calls_hold_for_charges_until_funds_run_out() -> None:
    h = _call()
    h.charge("fan_0", "creator_0", "c1", 1, 60)
    h.charge("fan_0", "creator_0", "c1", 1, 60, key="again")  # the same minute, absorbed
    h.charge("fan_0", "creator_0", "c1", 2, 60, Kind.INFO)
    h.charge("fan_0", "creator_0", "c1", 3, 60, Kind.FAIL, error="insufficient_funds")
    h.charge("fan_0", "creator_0", "c1", 4, 60, Kind.FAIL, error="call_ended")
    verdict = check_calls(h.input(None, None))
    assert verdict.valid is True, verdict
    assert verdict.counts["charges_refused_for_funds"] == 1
    assert verdict.counts["charges_refused_as_ended"] == 1


def test_calls_flag_a_minute_charged_twice() -> None:
    h = _call()
    first = h.charge("fan_0", "creator_0", "c1", 1, 60, charge_id="ch_a")
    second = h.charge("fan_0", "creator_0", "c1", 1, 60, charge_id="ch_b")
    verdict = check_calls(h.input(None, None))
    assert verdict.valid is False
    assert [a.kind for a in verdict.anomalies] == ["minute_charged_twice"]
    assert verdict.anomalies[0].event_indexes == (first, second)


def test_calls_flag_a_charge_after_the_call_ended() -> None:
    h = _call()
    h.charge("fan_0", "creator_0", "c1", 1, 60)
    end = h.call_end("fan_0", "c1")
    late = h.charge("fan_0", "creator_0", "c1", 2, 60)
    verdict = check_calls(h.input(None, None))
    assert verdict.valid is False
    anomaly = verdict.anomalies[0]
    assert anomaly.kind == "charge_after_end"
    assert late in anomaly.event_indexes
    assert f"call end #{end}" in anomaly.explanation


def test_calls_flag_a_charge_accepted_after_a_refusal_for_funds() -> None:
    h = _call()
    h.charge("fan_0", "creator_0", "c1", 1, 60, Kind.FAIL, error="insufficient_funds")
    h.charge("fan_0", "creator_0", "c1", 2, 60)
    verdict = check_calls(h.input(None, None))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "charge_after_refusal"


def test_calls_charge_racing_the_end_may_be_accepted() -> None:
    h = _call()
    charge = h.invoke(F.CALL_CHARGE,
                      {"user": "fan_0", "creator": "creator_0", "call": "c1", "minute": 1,
                       "amount_tokens": 60})
    h.call_end("fan_0", "c1")
    h.complete(charge, Kind.OK, {"charge_id": "ch_1"})
    assert check_calls(h.input(None, None)).valid is True


def test_calls_flag_more_charges_than_minutes_without_ids() -> None:
    h = _call()
    h.op(F.CALL_CHARGE,
         {"user": "fan_0", "creator": "creator_0", "call": "c1", "minute": 1,
          "amount_tokens": 60})
    h.op(F.CALL_CHARGE,
         {"user": "fan_0", "creator": "creator_0", "call": "c1", "minute": 1,
          "amount_tokens": 60})
    verdict = check_calls(h.input(None, None))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "too_many_charges"


def test_calls_are_unknown_without_charges() -> None:
    assert check_calls(_call().input(None, None)).valid == "unknown"


def _minute(h: H, minute: int, result: dict[str, int | str | None]) -> int:
    """A charge of ``minute`` answered OK with exactly ``result`` (no charge id added)."""
    return h.op(F.CALL_CHARGE, {"user": "fan_0", "creator": "creator_0", "call": "c1",
                                "minute": minute, "amount_tokens": 60}, Kind.OK, result)


def test_calls_a_resent_minute_answered_as_a_replay_is_no_second_charge() -> None:
    h = _call()
    _minute(h, 1, {"charge_id": "ch_1"})
    _minute(h, 1, {"replayed": 1})  # 200 {"billed": false}: the first answer again
    verdict = check_calls(h.input(None, None))
    assert verdict.valid is True, verdict
    assert verdict.counts["charges_acknowledged"] == 1
    assert verdict.counts["charges_replayed"] == 1


def test_calls_a_replayed_minute_after_the_end_is_no_charge_after_the_end() -> None:
    h = _call()
    _minute(h, 1, {"charge_id": "ch_1"})
    h.call_end("fan_0", "c1")
    _minute(h, 1, {"replayed": 1, "charge_id": "ch_1"})
    assert check_calls(h.input(None, None)).valid is True


def test_calls_a_resent_minute_answered_without_id_or_replay_mark_is_a_charge() -> None:
    h = _call()
    _minute(h, 1, {"charge_id": "ch_1"})
    second = _minute(h, 1, {})  # no replay rule says what this is: a charge
    verdict = check_calls(h.input(None, None))
    assert verdict.valid is False
    anomaly = verdict.anomalies[0]
    assert anomaly.kind == "too_many_charges"
    assert second in anomaly.event_indexes
    assert "replay = {" in anomaly.explanation


def test_calls_a_charged_minute_resent_after_the_end_with_a_new_key_is_the_same_charge() -> None:
    h = _call()
    h.charge("fan_0", "creator_0", "c1", 1, 60, charge_id="ch_1")
    h.call_end("fan_0", "c1")
    # A new key, answered 201 with the minute's first charge id: nothing new was charged.
    h.charge("fan_0", "creator_0", "c1", 1, 60, charge_id="ch_1", key="new")
    verdict = check_calls(h.input(None, None))
    assert verdict.valid is True, verdict
    assert verdict.counts["charges_replayed"] == 1


def test_calls_a_charged_minute_resent_after_the_end_with_a_new_charge_id_is_flagged() -> None:
    h = _call()
    h.charge("fan_0", "creator_0", "c1", 1, 60, charge_id="ch_1")
    h.call_end("fan_0", "c1")
    h.charge("fan_0", "creator_0", "c1", 1, 60, charge_id="ch_2", key="new")
    verdict = check_calls(h.input(None, None))
    assert verdict.valid is False
    assert {a.kind for a in verdict.anomalies} == {"charge_after_end", "minute_charged_twice"}
