"""errors: the service never answers 5xx, and no op outlasts a latency bound the user set.

Bad input gets a 4xx, and transient database trouble (deadlocks, serialization failures)
is retried inside the service, so a 5xx is always a defect. A slow op is not: how long an
op takes depends on the machine as much as on the service, so by default slowness is only
measured (``harness.checkers.latency``) and reported as a performance finding. Only when
the user asks for a bound (``CheckInput.latency_ms_max``, from ``--latency-bound-ms``) is
an op past it a ``slow_op`` anomaly. A deadlock or lock wait that really happens shows as
what it is: the 5xx the service answered, or a timeout (an INFO op, which reconciliation
treats as indeterminate). Only ops sent to the target are judged, and the provider's
webhook deliveries to it: the provider's own API is the harness's business, not the
target's.

An event whose every genuine delivery was answered 5xx was never applied, and the provider
gave up on it: one anomaly states the effect that went missing (the credit, the refund,
the dispute) instead of one per delivery. A 5xx answer is quoted from the body excerpt the
history kept (``body_excerpt``), else from the service's error code.

What happens during an injected fault is the fault's doing, not a defect: an op whose
[invoke, completion] overlaps a fault's window (``FaultWindow.covers``, injection to
recovery) and that was answered 5xx, timed out, lost its connection or, with a latency
bound, was slow, is counted ``during_fault`` and is no anomaly. The same answers outside
every window stay anomalies. Webhook deliveries are timed on the provider's wall clock;
a window carries its offset to it (``FaultWindow.covers_wall``), and a delivery answered
5xx inside a window is excused the same way.
"""

from __future__ import annotations

from harness.checkers.base import (
    CheckInput,
    OpPair,
    Sampler,
    conclude,
    describe_op,
    fault_during,
    op_pairs,
)
from harness.checkers.intents import (
    DISPUTE_CLOSED_EVENT_TYPE,
    DISPUTE_CREATED_EVENT_TYPE,
    REFUNDED_EVENT_TYPE,
    SUCCEEDED_EVENT_TYPE,
    Intents,
    model_intents,
)
from harness.checkers.latency import TARGET_FS
from harness.model import Anomaly, Delivery, Event, Kind, ProviderTruth, Verdict

__all__ = ["SERVER_ERROR", "check_errors"]

SERVER_ERROR = "server_error_5xx"  # how the protocol reads a 5xx; ": <service code>" may follow
_NS_PER_MS = 1_000_000
BODY_EXCERPT_CHARS_QUOTED_MAX = 200  # of a 5xx's body, quoted in one sentence

# Enum members read once per op, as module constants: ``Kind.OK`` is an attribute
# lookup on an Enum class, several times slower than reading a global.
_INFO, _FAIL = Kind.INFO, Kind.FAIL


def check_errors(inp: CheckInput) -> Verdict:
    """Flag every 5xx answer, and every op slower than the user's bound if one was given.

    Anomaly kinds: ``server_error`` (an op or a webhook delivery answered 5xx, or an
    indeterminate op whose error was a 5xx), ``webhook_never_applied`` (every genuine
    delivery of one event answered 5xx: its effect is stated), ``slow_op`` (only with
    ``latency_ms_max``).

    Count keys: ``ops_checked``, ``deliveries_checked``, ``latency_ms_observed_max``,
    ``during_fault`` (ops answered 5xx, timed out, cut off or slow inside a fault's window:
    excused).
    """
    sampler = Sampler()
    ops_checked = 0
    during_fault = 0
    latency_ns_max = 0
    for pair in op_pairs(inp):
        completion = pair.completion
        if completion is None or pair.invoke.f not in TARGET_FS:
            continue
        ops_checked += 1
        latency_ns = completion.time_ns - pair.invoke.time_ns
        if latency_ns > latency_ns_max:
            latency_ns_max = latency_ns
        status = completion.status_code
        kind = completion.kind
        server_error = (status is not None and status >= 500) or (
            kind == _INFO and (completion.error or "").startswith(SERVER_ERROR))
        slow = inp.latency_ms_max is not None and latency_ns > inp.latency_ms_max * _NS_PER_MS
        troubled = server_error or slow or kind == _INFO or (
            kind == _FAIL and status is None)
        if troubled and inp.faults and fault_during(inp.faults, pair) is not None:
            during_fault += 1
            continue
        if server_error:
            _server_error(pair, sampler)
        if slow:
            assert inp.latency_ms_max is not None
            _slow_op(pair, latency_ns, inp.latency_ms_max, sampler)
    deliveries_checked = deliveries_during_fault = 0
    if inp.truth is not None:
        deliveries_checked = len(inp.truth.deliveries)
        deliveries_during_fault = sum(
            1 for d in inp.truth.deliveries if _is_5xx(d.status_code) and any(
                w.covers_wall(d.started_ns, d.finished_ns) for w in inp.faults))
        _check_deliveries(inp, inp.truth, sampler)
    counts = {"ops_checked": ops_checked, "deliveries_checked": deliveries_checked,
              "latency_ms_observed_max": latency_ns_max // _NS_PER_MS,
              "during_fault": during_fault + deliveries_during_fault}
    checked = ops_checked + deliveries_checked > 0
    return conclude(sampler, counts, checked=checked,
                    unknown_note=None if checked else "no op reached the service")


