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
