"""Latency figures of one run: performance findings, reported, never a verdict by themselves.

An op that takes long is a fact about the service *and the machine it ran on*: on a busy
2-core box the correct service is slow too. So slowness is measured here and reported
(console, ``run.json``, the HTML report) without changing the verdict. Only when the user
asks for a latency bound (``tokenchaos run --latency-bound-ms N``, ``latency_bound_ms`` in
``[tool.tokenchaos]``) does the ``errors`` checker turn an op past it into a ``slow_op``
anomaly. A deadlock or a lock wait that really happens shows as what it is: a 5xx (an
``errors`` anomaly) or a timeout (an INFO op), listed here with its error.

``measure_latency`` is a pure fold over the history, like a checker: no I/O, no clock.
Memory is bounded by the op kinds times the distinct whole-millisecond latencies (at most
``op_timeout_s`` × 1000 per kind), never by the number of ops, and the slowest ops are
kept in a heap of ``SLOWEST_OPS_MAX``.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.checkers.base import pairs
from harness.model import Event, F

__all__ = [
    "SLOWEST_OPS_MAX",
    "TARGET_FS",
    "LatencyFigures",
    "Performance",
    "SlowOp",
    "describe_performance",
    "measure_latency",
    "performance_from_json",
    "performance_to_json",
]

SLOWEST_OPS_MAX = 5  # the slowest ops a finding names, by index
# Ops sent to the target; the provider's own API is the harness's business, not the target's.
TARGET_FS = frozenset({F.PURCHASE, F.TIP, F.CALL_OPEN, F.CALL_CHARGE, F.CALL_END,
                       F.READ_BALANCE, F.WEBHOOK})
_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyFigures:
    """The latencies of one op kind, in whole milliseconds (nearest-rank quantiles)."""

    f: str
    ops_count: int  # completed ops of this kind that reached the target
    latency_ms_p50: int
    latency_ms_p99: int
    latency_ms_max: int
    slow_ops_count: int  # of them, past the threshold

    def __post_init__(self) -> None:
        assert self.ops_count >= 1, self.ops_count
        assert 0 <= self.latency_ms_p50 <= self.latency_ms_p99 <= self.latency_ms_max
        assert 0 <= self.slow_ops_count <= self.ops_count


@dataclass(frozen=True, slots=True, kw_only=True)
class SlowOp:
    """One of the slowest ops: which, how it ended, and how long it took."""

    index: int  # the history index of its invocation
    f: str
    kind: str  # "ok", "fail" or "info" (a timeout is "info", with its error)
    latency_ms: int
    error: str | None = None
    status_code: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Performance:
    """The performance findings of one scenario.

    ``latency_ms_slow`` is the threshold ops are counted against: the user's bound when one
    was asked for (``latency_ms_max``; then every slow op is also an ``errors`` anomaly),
    else the advisory ``Limits.latency_ms_slow``, which is only reported.
    """

    latency_ms_slow: int
    latency_ms_max: int | None  # the user's bound; None: slowness is not judged
    ops_measured_count: int
    slow_ops_count: int
    by_f: tuple[LatencyFigures, ...]  # sorted by op kind
    slowest: tuple[SlowOp, ...]  # slowest first, at most SLOWEST_OPS_MAX

    def __post_init__(self) -> None:
        assert self.latency_ms_slow >= 1, self.latency_ms_slow
        if self.latency_ms_max is not None:
            assert self.latency_ms_slow == self.latency_ms_max, "a bound is the threshold"
        assert 0 <= self.slow_ops_count <= self.ops_measured_count
        assert len(self.slowest) <= SLOWEST_OPS_MAX
        assert self.ops_measured_count == sum(f.ops_count for f in self.by_f)

    @property
    def judged(self) -> bool:
        """Whether slowness changes the verdict (the user asked for a bound)."""
        return self.latency_ms_max is not None


def measure_latency(history: Sequence[Event], *, latency_ms_slow: int,
                    latency_ms_max: int | None = None) -> Performance:
    """Per-kind p50/p99/max, the ops past the threshold, and the slowest few.

    Args:
        latency_ms_slow: the advisory threshold of a slow op (reported, not judged).
        latency_ms_max: the user's latency bound; when given it is the threshold instead.

    Returns:
        ``Performance``; ops that never completed are not measured (they are INFO ops,
        which the checkers already treat as indeterminate).
    """
    assert latency_ms_slow >= 1, latency_ms_slow
    threshold_ms = latency_ms_slow if latency_ms_max is None else latency_ms_max
    assert threshold_ms >= 1, threshold_ms
    histograms: dict[str, Counter[int]] = {}
    slow_by_f: Counter[str] = Counter()
    heap: list[tuple[int, int, SlowOp]] = []  # (latency_ns, -index, op): a min-heap
    for pair in pairs(history):
        if pair.f not in TARGET_FS or pair.completion is None:
            continue
        latency_ns = pair.completion.time_ns - pair.invoke.time_ns
        latency_ms = latency_ns // _NS_PER_MS
        histograms.setdefault(pair.f.value, Counter())[latency_ms] += 1
        if latency_ns > threshold_ms * _NS_PER_MS:
            slow_by_f[pair.f.value] += 1
        op = SlowOp(index=pair.index, f=pair.f.value, kind=pair.kind.value,
                    latency_ms=latency_ms, error=pair.error, status_code=pair.status_code)
        item = (latency_ns, -pair.index, op)
        if len(heap) < SLOWEST_OPS_MAX:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    by_f = tuple(_figures(f, histograms[f], slow_by_f[f]) for f in sorted(histograms))
    slowest = tuple(op for _, _, op in sorted(heap, key=lambda i: i[:2], reverse=True))
    return Performance(latency_ms_slow=threshold_ms, latency_ms_max=latency_ms_max,
                       ops_measured_count=sum(f.ops_count for f in by_f),
                       slow_ops_count=sum(slow_by_f.values()), by_f=by_f, slowest=slowest)


def _figures(f: str, histogram: Counter[int], slow_count: int) -> LatencyFigures:
    ordered = sorted(histogram.items())
    count = sum(histogram.values())
    return LatencyFigures(f=f, ops_count=count, latency_ms_p50=_rank(ordered, count, 0.5),
                          latency_ms_p99=_rank(ordered, count, 0.99),
                          latency_ms_max=ordered[-1][0], slow_ops_count=slow_count)


def _rank(ordered: Sequence[tuple[int, int]], count: int, q: float) -> int:
    """The nearest-rank quantile of a histogram given as sorted (value, count) pairs."""
    rank = min(count, max(1, math.ceil(q * count)))
    seen = 0
    for value, value_count in ordered:
        seen += value_count
        if seen >= rank:
            return value
    raise AssertionError("a rank within the count is always reached")


def describe_performance(name: str, performance: Performance) -> list[str]:
    """The findings in words, for the console: nothing when no op was slow.

    The first line says whether the finding is judged, so a reader never mistakes a slow
    machine for a broken service, nor a bound they set for a mere report.
    """
    if performance.slow_ops_count == 0:
        return []
    if performance.judged:
        how = "each is a slow_op anomaly of the errors checker (--latency-bound-ms)"
    else:
        how = ("a performance finding, not a broken invariant; --latency-bound-ms N "
               "makes it one")
    lines = [f"{name}: {performance.slow_ops_count} of {performance.ops_measured_count} ops "
             f"took longer than {performance.latency_ms_slow} ms: {how}"]
    for figures in performance.by_f:
        if figures.slow_ops_count:
            lines.append(f"  {figures.f}: p50 {figures.latency_ms_p50} ms, p99 "
                         f"{figures.latency_ms_p99} ms, max {figures.latency_ms_max} ms; "
                         f"{figures.slow_ops_count} of {figures.ops_count} slow")
    lines.append("  slowest: " + ", ".join(_describe_op(op) for op in performance.slowest))
    return lines


def _describe_op(op: SlowOp) -> str:
    ended = op.kind if op.error is None else f"{op.kind}: {op.error}"
    return f"{op.f} #{op.index} {op.latency_ms} ms ({ended})"


# ---------------------------------------------------------------------------------------
# JSON (run.json's "performance" of a scenario; the shape is in run.schema.json).


def performance_to_json(performance: Performance) -> dict[str, Any]:
    return {
        "latency_ms_slow": performance.latency_ms_slow,
        "latency_ms_max": performance.latency_ms_max,
        "ops_measured_count": performance.ops_measured_count,
        "slow_ops_count": performance.slow_ops_count,
        "by_f": [{"f": f.f, "ops_count": f.ops_count, "latency_ms_p50": f.latency_ms_p50,
                  "latency_ms_p99": f.latency_ms_p99, "latency_ms_max": f.latency_ms_max,
                  "slow_ops_count": f.slow_ops_count} for f in performance.by_f],
        "slowest": [{"index": op.index, "f": op.f, "kind": op.kind,
                     "latency_ms": op.latency_ms, "error": op.error,
                     "status_code": op.status_code} for op in performance.slowest],
    }


def performance_from_json(data: Mapping[str, Any]) -> Performance:
    """The inverse of ``performance_to_json``.

    Raises:
        KeyError, TypeError, ValueError: the data is malformed or inconsistent.
    """
    try:
        return _performance_from_json(data)
    except AssertionError as exc:  # figures that contradict each other: not ours to trust
        raise ValueError(f"inconsistent performance figures: {exc or data!r}") from exc


def _performance_from_json(data: Mapping[str, Any]) -> Performance:
    bound = data["latency_ms_max"]
    return Performance(
        latency_ms_slow=int(data["latency_ms_slow"]),
        latency_ms_max=None if bound is None else int(bound),
        ops_measured_count=int(data["ops_measured_count"]),
        slow_ops_count=int(data["slow_ops_count"]),
        by_f=tuple(LatencyFigures(f=str(f["f"]), ops_count=int(f["ops_count"]),
                                  latency_ms_p50=int(f["latency_ms_p50"]),
                                  latency_ms_p99=int(f["latency_ms_p99"]),
                                  latency_ms_max=int(f["latency_ms_max"]),
                                  slow_ops_count=int(f["slow_ops_count"]))
                   for f in data["by_f"]),
        slowest=tuple(SlowOp(index=int(op["index"]), f=str(op["f"]), kind=str(op["kind"]),
                             latency_ms=int(op["latency_ms"]), error=op.get("error"),
                             status_code=op.get("status_code"))
                      for op in data["slowest"]),
    )
