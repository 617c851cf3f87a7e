"""The history: invariants on append, the JSONL round trip, crash tolerance, Jepsen exports."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import UsageError
from harness.history import (
    History,
    HistoryWriter,
    event_to_json,
    load,
    observation_from_json,
    observation_to_json,
    provider_truth_from_json,
    provider_truth_to_json,
    to_edn,
    to_elle_json,
)
from harness.model import (
    AccountState,
    Delivery,
    DeliveryVariant,
    Event,
    F,
    IntentTruth,
    Kind,
    Observation,
    ProviderTruth,
    Totals,
)


def ev(index: int, kind: Kind, *, process: int = 0, op_id: int = 0, f: F = F.TIP,
       time_ns: int | None = None, value: dict[str, Any] | None = None,
       error: str | None = None) -> Event:
    if kind in (Kind.FAIL, Kind.INFO) and error is None:
        error = "insufficient_funds" if kind == Kind.FAIL else "read_timeout"
    return Event(index=index, time_ns=index if time_ns is None else time_ns, process=process,
                 kind=kind, f=f, op_id=op_id, value=value or {"sender": "fan_0"}, error=error)


# -- invariants ---------------------------------------------------------------------------


def test_a_well_formed_history_appends() -> None:
    history = History([ev(0, Kind.INVOKE), ev(1, Kind.INVOKE, process=1, op_id=1),
                       ev(2, Kind.OK, process=1, op_id=1), ev(3, Kind.INFO),
                       ev(4, Kind.INVOKE, process=2, op_id=2)])
    assert len(history) == 5
    assert list(history.outstanding()) == [2]


@pytest.mark.parametrize(("events", "message"), [
    ([ev(1, Kind.INVOKE)], "(1, 0)"),  # the index must be dense
    ([ev(0, Kind.INVOKE), ev(1, Kind.INVOKE, op_id=1)], "outstanding invoke"),
    ([ev(0, Kind.OK)], "has no invoke"),
    ([ev(0, Kind.INVOKE), ev(1, Kind.OK, f=F.PURCHASE)], "F.TIP"),
    ([ev(0, Kind.INVOKE), ev(1, Kind.OK, op_id=7)], "(0, 7)"),
    ([ev(0, Kind.INVOKE), ev(1, Kind.INFO), ev(2, Kind.INVOKE, op_id=1)], "after an INFO"),
    ([ev(0, Kind.INVOKE), ev(1, Kind.OK), ev(2, Kind.INVOKE, process=1)], "invoked twice"),
    ([ev(0, Kind.INVOKE, time_ns=5), ev(1, Kind.OK, time_ns=4)], "time went back"),
])
def test_append_asserts_each_invariant(events: list[Event], message: str) -> None:
    history = History()
    with pytest.raises(AssertionError) as caught:
        for event in events:
            history.append(event)
    assert message in str(caught.value)


def test_a_fail_frees_its_process_for_the_next_op() -> None:
    history = History([ev(0, Kind.INVOKE), ev(1, Kind.FAIL), ev(2, Kind.INVOKE, op_id=1)])
    assert history.outstanding()[0].op_id == 1


# -- round trip ---------------------------------------------------------------------------

_VALUE_KEYS = st.sampled_from(["user", "sender", "recipient", "amount_tokens", "purchase",
                               "intent_id", "balance_tokens", "key with spaces", "é"])
_SCALARS = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                     st.text(max_size=6))
_VALUES = st.dictionaries(_VALUE_KEYS, _SCALARS, max_size=3)
_ERRORS = st.sampled_from(["insufficient_funds", "read_timeout", "connect_error", "\"quoted\""])


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Any well-formed history: up to four processes, fresh ids after INFO, times rising."""
    events: list[Event] = []
    open_ops: dict[int, Event] = {}
    live = list(range(draw(st.integers(1, 4))))
    next_process, next_op, time_ns = len(live), 0, 0
    for _ in range(draw(st.integers(0, 16))):
        time_ns += draw(st.integers(0, 10**9))
        idle = [p for p in live if p not in open_ops]
        if idle and (not open_ops or draw(st.booleans())):
            process = draw(st.sampled_from(idle))
            event = Event(index=len(events), time_ns=time_ns, process=process,
                          kind=Kind.INVOKE, f=draw(st.sampled_from(list(F))), op_id=next_op,
                          value=draw(_VALUES),
                          idempotency_key=draw(st.none() | st.text(min_size=1, max_size=4)))
            next_op += 1
            open_ops[process] = event
        else:
            process = draw(st.sampled_from(sorted(open_ops)))
            invoke = open_ops.pop(process)
            kind = draw(st.sampled_from([Kind.OK, Kind.FAIL, Kind.INFO]))
            event = Event(index=len(events), time_ns=time_ns, process=process, kind=kind,
                          f=invoke.f, op_id=invoke.op_id,
                          value={**invoke.value, **draw(_VALUES)},
                          idempotency_key=invoke.idempotency_key,
                          error=None if kind == Kind.OK else draw(_ERRORS),
                          status_code=draw(st.none() | st.integers(100, 599)),
                          body_excerpt=draw(st.none() | st.text(max_size=8)))
            if kind == Kind.INFO:
                live[live.index(process)] = next_process
                next_process += 1
        events.append(event)
    return events


