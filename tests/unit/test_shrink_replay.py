"""What shrink reads from a run and writes for it: the replay spec, the scenario and
anomaly it keeps, the schedule's JSON, the reproducers, and the report's links."""

from __future__ import annotations

import ast
import dataclasses
import json
import random
from pathlib import Path

import pytest

from harness.cli import _print_outcome
from harness.errors import UsageError
from harness.history import HistoryWriter
from harness.model import Anomaly, F, Op, Verdict
from harness.report.html import render_html
from harness.report.record import RunRecord, ScenarioRecord, TargetInfo
from harness.scenario import ScenarioParams
from harness.schedule import Batch, Inject, Settle
from harness.shrink.command import shrink_command, shrunk_links
from harness.shrink.ddmin import reruns_for
from harness.shrink.replay import (
    Replayer,
    ShrinkBounds,
    broken_anomaly,
    choose_scenario,
    replay_spec,
    shrink_recorded,
)
from harness.shrink.schedule_json import (
    Recorded,
    recorded_from_json,
    recorded_from_steps,
    recorded_to_json,
)
from harness.shrink.writers import pytest_source, reproducer_names, script_source
from scenarios import get_scenario

_BROKEN = Verdict(valid=False, anomalies=(Anomaly(
    kind="tokens_destroyed", event_indexes=(3,), expected=2000, observed=1967,
    explanation="33 tokens were destroyed."),))


def _scenario(name: str, verdicts: dict[str, Verdict]) -> ScenarioRecord:
    return ScenarioRecord(name=name, seed=1, params={}, started_ns=0, duration_s=0.0,
                          ops_count=1, stats={}, verdicts=verdicts,
                          reproduce=f"tokenchaos run --scenario {name} --seed 1")


def _record(*scenarios: ScenarioRecord) -> RunRecord:
    return RunRecord(run_id="r1", started_at="2026-01-01T00:00:00Z", finished_at=None,
                     tokenchaos_version="0", target=TargetInfo(profile="p", service_url="u"),
                     suite=None, command="tokenchaos run", valid=False, exit_code=1,
                     scenarios=scenarios)


def _recorded() -> Recorded:
    params = ScenarioParams(seed=1)
    base = get_scenario("concurrent-tips")
    steps = list(base.generator(random.Random(1), params))
    return recorded_from_steps(scenario=base.name, seed=1, users=base.users(params),
                               steps=steps, checker="conservation",
                               anomaly_kind="tokens_destroyed")


def test_replay_spec_reads_the_reproduce_command_back() -> None:
    spec = replay_spec("tokenchaos run --scenario tip-cycle --seed 8 --scale 2 --concurrency "
                       "12 --flaw tip_lost_update --flaw credit_every_delivery "
                       "--latency-bound-ms 900")
    assert spec.scenario == "tip-cycle"
    assert spec.params == ScenarioParams(seed=8, scale=2, concurrency=12)
    assert spec.local
    assert spec.flaws == ("tip_lost_update", "credit_every_delivery")
    assert spec.latency_bound_ms == 900


def test_replay_spec_takes_secrets_from_the_environment() -> None:
    command = ('tokenchaos run --scenario dispute --seed 1 --target seed.toml --provider-url '
               'http://127.0.0.1:9 --provider-key "$TOKENCHAOS_PROVIDER_KEY"')
    spec = replay_spec(command, environ={"TOKENCHAOS_PROVIDER_KEY": "tck_1"})
    assert not spec.local
    assert spec.profile == "seed.toml"
    assert spec.provider_key == "tck_1"
    with pytest.raises(UsageError, match="needs TOKENCHAOS_PROVIDER_KEY"):
        replay_spec(command, environ={})


def test_replay_spec_refuses_what_is_not_a_run_of_one_scenario() -> None:
    with pytest.raises(UsageError, match="not a tokenchaos run"):
        replay_spec("tokenchaos zoo")
    with pytest.raises(UsageError, match="names no --scenario"):
        replay_spec("tokenchaos run --seed 1")


def test_shrink_takes_the_first_broken_scenario_and_its_first_anomaly() -> None:
    record = _record(_scenario("tip-cycle", {"errors": Verdict(valid=True)}),
                     _scenario("concurrent-tips", {"errors": Verdict(valid=True),
                                                   "conservation": _BROKEN}))
    chosen = choose_scenario(record, None)
    assert chosen.name == "concurrent-tips"
    assert broken_anomaly(chosen) == ("conservation", "tokens_destroyed")


