"""The provider's state machine, without HTTP: transitions, errors, idempotency, truth."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.provider.state import Answer, ProviderState

_CLOCK_S = 1_700_000_000.0


def _state(seed: int = 7, **kwargs: Any) -> ProviderState:
    return ProviderState(seed=seed, clock=lambda: _CLOCK_S, **kwargs)


def _pay(state: ProviderState, *, amount: int = 2500, payment_method: str = "pm_card_visa",
         key: str | None = None, tokens: str = "500") -> Answer:
    params = {"amount": str(amount), "currency": "usd", "payment_method": payment_method,
              "confirm": "true", "metadata": {"user_id": "7", "tokens": tokens}}
    return state.call("create_intent", params, idempotency_key=key)


def test_confirmed_visa_payment_succeeds_with_a_charge_and_one_success_event() -> None:
    state = _state()
    answer = _pay(state)
    assert answer.status_code == 200
    intent = answer.body
    assert intent["object"] == "payment_intent"
    assert intent["status"] == "succeeded"
    assert intent["amount_received"] == 2500
    assert intent["latest_charge"].startswith("ch_")
    assert [e["type"] for e in answer.events] == ["payment_intent.succeeded"]
    event = answer.events[0]
    assert event["data"]["object"]["metadata"] == {"user_id": "7", "tokens": "500"}
    assert event["object"] == "event"
    assert event["livemode"] is False
    charge = state.charges[intent["latest_charge"]]
    assert charge.metadata == {"user_id": "7", "tokens": "500"}


def test_unconfirmed_intent_waits_and_confirm_makes_it_succeed() -> None:
    state = _state()
    created = state.call("create_intent", {"amount": "5000", "currency": "USD"})
    assert created.status_code == 200
    assert created.body["status"] == "requires_payment_method"
    assert created.body["currency"] == "usd"
    assert created.events == ()
    confirmed = state.call("confirm_intent", {"payment_method": "pm_card_mastercard"},
                           object_id=created.body["id"])
    assert confirmed.body["status"] == "succeeded"
    again = state.call("confirm_intent", {}, object_id=created.body["id"])
    assert again.status_code == 400
    assert again.body["error"]["code"] == "payment_intent_unexpected_state"


def test_three_d_secure_requires_action_until_the_card_holder_authenticates() -> None:
    state = _state()
    answer = _pay(state, payment_method="pm_card_threeDSecure2Required")
    assert answer.body["status"] == "requires_action"
    assert answer.body["next_action"]["type"] == "use_stripe_sdk"
    assert answer.body["latest_charge"] is None
    assert [e["type"] for e in answer.events] == ["payment_intent.requires_action"]
    done = state.call("authenticate_intent", {}, object_id=answer.body["id"])
    assert done.status_code == 200
    assert done.body["status"] == "succeeded"
    assert done.body["next_action"] is None
    assert [e["type"] for e in done.events] == ["payment_intent.succeeded"]
    twice = state.call("authenticate_intent", {}, object_id=answer.body["id"])
    assert twice.status_code == 400


def test_failed_authentication_needs_a_new_payment_method_and_emits_payment_failed() -> None:
    state = _state()
    answer = _pay(state, payment_method="pm_card_threeDSecure2Required")
    failed = state.call("authenticate_intent", {"outcome": "fail"}, object_id=answer.body["id"])
    assert failed.body["status"] == "requires_payment_method"
    assert failed.body["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    assert [e["type"] for e in failed.events] == ["payment_intent.payment_failed"]
    refund = state.call("create_refund", {"payment_intent": answer.body["id"]})
    assert refund.status_code == 400


def test_declined_card_is_a_402_card_error_in_stripes_shape_with_a_failed_event() -> None:
    state = _state()
    answer = _pay(state, payment_method="pm_card_chargeDeclined")
    assert answer.status_code == 402
    error = answer.body["error"]
    assert error["type"] == "card_error"
    assert error["code"] == "card_declined"
    assert error["decline_code"] == "generic_decline"
    assert error["message"]
    assert error["payment_intent"]["status"] == "requires_payment_method"
    assert [e["type"] for e in answer.events] == ["payment_intent.payment_failed"]
    intent_id = error["payment_intent"]["id"]
    assert state.intents[intent_id].status == "requires_payment_method"
    assert state.charges[error["charge"]].status == "failed"


def test_same_key_and_parameters_replay_the_answer_without_a_new_intent_or_event() -> None:
    state = _state()
    first = _pay(state, key="k-1")
    second = _pay(state, key="k-1")
    assert second.replayed
    assert second.status_code == first.status_code
    assert second.body == first.body
    assert second.events == ()
    assert len(state.intents) == 1
    assert len(state.events) == 1
    assert state.truth_json()["intents"][0]["idempotency_key"] == "k-1"


def test_same_key_with_other_parameters_is_an_idempotency_error() -> None:
    state = _state()
    _pay(state, key="k-1")
    other = _pay(state, key="k-1", amount=5000)
    assert other.status_code == 400
    assert other.body["error"]["type"] == "idempotency_error"
    elsewhere = state.call("create_refund", {"payment_intent": "pi_x"}, idempotency_key="k-1")
    assert elsewhere.body["error"]["type"] == "idempotency_error"
    assert len(state.intents) == 1


def test_a_decline_is_replayed_by_its_key_but_a_validation_error_is_not_remembered() -> None:
    state = _state()
    declined = _pay(state, key="k-d", payment_method="pm_card_chargeDeclined")
    replay = _pay(state, key="k-d", payment_method="pm_card_chargeDeclined")
    assert replay.replayed
    assert replay.status_code == 402
    assert replay.body == declined.body
    invalid = state.call("create_intent", {"amount": "10", "currency": "usd"},
                         idempotency_key="k-v")
    assert invalid.status_code == 400
    assert invalid.body["error"]["code"] == "amount_too_small"
    fixed = state.call("create_intent", {"amount": "1000", "currency": "usd"},
                       idempotency_key="k-v")
    assert fixed.status_code == 200


def test_the_oldest_key_is_forgotten_past_the_limit_so_memory_stays_bounded() -> None:
    state = _state(idempotency_keys_max=1)
    _pay(state, key="old")
    _pay(state, key="new")
    assert _pay(state, key="new", amount=9999).status_code == 400  # remembered
    assert _pay(state, key="old", amount=9999).status_code == 200  # forgotten: runs anew


def test_ids_follow_the_seed_and_reads_do_not_shift_them() -> None:
    first, second, third = _state(seed=3), _state(seed=3), _state(seed=4)
    a = _pay(first).body["id"]
    second.retrieve("payment_intent", "pi_missing", {})
    second.list_events({})
    b = _pay(second).body["id"]
    c = _pay(third).body["id"]
    assert a == b
    assert a != c
    assert a.startswith("pi_")
    assert len(a) == len("pi_") + 24


def test_partial_refunds_accumulate_and_each_event_carries_the_cumulative_amount() -> None:
    state = _state()
    intent_id = _pay(state).body["id"]
    first = state.call("create_refund", {"payment_intent": intent_id, "amount": "1000"})
    second = state.call("create_refund", {"payment_intent": intent_id, "amount": "500"})
    assert first.body["object"] == "refund"
    assert first.body["amount"] == 1000
    charges = [a.events[0]["data"]["object"] for a in (first, second)]
    assert [c["amount_refunded"] for c in charges] == [1000, 1500]
    assert [c["refunded"] for c in charges] == [False, False]
    assert second.events[0]["data"]["previous_attributes"] == {"amount_refunded": 1000}
    assert charges[1]["metadata"] == {"user_id": "7", "tokens": "500"}
    rest = state.call("create_refund", {"payment_intent": intent_id})
    assert rest.body["amount"] == 1000
    assert rest.events[0]["data"]["object"]["refunded"] is True
    assert state.truth_json()["intents"][0]["amount_refunded"] == 2500


def test_refunding_past_the_amount_or_twice_in_full_is_refused() -> None:
    state = _state()
    intent_id = _pay(state).body["id"]
    too_much = state.call("create_refund", {"payment_intent": intent_id, "amount": "2501"})
    assert too_much.status_code == 400
    assert too_much.body["error"]["code"] == "amount_too_large"
    assert too_much.events == ()
    state.call("create_refund", {"payment_intent": intent_id})
    again = state.call("create_refund", {"payment_intent": intent_id})
    assert again.body["error"]["code"] == "charge_already_refunded"


def test_refunding_an_intent_that_did_not_succeed_is_refused() -> None:
    state = _state()
    pending = _pay(state, payment_method="pm_card_threeDSecure2Required").body["id"]
    answer = state.call("create_refund", {"payment_intent": pending})
    assert answer.status_code == 400
    assert answer.body["error"]["code"] == "payment_intent_unexpected_state"
    missing = state.call("create_refund", {"payment_intent": "pi_nope"})
    assert missing.status_code == 404
    assert missing.body["error"]["code"] == "resource_missing"


def test_a_dispute_opens_with_the_intents_metadata_and_closes_won_or_lost() -> None:
    state = _state()
    won_intent, lost_intent = _pay(state).body["id"], _pay(state).body["id"]
    state.call("create_refund", {"payment_intent": won_intent, "amount": "500"})
    opened = state.call("create_dispute", {"payment_intent": won_intent})
    assert opened.body["object"] == "dispute"
    assert opened.body["status"] == "needs_response"
    assert opened.body["amount"] == 2000  # what was not refunded
    assert opened.body["payment_intent"] == won_intent
    assert opened.events[0]["type"] == "charge.dispute.created"
    assert opened.events[0]["data"]["object"]["metadata"]["tokens"] == "500"
    blocked = state.call("create_refund", {"payment_intent": won_intent})
    assert blocked.body["error"]["code"] == "charge_disputed"
    won = state.call("close_dispute", {"outcome": "won"}, object_id=opened.body["id"])
    assert won.events[0]["type"] == "charge.dispute.closed"
    assert won.events[0]["data"]["object"]["status"] == "won"
    lost = state.call("create_dispute", {"payment_intent": lost_intent, "amount": "1000"})
    state.call("close_dispute", {"outcome": "lost"}, object_id=lost.body["id"])
    closed_twice = state.call("close_dispute", {"outcome": "won"}, object_id=lost.body["id"])
    assert closed_twice.status_code == 400
    truth = {i["id"]: i["dispute"] for i in state.truth_json()["intents"]}
    assert truth[won_intent] == {"id": opened.body["id"], "status": "won", "amount": 2000}
    assert truth[lost_intent]["status"] == "lost"
    assert truth[lost_intent]["amount"] == 1000


def test_unknown_parameters_and_payment_methods_are_refused_as_stripe_does() -> None:
    state = _state()
    unknown = state.call("create_intent", {"amount": "1000", "currency": "usd", "colour": "x"})
    assert unknown.status_code == 400
    assert unknown.body["error"]["code"] == "parameter_unknown"
    assert unknown.body["error"]["param"] == "colour"
    card = state.call("create_intent", {"amount": "1000", "currency": "usd",
                                        "payment_method": "pm_card_unheard_of"})
    assert card.status_code == 404
    assert not state.intents


def test_events_list_newest_first_filtered_by_type_and_paged() -> None:
    state = _state()
    intent_id = _pay(state).body["id"]
    state.call("create_refund", {"payment_intent": intent_id, "amount": "100"})
    state.call("create_refund", {"payment_intent": intent_id, "amount": "100"})
    listed = state.list_events({"limit": "2"}).body
    assert listed["object"] == "list"
    assert [e["type"] for e in listed["data"]] == ["charge.refunded", "charge.refunded"]
    assert listed["has_more"] is True
    rest = state.list_events({"starting_after": listed["data"][-1]["id"]}).body
    assert [e["type"] for e in rest["data"]] == ["payment_intent.succeeded"]
    only = state.list_events({"type": "payment_intent.*"}).body
    assert len(only["data"]) == 1
    one = state.retrieve("event", only["data"][0]["id"], {})
    assert one.body == only["data"][0]


def test_truth_lists_intents_and_events_and_forgetting_events_keeps_intents() -> None:
    state = _state()
    intent_id = _pay(state, key="k").body["id"]
    truth = state.truth_json()
    assert set(truth["intents"][0]) == {"id", "amount", "currency", "status", "metadata",
                                        "latest_charge", "amount_refunded", "dispute",
                                        "idempotency_key", "created"}
    assert truth["events"] == [{"id": state.events[0]["id"], "type": "payment_intent.succeeded",
                                "intent_id": intent_id, "created": int(_CLOCK_S)}]
    state.forget_events()
    assert state.truth_json()["events"] == []
    assert state.truth_json()["intents"][0]["id"] == intent_id


def test_past_its_object_limit_the_state_answers_503_and_changes_nothing() -> None:
    state = _state(objects_max=3)
    assert _pay(state).status_code == 200
    refused = _pay(state)
    assert refused.status_code == 503
    assert refused.body["error"]["type"] == "api_error"
    assert len(state.intents) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(min_value=-5, max_value=3000)),
                min_size=1, max_size=12))
def test_any_sequence_of_refunds_never_refunds_past_the_amount(amounts: list[int | None]) -> None:
    state = _state()
    intent_id = _pay(state).body["id"]
    seen: list[int] = []
    for amount in amounts:
        params = {"payment_intent": intent_id}
        if amount is not None:
            params["amount"] = str(amount)
        answer = state.call("create_refund", params)
        truth = state.truth_json()["intents"][0]
        assert 0 <= truth["amount_refunded"] <= truth["amount"]
        if answer.status_code == 200:
            assert len(answer.events) == 1
            seen.append(answer.events[0]["data"]["object"]["amount_refunded"])
        else:
            assert answer.events == ()
    assert seen == sorted(seen)
    assert all(0 < refunded <= 2500 for refunded in seen)
    assert len(set(seen)) == len(seen)
