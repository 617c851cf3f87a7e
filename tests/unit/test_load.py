"""Load mode's pure parts: the op mix, the merge of workers' histories, locust's flags."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.history import History, ScenarioRun
from harness.load import RUN_TIME_DEFAULT, locust_arguments, run_time_s
from harness.load_config import LoadConfig
from harness.load_merge import SHARED_USERS_KEY, WALL_START_KEY, merge_runs, recipient_races_count
from harness.load_mix import (
    DEFAULT_MIX,
    LoadMix,
    UserPlan,
    hot_creator_names,
    load_provokes,
    parse_mix,
)
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


def test_default_mix_draws_only_ops_of_its_own_users_and_the_hot_creators() -> None:
    hot = hot_creator_names()
    plan = UserPlan(prefix="u2", ops=OpFactory(scenario="load", seed=1), mix=DEFAULT_MIX,
                    rng=random.Random(3), hot_creators=hot)
    recipients: Counter[str] = Counter()
    read: set[str] = set()
    for _ in range(200):
        op = plan.next_op()
        if op.f == F.READ_BALANCE:  # reads of a hot creator race the tips to it
            read.add(str(op.value["user"]))
            continue
        for key in ("user", "sender", "creator"):
            if key in op.value:
                assert str(op.value[key]).startswith("u2_"), op
        if op.f == F.TIP:
            recipients[str(op.value["recipient"])] += 1
    assert set(recipients) == {"u2_creator_0", *hot}
    assert read <= {"u2_fan_0", "u2_fan_1", "u2_creator_0", *hot}
    assert sum(recipients[name] for name in hot) > recipients["u2_creator_0"]


def test_user_plans_of_one_process_tip_the_same_hot_creators() -> None:
    ops = OpFactory(scenario="load", seed=1)
    hot = hot_creator_names()
    plans = [UserPlan(prefix=f"u{index}", ops=ops, mix=LoadMix(weights={"hot_tip": 1}),
                      rng=random.Random(index), hot_creators=hot) for index in range(4)]
    recipients = {plan.prefix: {str(plan.next_op().value["recipient"]) for _ in range(20)}
                  for plan in plans}
    assert all(names <= set(hot) for names in recipients.values())
    assert set.intersection(*recipients.values())  # some creator is every user's recipient


def test_user_plan_with_hot_tips_needs_the_hot_creators() -> None:
    with pytest.raises(AssertionError, match="hot creators"):
        UserPlan(prefix="u0", ops=OpFactory(scenario="load", seed=1), mix=DEFAULT_MIX,
                 rng=random.Random(1))


def test_load_provokes_a_tip_for_hot_tips_alone() -> None:
    assert load_provokes(LoadMix(weights={"hot_tip": 1})) == ("tip_succeeded",)
    assert load_provokes(LoadMix(weights={"read_balance": 1})) == ()


def test_load_config_carries_the_hot_creators_through_json() -> None:
    config = LoadConfig(report_dir="/r", hot_creators={
        "hot_creator_0": {"target_id": "7", "token": "t7"}})
    assert LoadConfig.from_json(config.to_json()) == config


def test_load_config_refuses_hot_creators_without_a_token() -> None:
    text = LoadConfig(report_dir="/r").to_json().replace(
        '"hot_creators":{}', '"hot_creators":{"hot_creator_0":{"target_id":"7"}}')
    with pytest.raises(UsageError):
        LoadConfig.from_json(text)


def test_cli_load_help_gives_every_weight_of_the_default_mix() -> None:
    import typer.main

    from harness.cli import app

    command = typer.main.get_command(app)
    load_command = command.commands["load"]  # type: ignore[attr-defined]
    (mix,) = [param for param in load_command.params if param.name == "mix"]
    for kind, weight in DEFAULT_MIX.weights.items():
        assert f"{kind}={weight}" in mix.help, kind


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


def _hot_run(wall_start_ns: int, *, shared: bool) -> ScenarioRun:
    value = {"sender": "u0_fan_0", "recipient": "hot_creator_0", "amount_tokens": 1}
    events = [Event(index=0, time_ns=0, process=0, kind=Kind.INVOKE, f=F.TIP, op_id=0,
                    value=value),
              Event(index=1, time_ns=5, process=0, kind=Kind.OK, f=F.TIP, op_id=0,
                    value=value)]
    params = {WALL_START_KEY: wall_start_ns, SHARED_USERS_KEY: "hot_creator_0" if shared else ""}
    return ScenarioRun(name="load-w", seed=1, params=params,
                       users={"u0_fan_0": "fan", "hot_creator_0": "creator"},
                       target_ids={"u0_fan_0": str(wall_start_ns), "hot_creator_0": "99"},
                       history=History(events), complete=True)


def test_merge_runs_keeps_the_shared_hot_creator_under_one_name() -> None:
    merged = merge_runs([("w0", _hot_run(1, shared=True)), ("w1", _hot_run(2, shared=True))])
    assert dict(merged.users) == {"w0.u0_fan_0": "fan", "w1.u0_fan_0": "fan",
                                  "hot_creator_0": "creator"}
    assert merged.target_ids["hot_creator_0"] == "99"
    assert {e.value["recipient"] for e in merged.history} == {"hot_creator_0"}
    assert {e.value["sender"] for e in merged.history} == {"w0.u0_fan_0", "w1.u0_fan_0"}
    assert recipient_races_count(merged.history) == 1  # w1's tip starts inside w0's


def test_merge_runs_renames_a_hot_creator_a_worker_made_for_itself() -> None:
    merged = merge_runs([("w0", _hot_run(1, shared=False)), ("w1", _hot_run(2, shared=False))])
    assert {"w0.hot_creator_0", "w1.hot_creator_0"} <= set(merged.users)
    assert "hot_creator_0" not in merged.users
    assert recipient_races_count(merged.history) == 0


def test_merge_runs_refuses_a_shared_user_with_two_ids() -> None:
    other = _hot_run(2, shared=True)
    other = ScenarioRun(name=other.name, seed=1, params=other.params, users=other.users,
                        target_ids={**other.target_ids, "hot_creator_0": "98"},
                        history=other.history, complete=True)
    with pytest.raises(AssertionError):
        merge_runs([("w0", _hot_run(1, shared=True)), ("w1", other)])


def test_recipient_races_count_counts_tips_sent_while_one_to_the_recipient_is_in_flight() -> None:
    def tip(index: int, kind: Kind, op_id: int, recipient: str) -> Event:
        return Event(index=index, time_ns=index, process=op_id, kind=kind, f=F.TIP,
                     op_id=op_id, value={"sender": f"fan_{op_id}", "recipient": recipient,
                                         "amount_tokens": 1})

    history = [tip(0, Kind.INVOKE, 0, "hot"), tip(1, Kind.INVOKE, 1, "hot"),
               tip(2, Kind.INVOKE, 2, "quiet"), tip(3, Kind.OK, 0, "hot"),
               tip(4, Kind.INFO, 1, "hot"), tip(5, Kind.INVOKE, 3, "hot"),
               tip(6, Kind.OK, 2, "quiet"), tip(7, Kind.OK, 3, "hot")]
    assert recipient_races_count(history) == 1  # only op 1 started while op 0 was in flight


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


def test_load_scenario_leaves_out_calls_when_the_mix_charges_no_call() -> None:
    from harness.load import load_scenario

    assert "calls" in load_scenario(DEFAULT_MIX).checkers
    hot_only = load_scenario(LoadMix(weights={"hot_tip": 1}))
    assert "calls" not in hot_only.checkers
    assert "coverage" in hot_only.checkers
    assert "coverage" not in load_scenario(LoadMix(weights={"read_balance": 1})).checkers


def test_readme_load_profile_table_gives_every_kind_and_the_default_weights() -> None:
    import re

    from harness.load_mix import MIX_KINDS

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Load mode", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| .* \| (\d+) \|$", section, flags=re.MULTILINE))
    assert set(rows) == set(MIX_KINDS)
    assert {kind: int(weight) for kind, weight in rows.items()} == {
        kind: DEFAULT_MIX.weights.get(kind, 0) for kind in MIX_KINDS}