def test_shrink_refuses_a_run_or_scenario_that_broke_nothing() -> None:
    record = _record(_scenario("tip-cycle", {"errors": Verdict(valid=True)}))
    with pytest.raises(UsageError, match="broke no invariant"):
        choose_scenario(record, None)
    with pytest.raises(UsageError, match="broke no invariant"):
        choose_scenario(record, "tip-cycle")
    with pytest.raises(UsageError, match="has no scenario dispute"):
        choose_scenario(record, "dispute")


def test_a_recorded_schedule_reads_back_from_its_json() -> None:
    recorded = _recorded()
    data = json.loads(json.dumps(recorded_to_json(recorded)))
    assert recorded_from_json(data) == recorded


def test_a_schedule_with_faults_is_refused() -> None:
    base = get_scenario("crash-during-spends")
    inject = Inject(fault=base.faults[0], name="f0", hold_ms=0)
    with pytest.raises(UsageError, match="injects faults"):
        recorded_from_steps(scenario=base.name, seed=1, users={}, steps=[inject],
                            checker="durability", anomaly_kind="lost")


def test_fewer_batches_keep_the_other_steps_and_only_the_users_named() -> None:
    recorded = _recorded()
    batches = recorded.batches()
    kept = tuple(ops[:1] if i == 1 else () for i, ops in enumerate(batches))
    smaller = recorded.with_batches(kept)
    assert smaller.ops_count == 1
    assert [s for s in smaller.steps if isinstance(s, Batch)] == [Batch(ops=batches[1][:1])]
    assert sum(isinstance(s, Settle) for s in smaller.steps) == \
        sum(isinstance(s, Settle) for s in recorded.steps)
    assert set(smaller.users) < set(recorded.users)
    assert set(smaller.users) <= {str(v) for v in batches[1][0].value.values()}


def test_the_pytest_file_is_python_that_carries_the_schedule() -> None:
    recorded = _recorded().with_batches(tuple(
        (Op(id=7, f=F.TIP, value={"sender": "fan_0", "recipient": "creator_0",
                                  "amount_tokens": 3}, idempotency_key="k'\"7"),)
        if i == 1 else () for i in range(len(_recorded().batches()))))
    source = pytest_source(recorded, header='A header with """ quotes and a \\ slash.',
                           runs=4, flaws=("tip_lost_update",))
    module = ast.parse(source)
    namespace: dict[str, object] = {}
    exec(compile(module, "test_shrunk.py", "exec"), namespace)  # the text written above
    assert recorded_from_json(namespace["SCHEDULE"]) == recorded  # type: ignore[arg-type]
    assert namespace["RUNS"] == 4
    assert "test_shrunk_concurrent_tips_holds" in namespace
    assert "--tokenchaos-flaw tip_lost_update" in source


def test_the_script_is_python_that_needs_only_httpx() -> None:
    source = script_source(_recorded(), header="A header.")
    module = ast.parse(source)
    imported = {alias.name for node in ast.walk(module) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(module)
                 if isinstance(node, ast.ImportFrom)}
    assert imported == {"asyncio", "os", "sys", "httpx"}


def test_reproducer_names_are_python_module_names() -> None:
    assert reproducer_names("concurrent-tips") == ("test_shrunk_concurrent_tips.py",
                                                   "shrunk_concurrent_tips_httpx.py")


def test_the_report_links_every_shrunk_schedule(tmp_path: Path) -> None:
    (tmp_path / "shrunk-tip-cycle.json").write_text(json.dumps(
        {"scenario": "tip-cycle", "reason": "shrunk from 80 ops to 3"}), encoding="utf-8")
    (tmp_path / "shrunk-broken.json").write_text("{", encoding="utf-8")
    links = shrunk_links(tmp_path)
    assert links == [("tip-cycle", "shrunk from 80 ops to 3",
                      ("test_shrunk_tip_cycle.py", "shrunk_tip_cycle_httpx.py",
                       "shrunk-tip-cycle.json"))]
    page = render_html(_record(_scenario("tip-cycle", {"conservation": _BROKEN})),
                       shrunk=links)
    assert '<a href="test_shrunk_tip_cycle.py">' in page
    assert "shrunk from 80 ops to 3" in page
    assert "Shrunk reproducers" not in render_html(_record())


