"""coverage: the run provoked what its scenario exists to provoke, or it proves nothing.

A scenario lists coverage tags in ``Scenario.provokes``; ``PROVOCATIONS`` holds one
predicate per tag, each a pure function of the ``CheckInput`` that says whether the
outcome happened at least once. A run that misses a tag is "unknown", never False (the
service did nothing wrong) and never a vacuous True. Unknown tag names raise
``UsageError``: a scenario that names a tag nobody checks is a bug in the scenario.

Every predicate is one pass (most stop at the first hit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from harness.checkers.base import (
    CheckInput,
    OpPair,
    Sampler,
    conclude,
    fault_during,
    op_pairs,
    value_int,
    value_str,
)
from harness.checkers.intents import SUCCEEDED_EVENT_TYPE, parse_variant
from harness.errors import UsageError
from harness.model import TARGET_FS, Delivery, DeliveryVariant, F, Kind, Verdict

__all__ = ["PROVOCATIONS", "check_coverage", "validate_tags"]

REFUNDED = "charge.refunded"
DISPUTE_CREATED = "charge.dispute.created"


def check_coverage(inp: CheckInput) -> Verdict:
    """Check that every tag in ``inp.provokes`` happened at least once.

    No anomaly kinds: a missing tag makes the verdict "unknown", never False.

    Count keys: ``tags``, ``tags_provoked``, ``tags_missing``.

    Raises:
        UsageError: a tag has no predicate in ``PROVOCATIONS``.
    """
    validate_tags(inp.provokes)
    missing = [tag for tag in dict.fromkeys(inp.provokes) if not PROVOCATIONS[tag](inp)]
    tags = len(set(inp.provokes))
    counts = {"tags": tags, "tags_provoked": tags - len(missing), "tags_missing": len(missing)}
    if not inp.provokes:
        note = "the scenario names nothing it must provoke"
    elif missing:
        note = f"never provoked: {', '.join(missing)}"
    else:
        note = None
    return conclude(Sampler(), counts, checked=bool(inp.provokes), unknown_note=note)


def validate_tags(tags: Sequence[str]) -> None:
    """Raise ``UsageError`` naming every tag that has no predicate."""
    unknown = [tag for tag in tags if tag not in PROVOCATIONS]
    if unknown:
        raise UsageError(f"unknown coverage tag(s) {unknown}; known tags: "
                         f"{', '.join(sorted(PROVOCATIONS))}")


# ---------------------------------------------------------------------------------------
# Streams.


def _ops(inp: CheckInput, f: F, kind: Kind | None = None) -> Iterator[OpPair]:
    return (p for p in op_pairs(inp) if p.f == f and (kind is None or p.kind == kind))


def _failed(inp: CheckInput, f: F, error: str) -> bool:
    return any(p.error == error for p in _ops(inp, f, Kind.FAIL))


def _genuine_acks(inp: CheckInput) -> Iterator[Delivery]:
    if inp.truth is None:
        return iter(())
    return (d for d in inp.truth.deliveries if not d.variant.forged and d.acknowledged)


def _rejected(inp: CheckInput, stale: bool) -> bool:
    def wanted(variant: DeliveryVariant | None) -> bool:
        return variant is not None and variant.forged and (
            (variant == DeliveryVariant.STALE) == stale)

    if inp.truth is not None and any(
            wanted(d.variant) and d.status_code is not None and 400 <= d.status_code < 500
            for d in inp.truth.deliveries):
        return True
    return any(wanted(parse_variant(value_str(p.invoke.value, "variant")))
               for p in _ops(inp, F.WEBHOOK, Kind.FAIL))


# ---------------------------------------------------------------------------------------
# Predicates.


def _spend_race(inp: CheckInput) -> bool:
    """Two spends by one payer in flight at once."""
    in_flight: dict[str, int] = {}
    payer_of: dict[int, str] = {}
    for event in inp.history:
        if event.f not in (F.TIP, F.CALL_CHARGE):
            continue
        if event.kind == Kind.INVOKE:
            payer = value_str(event.value, "sender" if event.f == F.TIP else "user") or ""
            if in_flight.get(payer, 0) > 0:
                return True
            in_flight[payer] = in_flight.get(payer, 0) + 1
            payer_of[event.op_id] = payer
        else:
            payer = payer_of.pop(event.op_id, "")
            in_flight[payer] = in_flight.get(payer, 0) - 1
    return False


def _mutual_tips(inp: CheckInput) -> bool:
    """A tip A → B in flight while B → A is."""
    in_flight: dict[tuple[str | None, str | None], int] = {}
    route_of: dict[int, tuple[str | None, str | None]] = {}
    for event in inp.history:
        if event.f != F.TIP:
            continue
        if event.kind == Kind.INVOKE:
            route = (value_str(event.value, "sender"), value_str(event.value, "recipient"))
            if in_flight.get((route[1], route[0]), 0) > 0:
                return True
            in_flight[route] = in_flight.get(route, 0) + 1
            route_of[event.op_id] = route
        else:
            route = route_of.pop(event.op_id, (None, None))
            in_flight[route] = in_flight.get(route, 0) - 1
    return False


def _acknowledged_before_success(inp: CheckInput, event_type: str) -> bool:
    """Some ``event_type`` delivery was acknowledged before its intent's first success ack."""
    success_ns: dict[str | None, int] = {}
    others: list[tuple[str | None, int]] = []
    for delivery in _genuine_acks(inp):
        if delivery.event_type == SUCCEEDED_EVENT_TYPE:
            known = success_ns.get(delivery.intent_id)
            if known is None or delivery.finished_ns < known:
                success_ns[delivery.intent_id] = delivery.finished_ns
        elif delivery.event_type == event_type:
            others.append((delivery.intent_id, delivery.finished_ns))
    return any(intent in success_ns and finished_ns < success_ns[intent]
               for intent, finished_ns in others)


