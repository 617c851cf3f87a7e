"""Load mode: run locust as a subprocess against a target, then judge the whole run.

``run_load`` starts (or reaches) the target as ``tokenchaos run`` does, resets the
provider, provisions the run's hot creators (the few creators every locust user of every
process tips, so tips to one recipient race; their ids and tokens go to locust in the
configuration), reads the state before the run, and starts ``locust -f harness/locustfile.py``
as a child process (locust monkey-patches the standard library with gevent, so it never
runs in this process; the local stack's provider keeps serving in this event loop while
locust runs). Locust is headless unless ``--web-ui`` is asked for, and bounded: without a
``--run-time`` of the user's it runs ``RUN_TIME_DEFAULT``.

When locust's master (or its one local process) quits, it writes its figures to
``locust.json`` once every worker's history is in ``histories/``, then waits for a
verdict. ``judge_load_dir`` then merges the histories (``harness.load_merge``), waits for
the provider's quiescence, observes the end state, fetches the provider's truth, judges
the merged history with the checkers of ``load_scenario`` (``harness.judge``), and writes
``history.jsonl``, ``run.json``, ``junit.xml`` and ``index.html`` beside locust's HTML
and CSV, locust's figures among the load scenario's stats, and ``verdict.json``, from
which the locustfile's ``quitting`` listener sets locust's own exit code. Exit codes are
the harness's: 0 held, 1 an invariant broke, 2 could not judge.

``python -m harness.load DIR`` runs the same judge for a locustfile run directly
(``locust -f``), reading the configuration from ``TOKENCHAOS_LOAD_CONFIG``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.campaign import VERSION, RunPlan, open_target
from harness.checkers.latency import measure_latency
from harness.errors import TargetError, TokenchaosError, UsageError
from harness.history import HistoryWriter, ScenarioRun, load
from harness.judge import exit_code_for, judge
from harness.limits import DEFAULT_LIMITS, Limits
from harness.load_config import (
    CONFIG_ENV,
    FIGURES_FILE,
    HISTORIES_DIR,
    VERDICT_FILE,
    LoadConfig,
    write_atomically,
)
from harness.load_merge import Merged, merge_runs, recipient_races_count
from harness.load_mix import (
    DEFAULT_MIX,
    LoadMix,
    check_http_provisioning,
    hot_creator_names,
    load_provokes,
)
from harness.model import Event, Kind, Observation, ProviderTruth, merge_validity
from harness.provider.client import ProviderClient
from harness.provider.policy import DeliveryPolicy
from harness.report.html import write_report
from harness.report.record import RunRecord, ScenarioRecord, TargetInfo, iso_utc
from harness.scenario import Scenario, ScenarioParams
from harness.targets.profile import load_profile
from harness.targets.session import TargetSession

__all__ = ["LOAD_CHECKERS", "LOCUSTFILE", "RUN_TIME_DEFAULT", "LoadOutcome", "LoadPlan",
           "judge_load_dir", "load_scenario", "locust_arguments", "locust_figures",
           "run_load", "run_time_s"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
RUN_TIME_DEFAULT = "30s"
USERS_DEFAULT = 8
# Past the run time, locust still stops its users, waits for workers' histories and for
# our verdict; past this grace on top, the harness stops it and cannot judge.
GRACE_S = 180.0
_POLL_S = 0.1
# What a load run is judged by: every scenario's base checkers, and the calls checker
# (``load_scenario`` leaves out those the mix gives nothing to check).
LOAD_CHECKERS = ("non_negative", "conservation", "reconciliation", "errors",
                 "exactly_once_credit", "calls", "coverage")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    """What to load, with which mix, and the locust flags given after ``--``."""

    profile: str = "reference"
    local: bool = True
    flaws: tuple[str, ...] = ()
    target_url: str | None = None
    provider_url: str | None = None
    provider_key: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    mix: LoadMix = DEFAULT_MIX
    seed: int = 1
    locust_args: tuple[str, ...] = ()
    report_dir: Path = Path("reports")
    limits: Limits = DEFAULT_LIMITS
    command: str = "tokenchaos load"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadOutcome:
    """A judged load run: its record, where the report went, locust's figures, the code."""

    record: RunRecord
    report_dir: Path
    figures: Mapping[str, Any]
    exit_code: int