@given(histories())
def test_any_well_formed_history_survives_write_then_load(events: list[Event]) -> None:
    history = History(events)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.jsonl"
        with HistoryWriter(path) as writer:
            writer.begin(name="tip-cycle", seed=7, params={"seed": 7, "scale": 1},
                         users={"fan_0": "fan"}, target_ids={"fan_0": "41"})
            for event in history:
                writer.event(event)
            writer.end({"ops_count": len(events)})
        (run,) = load(path)
    assert run.history == history
    assert list(run.events) == events
    assert (run.name, run.seed, run.complete) == ("tip-cycle", 7, True)
    assert run.target_ids == {"fan_0": "41"}


OBSERVATION = Observation(
    accounts={"fan_0": AccountState(user="fan_0", balance_tokens=40, debt_tokens=3,
                                    status="debt", ledger_sum_tokens=40),
              "creator_0": AccountState(user="creator_0", balance_tokens=60)},
    totals=Totals(minted_tokens=100, clawed_back_tokens=3, balances_tokens=100,
                  debts_tokens=3, drift_accounts_count=0))
TRUTH = ProviderTruth(
    intents={"pi_1": IntentTruth(intent_id="pi_1", user="fan_0", amount_cents=500,
                                 minted_tokens=100, status="succeeded", refunded_cents=15,
                                 dispute_status="won", idempotency_key="k")},
    deliveries=(Delivery(index=0, event_id="evt_1", event_type="payment_intent.succeeded",
                         intent_id="pi_1", variant=DeliveryVariant.DUPLICATE, status_code=None,
                         started_ns=10, finished_ns=20, error="read timeout"),),
    event_types={"evt_1": "payment_intent.succeeded"}, event_intents={"evt_1": "pi_1"},
    pending_deliveries_count=2)


def test_observation_and_truth_survive_their_json_forms() -> None:
    assert observation_from_json(json.loads(json.dumps(observation_to_json(OBSERVATION)))) \
        == OBSERVATION
    assert provider_truth_from_json(json.loads(json.dumps(provider_truth_to_json(TRUTH)))) \
        == TRUTH


@given(st.builds(AccountState, user=st.text(min_size=1), balance_tokens=st.integers(),
                 debt_tokens=st.integers(), status=st.text(),
                 ledger_sum_tokens=st.none() | st.integers()))
def test_any_account_survives_the_observation_json(account: AccountState) -> None:
    observation = Observation(accounts={account.user: account})
    assert observation_from_json(json.loads(json.dumps(observation_to_json(observation)))) \
        == observation