def _check_deliveries(inp: CheckInput, truth: ProviderTruth, sampler: Sampler) -> None:
    by_event: dict[str, list[Delivery]] = {}
    for delivery in truth.deliveries:
        if not delivery.variant.forged:
            by_event.setdefault(delivery.event_id, []).append(delivery)
    lost = {event_id for event_id, attempts in by_event.items()
            if all(_is_5xx(d.status_code) for d in attempts)}
    intents = model_intents(inp) if lost else None
    for event_id in sorted(lost, key=lambda e: by_event[e][0].index):
        _never_applied(by_event[event_id], truth, intents, sampler)
    for delivery in truth.deliveries:
        if delivery.event_id in lost and not delivery.variant.forged:
            continue  # stated once, with its effect
        if _is_5xx(delivery.status_code):
            if any(w.covers_wall(delivery.started_ns, delivery.finished_ns) for w in inp.faults):
                continue  # answered during a fault (counted in deliveries_during_fault)
            text = (f"Webhook delivery {delivery.index} ({delivery.variant} "
                    f"{delivery.event_type} for {delivery.intent_id}) was answered "
                    f"{delivery.status_code}.")
            sampler.add(Anomaly(kind="server_error", event_indexes=(), expected="< 500",
                                observed=delivery.status_code or SERVER_ERROR,
                                explanation=text, delivery_indexes=(delivery.index,)))


def _is_5xx(status_code: int | None) -> bool:
    return status_code is not None and status_code >= 500


def _never_applied(attempts: list[Delivery], truth: ProviderTruth, intents: Intents | None,
                   sampler: Sampler) -> None:
    first = attempts[0]
    statuses = sorted({d.status_code for d in attempts if d.status_code is not None})
    answered = " or ".join(str(code) for code in statuses)
    every = ("its one delivery was" if len(attempts) == 1
             else f"every one of its {len(attempts)} deliveries was")
    effect = _effect(first, truth, intents)
    text = f"{effect} was never applied: {every} answered {answered}."
    sampler.add(Anomaly(kind="webhook_never_applied", event_indexes=(), expected="a 2xx",
                        observed=answered, explanation=text[0].upper() + text[1:],
                        delivery_indexes=tuple(d.index for d in attempts[:16])),
                badness=len(attempts))


def _effect(delivery: Delivery, truth: ProviderTruth, intents: Intents | None) -> str:
    """``the refund of 250 tokens for intent pi_3``: what the event should have done."""
    intent_id = delivery.intent_id or truth.event_intents.get(delivery.event_id)
    intent = truth.intents.get(intent_id or "")
    model = intents.models.get(intent_id or "") if intents is not None else None
    name = model.name() if model is not None else f"intent {intent_id}"
    if intent is None:
        return f"the {delivery.event_type} event {delivery.event_id} for {name}"
    same_type = sum(1 for e, t in truth.event_types.items()
                    if t == delivery.event_type and truth.event_intents.get(e) == intent_id)
    if delivery.event_type == SUCCEEDED_EVENT_TYPE:
        owner = f" to {intent.user}" if intent.user else ""
        return f"the credit of {intent.minted_tokens} tokens{owner} for {name}"
    if delivery.event_type == REFUNDED_EVENT_TYPE:
        tokens = intent.refund_clawback_tokens
        amount = f"{tokens} tokens" if same_type <= 1 else f"up to {tokens} tokens in all"
        return f"the refund of {amount} for {name}"
    if delivery.event_type == DISPUTE_CREATED_EVENT_TYPE:
        return f"the dispute opened on {name}, taking back {intent.minted_tokens} tokens"
    if delivery.event_type == DISPUTE_CLOSED_EVENT_TYPE:
        if intent.dispute_status == "won":
            return f"the dispute closed won on {name}, giving back its tokens"
        return f"the dispute closed {intent.dispute_status or ''} on {name}".replace("  ", " ")
    return f"the {delivery.event_type} event {delivery.event_id} for {name}"


def _slow_op(pair: OpPair, latency_ns: int, bound_ms: int, sampler: Sampler) -> None:
    took = f"took {latency_ns // _NS_PER_MS} ms"
    if pair.kind == Kind.INFO:
        took += f" and ended indeterminate ({pair.error or 'no answer'})"
    text = (f"Let A be {describe_op(pair.f, pair.index, pair.invoke.value)}: it {took}, "
            f"past the {bound_ms} ms latency bound this run was given.")
    sampler.add(Anomaly(kind="slow_op", event_indexes=pair.event_indexes,
                        expected=f"<= {bound_ms} ms", observed=f"{latency_ns // _NS_PER_MS} ms",
                        explanation=text), badness=latency_ns)


def _body_excerpt(completion: Event | None) -> str | None:
    """The start of a 5xx's body, as the history kept it (``Event.body_excerpt``)."""
    excerpt = completion.body_excerpt if completion is not None else None
    if excerpt is None or not excerpt.strip():
        return None
    excerpt = " ".join(excerpt.split())
    if len(excerpt) > BODY_EXCERPT_CHARS_QUOTED_MAX:
        excerpt = excerpt[:BODY_EXCERPT_CHARS_QUOTED_MAX - 1] + "…"
    return excerpt


def _server_error(pair: OpPair, sampler: Sampler) -> None:
    status = pair.status_code
    answered = f"answered {status}" if status is not None else "failed with a 5xx"
    code = (pair.error or "").removeprefix(SERVER_ERROR).removeprefix(": ")
    excerpt = _body_excerpt(pair.completion)
    if excerpt:
        answered += f", its body saying {excerpt!r}"
    elif code:
        answered += f" ({code})"
    text = (f"Let A be {describe_op(pair.f, pair.index, pair.invoke.value)}: it was "
            f"{answered}; bad input deserves a 4xx, and transient database errors a retry "
            "inside the service.")
    sampler.add(Anomaly(kind="server_error", event_indexes=pair.event_indexes,
                        expected="< 500", observed=status if status is not None else SERVER_ERROR,
                        explanation=text))