def _duplicate_delivery_absorbed(inp: CheckInput) -> bool:
    seen: set[str] = set()
    for delivery in _genuine_acks(inp):
        if delivery.event_id in seen:
            return True
        seen.add(delivery.event_id)
    return False


def _partial_refund(inp: CheckInput) -> bool:
    truth = inp.truth
    if truth is not None:
        refunded = {d.intent_id for d in _genuine_acks(inp) if d.event_type == REFUNDED}
        if any(0 < truth.intents[i].refunded_cents < truth.intents[i].amount_cents
               for i in refunded if i is not None and i in truth.intents):
            return True
    return _refund_ops_per_purchase(inp, partial_only=True) >= 1


def _multiple_partial_refunds(inp: CheckInput) -> bool:
    if _refund_ops_per_purchase(inp, partial_only=True) >= 2:
        return True
    if inp.truth is None:
        return False
    events_per_intent: dict[str, int] = {}
    for event_id, intent_id in inp.truth.event_intents.items():
        if inp.truth.event_types.get(event_id) == REFUNDED:
            events_per_intent[intent_id] = events_per_intent.get(intent_id, 0) + 1
    return any(count >= 2 for count in events_per_intent.values())


def _refund_ops_per_purchase(inp: CheckInput, *, partial_only: bool) -> int:
    """The most acknowledged (partial) refund ops any one purchase got."""
    per_purchase: dict[str | None, int] = {}
    for pair in _ops(inp, F.REFUND, Kind.OK):
        if partial_only and pair.invoke.value.get("amount_cents") is None:
            continue
        purchase = value_str(pair.invoke.value, "purchase")
        per_purchase[purchase] = per_purchase.get(purchase, 0) + 1
    return max(per_purchase.values(), default=0)


def _dispute_closed(inp: CheckInput, outcome: str) -> bool:
    if any(value_str(p.invoke.value, "outcome") == outcome
           for p in _ops(inp, F.DISPUTE_CLOSE, Kind.OK)):
        return True
    truth = inp.truth
    if truth is None:
        return False
    disputed = {i for e, i in truth.event_intents.items()
                if truth.event_types.get(e, "").startswith("charge.dispute.")}
    return any(truth.intents[i].dispute_status == outcome for i in disputed
               if i in truth.intents)


def _idempotent_replay(inp: CheckInput) -> bool:
    """Two acknowledged ops with one key and body, and one answer."""
    seen: dict[tuple[object, ...], object] = {}
    for pair in op_pairs(inp):
        key = pair.invoke.idempotency_key
        if key is None or pair.kind != Kind.OK:
            continue
        group = (pair.f, key, tuple(sorted(pair.invoke.value.items())))
        answer = _answer_id(pair)
        if group in seen and seen[group] == answer:
            return True
        seen.setdefault(group, answer)
    return False


def _answer_id(pair: OpPair) -> object:
    for name in ("tip_id", "charge_id", "intent_id", "call_id"):
        if name in pair.value:
            return pair.value[name]
    return None


def _retry_with_same_key(inp: CheckInput) -> bool:
    seen: set[tuple[object, ...]] = set()
    for event in inp.history:
        if event.kind != Kind.INVOKE or event.idempotency_key is None:
            continue
        group = (event.f, event.idempotency_key, tuple(sorted(event.value.items())))
        if group in seen:
            return True
        seen.add(group)
    return False


def _duplicate_minute_absorbed(inp: CheckInput) -> bool:
    """Two ops for one call minute, answered, and at most one charge made."""
    minutes: dict[tuple[str | None, int], tuple[int, set[object]]] = {}
    for pair in _ops(inp, F.CALL_CHARGE):
        if pair.kind == Kind.INFO:
            continue
        key = (value_str(pair.invoke.value, "call"), value_int(pair.invoke.value, "minute"))
        answered, ids = minutes.get(key, (0, set()))
        if pair.kind == Kind.OK:
            ids.add(pair.value.get("charge_id"))
        minutes[key] = (answered + 1, ids)
    return any(answered >= 2 and len(ids) == 1 for answered, ids in minutes.values())