def _two_scenarios(path: Path) -> None:
    with HistoryWriter(path) as writer:
        writer.begin(name="a", seed=1, params={}, users={"fan_0": "fan"}, target_ids={})
        writer.event(ev(0, Kind.INVOKE))
        writer.event(ev(1, Kind.OK))
        writer.initial(Observation(accounts={}))
        writer.observation(OBSERVATION)
        writer.truth(TRUTH)
        writer.end({"ops_count": 1})
        writer.begin(name="b", seed=2, params={}, users={}, target_ids={})
        writer.event(ev(0, Kind.INVOKE))


def test_a_file_holds_scenarios_in_order_with_their_end_state(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _two_scenarios(path)
    first, second = load(path)
    assert (first.observation, first.truth, first.initial) == \
        (OBSERVATION, TRUTH, Observation(accounts={}))
    assert first.stats == {"ops_count": 1}
    assert first.complete
    assert (second.name, len(second.history), second.complete) == ("b", 1, False)
    assert second.observation is None
    assert second.truth is None


def test_a_line_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _two_scenarios(path)
    with path.open("a") as file:
        file.write('{"type":"event","index":1,"time_ns":3,"proc')
    assert len(load(path)[1].history) == 1


def test_a_damaged_line_before_the_last_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _two_scenarios(path)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:10] + "\n"
    path.write_text("".join(lines))
    with pytest.raises(UsageError, match=r"history.jsonl:3: not a JSON line"):
        load(path)


def test_an_event_before_any_scenario_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"type":"end","stats":{}}\n')
    with pytest.raises(UsageError, match="before any scenario"):
        load(path)


def test_load_checks_the_invariants_again_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _two_scenarios(path)
    text = path.read_text().replace('"kind":"ok"', '"kind":"invoke"', 1)
    path.write_text(text)
    with pytest.raises(UsageError, match=r"history.jsonl:3: event #1: .*outstanding invoke"):
        load(path)


# -- damaged files: every corruption is a UsageError naming the first bad line -----------


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize(("corrupt", "line_number", "message"), [
    (lambda r: r.__setitem__(0, {"type": "scenario"}), 1, "lacks 'name'"),
    (lambda r: r[0].__setitem__("seed", "1"), 1, "seed = '1' must be int"),
    (lambda r: r[0].__setitem__("seed", True), 1, "seed = True must be int"),
    (lambda r: r[1].__setitem__("type", "evnt"), 2, "unknown line type 'evnt'"),
    (lambda r: r[1].pop("op_id"), 2, "lacks 'op_id'"),
    (lambda r: r[1].__setitem__("kind", "maybe"), 2, "kind = 'maybe' is not one of"),
    (lambda r: r[1].__setitem__("value", {"amount": [1]}), 2, "value must be an object"),
    (lambda r: r[2].__setitem__("index", 5), 3, "index 5 where 1 comes next"),
    (lambda r: r.pop(1), 2, "index 1 where 0 comes next"),  # a gap: a line is gone
    (lambda r: r[3]["accounts"].append({"balance_tokens": 1}), 4, "account lacks 'user'"),
    (lambda r: r[4]["accounts"][0].__setitem__("balance_tokens", "40"), 5,
     "balance_tokens = '40' must be int"),
    (lambda r: r[4].__setitem__("totals", {"minted_tokens": 1}), 5, "lacks 'clawed_back"),
    (lambda r: r[5]["deliveries"][0].__setitem__("variant", "sneaky"), 6,
     "variant = 'sneaky' is not one of"),
    (lambda r: r[5]["intents"][0].pop("amount_cents"), 6, "intent lacks 'amount_cents'"),
    (lambda r: r.insert(5, r[4]), 6, "a second 'observation' line"),
    (lambda r: r[6].__setitem__("stats", [1]), 7, "stats must be an object"),
    (lambda r: r[1].__setitem__("body_excerpt", "x"), 2, "an invoke event has a body_excerpt"),
    (lambda r: r[2].__setitem__("body_excerpt", 5), 3, "body_excerpt = 5 must be str"),
    (lambda r: r[2].__setitem__("body_excerpt", "x" * 513), 3, "body_excerpt has 513 "
     "characters, over the 512"),
])
def test_a_damaged_history_names_its_first_bad_line(
        tmp_path: Path, corrupt: Any, line_number: int, message: str) -> None:
    path = tmp_path / "history.jsonl"
    _two_scenarios(path)
    records = _lines(path)
    corrupt(records)
    _write(path, records)
    with pytest.raises(UsageError) as caught:
        load(path)
    assert f"history.jsonl:{line_number}: " in str(caught.value)
    assert message in str(caught.value)


