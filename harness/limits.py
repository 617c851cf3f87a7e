"""Every bound the harness runs under, named ``<noun>_<unit>_<qualifier>``, in one place.

TigerBeetle's rule: put a limit on everything, and assert the relations between limits.
Loops in the runner, the provider and the faults stop at one of these and raise when they
hit it. Nothing here reads the environment: the CLI and the profile build a ``Limits``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds for one run. Defaults suit a smoke run on a 2-core machine."""

    # Concurrent ops the runner keeps outstanding: a larger --concurrency is refused (exit
    # 2), never lowered. One pooled connection per op in flight, so no op waits for one.
    ops_in_flight_max: int = 64
    connections_max: int = 64  # HTTP connections in the client pool
    op_timeout_s: float = 10.0  # one op, from invoke to completion; past it the op is INFO
    connect_timeout_s: float = 3.0
    run_duration_s_max: float = 300.0  # the whole run, scenarios included
    quiescence_timeout_s: float = 60.0  # waiting for webhook retries to drain
    # After a fault heals, until the target answers again: past it the target never
    # recovered (the durability checker's not_recovered). A service restart takes seconds.
    recovery_timeout_s: float = 30.0
    retries_max: int = 3  # client retries of one op with the same idempotency key
    history_events_max: int = 2_000_000
    ops_per_scenario_max: int = 200_000
    response_body_bytes_max: int = 1 << 20  # a larger answer is read as INFO, not parsed
    # Slowness depends on the machine as much as on the service: an op slower than
    # latency_ms_slow is a performance finding (reported, never judged). Only a bound the
    # user asks for (latency_ms_max, --latency-bound-ms) makes a slow op an anomaly.
    latency_ms_slow: int = 5_000
    latency_ms_max: int | None = None
    webhook_attempts_max: int = 8  # provider delivery attempts per event
    webhook_delay_ms_max: int = 10_000
    webhook_queue_max: int = 100_000  # deliveries the provider keeps queued
    users_max: int = 10_000

    def __post_init__(self) -> None:
        assert self.ops_in_flight_max >= 1
        assert self.connections_max >= self.ops_in_flight_max
        assert self.op_timeout_s > 0
        assert self.connect_timeout_s <= self.op_timeout_s
        assert self.run_duration_s_max > self.op_timeout_s
        assert self.quiescence_timeout_s > 0
        assert 0 < self.recovery_timeout_s < self.run_duration_s_max
        assert self.retries_max >= 0
        assert self.latency_ms_slow >= 1
        if self.latency_ms_max is not None:
            assert self.latency_ms_max >= 1
        assert self.webhook_attempts_max >= 1
        assert self.webhook_queue_max >= 1


DEFAULT_LIMITS = Limits()
