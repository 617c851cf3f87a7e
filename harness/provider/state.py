"""The provider's truth: an in-memory, Stripe-shaped state machine. No I/O, no tasks.

Rule 1: every change to money happens here, in one synchronous call, so a request is
applied atomically with respect to every other (the event loop never interleaves two).
Rule 2: every change emits exactly one Stripe event, snapshotted at that moment, and the
caller (the HTTP app) hands the events to the dispatcher; this module never sends them.

Theory of operation. ``ProviderState.call(operation, params, object_id=…,
idempotency_key=…)`` is the only way to change state. It honours Stripe's idempotency
(same key and parameters: the same answer again, marked replayed; same key, other
parameters: 400 ``idempotency_error``), runs the operation, and returns an ``Answer``
(status, JSON body, the events emitted). Declines are answers too (402 ``card_error``),
and they change state like Stripe's do: a failed charge, ``requires_payment_method``,
and a ``payment_intent.payment_failed`` event. ``truth_json`` exports what the checkers
compare the target against. Transitions:

    create ─► requires_payment_method ─(payment_method)─► requires_confirmation
    confirm ─► succeeded | requires_action | requires_payment_method (declined, 402)
    requires_action ─authenticate─► succeeded | requires_payment_method
    succeeded ─refund─► succeeded (amount_refunded grows, never past amount)
    succeeded ─dispute─► needs_response ─close─► won | lost
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.provider import operations
from harness.provider.objects import (
    API_VERSION,
    ChargeRecord,
    DisputeRecord,
    IdMaker,
    IntentRecord,
    RefundRecord,
    StripeError,
    charge_json,
    dispute_json,
    int_param,
    intent_json,
    refund_json,
    reject_unknown,
    str_param,
)

__all__ = ["EVENT_TYPES", "Answer", "ProviderState", "build_event"]

EVENT_TYPES = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.requires_action",
    "payment_intent.canceled",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
)
_IDEMPOTENCY_KEY_CHARS_MAX = 255  # Stripe's limit
_CACHED_STATUSES = frozenset({200, 402})  # answers of endpoints that ran, as Stripe keeps them
_EVENTS_PAGE_MAX = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What one API call answers: status, Stripe JSON, and the events it emitted."""

    status_code: int
    body: Mapping[str, Any]
    request_id: str
    events: tuple[Mapping[str, Any], ...] = ()
    replayed: bool = False  # an idempotent replay of an earlier answer


@dataclass(frozen=True, slots=True, kw_only=True)
class _Remembered:
    """An answer kept for its idempotency key."""

    fingerprint: str  # digest of (operation, object id, parameters)
    status_code: int
    body_json: str
    request_id: str


