"""Load mode's pure parts: the op mix, the merge of workers' histories, locust's flags."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.history import History, ScenarioRun
from harness.load import RUN_TIME_DEFAULT, locust_arguments, run_time_s
from harness.load_merge import WALL_START_KEY, merge_runs
from harness.load_mix import DEFAULT_MIX, LoadMix, UserPlan, parse_mix
from harness.model import Event, F, Kind
from scenarios._common import OpFactory


def test_parse_mix_reads_weights_and_leaves_the_rest_out() -> None:
    mix = parse_mix("tip=3, purchase=1")
    assert dict(mix.weights) == {"tip": 3, "purchase": 1}
    assert mix.text() == "purchase=1,tip=3"


@pytest.mark.parametrize("text", ["tip", "bogus=1", "tip=-1", "tip=x", "tip=0", "tip=1,tip=2"])
def test_parse_mix_refuses_bad_text(text: str) -> None:
    with pytest.raises(UsageError):
        parse_mix(text)


def test_mix_draw_follows_the_weights() -> None:
    mix = LoadMix(weights={"tip": 3, "read_balance": 1, "purchase": 0})
    rng = random.Random(7)
    drawn = Counter(mix.draw(rng) for _ in range(4000))
    assert set(drawn) == {"tip", "read_balance"}
    assert 2.5 < drawn["tip"] / drawn["read_balance"] < 3.5


def test_user_plan_opens_charges_and_ends_a_call() -> None:
    from harness.model import Outcome

    plan = UserPlan(prefix="u0", ops=OpFactory(scenario="load", seed=1),
                    mix=LoadMix(weights={"call_charge": 1}), rng=random.Random(1))
    opened = plan.next_op()
    assert opened.f == F.CALL_OPEN
    plan.completed(opened, Outcome(kind=Kind.OK, value={"call_id": "c"}))
    kinds = []
    for _ in range(6):
        op = plan.next_op()
        kinds.append(op.f)
        plan.completed(op, Outcome(kind=Kind.OK))
    assert kinds == [F.CALL_CHARGE] * 5 + [F.CALL_END]
    assert plan.next_op().f == F.CALL_OPEN


def test_default_mix_draws_only_ops_of_its_own_users() -> None:
    plan = UserPlan(prefix="u2", ops=OpFactory(scenario="load", seed=1), mix=DEFAULT_MIX,
                    rng=random.Random(3))
    for _ in range(50):
        op = plan.next_op()
        for key in ("user", "sender", "recipient", "creator"):
            if key in op.value:
                assert str(op.value[key]).startswith("u2_")


def _run(wall_start_ns: int, events: list[Event]) -> ScenarioRun:
    return ScenarioRun(name="load-w", seed=1, params={WALL_START_KEY: wall_start_ns},
                       users={"u0_fan_0": "fan"}, target_ids={"u0_fan_0": "1"},
                       history=History(events), stats={"ops_ok_count": 1}, complete=True)


def _pair(op_id: int, start_ns: int, end_ns: int, index: int) -> list[Event]:
    value = {"user": "u0_fan_0", "purchase": "p_0"}
    return [Event(index=index, time_ns=start_ns, process=0, kind=Kind.INVOKE, f=F.PURCHASE,
                  op_id=op_id, value=value),
            Event(index=index + 1, time_ns=end_ns, process=0, kind=Kind.OK, f=F.PURCHASE,
                  op_id=op_id, value=value)]


def test_merge_runs_interleaves_workers_in_time_with_names_and_ids_apart() -> None:
    first = _run(1_000, _pair(0, 10, 50, 0))
    second = _run(1_020, _pair(0, 0, 5, 0))  # starts 20 ns later: its events at 20 and 25
    merged = merge_runs([("w0", first), ("w1", second)])
    assert [e.time_ns for e in merged.history] == [10, 20, 25, 50]
    assert [e.index for e in merged.history] == [0, 1, 2, 3]
    assert {e.op_id for e in merged.history} == {0, 1}
    assert {e.process for e in merged.history} == {0, 1}
    assert {e.value["user"] for e in merged.history} == {"w0.u0_fan_0", "w1.u0_fan_0"}
    assert {e.value["purchase"] for e in merged.history} == {"w0.p_0", "w1.p_0"}
    assert dict(merged.target_ids) == {"w0.u0_fan_0": "1", "w1.u0_fan_0": "1"}
    assert merged.stats["ops_ok_count"] == 2
    assert merged.workers == ("w0", "w1")


def test_merge_runs_keeps_a_worker_without_events() -> None:
    merged = merge_runs([("w0", _run(5, [])), ("w1", _run(0, _pair(0, 1, 2, 0)))])
    assert len(merged.history) == 2
    assert "w0.u0_fan_0" in merged.users


def test_locust_arguments_default_to_headless_and_a_bounded_run() -> None:
    args, duration_s = locust_arguments([], out_dir=Path("/r"))
    assert "--headless" in args
    assert args[args.index("--run-time") + 1] == RUN_TIME_DEFAULT
    assert duration_s == run_time_s(RUN_TIME_DEFAULT)
    assert args[args.index("--html") + 1] == "/r/locust.html"


def test_locust_arguments_web_ui_passes_no_headless_and_keeps_the_users_flags() -> None:
    args, duration_s = locust_arguments(["--web-ui", "-u", "64", "-t", "1m"], out_dir=Path("/r"))
    assert "--headless" not in args and "--web-ui" not in args
    assert args[-4:] == ["-u", "64", "-t", "1m"]
    assert duration_s == 60.0


def test_locust_arguments_refuse_worker() -> None:
    with pytest.raises(UsageError, match="locust -f"):
        locust_arguments(["--worker"], out_dir=Path("/r"))


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30s", 30), ("1m30s", 90),
                                               ("2h", 7200)])
def test_run_time_s_reads_locust_times(text: str, seconds: int) -> None:
    assert run_time_s(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "abc", "5d"])
def test_run_time_s_refuses_what_is_not_a_time(text: str) -> None:
    with pytest.raises(UsageError):
        run_time_s(text)
