"""durability: acknowledged before a fault, there exactly once after the heal; faults heal."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from harness.checkers import check_all
from harness.checkers.base import CheckInput
from harness.checkers.durability import check_durability, heal_ns
from harness.model import F, FaultWindow, Kind, Observation
from tests.unit.conftest import H, T, observe

_MS = 1_000_000
START_TOKENS = 1_000


def _tip(h: H, key: str, kind: Kind = Kind.OK, *, tip_id: str | None = None,
         replayed: bool = False, sender: str = "fan_0", amount: int = 10,
         status: int | None = None, error: str | None = None) -> int:
    """A keyed tip to creator_0; returns its invoke index."""
    result: dict[str, int | str | None] = {}
    if kind == Kind.OK:
        result["tip_id"] = tip_id or f"t_{key}"
        if replayed:
            result["replayed"] = 1
    if kind == Kind.INFO and error is None:
        error = "server_error_5xx"
        status = 503 if status is None else status
    if kind == Kind.FAIL and error is None:
        error = "insufficient_funds"
        status = 402 if status is None else status
    return h.op(F.TIP, {"sender": sender, "recipient": "creator_0", "amount_tokens": amount},
                kind, result, key=key, status=status, error=error)


@dataclass
class _Run:
    """A faulted run: ``during`` ops inside the fault, the heal, then ``after`` ops."""

    h: H
    window: FaultWindow

    def input(self, balances: dict[str, int] | None, *, initial: dict[str, int] | None = None,
              faults: tuple[FaultWindow, ...] | None = None, **kwargs: object) -> CheckInput:
        start = initial or {"fan_0": START_TOKENS, "fan_1": START_TOKENS, "creator_0": 0}
        observation = None if balances is None else observe(balances)
        return self.h.input(observation, kwargs.pop("truth", None),  # type: ignore[arg-type]
                            initial=observe(start),
                            faults=(self.window,) if faults is None else faults, **kwargs)


def _faulted(during: Callable[[H], object], after: Callable[[H], object], *,
             recovery_ms: int = 5, before: Callable[[H], object] | None = None) -> _Run:
    h = H()
    if before is not None:
        before(h)
    started = h.wait(1)
    during(h)
    healed = h.wait(1)
    recovered = h.wait(recovery_ms)
    after(h)
    window = FaultWindow(name="f0", kind="kill_service", link=None,
                         description="SIGKILL the service, then restart it",
                         started_ns=started, healed_ns=healed, recovered_ns=recovered)
    return _Run(h=h, window=window)


def _counts(verdict_counts: object) -> dict[str, int]:
    assert isinstance(verdict_counts, dict)
    keys = ("attempted", "acknowledged", "indeterminate", "lost", "recovered", "duplicated",
            "unexpected", "faults")
    return {key: verdict_counts[key] for key in keys}


# -- a correct faulted run ------------------------------------------------------------------


def _correct_run() -> _Run:
    def during(h: H) -> None:
        _tip(h, "k1", tip_id="t_1")  # acknowledged
        _tip(h, "k2", Kind.INFO)  # a 5xx: indeterminate (it happened)
        _tip(h, "k3", Kind.INFO, status=None, error="read_timeout")  # did not happen
        _tip(h, "k4", Kind.FAIL, amount=5_000)  # refused for funds

    def after(h: H) -> None:
        _tip(h, "k1", tip_id="t_1", replayed=True)
        _tip(h, "k2", tip_id="t_2", replayed=True)
        _tip(h, "k3", tip_id="t_3")  # executed now, for the first time
        _tip(h, "k4", Kind.FAIL, amount=5_000)

    return _faulted(during, after)


def test_durability_holds_for_a_correct_faulted_run() -> None:
    run = _correct_run()
    verdict = check_durability(run.input({"fan_0": 970, "creator_0": 30}))
    assert verdict.valid is True, verdict
    assert _counts(verdict.counts) == {"attempted": 4, "acknowledged": 1, "indeterminate": 2,
                                       "lost": 0, "recovered": 1, "duplicated": 0,
                                       "unexpected": 0, "faults": 1}
    assert verdict.counts["recovery_ms_max"] == 5


def test_durability_never_counts_indeterminate_ops_as_failures() -> None:
    # Every op of the faulted phase timed out; after the heal some had happened, some not.
    def during(h: H) -> None:
        for key in ("a", "b", "c"):
            _tip(h, key, Kind.INFO, status=None, error="read_timeout")

    def after(h: H) -> None:
        _tip(h, "a", replayed=True)
        _tip(h, "b")
        _tip(h, "c", Kind.FAIL, amount=10)

    verdict = check_durability(_faulted(during, after).input({"fan_0": 980, "creator_0": 20}))
    assert verdict.valid is True, verdict
    assert verdict.counts["indeterminate"] == 3
    assert verdict.counts["recovered"] == 1
    assert verdict.counts["lost"] == verdict.counts["unexpected"] == 0


def test_durability_is_unknown_without_faults() -> None:
    h = H()
    _tip(h, "k1")
    _tip(h, "k1", replayed=True)
    verdict = check_durability(h.input(observe({"fan_0": 990, "creator_0": 10})))
    assert verdict.valid == "unknown"
    assert "no fault was injected" in (verdict.note or "")
    assert verdict.counts["faults"] == 0


def test_durability_judges_setup_before_the_fault_only_when_re_sent() -> None:
    # A funding tip before the fault, never re-sent, is not the faulted phase's.
    run = _faulted(lambda h: _tip(h, "k1"), lambda h: _tip(h, "k1", replayed=True),
                   before=lambda h: _tip(h, "setup"))
    verdict = check_durability(run.input({"fan_0": 980, "creator_0": 20}))
    assert verdict.valid is True, verdict
    assert verdict.counts["attempted"] == 1


def test_heal_is_the_last_recovery_else_the_last_heal() -> None:
    run = _correct_run()
    later = dataclasses.replace(run.window, name="f1", healed_ns=run.window.recovered_ns,
                                recovered_ns=None)
    assert heal_ns((run.window,)) == run.window.recovered_ns
    assert heal_ns((run.window, later)) == run.window.recovered_ns
    never = dataclasses.replace(run.window, healed_ns=None, recovered_ns=None)
    assert heal_ns((never,)) is None


# -- each anomaly where it must be, and only there -------------------------------------------


def _lost_ack_run(*, retry_replayed: bool = False) -> _Run:
    def during(h: H) -> None:
        _tip(h, "k1", tip_id="t_1")
        _tip(h, "k2", tip_id="t_2")

    def after(h: H) -> None:
        _tip(h, "k1", tip_id="t_9", replayed=retry_replayed)  # another answer
        _tip(h, "k2", tip_id="t_2", replayed=True)

    return _faulted(during, after)


def test_durability_flags_an_acknowledgement_that_did_not_survive() -> None:
    run = _lost_ack_run()
    verdict = check_durability(run.input({"fan_0": 980, "creator_0": 20}))  # applied once
    assert verdict.valid is False
    assert verdict.counts["lost"] == 1
    assert verdict.counts["duplicated"] == 0
    assert [a.kind for a in verdict.anomalies] == ["acknowledged_op_lost"]
    anomaly = verdict.anomalies[0]
    assert anomaly.event_indexes == (0, 1, 4, 5)  # k1 and its retry, invoke and completion
    assert "'t_1'" in anomaly.explanation
    assert "'t_9'" in anomaly.explanation
    assert "fault f0" in anomaly.explanation
    assert "matches every key applied once" in anomaly.explanation
    assert anomaly.user == "fan_0"


def test_durability_flags_an_op_applied_twice_not_lost() -> None:
    run = _lost_ack_run()
    verdict = check_durability(run.input({"fan_0": 970, "creator_0": 30}))  # k1 paid twice
    assert verdict.valid is False
    assert verdict.counts["duplicated"] == 1
    assert verdict.counts["lost"] == 0
    assert [a.kind for a in verdict.anomalies] == ["op_applied_twice"]
    assert "10 tokens below" in verdict.anomalies[0].explanation


def test_durability_counts_lost_and_says_so_when_the_end_state_cannot_tell() -> None:
    run = _lost_ack_run()
    unobserved = check_durability(run.input(None))
    assert unobserved.counts["lost"] == 1
    assert "not observed" in unobserved.anomalies[0].explanation
    off = check_durability(run.input({"fan_0": 900, "creator_0": 100}))
    assert off.counts["lost"] == 1
    assert off.counts["duplicated"] == 0
    assert "do not explain" in off.anomalies[0].explanation


def test_durability_flags_a_replay_of_an_indeterminate_op_executed_again() -> None:
    # The effect committed, the key did not: the retry after the heal paid a second time.
    run = _faulted(lambda h: _tip(h, "k1", Kind.INFO),
                   lambda h: _tip(h, "k1", tip_id="t_1"))
    holds = check_durability(run.input({"fan_0": 990, "creator_0": 10}))
    assert holds.valid is True, holds
    twice = check_durability(run.input({"fan_0": 980, "creator_0": 20}))
    assert twice.valid is False
    assert twice.counts["duplicated"] == 1
    assert twice.anomalies[0].kind == "op_applied_twice"


def test_durability_flags_a_purchase_that_charged_the_card_twice() -> None:
    def purchase(h: H, intent_id: str) -> None:
        h.purchase("fan_0", "p_0", 500, intent_id, key="kp")

    run = _faulted(lambda h: purchase(h, "pi_1"), lambda h: purchase(h, "pi_2"))
    truth = T().paid("pi_1", "fan_0", 500).paid("pi_2", "fan_0", 500).build()
    verdict = check_durability(run.input({"fan_0": 2_000}, truth=truth))
    assert verdict.counts["duplicated"] == 1
    assert "pi_1 and pi_2" in verdict.anomalies[0].explanation
    once = T().paid("pi_1", "fan_0", 500).intent("pi_2", "fan_0", 500, status="canceled")
    verdict = check_durability(run.input({"fan_0": 1_500}, truth=once.build()))
    assert verdict.counts["lost"] == 1


def test_durability_flags_a_refusal_that_had_been_applied() -> None:
    run = _faulted(lambda h: _tip(h, "k1", Kind.FAIL, amount=10),
                   lambda h: _tip(h, "k1", tip_id="t_1", replayed=True))
    verdict = check_durability(run.input({"fan_0": 990, "creator_0": 10}))
    assert verdict.valid is False
    assert verdict.counts["unexpected"] == 1
    assert [a.kind for a in verdict.anomalies] == ["refused_op_applied"]
    assert "(402 insufficient_funds)" in verdict.anomalies[0].explanation
    assert "marked as a replay" in verdict.anomalies[0].explanation


def test_durability_flags_a_fault_that_never_recovered_or_recovered_late() -> None:
    run = _faulted(lambda h: _tip(h, "k1"), lambda h: _tip(h, "k1", replayed=True),
                   recovery_ms=50)
    balances = {"fan_0": 990, "creator_0": 10}
    assert check_durability(run.input(balances)).valid is True
    late = check_durability(run.input(balances), recovery_ms_bound=20)
    assert late.valid is False
    assert late.counts["recovery_ms_max"] == 50
    assert [a.kind for a in late.anomalies] == ["not_recovered"]
    assert "50 ms after the heal" in late.anomalies[0].explanation
    never = dataclasses.replace(run.window, recovered_ns=None)
    verdict = check_durability(run.input(balances, faults=(never,)))
    assert verdict.valid is False
    assert verdict.anomalies[0].kind == "not_recovered"
    assert verdict.anomalies[0].observed == "never recovered"


def test_durability_leaves_a_fault_that_could_not_be_injected_unknown() -> None:
    run = _faulted(lambda h: _tip(h, "k1"), lambda h: _tip(h, "k1", replayed=True))
    failed = dataclasses.replace(run.window, recovered_ns=None,
                                 error="toxiproxy refused the toxic")
    verdict = check_durability(run.input({"fan_0": 990, "creator_0": 10}, faults=(failed,)))
    assert verdict.valid == "unknown"
    assert verdict.anomalies == ()
    assert "toxiproxy refused the toxic" in (verdict.note or "")


def test_durability_is_unknown_when_a_key_was_not_re_sent_or_its_retry_unanswered() -> None:
    run = _faulted(lambda h: (_tip(h, "k1"), _tip(h, "k2")),
                   lambda h: _tip(h, "k1", Kind.INFO, status=None, error="read_timeout"))
    verdict = check_durability(run.input({"fan_0": 980, "creator_0": 20}))
    assert verdict.valid == "unknown"
    assert "never re-sent" in (verdict.note or "")
    assert "no definite answer" in (verdict.note or "")
    assert verdict.counts["lost"] == 0


def test_durability_needs_the_replay_mark_where_the_target_marks_replays() -> None:
    # The same id, unmarked, from a target that marks its replays: executed anew.
    def after(h: H) -> None:
        _tip(h, "k1", tip_id="t_1")
        _tip(h, "k2", tip_id="t_2", replayed=True)

    run = _faulted(lambda h: (_tip(h, "k1", tip_id="t_1"), _tip(h, "k2", tip_id="t_2")),
                   after)
    verdict = check_durability(run.input({"fan_0": 980, "creator_0": 20}))
    assert verdict.counts["lost"] == 1


def test_durability_runs_in_check_all_with_the_faults_of_the_input() -> None:
    verdicts = check_all(_correct_run().input({"fan_0": 970, "creator_0": 30}),
                         ["durability"], raise_errors=True)
    assert verdicts["durability"].valid is True


# -- a property: answered alike means it holds; one answer flipped means exactly one lost ----


_OUTCOMES = st.sampled_from(["ok", "info_happened", "info_not", "refused"])


@st.composite
def _plans(draw: st.DrawFn) -> list[tuple[str, str, int]]:
    """Per key: (sender, what happened before the heal, tokens)."""
    size = draw(st.integers(min_value=1, max_value=12))
    return [(draw(st.sampled_from(["fan_0", "fan_1"])), draw(_OUTCOMES),
             draw(st.integers(min_value=1, max_value=50))) for _ in range(size)]


def _run_of(plan: list[tuple[str, str, int]], flipped: int | None = None
            ) -> tuple[_Run, dict[str, int]]:
    net = {"fan_0": START_TOKENS, "fan_1": START_TOKENS, "creator_0": 0}

    def during(h: H) -> None:
        for i, (sender, outcome, tokens) in enumerate(plan):
            kind = {"ok": Kind.OK, "refused": Kind.FAIL}.get(outcome, Kind.INFO)
            _tip(h, f"k{i}", kind, sender=sender, amount=tokens)

    def after(h: H) -> None:
        for i, (sender, outcome, tokens) in enumerate(plan):
            if outcome == "refused":
                _tip(h, f"k{i}", Kind.FAIL, sender=sender, amount=tokens)
            elif i == flipped:
                _tip(h, f"k{i}", tip_id="t_other", sender=sender, amount=tokens)
            else:
                _tip(h, f"k{i}", sender=sender, amount=tokens,
                     replayed=outcome != "info_not")

    for sender, outcome, tokens in plan:
        if outcome != "refused":
            net[sender] -= tokens
            net["creator_0"] += tokens
    return _faulted(during, after), net


@given(_plans())
def test_durability_holds_when_every_retry_gets_its_first_answer(
        plan: list[tuple[str, str, int]]) -> None:
    run, net = _run_of(plan)
    verdict = check_durability(run.input(net))
    assert verdict.valid is True, verdict
    assert verdict.counts["attempted"] == len(plan)
    assert verdict.counts["acknowledged"] == sum(1 for _, o, _ in plan if o == "ok")
    assert verdict.counts["recovered"] == sum(1 for _, o, _ in plan if o == "info_happened")


@given(_plans(), st.data())
def test_durability_finds_exactly_one_lost_when_one_retry_answers_otherwise(
        plan: list[tuple[str, str, int]], data: st.DataObject) -> None:
    plan = [*plan, ("fan_0", "ok", 7)]  # at least one acknowledged key
    acknowledged = [i for i, (_, outcome, _) in enumerate(plan) if outcome == "ok"]
    run, net = _run_of(plan, flipped=data.draw(st.sampled_from(acknowledged)))
    verdict = check_durability(run.input(net))
    assert verdict.valid is False
    assert verdict.counts["lost"] == 1
    assert verdict.counts["duplicated"] == 0
    assert [a.kind for a in verdict.anomalies] == ["acknowledged_op_lost"]


def test_durability_of_an_observation_with_no_accounts_counts_lost() -> None:
    run = _lost_ack_run()
    inp = dataclasses.replace(run.input(None), observation=Observation(accounts={}))
    assert check_durability(inp).counts["lost"] == 1


def test_each_faulted_phase_has_its_own_heal_and_its_own_retries() -> None:
    # Two faults one after the other, each with a burst and its retries: a key of the
    # first phase is judged by its retry after the first heal, not the last one.
    h = H()
    windows = []
    for phase in range(2):
        started = h.wait(1)
        _tip(h, f"k{phase}", tip_id=f"t{phase}")
        healed = h.wait(1)
        recovered = h.wait(1)
        windows.append(FaultWindow(name=f"f{phase}", kind="kill_service", link=None,
                                   description="kill", started_ns=started, healed_ns=healed,
                                   recovered_ns=recovered))
        _tip(h, f"k{phase}", tip_id=f"t{phase}", replayed=True)
    inp = h.input(observe({"fan_0": START_TOKENS - 20, "creator_0": 20}), None,
                  initial=observe({"fan_0": START_TOKENS, "creator_0": 0}),
                  faults=tuple(windows))
    verdict = check_durability(inp)
    assert verdict.valid is True, verdict
    assert _counts(verdict.counts) == {"attempted": 2, "acknowledged": 2, "indeterminate": 0,
                                       "lost": 0, "recovered": 0, "duplicated": 0,
                                       "unexpected": 0, "faults": 2}


def test_a_burst_op_started_after_its_fault_ended_belongs_to_no_faulted_phase() -> None:
    # A burst larger than the runner's window: its last op starts after the fault has
    # ended, and is re-sent before the next fault; it is in neither phase.
    h = H()
    started = h.wait(1)
    _tip(h, "k0", tip_id="t0")
    healed = h.wait(1)
    recovered = h.wait(1)
    _tip(h, "k_late", tip_id="t_late")  # the burst's straggler, after the recovery
    _tip(h, "k0", tip_id="t0", replayed=True)
    _tip(h, "k_late", tip_id="t_late", replayed=True)
    first = FaultWindow(name="f0", kind="pause_service", link=None, description="pause",
                        started_ns=started, healed_ns=healed, recovered_ns=recovered)
    started = h.wait(1)
    _tip(h, "k1", tip_id="t1")
    healed = h.wait(1)
    recovered = h.wait(1)
    _tip(h, "k1", tip_id="t1", replayed=True)
    second = FaultWindow(name="f1", kind="pause_service", link=None, description="pause",
                         started_ns=started, healed_ns=healed, recovered_ns=recovered)
    inp = h.input(observe({"fan_0": START_TOKENS - 30, "creator_0": 30}), None,
                  initial=observe({"fan_0": START_TOKENS, "creator_0": 0}),
                  faults=(first, second))
    verdict = check_durability(inp)
    assert verdict.valid is True, verdict
    assert verdict.counts["attempted"] == 2