def test_run_prints_the_shrink_command_beside_reproduce(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _print_outcome(_record(_scenario("tip-cycle", {"conservation": _BROKEN}),
                           _scenario("dispute", {"errors": Verdict(valid=True)})),
                   tmp_path / "r1", details=False)
    out = capsys.readouterr().out
    assert f"shrink: {shrink_command(tmp_path / 'r1', 'tip-cycle')}" in out
    assert "--scenario dispute" not in out.split("shrink:")[-1]
    assert out.count("shrink: tokenchaos shrink") == 1


class _FakeReplayer(Replayer):
    """A replayer whose target is a function: the race of two tips, showing with ``p``."""

    def __init__(self, race: tuple[int, int], p: float) -> None:
        from harness.shrink.replay import ReplaySpec

        super().__init__(ReplaySpec(scenario="concurrent-tips", params=ScenarioParams()),
                         get_scenario("concurrent-tips"), report_dir=Path("unused"))
        self.race, self.p, self.rng = race, p, random.Random(5)
        self.replays_per_candidate: list[int] = []
        self.evidence_seen: list[tuple[int, int]] = []

    async def fails_once(self, recorded: Recorded, *, deadline_s: float,
                         writer: HistoryWriter | None = None) -> bool:
        self.runs_count += 1
        together = any({self.race[0], self.race[1]} <= {op.id for op in ops}
                       for ops in recorded.batches())
        return together and self.rng.random() < self.p

    async def failures(self, recorded: Recorded, *, runs: int, stop_at_first: bool,
                       deadline_s: float, writer: HistoryWriter | None = None
                       ) -> tuple[int, int]:
        self.replays_per_candidate.append(runs)
        self.evidence_seen.append(self.evidence)
        return await super().failures(recorded, runs=runs, stop_at_first=stop_at_first,
                                      deadline_s=deadline_s, writer=writer)


def _race_ops(recorded: Recorded) -> tuple[int, int]:
    tips = next(ops for ops in recorded.batches() if sum(op.f == F.TIP for op in ops) > 4)
    return tips[0].id, tips[1].id


def test_shrink_of_a_flaky_race_reaches_its_two_ops_with_reruns_by_the_evidence() -> None:
    import asyncio

    recorded = _recorded()
    replayer = _FakeReplayer(_race_ops(recorded), p=0.8)
    outcome = asyncio.run(shrink_recorded(replayer, recorded, bounds=ShrinkBounds(),
                                          say=lambda line: None))
    assert outcome.shrunk.ops_count == 2
    assert outcome.exhausted
    assert outcome.confirmation.runs_count == 10
    assert 1 <= outcome.confirmation.failed_count <= 10
    assert outcome.runs_count == replayer.runs_count
    # Each candidate gets the replays the failures until then call for.
    searched = zip(replayer.replays_per_candidate[1:-1], replayer.evidence_seen[1:-1],
                   strict=True)
    assert all(runs == reruns_for(failures_count=failures, replays_to_fail_count=replays,
                                  runs_max=10) for runs, (failures, replays) in searched)
    assert min(replayer.replays_per_candidate[1:-1]) < 10


def test_shrink_of_a_schedule_that_does_not_fail_on_replay_is_refused() -> None:
    import asyncio

    recorded = _recorded()
    replayer = _FakeReplayer(_race_ops(recorded), p=0.0)
    with pytest.raises(UsageError, match="did not break conservation"):
        asyncio.run(shrink_recorded(replayer, recorded, bounds=ShrinkBounds(runs_max=3),
                                    say=lambda line: None))
    assert replayer.runs_count == 3


def _shrink_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from harness import cli

    monkeypatch.setattr("sys.argv", ["tokenchaos", "shrink", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert isinstance(exited.value.code, int)
    return exited.value.code


def test_shrink_of_a_run_that_held_exits_2_before_starting_anything(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    from harness.report.record import write_run_json

    write_run_json(_record(_scenario("tip-cycle", {"errors": Verdict(valid=True)})),
                   tmp_path / "run.json")
    assert _shrink_cli(monkeypatch, str(tmp_path)) == 2
    assert "broke no invariant" in capsys.readouterr().err


def test_shrink_of_a_directory_without_a_run_exits_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    assert _shrink_cli(monkeypatch, str(tmp_path)) == 2
    assert "holds no run.json" in capsys.readouterr().err


def test_shrink_bounds_out_of_range_exit_2(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    assert _shrink_cli(monkeypatch, str(tmp_path), "--runs", "0") == 2
    assert "--runs 0: give 1 to 100" in capsys.readouterr().err


def test_run_prints_no_shrink_command_that_would_only_exit_2(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    faulted = _scenario("database-restart", {"durability": _BROKEN})
    load = dataclasses.replace(_scenario("load", {"conservation": _BROKEN}),
                               reproduce="tokenchaos load -- --run-time 60s")
    _print_outcome(_record(faulted, load), tmp_path / "r1", details=False)
    out = capsys.readouterr().out
    assert "shrink: tokenchaos shrink" not in out
    assert "shrink: not available: it injects faults" in out
    assert "shrink: not available: only a scenario of tokenchaos run is shrunk" in out