class ProviderState:
    """PaymentIntents, Charges, Refunds, Disputes and Events, with Stripe's rules.

    Args:
        seed: drives every id, so the same calls in the same order give the same ids.
        clock: seconds since the epoch, for ``created`` fields.
        objects_max: intents, refunds, disputes and events kept, together; past it every
            mutating call answers 503, so memory stays bounded in long runs.
        idempotency_keys_max: keys remembered; the oldest is forgotten first.
    """

    def __init__(self, *, seed: int, clock: Callable[[], float] = time.time,
                 objects_max: int = 2_000_000, idempotency_keys_max: int = 100_000) -> None:
        assert objects_max >= 1
        assert idempotency_keys_max >= 1
        self.ids = IdMaker(seed)
        self._request_ids = IdMaker(seed ^ 0x5EED_0001)  # reads must not shift object ids
        self.forge_ids = IdMaker(seed ^ 0x5EED_0002)  # nor must forged envelopes
        self._clock = clock
        self._objects_max = objects_max
        self._idempotency_keys_max = idempotency_keys_max
        self.intents: dict[str, IntentRecord] = {}
        self.charges: dict[str, ChargeRecord] = {}
        self.refunds: dict[str, RefundRecord] = {}
        self.disputes: dict[str, DisputeRecord] = {}
        self.events: list[dict[str, Any]] = []
        self._events_by_id: dict[str, dict[str, Any]] = {}
        self._event_intents: dict[str, str | None] = {}
        self._idempotency: OrderedDict[str, _Remembered] = OrderedDict()
        self._outbox: list[dict[str, Any]] = []
        self._request: dict[str, str | None] = {"id": None, "idempotency_key": None}
        self.webhook_endpoints_count = 0  # what events say in ``pending_webhooks``

    def now(self) -> int:
        return int(self._clock())

    @property
    def request_idempotency_key(self) -> str | None:
        """The Idempotency-Key of the call running now, which intents remember."""
        return self._request["idempotency_key"]

    # -- the one way to change state -----------------------------------------------------

    def call(self, operation: str, params: Mapping[str, Any], *, object_id: str | None = None,
             idempotency_key: str | None = None) -> Answer:
        """Run one mutating operation (``operations.OPERATIONS``) with Stripe's idempotency.

        Returns:
            The answer; never raises for anything a client sent.
        """
        handler = operations.OPERATIONS[operation]
        request_id = self._request_ids.new("req", 14)
        fingerprint = json.dumps([operation, object_id, params], sort_keys=True)
        if idempotency_key is not None:
            refused = self._check_key(idempotency_key, fingerprint, request_id)
            if refused is not None:
                return refused
        self._outbox = []
        self._request = {"id": request_id, "idempotency_key": idempotency_key}
        try:
            self._check_room()
            status_code, body = 200, handler(self, object_id, params)
        except StripeError as error:
            status_code, body = error.status_code, error.to_json()
        events, self._outbox = tuple(self._outbox), []
        assert len(events) <= 1, [e["type"] for e in events]
        answer = Answer(status_code=status_code, body=body, request_id=request_id,
                        events=events)
        if idempotency_key is not None and status_code in _CACHED_STATUSES:
            self._remember(idempotency_key, fingerprint, answer)
        return answer

    def _check_key(self, key: str, fingerprint: str, request_id: str) -> Answer | None:
        """A replay or a refusal when the key was seen; None when the call must run."""
        if not key or len(key) > _IDEMPOTENCY_KEY_CHARS_MAX:
            error = StripeError(400, f"Idempotency-Key must be 1 to "
                                f"{_IDEMPOTENCY_KEY_CHARS_MAX} characters",
                                type="idempotency_error")
            return Answer(status_code=400, body=error.to_json(), request_id=request_id)
        cached = self._idempotency.get(key)
        if cached is None:
            return None
        if cached.fingerprint != _digest(fingerprint):
            error = StripeError(
                400, f"Keys for idempotent requests can only be used with the same parameters "
                f"they were first used with. Try using a key other than '{key}' if you meant "
                "to execute a different request.", type="idempotency_error")
            return Answer(status_code=400, body=error.to_json(), request_id=request_id)
        return Answer(status_code=cached.status_code, body=json.loads(cached.body_json),
                      request_id=cached.request_id, replayed=True)

    def _remember(self, key: str, fingerprint: str, answer: Answer) -> None:
        # Compact: the SDK sends a key with every POST, so there may be very many.
        self._idempotency[key] = _Remembered(
            fingerprint=_digest(fingerprint), status_code=answer.status_code,
            body_json=json.dumps(answer.body, separators=(",", ":")),
            request_id=answer.request_id)
        if len(self._idempotency) > self._idempotency_keys_max:
            self._idempotency.popitem(last=False)

    def _check_room(self) -> None:
        kept = len(self.intents) + len(self.refunds) + len(self.disputes) + len(self.events)
        if kept + 2 > self._objects_max:  # one object and one event at most per call
            raise StripeError(503, f"the simulator holds {kept} objects, its limit; reset it "
                              "(POST /_tokenchaos/reset) or start a fresh one",
                              type="api_error")

    # -- reads -----------------------------------------------------------------------------

    def retrieve(self, kind: str, object_id: str, params: Mapping[str, Any]) -> Answer:
        """GET one object: ``payment_intent``, ``charge``, ``refund``, ``dispute``, ``event``."""
        request_id = self._request_ids.new("req", 14)
        try:
            body = operations.READERS[kind](self, object_id, params)
        except StripeError as error:
            return Answer(status_code=error.status_code, body=error.to_json(),
                          request_id=request_id)
        return Answer(status_code=200, body=body, request_id=request_id)

    def list_events(self, params: Mapping[str, Any]) -> Answer:
        """GET /v1/events: newest first, ``limit`` 1–100, ``type`` (``*`` suffix), paging."""
        request_id = self._request_ids.new("req", 14)
        try:
            reject_unknown(params, frozenset({"limit", "type", "starting_after"}))
            limit = int_param(params, "limit", maximum=_EVENTS_PAGE_MAX) or 10
            wanted = str_param(params, "type")
            after = str_param(params, "starting_after")
        except StripeError as error:
            return Answer(status_code=error.status_code, body=error.to_json(),
                          request_id=request_id)
        page: list[dict[str, Any]] = []
        skipping = after is not None
        for event in reversed(self.events):  # bounded by objects_max
            if skipping:
                skipping = event["id"] != after
                continue
            if wanted is None or _type_matches(event["type"], wanted):
                page.append(copy.deepcopy(event))
                if len(page) > limit:
                    break
        body = {"object": "list", "url": "/v1/events", "has_more": len(page) > limit,
                "data": page[:limit]}
        return Answer(status_code=200, body=body, request_id=request_id)

    def event(self, event_id: str) -> dict[str, Any]:
        found = self._events_by_id.get(event_id)
        if found is None:
            raise StripeError(404, f"No such event: '{event_id}'", code="resource_missing",
                              param="id")
        return copy.deepcopy(found)

    def latest_event(self, intent_id: str, event_type: str) -> dict[str, Any] | None:
        for event in reversed(self.events):  # bounded by objects_max
            if event["type"] == event_type and self._event_intents[event["id"]] == intent_id:
                found: dict[str, Any] = copy.deepcopy(event)
                return found
        return None

    # -- what operations use ---------------------------------------------------------------

    def intent(self, intent_id: str | None, *, param: str = "intent") -> IntentRecord:
        intent = self.intents.get(intent_id or "")
        if intent is None:
            raise StripeError(404, f"No such payment_intent: '{intent_id}'",
                              code="resource_missing", param=param)
        return intent

    def emit(self, event_type: str, data_object: Mapping[str, Any], *, intent_id: str | None,
             previous_attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record one event, a snapshot of ``data_object`` now, and queue it for delivery."""
        assert event_type in EVENT_TYPES, event_type
        data: dict[str, Any] = {"object": copy.deepcopy(dict(data_object))}
        if previous_attributes:
            data["previous_attributes"] = dict(previous_attributes)
        event = build_event(self.ids.new("evt"), event_type, data, created=self.now(),
                            pending_webhooks=self.webhook_endpoints_count,
                            request=dict(self._request))
        self.events.append(event)
        self._events_by_id[event["id"]] = event
        self._event_intents[event["id"]] = intent_id
        self._outbox.append(copy.deepcopy(event))
        return event

    def forget_events(self) -> None:
        """Between scenarios: events go, intents and their money stay."""
        self.events.clear()
        self._events_by_id.clear()
        self._event_intents.clear()

    # -- truth -----------------------------------------------------------------------------

    def truth_json(self) -> dict[str, Any]:
        """Intents (with refunds and disputes folded in) and events, as the checkers read them.

        Returns:
            ``{intents: [{id, amount, currency, status, metadata, latest_charge,
            amount_refunded, dispute, idempotency_key, created}], events: [{id, type,
            intent_id, created}]}``, in creation order.
        """
        intents = [self._intent_truth(intent) for intent in self.intents.values()]
        events = [{"id": e["id"], "type": e["type"], "intent_id": self._event_intents[e["id"]],
                   "created": e["created"]} for e in self.events]
        return {"intents": intents, "events": events}

    def _intent_truth(self, intent: IntentRecord) -> dict[str, Any]:
        charge = self.charges.get(intent.latest_charge or "")
        refunded = charge.amount_refunded if charge is not None else 0
        dispute = self.disputes.get(charge.dispute_id or "") if charge is not None else None
        assert 0 <= refunded <= intent.amount, (intent.id, refunded)
        if refunded:
            assert intent.status == "succeeded", (intent.id, intent.status)
        return {
            "id": intent.id, "amount": intent.amount, "currency": intent.currency,
            "status": intent.status, "metadata": dict(intent.metadata),
            "latest_charge": intent.latest_charge, "amount_refunded": refunded,
            "dispute": None if dispute is None else {
                "id": dispute.id, "status": dispute.status, "amount": dispute.amount},
            "idempotency_key": intent.idempotency_key, "created": intent.created,
        }

    # -- JSON views used by operations and the envelope builder ---------------------------

    def intent_view(self, intent: IntentRecord, expand: frozenset[str]) -> dict[str, Any]:
        charge = self.charges.get(intent.latest_charge or "")
        expanded = charge_json(charge) if "latest_charge" in expand and charge else None
        return intent_json(intent, charge=expanded)

    def refund_view(self, refund: RefundRecord, expand: frozenset[str]) -> dict[str, Any]:
        body = refund_json(refund)
        if "charge" in expand:
            body["charge"] = charge_json(self.charges[refund.charge_id])
        if "payment_intent" in expand:
            body["payment_intent"] = intent_json(self.intents[refund.intent_id])
        return body

    def dispute_view(self, dispute: DisputeRecord, expand: frozenset[str]) -> dict[str, Any]:
        body = dispute_json(dispute, metadata=self.intents[dispute.intent_id].metadata)
        if "charge" in expand:
            body["charge"] = charge_json(self.charges[dispute.charge_id])
        if "payment_intent" in expand:
            body["payment_intent"] = intent_json(self.intents[dispute.intent_id])
        return body


def build_event(event_id: str, event_type: str, data: Mapping[str, Any], *, created: int,
                pending_webhooks: int, request: Mapping[str, Any]) -> dict[str, Any]:
    """A Stripe event envelope around ``data`` (``{object, previous_attributes?}``)."""
    return {
        "id": event_id, "object": "event", "api_version": API_VERSION, "created": created,
        "data": dict(data), "livemode": False, "pending_webhooks": pending_webhooks,
        "request": dict(request), "type": event_type,
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _type_matches(event_type: str, wanted: str) -> bool:
    if wanted.endswith("*"):
        return event_type.startswith(wanted[:-1])
    return event_type == wanted

