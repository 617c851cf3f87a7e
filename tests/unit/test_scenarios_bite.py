"""bad-input and key-collision bite: their own ops, answered by a tiny in-memory service.

``_Service`` answers a scenario's steps as a correct token service does (validation, keys
scoped per account, credit per purchase), or with one flaw: a negative tip accepted (money
moves the other way), or idempotency keys deduplicated across accounts. The scenario's
own checkers then judge the history: clean on the correct service, broken on each flaw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from harness.checkers import check_all
from harness.checkers.base import CheckInput
from harness.model import (
    AccountState,
    Delivery,
    DeliveryVariant,
    Event,
    F,
    IntentTruth,
    Kind,
    Observation,
    Op,
    ProviderTruth,
    Value,
    Verdict,
)
from harness.scenario import Scenario, ScenarioParams
from harness.schedule import Batch
from harness.targets.pricing import REFERENCE_PRICING
from scenarios import SCENARIOS

_MS = 1_000_000
_BODY_BYTES_MAX = 64 * 1024


@dataclass
class _Service:
    """A token service in memory, answering ops one at a time, in batch order."""

    flaw: str | None = None  # None | "negative_tip" | "global_keys"
    balances: dict[str, int] = field(default_factory=dict)
    answers: dict[tuple[str, str | None, str], tuple[Value, dict[str, int | str | None]]] = \
        field(default_factory=dict)  # (f, sender or None, key) -> (body, answer)
    calls: dict[str, str] = field(default_factory=dict)  # call -> its user
    charged: set[tuple[str, int]] = field(default_factory=set)
    intents: dict[str, IntentTruth] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    serial: int = 0

    def answer(self, op: Op) -> tuple[Kind, dict[str, int | str | None], str | None, int]:
        """(kind, result, error, status) for one op."""
        self.serial += 1
        if op.f == F.PURCHASE:
            return self._purchase(op)
        if op.f == F.TIP:
            return self._keyed(op, "sender", self._tip)
        if op.f == F.CALL_OPEN:
            self.calls[str(op.value["call"])] = str(op.value["user"])
            return Kind.OK, {"call_id": f"call{self.serial}"}, None, 201
        if op.f == F.CALL_CHARGE:
            return self._keyed(op, "user", self._charge)
        if op.f == F.READ_BALANCE:
            user = str(op.value["user"])
            return Kind.OK, {"balance_tokens": self.balances.get(user, 0), "debt_tokens": 0,
                             "status": "active"}, None, 200
        raise AssertionError(f"the scenario sent {op!r}, which this service does not know")

    def _keyed(self, op: Op, actor: str, apply: _Apply) -> _Answer:
        key = op.idempotency_key
        if key is None:
            return apply(op)
        scope = None if self.flaw == "global_keys" else str(op.value[actor])
        stored = self.answers.get((op.f.value, scope, key))
        body = {k: v for k, v in op.value.items() if k != actor or scope is None}
        if stored is not None:
            if self.flaw == "global_keys" or stored[0] == body:
                return Kind.OK, dict(stored[1]), None, 200  # the first answer again
            return Kind.FAIL, {}, "idempotency_conflict", 409
        kind, result, error, status = apply(op)
        if kind == Kind.OK:
            self.answers[(op.f.value, scope, key)] = (body, result)
        return kind, result, error, status

    def _tip(self, op: Op) -> _Answer:
        sender, recipient = str(op.value["sender"]), str(op.value["recipient"])
        amount = op.value["amount_tokens"]
        if isinstance(amount, str) and len(amount) > _BODY_BYTES_MAX:
            return Kind.INFO, {}, "unexpected_status", 413  # a status the profile lacks
        negative_ok = self.flaw == "negative_tip" and isinstance(amount, int) and amount < 0
        if not isinstance(amount, int) or (amount < 1 and not negative_ok) or \
                amount > 10**12 or sender == recipient:
            return Kind.FAIL, {}, "invalid", 422
        if op.value.get("recipient_id") is not None:  # an id it never gave out
            return Kind.FAIL, {}, "not_found", 404
        if self.balances[sender] < amount:
            return Kind.FAIL, {}, "insufficient_funds", 402
        self.balances[sender] -= amount
        self.balances[recipient] += amount
        return Kind.OK, {"tip_id": f"t{self.serial}",
                         "balance_tokens": self.balances[sender]}, None, 201

    def _charge(self, op: Op) -> _Answer:
        call, user = str(op.value["call"]), str(op.value["user"])
        if self.calls.get(call) != user:
            return Kind.FAIL, {}, "not_found", 404
        minute = op.value["minute"]
        assert isinstance(minute, int)
        amount = op.value["amount_tokens"]
        assert isinstance(amount, int)
        if (call, minute) in self.charged:
            return Kind.OK, {"charge_id": f"{call}-{minute}"}, None, 200
        if self.balances[user] < amount:
            return Kind.FAIL, {}, "insufficient_funds", 402
        self.charged.add((call, minute))
        self.balances[user] -= amount
        self.balances[str(op.value["creator"])] += amount
        return Kind.OK, {"charge_id": f"{call}-{minute}",
                         "balance_tokens": self.balances[user]}, None, 201

    def _purchase(self, op: Op) -> _Answer:
        user = str(op.value["user"])
        amount_tokens = op.value["amount_tokens"]
        assert isinstance(amount_tokens, int)
        package = REFERENCE_PRICING.package(amount_tokens)
        scope = None if self.flaw == "global_keys" else user
        key = op.idempotency_key
        stored = self.answers.get(("purchase", scope, str(key)))
        if stored is not None:
            return Kind.OK, dict(stored[1]), None, 200
        intent_id = f"pi_{self.serial}"
        self.intents[intent_id] = IntentTruth(intent_id=intent_id, user=user,
                                              amount_cents=package.cents,
                                              minted_tokens=package.minted_tokens,
                                              status="succeeded", idempotency_key=key)
        self.deliveries.append(Delivery(
            index=len(self.deliveries), event_id=f"evt_{self.serial}",
            event_type="payment_intent.succeeded", intent_id=intent_id,
            variant=DeliveryVariant.GENUINE, status_code=200, started_ns=self.serial,
            finished_ns=self.serial + 1))
        self.balances[user] += package.minted_tokens  # the webhook's credit, at once
        result: dict[str, int | str | None] = {"intent_id": intent_id,
                                               "purchase_status": "succeeded"}
        self.answers[("purchase", scope, str(key))] = ({}, result)
        return Kind.OK, result, None, 201


_Answer = tuple[Kind, dict[str, int | str | None], str | None, int]


class _Apply:
    def __call__(self, op: Op) -> _Answer: ...  # pragma: no cover - a type only


def _judge(scenario: Scenario, flaw: str | None, seed: int = 1) -> dict[str, Verdict]:
    """Run ``scenario`` against the in-memory service and judge it with its checkers."""
    params = ScenarioParams(seed=seed, concurrency=32)
    users = scenario.users(params)
    service = _Service(flaw=flaw, balances=dict.fromkeys(users, 0))
    history: list[Event] = []
    time_ns = 0
    for step in scenario.generator(random.Random(seed), params):
        if not isinstance(step, Batch):
            continue
        for op in step.ops:
            time_ns += _MS
            history.append(Event(index=len(history), time_ns=time_ns, process=0,
                                 kind=Kind.INVOKE, f=op.f, op_id=op.id, value=dict(op.value),
                                 idempotency_key=op.idempotency_key))
            kind, result, error, status = service.answer(op)
            time_ns += _MS
            history.append(Event(index=len(history), time_ns=time_ns, process=0, kind=kind,
                                 f=op.f, op_id=op.id, value={**op.value, **result},
                                 idempotency_key=op.idempotency_key,
                                 error=None if kind == Kind.OK else error, status_code=status))
    credited: dict[str, int] = dict.fromkeys(users, 0)
    for intent in service.intents.values():
        credited[str(intent.user)] += intent.minted_tokens
    observation = Observation(accounts={
        user: AccountState(user=user, balance_tokens=balance, credited_tokens=credited[user],
                           clawed_back_tokens=0)
        for user, balance in service.balances.items() if user in users})
    truth = ProviderTruth(intents=dict(service.intents), deliveries=tuple(service.deliveries),
                          event_types={d.event_id: d.event_type for d in service.deliveries},
                          event_intents={d.event_id: str(d.intent_id)
                                         for d in service.deliveries})
    adapted = scenario.adapted(params)
    inp = CheckInput(history=history, observation=observation, truth=truth,
                     initial=Observation(accounts={}), latency_ms_max=None,
                     provokes=adapted.provokes)
    return check_all(inp, adapted.checkers, raise_errors=True)


def _broken(verdicts: dict[str, Verdict]) -> dict[str, list[str]]:
    return {name: [a.kind for a in verdict.anomalies]
            for name, verdict in verdicts.items() if verdict.valid is not True}


@pytest.mark.parametrize("name", ["bad-input", "key-collision"])
def test_the_new_scenarios_pass_clean_on_a_correct_service(name: str) -> None:
    for seed in (1, 2, 3):
        assert _broken(_judge(SCENARIOS[name], flaw=None, seed=seed)) == {}


def test_bad_input_catches_a_negative_tip_that_moves_money_the_other_way() -> None:
    broken = _broken(_judge(SCENARIOS["bad-input"], flaw="negative_tip"))
    assert broken.get("refusals") == ["bad_input_accepted"], broken


def test_key_collision_catches_a_service_that_dedupes_keys_across_accounts() -> None:
    broken = _broken(_judge(SCENARIOS["key-collision"], flaw="global_keys"))
    assert "answer_of_another_account" in broken.get("key_scope", []), broken
    assert "reconciliation" in broken, broken  # the second account's money shows it


def test_bad_input_sends_every_kind_of_bad_input_the_issue_names() -> None:
    scenario = SCENARIOS["bad-input"]
    params = ScenarioParams(seed=1)
    whys = [str(op.value["bad_input"]) for step in scenario.generator(random.Random(1), params)
            if isinstance(step, Batch) for op in step.ops if "bad_input" in op.value]
    for words in ("negative", "zero", "64 bits", "more tokens", "fractional", "not a number",
                  "oneself", "never created", "another user's call", "size limit"):
        assert any(words in why for why in whys), (words, whys)