def load_scenario(mix: LoadMix) -> Scenario:
    """The scenario a load run is judged as: the load checkers, provoking what the mix does.

    A checker with nothing to check in this mix is left out rather than left ``unknown``:
    ``calls`` when the mix charges no call, ``coverage`` when it provokes nothing.
    """
    left_out: set[str] = set()
    if mix.weights.get("call_charge", 0) == 0:
        left_out.add("calls")
    if not load_provokes(mix):
        left_out.add("coverage")
    return Scenario(name="load", summary="locust users drawing ops from a load profile",
                    users=lambda params: {}, generator=lambda rng, params: iter(()),
                    checkers=tuple(c for c in LOAD_CHECKERS if c not in left_out),
                    provokes=load_provokes(mix))


def run_time_s(text: str) -> float:
    """Locust's ``--run-time`` (``90``, ``30s``, ``1m30s``, ``2h``) in seconds.

    Raises:
        UsageError: it is not such a time, or is zero.
    """
    match = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*", text)
    if not match or not any(match.groups()):
        raise UsageError(f"--run-time {text!r}: give e.g. 30s, 5m or 1h30m")
    hours, minutes, seconds = (int(group or 0) for group in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total < 1:
        raise UsageError(f"--run-time {text!r}: a load run lasts at least 1 s")
    return float(total)


def locust_arguments(given: Sequence[str], *, out_dir: Path) -> tuple[list[str], float]:
    """Locust's flags for a run: the user's, with our defaults; and the run time in s.

    ``--web-ui`` (ours) means "do not pass ``--headless``". Without ``--run-time`` the run
    lasts ``RUN_TIME_DEFAULT``; without ``--users`` it runs ``USERS_DEFAULT`` users, all
    spawned at once; without ``--html`` / ``--csv``, locust's report goes beside ours.

    Raises:
        UsageError: ``--worker`` (a worker needs no tokenchaos: run locust itself), or a
            run time that is not one.
    """
    args = list(given)
    if "--worker" in args:
        raise UsageError("tokenchaos load starts a master or a local run; start a worker "
                         f"with locust itself: locust -f {LOCUSTFILE} --worker --master-host "
                         "HOST (the master sends it the target and the workload)")
    web_ui = "--web-ui" in args
    args = [arg for arg in args if arg != "--web-ui"]
    words = {arg.split("=", 1)[0] for arg in args}
    extra: list[str] = [] if web_ui or "--headless" in words else ["--headless"]
    run_time = RUN_TIME_DEFAULT
    for index, arg in enumerate(args):
        if arg in ("-t", "--run-time") and index + 1 < len(args):
            run_time = args[index + 1]
        elif arg.startswith("--run-time="):
            run_time = arg.split("=", 1)[1]
    if not words & {"-t", "--run-time"}:
        extra += ["--run-time", run_time]
    if not words & {"-u", "--users"}:
        extra += ["--users", str(USERS_DEFAULT)]
        if not words & {"-r", "--spawn-rate"}:
            extra += ["--spawn-rate", str(USERS_DEFAULT)]
    if "--html" not in words:
        extra += ["--html", str(out_dir / "locust.html")]
    if "--csv" not in words:
        extra += ["--csv", str(out_dir / "locust")]
    return [*extra, *args], run_time_s(run_time)


async def run_load(plan: LoadPlan, *, announce: Callable[[str], None] | None = None,
                   clock: Callable[[], float] = time.monotonic) -> LoadOutcome:
    """Start the target, run locust on it, judge the merged histories, write the report.

    Raises:
        UsageError: a bad locust flag we read, or a profile that provisions from a file.
        TokenchaosError: the target, the provider or locust failed (exit 2).
    """
    scenario = load_scenario(plan.mix)
    run_plan = RunPlan(runs=((scenario, ScenarioParams(seed=plan.seed)),), suite=None,
                       profile=plan.profile, local=plan.local, flaws=plan.flaws,
                       target_url=plan.target_url, provider_url=plan.provider_url,
                       provider_key=plan.provider_key, allowed_hosts=plan.allowed_hosts,
                       report_dir=plan.report_dir, limits=plan.limits, command=plan.command)
    profile = load_profile(plan.profile)
    check_http_provisioning(profile)
    from harness.campaign import check_addresses

    check_addresses(run_plan, profile)
    started_ns = time.time_ns()
    out_dir = (plan.report_dir / _run_id(started_ns)).resolve()
    args, duration_s = locust_arguments(plan.locust_args, out_dir=out_dir)
    async with open_target(run_plan, profile) as (session, provider, target, _):
        if announce is not None:
            announce(f"tokenchaos: loading {target.service_url} with locust "
                     f"({' '.join(args)})")
        if provider is not None:
            await provider.reset()
            await provider.set_policy(DeliveryPolicy())
        hot_creators = await _provision_hot_creators(session, plan.mix)
        initial = await _observe(session, session.system_accounts)
        config = LoadConfig(report_dir=str(out_dir), profile=plan.profile,
                            target_url=session.base_url, admin_key=session.admin_key,
                            provider_url=target.provider_url,
                            provider_key=None if provider is None else provider.control_key,
                            mix=dict(plan.mix.weights), hot_creators=hot_creators,
                            seed=plan.seed,
                            op_timeout_s=plan.limits.op_timeout_s,
                            response_body_bytes_max=plan.limits.response_body_bytes_max,
                            judge="parent", latency_ms_max=plan.limits.latency_ms_max)
        out_dir.mkdir(parents=True, exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args,
            env={**os.environ, CONFIG_ENV: config.to_json()}, stdin=asyncio.subprocess.DEVNULL)
        try:
            ready = await _await_figures(process, out_dir / FIGURES_FILE,
                                         deadline_s=clock() + duration_s + GRACE_S, clock=clock)
            if not ready:
                raise TokenchaosError(
                    f"locust ended (exit code {process.returncode}) or ran past its run time "
                    f"and {GRACE_S:.0f} s more without finishing the run; see its output above")
            outcome = await judge_load_dir(config, session=session, provider=provider,
                                           initial=initial, target=target,
                                           started_ns=started_ns, command=plan.command,
                                           limits=plan.limits)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), timeout=GRACE_S)
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()
    return outcome


