"""Properties: a correct service's histories pass every checker; one corrupted op fails.

``_Service`` is a correct, in-memory token service run concurrently: each batch of ops is
invoked at once, takes effect in an order Hypothesis draws (the linearization), and
completes in another. Some ops time out (INFO) after taking effect, some before; some
tips are retried with their key; some webhooks go unanswered, then are retried or not.

Amounts are distinct powers of two from disjoint ranges (tips below credits below call
rates), so that no choice of indeterminate ops can hide a corrupted one: a signed sum of
distinct powers of two never equals another power of two (look at the lowest bit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.checkers import check_all
from harness.checkers.base import CheckInput
from harness.model import AccountState, DeliveryVariant, Event, F, Kind, Observation
from tests.unit.conftest import SUCCEEDED, H, T

FANS = ("fan_0", "fan_1", "fan_2")
CREATORS = ("creator_0", "creator_1")
TIP_BITS = range(0, 8)  # tips: 1 .. 128 tokens
CREDIT_BITS = range(8, 14)  # purchases mint 256 .. 8192 tokens
RATE_BITS = range(14, 17)  # call rates: 16384 .. 65536 tokens a minute
START_TOKENS = 1 << 19  # every fan's balance before the run

_PURCHASE_FATES = ("acked", "acked_twice", "unanswered_applied", "unanswered_lost",
                   "retried", "never_delivered")


@dataclass
class _Op:
    """One op of a batch: what it does when it takes effect, and how it completes."""

    f: F
    value: dict[str, int | str | None]
    run: Callable[[], tuple[Kind, dict[str, int | str | None], str | None]]
    key: str | None = None
    times_out: str | None = None  # None, "after" (took effect) or "before" (never did)
    op_id: int = -1
    outcome: tuple[Kind, dict[str, int | str | None], str | None] | None = None


@dataclass
class _Service:
    """A correct service, its provider, and the history of what was asked of it."""

    h: H = field(default_factory=H)
    t: T = field(default_factory=T)
    balances: dict[str, int] = field(default_factory=dict)
    credited: dict[str, int] = field(default_factory=dict)
    tips_done: dict[str, dict[str, int | str | None]] = field(default_factory=dict)
    minutes_done: dict[tuple[str, int], dict[str, int | str | None]] = field(
        default_factory=dict)
    ended_calls: set[str] = field(default_factory=set)
    free_bits: dict[str, list[int]] = field(default_factory=dict)
    count: int = 0

    def __post_init__(self) -> None:
        self.balances = {u: START_TOKENS for u in FANS} | {u: 0 for u in CREATORS}
        self.free_bits = {"tip": list(TIP_BITS), "credit": list(CREDIT_BITS),
                          "rate": list(RATE_BITS)}

    def amount(self, kind: str) -> int | None:
        bits = self.free_bits[kind]
        return 1 << bits.pop(0) if bits else None

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    # -- ops ----------------------------------------------------------------------------

    def tip(self, sender: str, recipient: str, amount: int, key: str) -> _Op:
        def run() -> tuple[Kind, dict[str, int | str | None], str | None]:
            if key in self.tips_done:
                return Kind.OK, self.tips_done[key], None
            if self.balances[sender] < amount:
                return Kind.FAIL, {}, "insufficient_funds"
            self.balances[sender] -= amount
            self.balances[recipient] += amount
            self.tips_done[key] = {"tip_id": f"t_{key}",
                                   "balance_tokens": self.balances[sender]}
            return Kind.OK, self.tips_done[key], None

        return _Op(F.TIP, {"sender": sender, "recipient": recipient, "amount_tokens": amount},
                   run, key=key)

    def purchase(self, user: str, tokens: int, fate: str) -> _Op:
        intent_id = self.name("pi_")
        event_id = f"evt_{intent_id}"
        self.t.intent(intent_id, user, tokens)

        def run() -> tuple[Kind, dict[str, int | str | None], str | None]:
            applied = fate in ("acked", "acked_twice", "unanswered_applied", "retried")
            if fate in ("acked", "acked_twice", "retried"):
                if fate == "retried":
                    self.t.deliver(event_id, SUCCEEDED, intent_id, None)
                self.t.deliver(event_id, SUCCEEDED, intent_id, 200,
                               DeliveryVariant.RETRY if fate == "retried"
                               else DeliveryVariant.GENUINE)
                if fate == "acked_twice":
                    self.t.deliver(event_id, SUCCEEDED, intent_id, 200,
                                   DeliveryVariant.DUPLICATE)
            elif fate in ("unanswered_applied", "unanswered_lost"):
                self.t.deliver(event_id, SUCCEEDED, intent_id, None)
            if applied:
                self.balances[user] += tokens
                self.credited[user] = self.credited.get(user, 0) + tokens
            return Kind.OK, {"intent_id": intent_id, "purchase_status": "succeeded"}, None

        return _Op(F.PURCHASE, {"user": user, "purchase": self.name("p_"),
                                "amount_tokens": tokens, "payment_method": "pm_card_visa"},
                   run, key=self.name("kp"))

    def read(self, user: str) -> _Op:
        def run() -> tuple[Kind, dict[str, int | str | None], str | None]:
            return Kind.OK, {"balance_tokens": self.balances[user], "debt_tokens": 0,
                             "status": "active"}, None

        return _Op(F.READ_BALANCE, {"user": user}, run)

    def charge(self, user: str, creator: str, call: str, minute: int, rate: int) -> _Op:
        def run() -> tuple[Kind, dict[str, int | str | None], str | None]:
            if (call, minute) in self.minutes_done:
                return Kind.OK, self.minutes_done[(call, minute)], None
            if call in self.ended_calls:
                return Kind.FAIL, {}, "call_ended"
            if self.balances[user] < rate:
                self.ended_calls.add(call)
                return Kind.FAIL, {}, "insufficient_funds"
            self.balances[user] -= rate
            self.balances[creator] += rate
            self.minutes_done[(call, minute)] = {"charge_id": f"ch_{call}_{minute}",
                                                 "balance_tokens": self.balances[user]}
            return Kind.OK, self.minutes_done[(call, minute)], None

        return _Op(F.CALL_CHARGE, {"user": user, "creator": creator, "call": call,
                                   "minute": minute, "amount_tokens": rate}, run,
                   key=self.name("kc"))

    def simple(self, f: F, value: dict[str, int | str | None],
               result: dict[str, int | str | None] | None = None,
               after: Callable[[], None] | None = None) -> _Op:
        def run() -> tuple[Kind, dict[str, int | str | None], str | None]:
            if after is not None:
                after()
            return Kind.OK, result or {}, None

        return _Op(f, value, run)

    # -- batches --------------------------------------------------------------------------

    def batch(self, ops: list[_Op], effect_order: list[int], completion_order: list[int]) -> None:
        """Invoke every op, let them take effect in one order, complete them in another."""
        for op in ops:
            op.op_id = self.h.invoke(op.f, op.value, key=op.key)
        for i in effect_order:
            if ops[i].times_out != "before":
                ops[i].outcome = ops[i].run()
        for i in completion_order:
            op = ops[i]
            if op.times_out is not None:
                self.h.complete(op.op_id, Kind.INFO, error="read_timeout")
                continue
            assert op.outcome is not None
            kind, result, error = op.outcome
            status = 200 if kind == Kind.OK else (402 if error == "insufficient_funds" else 409)
            self.h.complete(op.op_id, kind, result, error=error, status=status)

    def check_input(self) -> CheckInput:
        accounts = {user: AccountState(user=user, balance_tokens=balance,
                                       ledger_sum_tokens=balance,
                                       credited_tokens=self.credited.get(user, 0),
                                       clawed_back_tokens=0)
                    for user, balance in self.balances.items()}
        initial = Observation(accounts={
            user: AccountState(user=user, balance_tokens=START_TOKENS if user in FANS else 0,
                               credited_tokens=0, clawed_back_tokens=0)
            for user in self.balances})
        return CheckInput(history=list(self.h.events),
                          observation=Observation(accounts=accounts),
                          truth=self.t.build(), initial=initial)


# ---------------------------------------------------------------------------------------
# Strategies.

_times_out = st.sampled_from([None, None, None, "after", "before"])


@st.composite
def _batch_ops(draw: st.DrawFn, service: _Service, retries: list[_Op]) -> list[_Op]:
    ops: list[_Op] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["tip", "tip", "purchase", "read", "retry"]))
        if kind == "retry" and retries:
            first = retries.pop(0)
            ops.append(service.tip(str(first.value["sender"]), str(first.value["recipient"]),
                                   int(first.value["amount_tokens"] or 0), str(first.key)))
            continue
        if kind == "purchase":
            tokens = service.amount("credit")
            if tokens is not None:
                op = service.purchase(draw(st.sampled_from(FANS)), tokens,
                                      draw(st.sampled_from(_PURCHASE_FATES)))
                op.times_out = draw(st.sampled_from([None, None, "after"]))
                ops.append(op)
            continue
        if kind == "read":
            ops.append(service.read(draw(st.sampled_from(FANS + CREATORS))))
            continue
        amount = service.amount("tip")
        if amount is None:
            continue
        sender = draw(st.sampled_from(FANS))
        recipient = draw(st.sampled_from([u for u in FANS + CREATORS if u != sender]))
        op = service.tip(sender, recipient, amount, service.name("kt"))
        op.times_out = draw(_times_out)
        if op.times_out is not None and draw(st.booleans()):
            retries.append(op)
        ops.append(op)
    return ops


def _call(draw: st.DrawFn, service: _Service) -> None:
    rate = service.amount("rate")
    if rate is None:
        return
    user, creator = draw(st.sampled_from(FANS)), draw(st.sampled_from(CREATORS))
    call = service.name("call_")
    service.batch([service.simple(F.CALL_OPEN, {"user": user, "creator": creator, "call": call,
                                                "rate_tokens_per_minute": rate},
                                  {"call_id": f"c_{call}"})], [0], [0])
    minutes = draw(st.integers(1, 3))
    charges = [service.charge(user, creator, call, m, rate) for m in range(1, minutes + 1)]
    if draw(st.booleans()):  # the same minute again, with another key
        charges.append(service.charge(user, creator, call, minutes, rate))
    for op in charges:
        op.times_out = draw(_times_out)
    order = list(range(len(charges)))
    service.batch(charges, draw(st.permutations(order)), draw(st.permutations(order)))
    service.batch([service.simple(F.CALL_END, {"user": user, "call": call},
                                  after=lambda: service.ended_calls.add(call))], [0], [0])


@st.composite
def _runs(draw: st.DrawFn) -> _Service:
    service = _Service()
    retries: list[_Op] = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 4)) == 0:
            _call(draw, service)
            continue
        ops = draw(_batch_ops(service, retries))
        if not ops:
            continue
        order = list(range(len(ops)))
        service.batch(ops, draw(st.permutations(order)), draw(st.permutations(order)))
    return service


_SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------------------
# Properties.


@_SETTINGS
@given(_runs())
def test_a_correct_services_history_passes_every_checker(service: _Service) -> None:
    verdicts = check_all(service.check_input(), raise_errors=True)
    failed = {name: v for name, v in verdicts.items() if v.valid is False}
    assert not failed, failed
    assert verdicts["reconciliation"].valid is True
    assert verdicts["conservation"].valid is True
    assert verdicts["exactly_once_credit"].valid in (True, "unknown")
    if service.t.deliveries:
        assert verdicts["exactly_once_credit"].valid is True


def _money_verdicts(inp: CheckInput) -> dict[str, object]:
    verdicts = check_all(inp, ["conservation", "reconciliation"], raise_errors=True)
    return {name: v.valid for name, v in verdicts.items()}


@_SETTINGS
@given(_runs(), st.data())
def test_an_acknowledged_tip_reported_failed_fails_reconciliation(service: _Service,
                                                                  data: st.DataObject) -> None:
    inp = service.check_input()
    candidates = _lone_applied_tips(inp.history)
    if not candidates:
        return
    index = data.draw(st.sampled_from(candidates))
    event = inp.history[index]
    failed = dataclasses.replace(event, kind=Kind.FAIL, error="insufficient_funds",
                                 status_code=402, value={
                                     k: v for k, v in event.value.items()
                                     if k not in ("tip_id", "balance_tokens")})
    history = list(inp.history)
    history[index] = failed
    verdicts = _money_verdicts(dataclasses.replace(inp, history=history))
    assert verdicts["reconciliation"] is False, verdicts


def _lone_applied_tips(history: list[Event] | tuple[Event, ...]) -> list[int]:
    """Completion indexes of acknowledged tips whose key no other op used."""
    ops_per_key: dict[str | None, int] = {}
    for event in history:
        if event.kind == Kind.INVOKE and event.f == F.TIP:
            ops_per_key[event.idempotency_key] = ops_per_key.get(event.idempotency_key, 0) + 1
    return [e.index for e in history
            if e.f == F.TIP and e.kind == Kind.OK and ops_per_key[e.idempotency_key] == 1]


@_SETTINGS
@given(_runs(), st.data(), st.sampled_from(["double", "drop"]))
def test_a_credit_doubled_or_dropped_fails_conservation(service: _Service, data: st.DataObject,
                                                        corruption: str) -> None:
    inp = service.check_input()
    assert inp.truth is not None
    credited = sorted(i.intent_id for i in inp.truth.intents.values()
                      if any(d.intent_id == i.intent_id and d.acknowledged
                             for d in inp.truth.deliveries))
    if not credited:
        return
    intent = inp.truth.intents[data.draw(st.sampled_from(credited))]
    assert inp.observation is not None and intent.user is not None
    account = inp.observation.accounts[intent.user]
    sign = 1 if corruption == "double" else -1
    net = account.balance_tokens + sign * intent.minted_tokens
    corrupted = dataclasses.replace(
        account, balance_tokens=max(net, 0), debt_tokens=max(-net, 0),
        ledger_sum_tokens=max(net, 0),
        credited_tokens=(account.credited_tokens or 0) + sign * intent.minted_tokens)
    observation = Observation(accounts={**inp.observation.accounts, intent.user: corrupted})
    verdicts = _money_verdicts(dataclasses.replace(inp, observation=observation))
    assert verdicts["conservation"] is False, verdicts
    assert verdicts["reconciliation"] is False, verdicts
    credit = check_all(dataclasses.replace(inp, observation=observation),
                       ["exactly_once_credit"], raise_errors=True)["exactly_once_credit"]
    assert credit.valid is False
    # An unanswered webhook may make "credited twice" and "never credited" equally good
    # explanations; either way the anomaly names the corrupted intent.
    # A dropped credit of the only delivered intent is also stated first as "never credited".
    named = [a for a in credit.anomalies if a.kind != "never_credited"]
    assert named[0].kind in ("duplicated_credit", "lost_credit")
    assert f"intent {intent.intent_id}," in named[0].explanation
