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
"""

from __future__ import annotations

from harness.checkers.base import CheckInput, OpPair, Sampler, conclude, describe_op, pairs
from harness.checkers.latency import TARGET_FS
from harness.model import Anomaly, Kind, Verdict

__all__ = ["SERVER_ERROR", "check_errors"]

SERVER_ERROR = "server_error_5xx"  # how the protocol reads a 5xx; ": <service code>" may follow
_NS_PER_MS = 1_000_000


def check_errors(inp: CheckInput) -> Verdict:
    """Flag every 5xx answer, and every op slower than the user's bound if one was given.

    Anomaly kinds: ``server_error`` (an op or a webhook delivery answered 5xx, or an
    indeterminate op whose error was a 5xx), ``slow_op`` (only with ``latency_ms_max``).

    Count keys: ``ops_checked``, ``deliveries_checked``, ``latency_ms_observed_max``.
    """
    sampler = Sampler()
    ops_checked = 0
    latency_ns_max = 0
    for pair in pairs(inp.history):
        if pair.f not in TARGET_FS or pair.completion is None:
            continue
        ops_checked += 1
        latency_ns = pair.completion.time_ns - pair.invoke.time_ns
        latency_ns_max = max(latency_ns_max, latency_ns)
        status = pair.status_code
        if (status is not None and status >= 500) or (
                pair.kind == Kind.INFO and (pair.error or "").startswith(SERVER_ERROR)):
            _server_error(pair, sampler)
        if inp.latency_ms_max is not None and latency_ns > inp.latency_ms_max * _NS_PER_MS:
            _slow_op(pair, latency_ns, inp.latency_ms_max, sampler)
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


def _slow_op(pair: OpPair, latency_ns: int, bound_ms: int, sampler: Sampler) -> None:
    took = f"took {latency_ns // _NS_PER_MS} ms"
    if pair.kind == Kind.INFO:
        took += f" and ended indeterminate ({pair.error or 'no answer'})"
    text = (f"Let A be {describe_op(pair.f, pair.index, pair.invoke.value)}: it {took}, "
            f"past the {bound_ms} ms latency bound this run was given.")
    sampler.add(Anomaly(kind="slow_op", event_indexes=pair.event_indexes,
                        expected=f"<= {bound_ms} ms", observed=f"{latency_ns // _NS_PER_MS} ms",
                        explanation=text), badness=latency_ns)


def _server_error(pair: OpPair, sampler: Sampler) -> None:
    status = pair.status_code
    answered = f"answered {status}" if status is not None else "failed with a 5xx"
    code = (pair.error or "").removeprefix(SERVER_ERROR).removeprefix(": ")
    if code:
        answered += f" ({code})"
    text = (f"Let A be {describe_op(pair.f, pair.index, pair.invoke.value)}: it was "
            f"{answered}; bad input deserves a 4xx, and transient database errors a retry "
            "inside the service.")
    sampler.add(Anomaly(kind="server_error", event_indexes=pair.event_indexes,
                        expected="< 500", observed=status if status is not None else SERVER_ERROR,
                        explanation=text))
