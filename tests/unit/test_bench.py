from pathlib import Path

from harness.bench import bench_checkers, synthetic_input
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


def test_bench_command_prints_a_row_per_size_and_saves_json(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from harness.cli import app

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--ops", "300", "--ops", "600",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 3  # header and two rows
    assert [row["ops"] for row in json.loads(out.read_text())["checkers"]] == [300, 600]
