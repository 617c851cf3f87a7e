"""Unit-test helpers: Hypothesis profiles, and builders for tiny hand-written histories.

Profiles ``dev`` (fast, the default), ``ci`` (``CI`` set) and ``nightly`` (many examples);
choose one with ``TOKENCHAOS_HYPOTHESIS_PROFILE``.

``H`` builds a well-formed history op by op (invoke, then completion, with times), ``T``
builds a ``ProviderTruth`` of intents and webhook deliveries, and ``observe`` builds an
``Observation``; checker tests import them from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings

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
    ProviderTruth,
    Totals,
    Value,
)

__all__ = ["H", "T", "observe"]

settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=3_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("TOKENCHAOS_HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") else "dev"))

_MS = 1_000_000


@dataclass
class H:
    """A history under construction. Op methods return the op's invoke index."""

    events: list[Event] = field(default_factory=list)
    _op_count: int = 0
    _time_ns: int = 0
    _open: dict[int, Event] = field(default_factory=dict)

    # -- raw ------------------------------------------------------------------------

    def invoke(self, f: F, value: Value, *, key: str | None = None) -> int:
        """Start an op; returns its op id (complete it with ``complete``)."""
        op_id = self._op_count
        self._op_count += 1
        event = Event(index=len(self.events), time_ns=self._tick(), process=op_id,
                      kind=Kind.INVOKE, f=f, op_id=op_id, value=dict(value),
                      idempotency_key=key)
        self.events.append(event)
        self._open[op_id] = event
        return op_id

    def complete(self, op_id: int, kind: Kind = Kind.OK, result: Value | None = None, *,
                 error: str | None = None, status: int | None = None,
                 latency_ms: int = 1) -> int:
        """Complete an op; returns the completion's index."""
        invoke = self._open.pop(op_id)
        if status is None and kind != Kind.INFO:
            status = 200 if kind == Kind.OK else 400
        if kind == Kind.FAIL and error is None:
            error = "invalid"
        self._time_ns = max(self._time_ns, invoke.time_ns + latency_ms * _MS)
        event = Event(index=len(self.events), time_ns=self._tick(), process=invoke.process,
                      kind=kind, f=invoke.f, op_id=op_id,
                      value={**invoke.value, **(result or {})},
                      idempotency_key=invoke.idempotency_key, error=error, status_code=status)
        self.events.append(event)
        return event.index

    def op(self, f: F, value: Value, kind: Kind = Kind.OK, result: Value | None = None, *,
           key: str | None = None, error: str | None = None, status: int | None = None,
           latency_ms: int = 1) -> int:
        """Invoke and complete at once; returns the invoke index."""
        op_id = self.invoke(f, value, key=key)
        index = self.events[-1].index
        self.complete(op_id, kind, result, error=error, status=status, latency_ms=latency_ms)
        return index

    def wait(self, ms: int) -> int:
        """Let ``ms`` pass with nothing happening; returns the time now (ns)."""
        self._time_ns += ms * _MS
        return self._time_ns

    def now_ns(self) -> int:
        """The time of the last event (ns)."""
        return self._time_ns

    def _tick(self) -> int:
        self._time_ns += _MS
        return self._time_ns

    # -- ops --------------------------------------------------------------------------

    def purchase(self, user: str, purchase: str, amount: int, intent_id: str | None,
                 kind: Kind = Kind.OK, *, status: str = "succeeded", key: str | None = None,
                 error: str | None = None) -> int:
        result = {} if kind != Kind.OK else {"intent_id": intent_id, "purchase_status": status}
        return self.op(F.PURCHASE, {"user": user, "purchase": purchase, "amount_tokens": amount,
                                    "payment_method": "pm_card_visa"}, kind, result, key=key,
                       error=error)

    def tip(self, sender: str, recipient: str, amount: int, kind: Kind = Kind.OK, *,
            balance: int | None = None, tip_id: str | None = None, key: str | None = None,
            error: str | None = None) -> int:
        result: dict[str, int | str | None] = {}
        if kind == Kind.OK:
            result["tip_id"] = tip_id or f"t{self._op_count}"
            if balance is not None:
                result["balance_tokens"] = balance
        return self.op(F.TIP, {"sender": sender, "recipient": recipient,
                               "amount_tokens": amount}, kind, result, key=key, error=error)

    def read(self, user: str, balance: int, debt: int = 0, status: str = "active") -> int:
        return self.op(F.READ_BALANCE, {"user": user}, Kind.OK,
                       {"balance_tokens": balance, "debt_tokens": debt, "status": status})

    def call_open(self, user: str, creator: str, call: str, rate: int) -> int:
        return self.op(F.CALL_OPEN, {"user": user, "creator": creator, "call": call,
                                     "rate_tokens_per_minute": rate}, Kind.OK,
                       {"call_id": f"c_{call}"})

    def charge(self, user: str, creator: str, call: str, minute: int, amount: int,
               kind: Kind = Kind.OK, *, charge_id: str | None = None,
               balance: int | None = None, key: str | None = None,
               error: str | None = None) -> int:
        result: dict[str, int | str | None] = {}
        if kind == Kind.OK:
            result["charge_id"] = charge_id or f"ch_{call}_{minute}"
            if balance is not None:
                result["balance_tokens"] = balance
        return self.op(F.CALL_CHARGE, {"user": user, "creator": creator, "call": call,
                                       "minute": minute, "amount_tokens": amount},
                       kind, result, key=key, error=error)

    def call_end(self, user: str, call: str, kind: Kind = Kind.OK) -> int:
        return self.op(F.CALL_END, {"user": user, "call": call}, kind)

    def refund(self, purchase: str, amount_cents: int | None, intent_id: str) -> int:
        return self.op(F.REFUND, {"purchase": purchase, "amount_cents": amount_cents}, Kind.OK,
                       {"refund_id": f"re_{len(self.events)}", "intent_id": intent_id})

    def webhook(self, purchase: str | None, event_type: str, variant: DeliveryVariant,
                kind: Kind, status: int | None = None) -> int:
        return self.op(F.WEBHOOK, {"purchase": purchase, "event_type": event_type,
                                   "variant": str(variant)}, kind, status=status,
                       error=None if kind == Kind.OK else
                       ("read_timeout" if kind == Kind.INFO else "bad_signature"))

    def input(self, observation: Observation | None = None, truth: ProviderTruth | None = None,
              **kwargs: object) -> CheckInput:
        return CheckInput(history=list(self.events), observation=observation, truth=truth,
                          **kwargs)  # type: ignore[arg-type]


