from pathlib import Path

from harness.bench.checkers import bench_checkers, synthetic_input
from harness.checkers import check_all


def test_synthetic_history_is_correct_and_every_checker_holds_or_abstains() -> None:
    inp = synthetic_input(2_000, seed=3)
    verdicts = check_all(inp, raise_errors=True)
    assert all(v.valid is not False for v in verdicts.values()), verdicts
    assert verdicts["reconciliation"].valid is True
    assert verdicts["conservation"].valid is True


def test_bench_reports_one_figure_per_size_with_memory() -> None:
    figures = list(bench_checkers([500, 1_000], seed=2))
    assert [f.ops_count for f in figures] == [500, 1_000]
    assert all(f.events_count == 2 * f.ops_count for f in figures)
    assert all(f.peak_mib > 0 for f in figures)


def test_bench_times_every_checker_cold_and_warm() -> None:
    from harness.checkers import CHECKERS

    (figures,) = bench_checkers([400], seed=2, reps=2, trace_memory=False)
    assert figures.reps == 2
    assert list(figures.cold_seconds_by_checker) == list(CHECKERS)
    assert list(figures.warm_seconds_by_checker) == list(CHECKERS)
    assert figures.cold_seconds > 0 and figures.warm_seconds > 0
    assert figures.cold_ops_per_s > 0 and figures.peak_mib == 0


def test_bench_command_prints_a_row_per_size_and_saves_json(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from harness.cli import app

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--part", "checkers", "--ops", "300",
                                      "--ops", "600", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "checkers:" and "cold us/op" in lines[1] and "warm us/op" in lines[1]
    assert [line.split()[0] for line in lines[2:4]] == ["300", "600"]  # a row per size
    breakdown = {line.split()[0] for line in lines[6:]}  # then a line per checker
    assert {"conservation", "key_scope", "coverage"} <= breakdown
    rows = json.loads(out.read_text())["checkers"]["rows"]
    assert [row["ops"] for row in rows] == [300, 600]
    assert {"cold_us_per_op", "warm_us_per_op", "cold_ops_per_s", "peak_mib"} <= set(rows[0])
    assert set(rows[0]["checkers"]["conservation"]) == {"cold_us_per_op", "warm_us_per_op"}


def test_bench_refuses_an_unknown_part_and_ops_without_the_checkers() -> None:
    from typer.testing import CliRunner

    from harness.bench import load_parts
    from harness.cli import app
    from harness.errors import UsageError

    # main() turns a UsageError into exit 2; the app alone raises it.
    result = CliRunner().invoke(app, ["bench", "--part", "nope"])
    assert isinstance(result.exception, UsageError), result.output
    others = [name for name in load_parts() if name != "checkers"]
    if others:
        result = CliRunner().invoke(app, ["bench", "--part", others[0], "--ops", "300"])
        assert isinstance(result.exception, UsageError), result.output


def test_the_harness_part_is_registered_and_refuses_more_clients_than_workers() -> None:
    import pytest

    from harness.bench import BenchOptions, load_parts
    from harness.errors import UsageError
    from harness.limits import DEFAULT_LIMITS

    parts = load_parts()
    assert "harness" in parts
    with pytest.raises(UsageError, match="ops_in_flight_max"):
        parts["harness"](BenchOptions(clients=(DEFAULT_LIMITS.ops_in_flight_max + 1,)))


def test_the_harness_table_gives_each_reps_ratios_and_the_medians() -> None:
    from harness.bench.harness import Measurement, part_of

    def m(side: str, endpoint: str, ops: int, seconds: float, cpu_s: float) -> Measurement:
        return Measurement(side=side, endpoint=endpoint, rep=1, ops=ops, seconds=seconds,
                           cpu_s=cpu_s, kinds={"ok": ops})

    measurements = [m("tokenchaos", "healthz", 1000, 1.0, 0.1),
                    m("locust", "healthz", 1000, 2.0, 0.2),
                    m("tokenchaos", "tips", 300, 1.5, 0.3), m("locust", "tips", 300, 1.0, 0.15)]
    part = part_of(measurements, concurrency=8, duration_s=1.0)
    healthz, tips = part.rows
    assert (healthz["ratio"], healthz["cpu_ratio"]) == (2.0, 0.5)
    assert (tips["ratio"], tips["cpu_ratio"]) == (200 / 300, 2.0)
    assert healthz["ours"]["cpu_ms_per_op"] == 0.1
    assert any("healthz: median ratio 2.00x, median CPU ratio 0.50x" in n for n in part.notes)
    assert not any("not every op was OK" in n for n in part.notes)