async def _provision_hot_creators(session: TargetSession,
                                  mix: LoadMix) -> dict[str, dict[str, str]]:
    """The run's hot creators, made once for every locust process; none if nobody tips them.

    Raises:
        ProvisioningFailed: the target refused to create one (exit 2).
    """
    if mix.weights.get("hot_tip", 0) == 0:
        return {}
    names = hot_creator_names()
    made = await session.provision(dict.fromkeys(names, "creator"), concurrency=len(names))
    return {name: {"target_id": made[name].target_id, "token": made[name].token}
            for name in names}


async def _await_figures(process: asyncio.subprocess.Process, path: Path, *,
                         deadline_s: float, clock: Callable[[], float]) -> bool:
    """Wait until locust has written its figures; False if it exited or ran past the bound."""
    while not path.exists():
        if process.returncode is not None or clock() >= deadline_s:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=_POLL_S)
    return True


async def judge_load_dir(config: LoadConfig, *, session: TargetSession,
                         provider: ProviderClient | None, initial: Observation | None,
                         target: TargetInfo, started_ns: int, command: str,
                         limits: Limits) -> LoadOutcome:
    """Merge the run's histories, observe the end after quiescence, judge, write reports.

    Writes ``verdict.json`` last, for locust's ``quitting`` listener.

    Raises:
        TokenchaosError: a locust process's history is missing or damaged (exit 2): a
            run with ops nobody recorded cannot be judged.
    """
    out_dir = config.out_dir
    figures = json.loads((out_dir / FIGURES_FILE).read_text(encoding="utf-8"))
    merged = merge_runs(_worker_runs(out_dir, figures.get("workers") or []))
    notes: dict[str, str] = {}
    if provider is not None:
        try:
            await provider.wait_quiescent(limits.quiescence_timeout_s)
        except TokenchaosError as exc:
            notes["end_not_quiescent"] = str(exc)
    # A system account (fees) holds what earlier traffic left: its change is known only
    # from a start read; without one it is not read, and what needs it says unknown.
    system = session.system_accounts if initial is not None else {}
    observation = await _observe(session, {**merged.target_ids, **system}, notes)
    truth = None if provider is None else await _truth(session, provider, merged)
    history_path = out_dir / "history.jsonl"
    history_path.unlink(missing_ok=True)
    mix = LoadMix(weights=config.mix) if config.mix else DEFAULT_MIX
    stats = {**merged.stats, "workers_count": len(merged.workers),
             "recipient_races_count": recipient_races_count(merged.history),
             **_figure_stats(figures), **notes}
    with HistoryWriter(history_path) as writer:
        writer.begin(name="load", seed=config.seed,
                     params={"seed": config.seed, "mix": mix.text()},
                     users=merged.users, target_ids=merged.target_ids,
                     fees=session.profile.fees)
        for event in merged.history:
            writer.event(event)
        if initial is not None:
            writer.initial(initial)
        if observation is not None:
            writer.observation(observation)
        if truth is not None:
            writer.truth(truth)
        writer.end(stats)
    run = ScenarioRun(name="load", seed=config.seed, params={}, users=merged.users,
                      target_ids=merged.target_ids, history=merged.history, initial=initial,
                      observation=observation, truth=truth, complete=True,
                      fees=session.profile.fees)
    verdicts = judge(load_scenario(mix), run, latency_ms_max=config.latency_ms_max)
    record = _record(config, merged, verdicts, stats, target=target, started_ns=started_ns,
                     command=command, limits=limits, mix=mix)
    write_report(record, history_path, out_dir)
    exit_code = exit_code_for([record.valid])
    write_atomically(out_dir / VERDICT_FILE, json.dumps(
        {"exit_code": exit_code, "valid": record.valid}))
    return LoadOutcome(record=record, report_dir=out_dir, figures=figures,
                       exit_code=exit_code)