SUCCEEDED = "payment_intent.succeeded"
REFUNDED = "charge.refunded"


@dataclass
class T:
    """A provider truth under construction."""

    intents: dict[str, IntentTruth] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    event_types: dict[str, str] = field(default_factory=dict)
    event_intents: dict[str, str] = field(default_factory=dict)

    def intent(self, intent_id: str, user: str | None, tokens: int, *,
               status: str = "succeeded", amount_cents: int | None = None,
               refunded_cents: int = 0, dispute_status: str | None = None) -> T:
        self.intents[intent_id] = IntentTruth(
            intent_id=intent_id, user=user, amount_cents=amount_cents or tokens * 5,
            minted_tokens=tokens, status=status, refunded_cents=refunded_cents,
            dispute_status=dispute_status)
        return self

    def deliver(self, event_id: str, event_type: str, intent_id: str | None,
                status: int | None = 200,
                variant: DeliveryVariant = DeliveryVariant.GENUINE) -> T:
        """One delivery attempt; ``status`` None is an attempt that got no answer."""
        if intent_id is not None and not variant.forged:
            self.event_types[event_id] = event_type
            self.event_intents[event_id] = intent_id
        index = len(self.deliveries)
        self.deliveries.append(Delivery(
            index=index, event_id=event_id, event_type=event_type, intent_id=intent_id,
            variant=variant, status_code=status, started_ns=1_000 * (index + 1),
            finished_ns=1_000 * (index + 1) + 500,
            error=None if status is not None else "read_timeout"))
        return self

    def paid(self, intent_id: str, user: str, tokens: int, status: int | None = 200) -> T:
        """A succeeded intent and one delivery of its success event."""
        return self.intent(intent_id, user, tokens).deliver(f"evt_{intent_id}", SUCCEEDED,
                                                            intent_id, status)

    def build(self) -> ProviderTruth:
        return ProviderTruth(intents=dict(self.intents), deliveries=tuple(self.deliveries),
                             event_types=dict(self.event_types),
                             event_intents=dict(self.event_intents))


def observe(balances: Mapping[str, int | tuple[int, int]], *,
            credited: Mapping[str, int] | None = None,
            clawed: Mapping[str, int] | None = None,
            ledger: Mapping[str, int] | None = None,
            status: Mapping[str, str] | None = None,
            totals: Totals | None = None) -> Observation:
    """An observation: ``balances`` maps user -> balance, or (balance, debt)."""
    accounts = {}
    for user, amount in balances.items():
        balance, debt = amount if isinstance(amount, tuple) else (amount, 0)
        accounts[user] = AccountState(
            user=user, balance_tokens=balance, debt_tokens=debt,
            status=(status or {}).get(user, "debt" if debt > 0 else "active"),
            ledger_sum_tokens=(ledger or {}).get(user),
            credited_tokens=(credited or {}).get(user),
            clawed_back_tokens=(clawed or {}).get(user))
    return Observation(accounts=accounts, totals=totals)
