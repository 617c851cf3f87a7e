"""The control API's truth read into the model, for any target's metadata keys."""

from __future__ import annotations

from typing import Any

import pytest

from harness.errors import ProviderError
from harness.model import DeliveryVariant
from harness.provider.state import ProviderState
from harness.provider.truth import minted_tokens, truth_from_json


def _intent(intent_id: str, metadata: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"id": intent_id, "amount": 25000, "currency": "usd", "status": "succeeded",
            "metadata": metadata, "latest_charge": "ch_1", "amount_refunded": 0,
            "dispute": None, "idempotency_key": None, "created": 1, **extra}


def test_tokens_sum_the_named_keys_and_users_map_to_logical_names() -> None:
    data = {
        "intents": [_intent("pi_a", {"userId": "u-7", "tokenAmount": "5000",
                                     "bonusTokens": "250"},
                            amount_refunded=5000, idempotency_key="k1",
                            dispute={"id": "dp_1", "status": "lost", "amount": 20000}),
                    _intent("pi_b", {"userId": "someone-else", "tokenAmount": "100"})],
        "events": [{"id": "evt_1", "type": "payment_intent.succeeded", "intent_id": "pi_a",
                    "created": 1},
                   {"id": "evt_2", "type": "charge.refunded", "intent_id": None, "created": 2}],
        "deliveries": [{"index": 0, "event_id": "evt_1", "event_type": "payment_intent.succeeded",
                        "intent_id": "pi_a", "variant": "tampered", "status_code": None,
                        "started_ns": 5, "finished_ns": 9, "error": "read_timeout"}],
        "pending_deliveries": 2,
    }
    truth = truth_from_json(data, user_key="userId", tokens_keys=("tokenAmount", "bonusTokens"),
                            user_by_target_id={"u-7": "fan_0"})
    a, b = truth.intents["pi_a"], truth.intents["pi_b"]
    assert a.user == "fan_0"
    assert a.minted_tokens == 5250
    assert a.refunded_cents == 5000
    assert a.dispute_status == "lost"
    assert a.disputed_cents == 20000
    assert a.idempotency_key == "k1"
    assert a.expected_clawback_tokens == 5250
    assert b.user is None
    assert b.minted_tokens == 100
    assert truth.event_types == {"evt_1": "payment_intent.succeeded", "evt_2": "charge.refunded"}
    assert truth.event_intents == {"evt_1": "pi_a"}
    assert truth.deliveries[0].variant == DeliveryVariant.TAMPERED
    assert truth.deliveries[0].status_code is None
    assert truth.pending_deliveries_count == 2


def test_token_counts_that_are_not_integers_count_as_zero() -> None:
    assert minted_tokens({"tokens": "12.5", "bonus": "x", "more": "3"},
                         ("tokens", "bonus", "more", "absent")) == 3


def test_the_state_machines_truth_reads_back_with_the_reference_keys() -> None:
    state = ProviderState(seed=1)
    intent_id = state.call("create_intent", {
        "amount": "2500", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true",
        "metadata": {"user_id": "41", "tokens": "500"}}).body["id"]
    state.call("create_refund", {"payment_intent": intent_id, "amount": "500"})
    truth = truth_from_json({**state.truth_json(), "deliveries": [], "pending_deliveries": 0},
                            user_by_target_id={"41": "fan_3"})
    intent = truth.intents[intent_id]
    assert intent.user == "fan_3"
    assert intent.minted_tokens == 500
    assert intent.refund_clawback_tokens == 100
    assert intent.succeeded


def test_a_truth_of_another_shape_is_a_provider_error() -> None:
    with pytest.raises(ProviderError):
        truth_from_json({"intents": [{"id": "pi_1"}]}, user_by_target_id={})
