"""The loop-lag summary: bounded buckets, quantiles within a bucket, the max exact."""

from __future__ import annotations

import pytest

from harness.loop_lag import LagHistogram, LagSummary, lag_line, run_lag_line


def _histogram(lags_us: list[int]) -> LagHistogram:
    histogram = LagHistogram()
    for lag_us in lags_us:
        histogram.add(lag_us)
    return histogram


def test_an_empty_histogram_summarises_to_zeros() -> None:
    assert LagHistogram().summary() == LagSummary(samples_count=0, lag_us_p50=0,
                                                  lag_us_p99=0, lag_us_max=0)


def test_small_lags_are_exact() -> None:
    summary = _histogram([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).summary()
    assert (summary.samples_count, summary.lag_us_p50, summary.lag_us_max) == (10, 5, 10)
    assert summary.lag_us_p99 == 10


def test_quantiles_are_within_a_sixteenth_and_the_max_is_exact() -> None:
    lags = [200 + i for i in range(990)] + [50_000 + 1_000 * i for i in range(10)]
    summary = _histogram(lags).summary()
    assert summary.lag_us_max == 59_000
    true_p50, true_p99 = sorted(lags)[499], sorted(lags)[989]
    assert true_p50 <= summary.lag_us_p50 <= true_p50 * 17 / 16
    assert true_p99 <= summary.lag_us_p99 <= true_p99 * 17 / 16


def test_memory_stays_bounded_however_many_and_wide_the_lags() -> None:
    histogram = _histogram([i * 7_919 % 10_000_000 for i in range(100_000)])
    assert len(histogram.counts) < 400
    assert histogram.samples_count == 100_000


def test_a_negative_lag_counts_as_zero() -> None:
    assert _histogram([-5]).summary().lag_us_max == 0


def test_the_summary_round_trips_through_a_scenarios_stats() -> None:
    summary = _histogram([100, 2_000, 30_000]).summary()
    stats = {"workers_count": 16, **summary.to_stats()}
    assert LagSummary.from_stats(stats) == summary
    assert LagSummary.from_stats({"workers_count": 16}) is None


@pytest.mark.parametrize("word", ["performance finding, not a verdict", "p99 ", "3 samples"])
def test_the_line_is_a_finding_about_the_harness(word: str) -> None:
    assert word in lag_line(_histogram([100, 2_000, 30_000]).summary())


def test_the_runs_line_names_the_worst_scenario_and_the_workers() -> None:
    lags = {"calm": _histogram([100, 200]).summary(), "busy": _histogram([100, 90_000]).summary()}
    line = run_lag_line(lags, {"calm": 32, "busy": 32})
    assert line is not None
    assert "(busy)" in line and "not a verdict" in line
    assert "workers per scenario: 32" in line
    assert run_lag_line({}, {}) is None
