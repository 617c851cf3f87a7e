"""The harness's own event-loop lag: how late the loop wakes a task that asked to sleep.

A latency the runner records includes the time its event loop took to get back to the op
after the answer arrived. ``LoopLagMonitor`` runs beside a scenario and, every
``interval_s``, sleeps and measures how much later than asked it woke (the drift of a
monotonic clock past the wake-up asked for). The lags go into a ``LagHistogram`` of fixed,
log-spaced buckets (16 per power of two: a quantile is read to within 1/16 of its value),
so memory stays bounded however long the run; ``summary()`` gives p50, p99 and max
(exact). A high lag is a performance finding about the harness, never a verdict about the
target: it says how far the run's latencies can be trusted.

Nothing here judges, and only ``LoopLagMonitor`` touches the loop; the histogram is pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["LAG_INTERVAL_S", "LagHistogram", "LagSummary", "LoopLagMonitor", "lag_line",
           "run_lag_line"]

LAG_INTERVAL_S = 0.01  # one wake-up every 10 ms: about 0.2% of a core
_SUB_BUCKETS = 16  # buckets per power of two
_SUB_BITS = 4
assert 1 << _SUB_BITS == _SUB_BUCKETS
_LAG_US_MAX = 1 << 40  # a lag past 12 days is a bug in the clock, not a lag


@dataclass(frozen=True, slots=True, kw_only=True)
class LagSummary:
    """The loop's lag over a run, in microseconds; quantiles are bucket upper bounds."""

    samples_count: int
    lag_us_p50: int
    lag_us_p99: int
    lag_us_max: int

    def __post_init__(self) -> None:
        assert self.samples_count >= 0
        assert 0 <= self.lag_us_p50 <= self.lag_us_p99, (self.lag_us_p50, self.lag_us_p99)
        assert self.lag_us_p99 <= self.lag_us_max, (self.lag_us_p99, self.lag_us_max)

    def to_stats(self) -> dict[str, int]:
        """The figures as a scenario's stats keys (run.json ``stats``)."""
        return {"loop_lag_samples_count": self.samples_count,
                "loop_lag_us_p50": self.lag_us_p50, "loop_lag_us_p99": self.lag_us_p99,
                "loop_lag_us_max": self.lag_us_max}

    @classmethod
    def from_stats(cls, stats: Mapping[str, object]) -> LagSummary | None:
        """The summary kept in a scenario's stats; None when that run did not measure it."""
        values: list[int] = []
        for key in ("loop_lag_samples_count", "loop_lag_us_p50", "loop_lag_us_p99",
                    "loop_lag_us_max"):
            value = stats.get(key)
            if isinstance(value, bool) or not isinstance(value, int):
                return None
            values.append(value)
        count, p50, p99, lag_max = values
        return cls(samples_count=count, lag_us_p50=p50, lag_us_p99=p99, lag_us_max=lag_max)


@dataclass(slots=True)
class LagHistogram:
    """Counts of lags in log-spaced buckets (bounded: at most ~600 buckets), and the max."""

    counts: Counter[int] = field(default_factory=Counter)
    samples_count: int = 0
    lag_us_max: int = 0

    def add(self, lag_us: int) -> None:
        """Count one lag; a negative one (a clock read early) counts as 0."""
        lag_us = min(max(lag_us, 0), _LAG_US_MAX)
        self.counts[_bucket_index(lag_us)] += 1
        self.samples_count += 1
        self.lag_us_max = max(self.lag_us_max, lag_us)

    def summary(self) -> LagSummary:
        """p50, p99 (each the upper bound of its bucket, never above the max) and the max."""
        return LagSummary(samples_count=self.samples_count,
                          lag_us_p50=self._quantile(0.50), lag_us_p99=self._quantile(0.99),
                          lag_us_max=self.lag_us_max)

    def _quantile(self, q: float) -> int:
        assert 0 < q < 1
        if self.samples_count == 0:
            return 0
        rank = max(1, math.ceil(q * self.samples_count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(_bucket_upper_us(index), self.lag_us_max)
        raise AssertionError("the counts sum to samples_count")


def _bucket_index(lag_us: int) -> int:
    """Exact below 16 µs; above, 16 buckets per power of two."""
    if lag_us < _SUB_BUCKETS:
        return lag_us
    shift = lag_us.bit_length() - _SUB_BITS - 1
    return _SUB_BUCKETS * (shift + 1) + ((lag_us >> shift) - _SUB_BUCKETS)


def _bucket_upper_us(index: int) -> int:
    """The largest lag that falls in bucket ``index``."""
    if index < _SUB_BUCKETS:
        return index
    shift = index // _SUB_BUCKETS - 1
    sub = index % _SUB_BUCKETS + _SUB_BUCKETS
    return ((sub + 1) << shift) - 1


class LoopLagMonitor:
    """Samples the running loop's lag until stopped: ``start()``, then ``await stop()``."""

    def __init__(self, *, interval_s: float = LAG_INTERVAL_S) -> None:
        assert interval_s > 0
        self.interval_s = interval_s
        self.histogram = LagHistogram()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        assert self._task is None, "a monitor is started once"
        self._task = asyncio.get_running_loop().create_task(self._sample(),
                                                            name="loop-lag-monitor")

    async def stop(self) -> LagSummary:
        """Stop sampling; return the summary of what was sampled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.histogram.summary()

    async def _sample(self) -> None:
        # ``time.monotonic`` rather than ``loop.time()``: uvloop's loop clock ticks in whole
        # milliseconds, too coarse for a lag of a fraction of one.
        while True:  # bounded by its owner: stop() cancels it when the scenario ends
            expected_s = time.monotonic() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.histogram.add(round((time.monotonic() - expected_s) * 1e6))


def lag_line(summary: LagSummary) -> str:
    """The lag in one line, worded as a finding about the harness, not a verdict."""
    return (f"harness event-loop lag (how late the harness itself woke; a performance "
            f"finding, not a verdict): p50 {summary.lag_us_p50 / 1000:.1f} ms, p99 "
            f"{summary.lag_us_p99 / 1000:.1f} ms, max {summary.lag_us_max / 1000:.1f} ms "
            f"over {summary.samples_count} samples; latencies are trustworthy to about "
            f"the p99")


def run_lag_line(lags: Mapping[str, LagSummary], workers: Mapping[str, object]) -> str | None:
    """The lag of a whole run in one line: the worst scenario's p99 and max, by name.

    Args:
        lags: each scenario's summary, by scenario name, in run order.
        workers: each scenario's ``workers_count``, by name.
    """
    if not lags:
        return None
    worst_p99 = max(lags, key=lambda name: lags[name].lag_us_p99)
    worst_max = max(lags, key=lambda name: lags[name].lag_us_max)
    p50_max = max(summary.lag_us_p50 for summary in lags.values())
    counts = sorted({str(workers.get(name, "?")) for name in lags})
    return (f"harness event-loop lag (how late the harness itself woke; a performance "
            f"finding, not a verdict): p50 at most {p50_max / 1000:.1f} ms, p99 at most "
            f"{lags[worst_p99].lag_us_p99 / 1000:.1f} ms ({worst_p99}), max "
            f"{lags[worst_max].lag_us_max / 1000:.1f} ms ({worst_max}) over "
            f"{sum(s.samples_count for s in lags.values())} samples in {len(lags)} scenarios; "
            f"workers per scenario: {', '.join(counts)} (run.json has each scenario's)")
