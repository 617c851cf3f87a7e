"""errors: the service never answers 5xx and never takes longer than the latency bound.

Bad input gets a 4xx, and transient database trouble (deadlocks, serialization failures)
is retried inside the service, so a 5xx is always a defect; so is an op that waited past
``latency_ms_max`` (a lock wait, a deadlock resolved by timeout). Only ops sent to the
target are judged, and the provider's webhook deliveries to it: the provider's own API
is the harness's business, not the target's.
"""

from __future__ import annotations

from harness.checkers.base import CheckInput, OpPair, Sampler, conclude, describe_op, pairs
from harness.model import Anomaly, F, Kind, Verdict

__all__ = ["SERVER_ERROR", "check_errors"]

SERVER_ERROR = "server_error_5xx"  # the transport's error code for a 5xx answer
_TARGET_FS = frozenset({F.PURCHASE, F.TIP, F.CALL_OPEN, F.CALL_CHARGE, F.CALL_END,
                        F.READ_BALANCE, F.WEBHOOK})
_NS_PER_MS = 1_000_000


def check_errors(inp: CheckInput) -> Verdict:
    """Flag every 5xx answer and every op slower than ``latency_ms_max``.

    Anomaly kinds: ``server_error`` (an op or a webhook delivery answered 5xx, or an
    indeterminate op whose error was a 5xx), ``slow_op``.

    Count keys: ``ops_checked``, ``deliveries_checked``, ``latency_ms_observed_max``.
    """
    sampler = Sampler()
    ops_checked = 0
    latency_ns_max = 0
    bound_ns = inp.latency_ms_max * _NS_PER_MS
    for pair in pairs(inp.history):
        if pair.f not in _TARGET_FS or pair.completion is None:
            continue
        ops_checked += 1
        latency_ns = pair.completion.time_ns - pair.invoke.time_ns
        latency_ns_max = max(latency_ns_max, latency_ns)
        status = pair.status_code
        if (status is not None and status >= 500) or (
                pair.kind == Kind.INFO and pair.error == SERVER_ERROR):
            _server_error(pair, sampler)
        if latency_ns > bound_ns:
            text = (f"Let A be {describe_op(pair.f, pair.index, pair.invoke.value)}: it took "
                    f"{latency_ns // _NS_PER_MS} ms, past the {inp.latency_ms_max} ms bound "
                    "(a lock wait or a deadlock?).")
            sampler.add(Anomaly(kind="slow_op", event_indexes=pair.event_indexes,
                                expected=f"<= {inp.latency_ms_max} ms",
                                observed=f"{latency_ns // _NS_PER_MS} ms", explanation=text),
                        badness=latency_ns)
    deliveries_checked = 0
    if inp.truth is not None:
        for delivery in inp.truth.deliveries:
            deliveries_checked += 1
            if delivery.status_code is not None and delivery.status_code >= 500:
                text = (f"Webhook delivery {delivery.index} ({delivery.variant} "
                        f"{delivery.event_type} for {delivery.intent_id}) was answered "
                        f"{delivery.status_code}.")
                sampler.add(Anomaly(kind="server_error", event_indexes=(), expected="< 500",
                                    observed=delivery.status_code, explanation=text,
                                    delivery_indexes=(delivery.index,)))
    counts = {"ops_checked": ops_checked, "deliveries_checked": deliveries_checked,
              "latency_ms_observed_max": latency_ns_max // _NS_PER_MS}
    checked = ops_checked + deliveries_checked > 0
    return conclude(sampler, counts, checked=checked,
                    unknown_note=None if checked else "no op reached the service")


def _server_error(pair: OpPair, sampler: Sampler) -> None:
    status = pair.status_code
    answered = f"answered {status}" if status is not None else "failed with a 5xx"
    text = (f"Let A be {describe_op(pair.f, pair.index, pair.invoke.value)}: it was "
            f"{answered}; bad input deserves a 4xx, and transient database errors a retry "
            "inside the service.")
    sampler.add(Anomaly(kind="server_error", event_indexes=pair.event_indexes,
                        expected="< 500", observed=status if status is not None else SERVER_ERROR,
                        explanation=text))