def test_a_cut_last_line_is_an_error_when_asked_to_be_strict(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _two_scenarios(path)
    path.write_text(path.read_text()[:-5])
    count = len(path.read_text().splitlines())
    with pytest.raises(UsageError, match=rf"history.jsonl:{count}: not a JSON line, cut short"):
        load(path, cut_last_line_ok=False)


_REQUIRED = {"scenario": ("name", "seed"),
             "event": ("index", "time_ns", "process", "kind", "f", "op_id"),
             "end": ()}
_WRONG = {int: "7", str: 7}


@st.composite
def corruptions(draw: st.DrawFn) -> tuple[list[str], int]:
    """A well-formed history file's lines, one of them corrupted, and that line's number."""
    events = draw(histories())
    records: list[dict[str, Any]] = [
        {"type": "scenario", "name": "tip-cycle", "seed": 7, "params": {}, "users": {},
         "target_ids": {}},
        *(event_to_json(event) for event in events), {"type": "end", "stats": {}}]
    lines = [json.dumps(r) + "\n" for r in records]
    index = draw(st.integers(0, len(records) - 1))
    record = dict(records[index])
    how = draw(st.sampled_from(["cut", "type", "drop_field", "wrong_type"]))
    if how == "cut":
        lines[index] = lines[index][:draw(st.integers(0, len(lines[index]) - 3))] + "\n"
        if not lines[index].strip():
            lines[index] = "{\n"
    elif how == "type":
        record["type"] = draw(st.sampled_from(["", "Event", "events", "scenario ", "x"]))
        lines[index] = json.dumps(record) + "\n"
    else:
        keys = _REQUIRED[str(record["type"])] or ("stats",)
        key = draw(st.sampled_from(keys))
        if how == "drop_field" and key != "stats":
            del record[key]
        else:
            record[key] = _WRONG.get(type(record[key]), "7") if key != "stats" else [7]
        lines[index] = json.dumps(record) + "\n"
    return lines, index + 1


@given(corruptions())
def test_any_corrupted_line_is_a_usage_error_naming_it(case: tuple[list[str], int]) -> None:
    lines, line_number = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.jsonl"
        path.write_text("".join(lines))
        with pytest.raises(UsageError) as caught:
            load(path, cut_last_line_ok=False)
    assert f"history.jsonl:{line_number}: " in str(caught.value)


def test_writer_flushes_lines_other_than_events_at_once(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path)
    writer.begin(name="a", seed=1, params={}, users={}, target_ids={})
    writer.event(ev(0, Kind.INVOKE))
    writer.observation(OBSERVATION)
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == \
        ["scenario", "event", "observation"]
    writer.close()


def test_writer_flush_puts_buffered_events_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path)
    writer.begin(name="a", seed=1, params={}, users={}, target_ids={})
    writer.event(ev(0, Kind.INVOKE))
    writer.flush()
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == \
        ["scenario", "event"]
    writer.close()


def test_writer_asserts_the_order_of_lines(tmp_path: Path) -> None:
    with HistoryWriter(tmp_path / "h.jsonl") as writer:
        with pytest.raises(AssertionError, match="begin a scenario first"):
            writer.event(ev(0, Kind.INVOKE))
        writer.begin(name="a", seed=1, params={}, users={}, target_ids={})
        writer.observation(OBSERVATION)
        with pytest.raises(AssertionError, match="observation written twice"):
            writer.observation(OBSERVATION)


# -- Jepsen exports -----------------------------------------------------------------------