def _refund_mid_call(inp: CheckInput) -> bool:
    """A refund or dispute of a user's purchase acknowledged while a call of theirs was open."""
    owner: dict[str, str] = {}
    open_calls: dict[str, set[str]] = {}  # user -> open calls
    call_user: dict[str, str] = {}
    for pair in op_pairs(inp):
        value = pair.invoke.value
        user = value_str(value, "user")
        call = value_str(value, "call")
        if pair.f == F.PURCHASE and user is not None:
            owner[value_str(value, "purchase") or ""] = user
        elif pair.f == F.CALL_OPEN and pair.kind == Kind.OK and user and call:
            open_calls.setdefault(user, set()).add(call)
            call_user[call] = user
        elif call and (pair.f == F.CALL_END or (
                pair.f == F.CALL_CHARGE and pair.error == "insufficient_funds")):
            open_calls.get(call_user.get(call, ""), set()).discard(call)
        elif (pair.f in (F.REFUND, F.DISPUTE_OPEN) and pair.kind == Kind.OK
              and open_calls.get(owner.get(value_str(value, "purchase") or "", ""))):
            return True
    return False


def _requires_action(inp: CheckInput) -> bool:
    return any(value_str(p.value, "purchase_status") == "requires_action"
               for p in _ops(inp, F.PURCHASE, Kind.OK))


def _indeterminate_op(inp: CheckInput) -> bool:
    return any(p.kind == Kind.INFO for p in op_pairs(inp))


def _fault_healed(inp: CheckInput) -> bool:
    """A fault was injected, healed, and the target answered again."""
    return any(w.error is None and w.recovered_ns is not None for w in inp.faults)


def _op_during_fault(inp: CheckInput) -> bool:
    """An op to the target was in flight while a fault was in force."""
    return bool(inp.faults) and any(
        p.f in TARGET_FS and fault_during(inp.faults, p) is not None for p in op_pairs(inp))


PROVOCATIONS: dict[str, Callable[[CheckInput], bool]] = {
    "tip_succeeded": lambda inp: any(True for _ in _ops(inp, F.TIP, Kind.OK)),
    "tip_refused_for_funds": lambda inp: _failed(inp, F.TIP, "insufficient_funds"),
    "spend_race": _spend_race,
    "mutual_tips": _mutual_tips,
    "requires_action": _requires_action,
    "card_declined": lambda inp: _failed(inp, F.PURCHASE, "card_declined"),
    "duplicate_delivery_absorbed": _duplicate_delivery_absorbed,
    "replay_absorbed": lambda inp: any(d.variant == DeliveryVariant.REPLAY
                                       for d in _genuine_acks(inp)),
    "refund_before_success": lambda inp: _acknowledged_before_success(inp, REFUNDED),
    "dispute_before_success": lambda inp: _acknowledged_before_success(inp, DISPUTE_CREATED),
    "partial_refund": _partial_refund,
    "multiple_partial_refunds": _multiple_partial_refunds,
    "refund_into_debt": lambda inp: inp.observation is not None and any(
        a.debt_tokens > 0 for a in inp.observation.accounts.values()),
    "dispute_opened": lambda inp: any(True for _ in _ops(inp, F.DISPUTE_OPEN, Kind.OK)) or any(
        d.event_type == DISPUTE_CREATED for d in _genuine_acks(inp)),
    "dispute_won": lambda inp: _dispute_closed(inp, "won"),
    "dispute_lost": lambda inp: _dispute_closed(inp, "lost"),
    "forgery_rejected": lambda inp: _rejected(inp, stale=False),
    "stale_rejected": lambda inp: _rejected(inp, stale=True),
    "idempotent_replay": _idempotent_replay,
    "key_reuse_rejected": lambda inp: any(p.error == "idempotency_conflict"
                                          for p in op_pairs(inp) if p.kind == Kind.FAIL),
    "call_charged": lambda inp: any(True for _ in _ops(inp, F.CALL_CHARGE, Kind.OK)),
    "call_ended_for_funds": lambda inp: _failed(inp, F.CALL_CHARGE, "insufficient_funds"),
    "charge_after_end_rejected": lambda inp: _failed(inp, F.CALL_CHARGE, "call_ended"),
    "duplicate_minute_absorbed": _duplicate_minute_absorbed,
    "refund_mid_call": _refund_mid_call,
    "retry_with_same_key": _retry_with_same_key,
    "indeterminate_op": _indeterminate_op,
    "fault_healed": _fault_healed,
    "op_during_fault": _op_during_fault,
}