def locust_figures(figures: Mapping[str, Any]) -> Mapping[str, Any]:
    """The overall row of ``locust.json`` (requests, failures, rps, p50, p95)."""
    total = figures.get("total")
    return total if isinstance(total, Mapping) else {}


def _figure_stats(figures: Mapping[str, Any]) -> dict[str, int | float]:
    total = locust_figures(figures)
    return {f"locust_{key}": total[key] for key in
            ("requests_count", "failures_count", "rps", "latency_ms_p50", "latency_ms_p95")
            if isinstance(total.get(key), int | float)}


def _worker_runs(out_dir: Path, tags: Sequence[str]) -> list[tuple[str, ScenarioRun]]:
    runs: list[tuple[str, ScenarioRun]] = []
    for tag in tags:
        path = out_dir / HISTORIES_DIR / f"{tag}.jsonl"
        if not path.exists():
            raise TokenchaosError(f"locust process {tag} wrote no history ({path}): its ops "
                                  "were not recorded, so the run cannot be judged")
        loaded = load(path)
        if len(loaded) != 1 or not loaded[0].complete:
            raise TokenchaosError(f"{path}: expected one complete scenario, found "
                                  f"{len(loaded)}; the process writing it failed")
        runs.append((tag, loaded[0]))
    if not runs:
        raise TokenchaosError(f"no locust process of the run recorded a history in "
                              f"{out_dir / HISTORIES_DIR}; did any user start?")
    return runs