EXPORTED = [ev(0, Kind.INVOKE, value={"sender": "fan_0", "amount_tokens": 60}),
            ev(1, Kind.FAIL, value={"sender": "fan_0", "amount_tokens": 60, "tip_id": None})]


def test_elle_json_ops_have_jepsens_keys() -> None:
    invoke, fail = to_elle_json(EXPORTED)
    assert invoke == {"type": "invoke", "f": "tip", "process": 0, "time": 0, "index": 0,
                      "value": {"sender": "fan_0", "amount_tokens": 60}}
    assert (fail["type"], fail["error"], fail["index"]) == ("fail", "insufficient_funds", 1)


def test_edn_export_writes_one_op_map_per_line_with_keywords() -> None:
    lines = to_edn(EXPORTED).splitlines()
    assert lines[0] == ('{:type :invoke, :f :tip, :value {:sender "fan_0", :amount-tokens 60}, '
                        ':process 0, :time 0, :index 0}')
    assert ':tip-id nil' in lines[1]
    assert ':error "insufficient_funds"' in lines[1]
    assert to_edn([]) == ""


# -- body excerpts ------------------------------------------------------------------------


def test_a_completion_keeps_its_body_excerpt_through_write_and_load(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    info = Event(index=1, time_ns=1, process=0, kind=Kind.INFO, f=F.TIP, op_id=0,
                 value={"sender": "fan_0"}, error="server_error_5xx", status_code=500,
                 body_excerpt="ERROR: deadlock detected")
    with HistoryWriter(path) as writer:
        writer.begin(name="a", seed=1, params={}, users={}, target_ids={})
        writer.event(ev(0, Kind.INVOKE))
        writer.event(info)
        writer.event(ev(2, Kind.INVOKE, process=1, op_id=1))
        writer.event(ev(3, Kind.OK, process=1, op_id=1))
    lines = _lines(path)
    assert lines[2]["body_excerpt"] == "ERROR: deadlock detected"
    assert "body_excerpt" not in lines[4]  # most events have none, and the line says nothing
    (run,) = load(path)
    assert run.history[1] == info
    assert run.history[3].body_excerpt is None
    assert to_elle_json(run.history)[1]["body_excerpt"] == "ERROR: deadlock detected"


def test_a_history_written_before_body_excerpts_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _write(path, [{"type": "scenario", "name": "old", "seed": 3},
                  {"type": "event", "index": 0, "time_ns": 0, "process": 0, "kind": "invoke",
                   "f": "tip", "op_id": 0, "value": {}, "idempotency_key": None,
                   "error": None, "status_code": None},
                  {"type": "event", "index": 1, "time_ns": 5, "process": 0, "kind": "info",
                   "f": "tip", "op_id": 0, "value": {}, "idempotency_key": None,
                   "error": "server_error_5xx", "status_code": 500}])
    (run,) = load(path)
    assert run.history[1].body_excerpt is None
    assert run.history[1].status_code == 500


def test_the_parts_left_out_for_a_target_survive_write_then_load(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    part = {"part": "tips retried with the same key", "reason": "tips carry no key",
            "provokes": ["retry_with_same_key"], "checkers": ["idempotency"]}
    with HistoryWriter(path) as writer:
        writer.begin(name="retry-storm", seed=1, params={}, users={}, target_ids={},
                     not_run=[part])
        writer.end({})
    (loaded,) = load(path)
    assert loaded.not_run == ({"part": "tips retried with the same key",
                               "reason": "tips carry no key",
                               "provokes": ("retry_with_same_key",),
                               "checkers": ("idempotency",)},)


@pytest.mark.parametrize("not_run", [{"part": "x"}, [1], [{"part": 3, "reason": "r"}],
                                     [{"reason": "r", "checkers": "idempotency"}]])
def test_a_malformed_not_run_list_names_its_line(not_run: Any, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps({"type": "scenario", "name": "s", "seed": 1,
                                "not_run": not_run}) + "\n" + json.dumps({"type": "end"}) + "\n")
    with pytest.raises(UsageError, match=r"history.jsonl:1: scenario line: not_run"):
        load(path)
