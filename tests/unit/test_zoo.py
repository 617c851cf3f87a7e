"""The zoo's matrix: rows from finished runs, ops to first detection, the files, the README.

Runs are hand-made records and histories; nothing here starts a stack (the end-to-end
matrix lives in ``tests/e2e/test_zoo.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.campaign import RunOutcome
from harness.errors import UsageError
from harness.history import History, ScenarioRun
from harness.model import Anomaly, Kind, Validity, Verdict
from harness.report.record import RunRecord, ScenarioRecord, TargetInfo
from harness.zoo import (
    README_BEGIN,
    README_END,
    ZOO_SCHEMA_VERSION,
    Zoo,
    ZooRow,
    ops_to_first_detection,
    readme_block,
    replace_readme_block,
    update_readme,
    write_zoo,
    zoo_markdown,
    zoo_row,
    zoo_to_json,
)
from reference_impl.flaws import FLAWS
from tests.unit.conftest import H

README = Path(__file__).resolve().parents[2] / "README.md"


def _history(ops_count: int) -> History:
    h = H()
    for index in range(ops_count):
        h.read(f"fan_{index}", 0)  # an invoke at 2 * index, its completion at 2 * index + 1
    return History(h.events)


def _scenario(name: str, ops_count: int, **verdicts: Verdict) -> ScenarioRecord:
    return ScenarioRecord(name=name, seed=1, params={}, started_ns=0, duration_s=1.0,
                          ops_count=ops_count, stats={}, verdicts=verdicts or {
                              "conservation": Verdict(valid=True)}, reproduce="")


def _broke(*event_indexes: int, delivery_indexes: tuple[int, ...] = ()) -> Verdict:
    return Verdict(valid=False, anomalies=(Anomaly(
        kind="drift", event_indexes=event_indexes, expected=0, observed=1, explanation="x",
        delivery_indexes=delivery_indexes),))


def _record(*scenarios: ScenarioRecord) -> RunRecord:
    valid: Validity = True
    if any(s.valid is False for s in scenarios):
        valid = False
    return RunRecord(run_id="r1", started_at="2026-01-01T00:00:00Z", finished_at=None,
                     tokenchaos_version="0", target=TargetInfo(profile="reference",
                                                               service_url="http://x"),
                     suite="smoke", command="tokenchaos run", valid=valid, exit_code=None,
                     scenarios=scenarios)


def _runs(record: RunRecord) -> list[ScenarioRun]:
    return [ScenarioRun(name=s.name, seed=1, params={}, users={}, target_ids={},
                        history=_history(s.ops_count)) for s in record.scenarios]


def _row(flaw: str | None, *scenarios: ScenarioRecord, wall_s: float = 2.0) -> ZooRow:
    record = _record(*scenarios)
    outcome = RunOutcome(record=record, report_dir=Path("reports/r1"), exit_code=0)
    return zoo_row(None if flaw is None else FLAWS[flaw], outcome, _runs(record), wall_s=wall_s)


def test_ops_to_first_detection_stops_where_the_first_anomaly_is_complete() -> None:
    record = _record(_scenario("a", 5),
                     _scenario("b", 6, calls=_broke(9, 0), conservation=_broke(1, 4)),
                     _scenario("c", 4, errors=_broke(0)))
    # In b, the anomaly naming #1 and #4 is complete at #4, the third op's invocation;
    # the one naming #0 and #9 only at #9.
    assert ops_to_first_detection(record, _runs(record)) == 5 + 3


def test_ops_to_first_detection_counts_a_whole_scenario_for_end_state_anomalies() -> None:
    record = _record(_scenario("a", 5), _scenario("b", 6, errors=_broke(delivery_indexes=(2,))))
    assert ops_to_first_detection(record, _runs(record)) == 11


def test_ops_to_first_detection_is_none_when_nothing_broke() -> None:
    record = _record(_scenario("a", 5), _scenario("b", 6))
    assert ops_to_first_detection(record, _runs(record)) is None


def test_row_of_a_caught_flaw_lists_scenarios_and_checkers_in_registry_order() -> None:
    row = _row("tip_lost_update", _scenario("a", 5),
               _scenario("b", 6, reconciliation=_broke(1), conservation=_broke(2)),
               _scenario("c", 4, errors=Verdict(valid="unknown")))
    assert row.scenarios_caught == ("b",)
    assert row.scenarios_unknown == ("c",)
    assert row.checkers_fired == ("conservation", "reconciliation")
    assert row.caught and row.caught_as_described and not row.clean
    assert (row.ops_to_detection, row.ops_count, row.anomalies_count) == (6, 15, 2)


def test_row_of_a_flaw_caught_by_another_checker_is_not_caught_as_described() -> None:
    row = _row("tip_lock_order_deadlock", _scenario("a", 3, calls=_broke(0)))
    assert row.caught
    assert not row.caught_as_described


def test_zoo_is_ok_only_with_a_clean_correct_service_and_every_flaw_caught_as_described() -> None:
    clean = _row(None, _scenario("a", 3))
    caught = _row("tip_lock_order_deadlock", _scenario("a", 3, errors=_broke(0)))
    missed = _row("tip_lost_update", _scenario("a", 3))
    assert clean.clean
    assert Zoo(seed=1, generated_at="2026-01-01T00:00:00Z", correct=clean,
               flaws=(caught,)).ok
    assert not Zoo(seed=1, generated_at="2026-01-01T00:00:00Z", correct=clean,
                   flaws=(caught, missed)).ok
    dirty = _row(None, _scenario("a", 3, errors=_broke(0)))
    assert not Zoo(seed=1, generated_at="2026-01-01T00:00:00Z", correct=dirty,
                   flaws=(caught,)).ok


def test_markdown_has_a_row_per_flaw_and_says_what_was_missed() -> None:
    zoo = Zoo(seed=3, generated_at="2026-01-01T00:00:00Z",
              correct=_row(None, _scenario("a", 3)),
              flaws=(_row("tip_lock_order_deadlock", _scenario("a", 3, errors=_broke(0))),
                     _row("tip_lost_update", _scenario("a", 3))))
    markdown = zoo_markdown(zoo)
    assert "seed 3" in markdown
    assert "| correct service | — | none: clean | — | — | 2.0 s |" in markdown
    assert "| `tip_lock_order_deadlock` | `tip` | a | **errors** | 1 | 2.0 s |" in markdown
    assert "| `tip_lost_update` | `tip` | **not caught** | — | — | 2.0 s |" in markdown
    assert f"- `tip_lost_update`: {FLAWS['tip_lost_update'].description}." in markdown


def test_zoo_json_is_versioned_and_written_beside_the_markdown(tmp_path: Path) -> None:
    zoo = Zoo(seed=1, generated_at="2026-01-01T00:00:00Z",
              correct=_row(None, _scenario("a", 3)),
              flaws=(_row("tip_lock_order_deadlock", _scenario("a", 3, errors=_broke(0))),))
    json_path, markdown_path = write_zoo(zoo, tmp_path)
    data = json.loads(json_path.read_text())
    assert data == zoo_to_json(zoo)
    assert data["schema_version"] == ZOO_SCHEMA_VERSION
    assert data["ok"] is True
    assert data["correct"]["caught_as_described"] is None
    assert data["correct"]["clean"] is True
    flaw = data["flaws"][0]
    assert (flaw["flaw"], flaw["operation"], flaw["caught_by"]) == (
        "tip_lock_order_deadlock", "tip", ["errors"])
    assert (flaw["scenarios_caught"], flaw["checkers_fired"], flaw["ops_to_detection"]) == (
        ["a"], ["errors"], 1)
    assert markdown_path.read_text() == zoo_markdown(zoo)


def test_readme_block_is_replaced_between_the_markers(tmp_path: Path) -> None:
    text = f"# x\n\n{README_BEGIN}\nold\n{README_END}\n\nafter\n"
    assert replace_readme_block(text, "new\n") == f"# x\n\n{README_BEGIN}\nnew\n{README_END}" \
                                                  "\n\nafter\n"
    path = tmp_path / "README.md"
    path.write_text(text)
    assert update_readme(path, "new") is True
    assert update_readme(path, "new") is False
    assert readme_block(path.read_text()).strip() == "new"


def test_readme_without_markers_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="zoo:begin"):
        replace_readme_block("# no markers\n", "x")
    with pytest.raises(UsageError, match="before"):
        replace_readme_block(f"{README_END}\n{README_BEGIN}\n", "x")
    with pytest.raises(UsageError, match="no such file"):
        update_readme(tmp_path / "missing.md", "x")


def test_readme_shows_a_matrix_row_for_every_registered_flaw() -> None:
    block = readme_block(README.read_text(encoding="utf-8"))
    assert "| correct service |" in block
    missing = [name for name in FLAWS if f"| `{name}` |" not in block]
    assert not missing, f"run `tokenchaos zoo --update-readme`; the README lacks {missing}"
    assert "**not caught**" not in block
    assert "**not clean**" not in block


def test_history_helper_puts_invokes_at_even_indexes() -> None:
    history = _history(3)
    assert [e.index for e in history if e.kind == Kind.INVOKE] == [0, 2, 4]
