"""The six checks of the token-hardening rollout, and the rest of issue 2's acceptance.

Real HTTP against the real stack: the reference service (child process) on a fresh
PostgreSQL database, the provider simulator delivering signed webhooks. Balances are only
ever funded through purchases and their webhooks. Expectations come from the model (the
arithmetic of section 1 of the design), never from hopes.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.integration.stackapi import Api, at_once, new_key

pytestmark = pytest.mark.integration


def test_same_purchase_twice_with_one_key_makes_one_intent_and_one_credit(api: Api) -> None:
    fan = api.create_user()
    key = new_key()
    first, second = at_once(lambda: api.purchase(fan, 500, key=key),
                            lambda: api.purchase(fan, 500, key=key))
    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert first.json()["intent_id"] == second.json()["intent_id"]
    api.settle()
    assert api.balance(fan) == 500
    intents = {d["intent_id"] for d in api.deliveries()
               if d["event_type"] == "payment_intent.succeeded"}
    assert first.json()["intent_id"] in intents


def test_two_concurrent_tips_of_300_from_500_exactly_one_succeeds(api: Api) -> None:
    fan, creator = api.create_user(), api.create_user("creator")
    api.fund(fan, 500)
    answers = at_once(lambda: api.tip(fan, creator, 300), lambda: api.tip(fan, creator, 300))
    assert sorted(r.status_code for r in answers) == [201, 402]
    assert api.balance(fan) == 200
    assert api.balance(creator) == 300


def test_three_d_secure_purchase_is_credited_once_when_its_webhook_arrives(api: Api) -> None:
    fan = api.create_user()
    response = api.purchase(fan, 1000, payment_method="pm_card_threeDSecure2Required")
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "requires_action"
    api.settle()
    assert api.balance(fan) == 0  # nothing is credited before the card holder authenticates
    intent_id = response.json()["intent_id"]
    done = api.provider("POST", f"/v1/test_helpers/payment_intents/{intent_id}/authenticate")
    assert done.status_code == 200, done.text
    api.settle()
    assert api.balance(fan) == 1000
    api.set_policy(replays_count=2)  # and replays of later events change nothing
    api.settle()
    assert api.balance(fan) == 1000


def test_refund_covered_by_balance_takes_back_500_with_a_ledger_entry(api: Api) -> None:
    fan = api.create_user()
    api.fund(fan, 1000)
    intent_id = api.fund(fan, 500)
    assert api.balance(fan) == 1500
    api.refund(intent_id)
    api.settle()
    assert api.balance(fan) == 1000
    account = api.account(fan)
    assert account["clawed_back"] == 500
    assert account["ledger_sum"] == account["balance"] == 1000
    assert account["debt"] == 0


def test_refund_after_spend_leaves_debt_and_no_drift(api: Api) -> None:
    fan, creator = api.create_user(), api.create_user("creator")
    intent_id = api.fund(fan, 500)
    assert api.tip(fan, creator, 400).status_code == 201
    api.refund(intent_id)
    api.settle()
    me = api.me(fan)
    assert (me["balance"], me["debt"], me["status"]) == (0, 400, "debt")
    account = api.account(fan)
    assert account["ledger_sum"] == account["balance"] == 0
    # A later credit pays the debt first.
    api.fund(fan, 500)
    me = api.me(fan)
    assert (me["balance"], me["debt"], me["status"]) == (100, 0, "active")


def test_tip_call_charge_and_tip_of_400_each_from_1000_exactly_two_succeed(api: Api) -> None:
    fan, creator = api.create_user(), api.create_user("creator")
    api.fund(fan, 1000)
    opened = api.user_call(fan, "POST", "/v1/calls", key=new_key(),
                           json={"creator": creator.id, "rate_per_minute": 400})
    assert opened.status_code == 201, opened.text
    call_id = opened.json()["call_id"]
    answers = at_once(
        lambda: api.tip(fan, creator, 400),
        lambda: api.user_call(fan, "POST", f"/v1/calls/{call_id}/charges", key=new_key(),
                              json={"minute": 1}),
        lambda: api.tip(fan, creator, 400))
    statuses = Counter(r.status_code for r in answers)
    # The model: 1000 covers two spends of 400 and not a third, whatever the order.
    assert statuses == Counter({201: 2, 402: 1}), [r.text for r in answers]
    assert api.balance(fan) == 1000 - 2 * 400
    assert api.balance(creator) == 2 * 400


def test_duplicated_and_replayed_webhooks_change_nothing(api: Api) -> None:
    fan = api.create_user()
    api.set_policy(duplicates_count=3, replays_count=2, replay_delay_ms=20)
    api.purchase(fan, 1000)
    intent_id = api.fund(fan, 500)
    api.refund(intent_id, 1250)  # half of 500 tokens' 2500 cents
    api.settle()
    assert api.balance(fan) == 1000 + 500 - 250
    deliveries = [d for d in api.deliveries() if d["intent_id"] == intent_id]
    acknowledged = Counter(d["event_id"] for d in deliveries if 200 <= d["status_code"] < 300)
    assert max(acknowledged.values()) >= 2  # the duplicates really reached the service


def test_refund_delivered_before_its_success_nets_out(api: Api) -> None:
    fan = api.create_user()
    api.set_policy(reorder=True, hold_ms_max=5_000)
    response = api.purchase(fan, 1000)
    intent_id = response.json()["intent_id"]
    api.refund(intent_id, 1000)  # a fifth of 5000 cents: 200 tokens back
    api.settle()
    assert api.balance(fan) == 1000 - 200
    order = [d["event_type"] for d in api.deliveries()
             if d["intent_id"] == intent_id and 200 <= (d["status_code"] or 0) < 300]
    assert order.index("charge.refunded") < order.index("payment_intent.succeeded")


def test_two_users_tipping_each_other_200_times_at_once_conserve_totals(api: Api) -> None:
    alice, bob = api.create_user("creator"), api.create_user("creator")
    api.fund(alice, 1000)
    api.fund(bob, 1000)
    calls = []
    for _ in range(200):
        calls.append(lambda: api.tip(alice, bob, 3))
        calls.append(lambda: api.tip(bob, alice, 5))
    answers = _in_waves(calls, width=40)
    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) <= {201, 402}, statuses
    alice_sent = sum(3 for i, r in enumerate(answers) if i % 2 == 0 and r.status_code == 201)
    bob_sent = sum(5 for i, r in enumerate(answers) if i % 2 == 1 and r.status_code == 201)
    assert api.balance(alice) == 1000 - alice_sent + bob_sent
    assert api.balance(bob) == 1000 - bob_sent + alice_sent


def _in_waves(calls: list, *, width: int) -> list:
    answers = []
    for start in range(0, len(calls), width):
        answers += at_once(*calls[start:start + width])
    return answers
