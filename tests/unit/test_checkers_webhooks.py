"""webhook_auth: forged, tampered and stale webhooks refused, crediting nothing."""

from __future__ import annotations

from harness.checkers.webhooks import check_webhook_auth
from harness.model import DeliveryVariant, Kind
from tests.unit.conftest import SUCCEEDED, H, T, observe


def test_webhook_auth_holds_when_every_forgery_is_refused() -> None:
    truth = (T().paid("pi_1", "fan_0", 500)
             .deliver("evt_pi_1", SUCCEEDED, "pi_1", 400, DeliveryVariant.TAMPERED)
             .deliver("evt_pi_1", SUCCEEDED, "pi_1", 400, DeliveryVariant.STALE).build())
    h = H()
    h.webhook(None, SUCCEEDED, DeliveryVariant.UNSIGNED, Kind.FAIL, status=400)
    verdict = check_webhook_auth(h.input(observe({"fan_0": 500}, credited={"fan_0": 500}),
                                         truth))
    assert verdict.valid is True, verdict
    assert verdict.counts["rejected"] == 3


def test_webhook_auth_flags_an_accepted_forged_delivery() -> None:
    truth = (T().paid("pi_1", "fan_0", 500)
             .deliver("evt_pi_1", SUCCEEDED, "pi_1", 200, DeliveryVariant.WRONG_SECRET).build())
    verdict = check_webhook_auth(H().input(observe({"fan_0": 500}), truth))
    assert verdict.valid is False
    anomaly = verdict.anomalies[0]
    assert anomaly.kind == "forgery_accepted"
    assert anomaly.delivery_indexes == (1,)
    assert "wrong secret" in anomaly.explanation


def test_webhook_auth_flags_an_accepted_stale_op() -> None:
    h = H()
    h.purchase("fan_0", "p_0", 500, "pi_1")
    index = h.webhook("p_0", SUCCEEDED, DeliveryVariant.STALE, Kind.OK)
    verdict = check_webhook_auth(h.input(None, T().paid("pi_1", "fan_0", 500).build()))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "stale_accepted"
    assert index in verdict.anomalies[0].event_indexes


def test_webhook_auth_flags_a_forged_success_that_credited() -> None:
    truth = (T().intent("pi_9", "fan_0", 1000, status="requires_payment_method")
             .deliver("evt_9", SUCCEEDED, "pi_9", 400, DeliveryVariant.UNSIGNED).build())
    verdict = check_webhook_auth(H().input(observe({"fan_0": 1000}, credited={"fan_0": 1000}),
                                           truth))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "forged_credit"
    assert "pi_9" in verdict.anomalies[0].explanation


def test_webhook_auth_is_unknown_without_forgeries_or_answers() -> None:
    assert check_webhook_auth(H().input(None, T().paid("pi_1", "u", 5).build())).valid == \
        "unknown"
    h = H()
    h.webhook(None, SUCCEEDED, DeliveryVariant.TAMPERED, Kind.INFO)
    verdict = check_webhook_auth(h.input(None, None))
    assert verdict.valid == "unknown"
    assert verdict.counts["indeterminate"] == 1