async def _observe(session: TargetSession, target_ids: Mapping[str, str],
                   notes: dict[str, str] | None = None) -> Observation | None:
    if session.observer is None:
        return None
    try:
        return await session.observer.observe(target_ids)
    except TargetError as exc:
        if notes is not None:
            notes["observation_error"] = str(exc)
        return None


async def _truth(session: TargetSession, provider: ProviderClient,
                 merged: Merged) -> ProviderTruth:
    """The provider's truth, narrowed to the intents this run's history names (as the
    runner narrows a scenario's: the provider keeps intents across runs)."""
    from harness.provider.truth import truth_from_json

    metadata = session.profile.metadata
    truth = truth_from_json(await provider.truth_json(), user_key=metadata.user_key,
                            tokens_keys=metadata.tokens_keys,
                            user_by_target_id={v: k for k, v in merged.target_ids.items()})
    named = {str(e.value["intent_id"]) for e in merged.history
             if e.kind != Kind.INVOKE and e.value.get("intent_id") is not None}
    named |= {d.intent_id for d in truth.deliveries if d.intent_id is not None}
    named |= set(truth.event_intents.values())
    return dataclasses.replace(truth, intents={i: t for i, t in truth.intents.items()
                                               if i in named})


def _record(config: LoadConfig, merged: Merged, verdicts: Mapping[str, Any],
            stats: Mapping[str, Any], *, target: TargetInfo, started_ns: int, command: str,
            limits: Limits, mix: LoadMix) -> RunRecord:
    events: Sequence[Event] = merged.history
    scenario = ScenarioRecord(
        name="load", seed=config.seed, params={"seed": config.seed, "mix": mix.text()},
        started_ns=0, duration_s=(events[-1].time_ns / 1e9) if events else 0.0,
        ops_count=sum(1 for e in events if e.kind == Kind.INVOKE), stats=dict(stats),
        verdicts=dict(verdicts), reproduce=command,
        performance=measure_latency(events, latency_ms_slow=limits.latency_ms_slow,
                                    latency_ms_max=limits.latency_ms_max))
    valid = merge_validity(*(v.valid for v in verdicts.values())) if verdicts else "unknown"
    return RunRecord(run_id=config.out_dir.name, started_at=iso_utc(started_ns),
                     finished_at=iso_utc(time.time_ns()), tokenchaos_version=VERSION,
                     target=target, suite="load", command=command, valid=valid,
                     exit_code=exit_code_for([valid]), scenarios=(scenario,))


def _run_id(started_ns: int) -> str:
    import secrets
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(started_ns / 1e9, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"load-{stamp}-{secrets.token_hex(3)}"


async def _judge_standalone(out_dir: Path) -> int:
    """The judge of a locustfile run directly: open the target from the configuration."""
    text = os.environ.get(CONFIG_ENV, "")
    if not text:
        raise UsageError(f"python -m harness.load {out_dir}: set {CONFIG_ENV}")
    config = LoadConfig.from_json(text)
    profile = load_profile(config.profile)
    limits = DEFAULT_LIMITS
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(TargetSession.open(
            profile, limits=limits, base_url=config.target_url, admin_key=config.admin_key,
            provider_url=config.provider_url))
        provider = None
        if config.provider_url and config.provider_key:
            provider = await stack.enter_async_context(ProviderClient(
                config.provider_url, control_key=config.provider_key,
                timeout_s=limits.op_timeout_s))
        target = TargetInfo(profile=config.profile, service_url=session.base_url,
                            provider_url=config.provider_url,
                            fees=profile.fees.describe())
        outcome = await judge_load_dir(config, session=session, provider=provider,
                                       initial=None, target=target, started_ns=time.time_ns(),
                                       command="locust -f " + str(LOCUSTFILE), limits=limits)
    print(f"tokenchaos: load run judged: {outcome.record.valid}; report "
          f"{outcome.report_dir / 'index.html'}", file=sys.stderr)
    return outcome.exit_code


def _main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m harness.load REPORT_DIR", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_judge_standalone(Path(argv[0])))
    except TokenchaosError as exc:
        print(f"tokenchaos: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
