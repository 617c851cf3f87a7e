"""A whole run: scenarios against one target, each judged, then the report written.

scenario → runner → history → observer → checkers → verdict → report: this module only
sequences those stages for a list of scenario runs. It starts the local stack when asked,
opens one target session and one provider client for the run, gives every scenario the
same run deadline, judges each scenario as it ends (``harness.judge``), and writes
``run.json``, ``junit.xml`` and ``index.html`` beside ``history.jsonl``.

Every scenario is planned for the target first (``harness.scenario.traits_of``): what its
profile cannot support is "not run for this target", the whole scenario or a part of it,
recorded with the reason and never judged. With users from a file, the harness counts the
fans and creators the run needs (each scenario takes users of its own) and refuses to
start when the file holds too few.

With an SQL observer that names the target's tables (``[observer] balances_table`` and the
rest), the target's schema is checked right after it answers its health check, before
the first scenario (``schema_step``, ``harness.targets.schema_check``): each finding is
announced first, in plain words, and the check's verdict is recorded as the run's
``schema`` verdict, which joins the run's verdict (``run_validity``): a defect breaks the
run (exit 1), a schema that could not be checked leaves it unknown (exit 2).

Before anything connects, every address of the run is validated and a remote one must be
opted into (``harness.targets.address``); the first thing a run announces is the address
it is about to load. The run's time bound (``Limits.run_duration_s_max``) starts when the
target answers its health check, so a slow stack start-up does not eat the scenarios'
time: it covers provisioning, the scenarios, quiescence and the observations.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.checkers.latency import measure_latency
from harness.errors import TargetError, UsageError
from harness.faults.nemesis import Nemesis
from harness.history import HistoryWriter
from harness.judge import exit_code_for, judge
from harness.limits import DEFAULT_LIMITS, Limits
from harness.model import Validity, Verdict, merge_validity
from harness.progress import Progress
from harness.provider.client import ProviderClient
from harness.report.html import write_report
from harness.report.junit import write_junit
from harness.report.record import (
    NotRunPart,
    RunRecord,
    ScenarioRecord,
    TargetInfo,
    iso_utc,
    write_run_json,
)
from harness.runner import run_scenario
from harness.scenario import Scenario, ScenarioParams, traits_of
from harness.stack import LocalStack, StackConfig
from harness.targets.address import Address, check_remote_allowed, database_hosts, http_address
from harness.targets.observers import SqlObserver
from harness.targets.profile import FileProvisioning, Profile, SqlObserverSpec, load_profile
from harness.targets.provisioning import load_users_file
from harness.targets.schema_check import SchemaFinding, schema_verdict
from harness.targets.session import TargetSession

__all__ = ["Announce", "OnScenario", "RunOutcome", "RunPlan", "check_addresses",
           "check_users_file", "needs_fault_proxies", "open_target", "plan_for_target",
           "reproduce_command", "run_plan", "run_validity", "schema_lines", "schema_step",
           "users_needed"]

Run = tuple[Scenario, ScenarioParams]

VERSION = "0.1.0"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPlan:
    """What to run, against what, and where to write the report."""

    runs: tuple[tuple[Scenario, ScenarioParams], ...]
    suite: str | None  # the suite's name, or None when scenarios were named one by one
    profile: str = "reference"  # a shipped profile name or a .toml path
    local: bool = True  # start the local stack (embedded PostgreSQL + provider + service)
    flaws: tuple[str, ...] = ()  # flaws to install in the local reference service
    target_url: str | None = None  # remote target: overrides the profile's base URL
    provider_url: str | None = None  # remote provider simulator, if the target uses one
    provider_key: str | None = None  # its control key (what tokenchaos provider printed)
    database_url: str | None = None  # for a SQL observer of a remote target
    local_database_url: str | None = None  # the local stack's database (None: env, embedded)
    local_log_level: str | None = None  # the local service's log level (None: warning)
    allowed_hosts: tuple[str, ...] = ()  # remote hosts opted into (--allow-remote)
    report_dir: Path = Path("reports")
    limits: Limits = DEFAULT_LIMITS
    command: str = "tokenchaos run"

    def __post_init__(self) -> None:
        assert self.runs, "a plan runs at least one scenario"
        if self.flaws:
            assert self.local, "flaws can only be installed in the local reference service"
        if self.provider_url is not None and not self.provider_key:
            raise UsageError("--provider-url needs the provider's control key: pass "
                             "--provider-key or set TOKENCHAOS_PROVIDER_KEY to the "
                             "provider_key that tokenchaos provider printed")
        if self.local_database_url is not None or self.local_log_level is not None:
            assert self.local, "local_database_url and local_log_level are the local stack's"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """A finished run: its record, where the report went, and the exit code."""

    record: RunRecord
    report_dir: Path
    exit_code: int


Announce = Callable[[str], None]
OnScenario = Callable[[ScenarioRecord], None]


async def run_plan(plan: RunPlan, *, progress: Progress | None = None,
                   announce: Announce | None = None,
                   on_scenario: OnScenario | None = None,
                   clock: Callable[[], float] = time.monotonic) -> RunOutcome:
    """Run every scenario of the plan, judge each, and write the report.

    Args:
        announce: told, before the first scenario, which address the run is about to load,
            then each finding of the schema check (with an SQL observer naming its tables).
        on_scenario: told each scenario's judged record as soon as it is judged, so its
            verdicts can be shown while the next scenario runs.
        clock: the ``time.monotonic`` clock the run's deadline is computed on.

    Raises:
        UsageError: an address is malformed, or remote and not opted into; raised before
            anything connects.
        TokenchaosError: the harness could not work with the target or the stack (exit 2);
            the history written so far stays on disk.
    """
    profile = load_profile(plan.profile)
    check_addresses(plan, profile)
    runs = plan_for_target(plan.runs, profile)
    check_users_file(profile, runs)
    started_ns = time.time_ns()
    run_id = _run_id(started_ns)
    out_dir = plan.report_dir / run_id
    history_path = out_dir / "history.jsonl"
    records: list[ScenarioRecord] = []
    async with open_target(plan, profile) as (session, provider, target, nemesis):
        runs = plan_for_target(runs, profile, nemesis=nemesis)
        if announce is not None:
            announce(_loading_line(plan, target))
        schema = await schema_step(session, announce)
        # The bound starts now, with the target up and healthy (see the module docstring).
        deadline_s = clock() + plan.limits.run_duration_s_max
        with HistoryWriter(history_path) as writer:
            for scenario, params in runs:
                reproduce = reproduce_command(plan, scenario.name, params, profile=profile)
                whole = scenario.whole_not_run(params)
                if whole is not None:
                    records.append(ScenarioRecord(
                        name=scenario.name, seed=params.seed, params=params.record(),
                        started_ns=0, duration_s=0.0, ops_count=0, stats={}, verdicts={},
                        reproduce=reproduce, not_run_reason=whole.reason))
                    continue
                scenario_started_ns = time.monotonic_ns()
                result = await run_scenario(scenario, params, session=session,
                                            provider=provider, writer=writer,
                                            limits=plan.limits, progress=progress,
                                            deadline_s=deadline_s, nemesis=nemesis)
                verdicts = judge(scenario.adapted(params), result,
                                 latency_ms_max=plan.limits.latency_ms_max)
                performance = measure_latency(result.events,
                                              latency_ms_slow=plan.limits.latency_ms_slow,
                                              latency_ms_max=plan.limits.latency_ms_max)
                records.append(ScenarioRecord(
                    name=scenario.name, seed=params.seed, params=params.record(),
                    started_ns=0, duration_s=(time.monotonic_ns() - scenario_started_ns) / 1e9,
                    ops_count=sum(1 for e in result.events if e.kind == "invoke"),
                    stats=dict(result.stats), verdicts=verdicts, reproduce=reproduce,
                    performance=performance, faults=result.faults,
                    not_run=tuple(NotRunPart(part=part.part, reason=part.reason)
                                  for part in scenario.not_run(params) if part.part)))
                if on_scenario is not None:
                    on_scenario(records[-1])
    valid = run_validity(records, schema)
    exit_code = exit_code_for([valid])
    record = RunRecord(run_id=run_id, started_at=iso_utc(started_ns),
                       finished_at=iso_utc(time.time_ns()), tokenchaos_version=VERSION,
                       target=target, suite=plan.suite, command=plan.command, valid=valid,
                       exit_code=exit_code, scenarios=tuple(records), schema=schema)
    write_run_json(record, out_dir / "run.json")
    write_junit(record, out_dir / "junit.xml")
    write_report(record, history_path, out_dir)
    return RunOutcome(record=record, report_dir=out_dir, exit_code=exit_code)


def run_validity(records: Sequence[ScenarioRecord], schema: Verdict | None) -> Validity:
    """The run's verdict: every scenario that ran, and the schema check if one was made.

    False beats "unknown", which beats True. A run in which no scenario ran judged nothing
    of the service's behaviour: "unknown", unless its schema already broke (False). Pure.
    """
    ran = [r.valid for r in records if r.ran]
    scenarios: Validity = merge_validity(*ran) if ran else "unknown"
    return scenarios if schema is None else merge_validity(scenarios, schema.valid)


async def schema_step(session: TargetSession, announce: Announce | None) -> Verdict | None:
    """Check the target's schema when its observer is SQL and names the tables.

    Every finding is announced (``schema_lines``) before this returns, so it prints ahead
    of the first scenario. A database whose catalog cannot be read is not a defect of the
    target: the verdict is "unknown", with the error as its note.

    Returns:
        The run's ``schema`` verdict, or None when there is nothing to check (no SQL
        observer, or one that names no tables).
    """
    observer = session.observer
    if not isinstance(observer, SqlObserver) or not observer.checks_schema:
        return None
    findings: tuple[SchemaFinding, ...] = ()
    try:
        findings = await observer.check_schema()
    except TargetError as exc:
        verdict = Verdict(valid="unknown", counts={"defects": 0, "not_checked": 1},
                          note=str(exc))
    else:
        verdict = schema_verdict(findings)
    if announce is not None:
        for line in schema_lines(findings, verdict):
            announce(line)
    return verdict


def schema_lines(findings: Sequence[SchemaFinding], verdict: Verdict) -> list[str]:
    """The schema check as console lines: one per finding, or one saying it held. Pure."""
    if verdict.valid is True:
        return ["tokenchaos: schema: balances are bigint with CHECK (balance >= 0), and one "
                "row per payment intent is enforced by a constraint ON CONFLICT can use"]
    if not findings:  # the catalog could not be read
        return [f"tokenchaos: schema NOT CHECKED: {verdict.note}"]
    return [("tokenchaos: schema DEFECT: " if f.severity == "defect"
             else "tokenchaos: schema NOT CHECKED: ") + f.text for f in findings]


def needs_fault_proxies(runs: Sequence[Run]) -> bool:
    """Whether a scenario of the runs may inject a fault on a link (the local stack then
    starts its fault proxies; without, it saves their hop)."""
    return any(fault.link is not None for scenario, _ in runs for fault in scenario.faults)


def plan_for_target(runs: Sequence[Run], profile: Profile, *,
                    nemesis: Nemesis | None = None) -> tuple[Run, ...]:
    """Every run with its parameters set for the profile's target (prices, op kinds, and
    the faults ``nemesis`` can inject)."""
    traits = traits_of(profile, nemesis=nemesis)
    return tuple((scenario, params.for_target(traits)) for scenario, params in runs)


def users_needed(runs: Sequence[Run]) -> Counter[str]:
    """Fans and creators the runs need in all, each scenario taking users of its own
    (a scenario not run for the target takes none)."""
    needed: Counter[str] = Counter()
    for scenario, params in runs:
        if scenario.whole_not_run(params) is None:
            needed.update(scenario.users(params).values())
    return needed


def check_users_file(profile: Profile, runs: Sequence[Run]) -> None:
    """With users from a file, refuse a run that needs more than the file holds.

    Raises:
        UsageError: the file holds too few fans or creators (the message says how many it
            holds and how many the run needs), or is missing or malformed.
    """
    spec = profile.provisioning
    if not isinstance(spec, FileProvisioning):
        return  # every scenario creates fresh users
    if spec.users_file is None:
        raise UsageError(f"profile {profile.source} takes users from a file: set "
                         f"{spec.users_file_env} to a JSON file of existing users "
                         '({"users": [{"id", "token", "kind"}, ...]})')
    available = load_users_file(spec.users_file)
    needed = users_needed(runs)
    short = {kind: count for kind, count in sorted(needed.items())
             if count > len(available.get(kind, ()))}
    if short:
        holds = ", ".join(f"{len(available.get(kind, ()))} {kind}s" for kind in sorted(needed))
        needs = ", ".join(f"{needed[kind]} {kind}s" for kind in sorted(needed))
        raise UsageError(
            f"users file {spec.users_file} holds {holds}; this run of {len(runs)} scenario "
            f"runs needs {needs} (each scenario takes users of its own, so balances never "
            "carry over): add users to the file, or run fewer scenarios (--scenario) or a "
            "smaller --scale")


def reproduce_command(plan: RunPlan, scenario: str, params: ScenarioParams, *,
                      profile: Profile | None = None,
                      environ: Mapping[str, str] | None = None) -> str:
    """The one command that re-runs exactly this scenario with these parameters.

    It names every address the run was given (target, provider, remote hosts opted into)
    and, for what is secret, the environment variable to set instead of the value:
    ``--provider-key "$TOKENCHAOS_PROVIDER_KEY"``, ``--database-url "$..."``. A users file
    named by an environment variable is set in front of the command.
    """
    environ = os.environ if environ is None else environ
    words = ["tokenchaos", "run", "--scenario", scenario, "--seed", str(params.seed),
             "--scale", str(params.scale), "--concurrency", str(params.concurrency)]
    if plan.profile != "reference" or not plan.local:
        words += ["--target", plan.profile]
    if plan.target_url:
        words += ["--target-url", plan.target_url]
    if plan.provider_url:
        words += ["--provider-url", plan.provider_url]
    for host in plan.allowed_hosts:
        words += ["--allow-remote", host]
    for flaw in plan.flaws:
        words += ["--flaw", flaw]
    if plan.limits.latency_ms_max is not None:  # a slow_op only reproduces under its bound
        words += ["--latency-bound-ms", str(plan.limits.latency_ms_max)]
    command = shlex.join(words)
    if plan.provider_url:  # the key itself is never printed
        command += ' --provider-key "$TOKENCHAOS_PROVIDER_KEY"'
    if plan.database_url:
        command += f' --database-url "${_database_env(profile)}"'
    return _users_file_prefix(profile, environ) + command


def _database_env(profile: Profile | None) -> str:
    observer = None if profile is None else profile.observer
    if isinstance(observer, SqlObserverSpec) and observer.database_url_env:
        return observer.database_url_env
    return "TOKENCHAOS_TARGET_DATABASE_URL"


def _users_file_prefix(profile: Profile | None, environ: Mapping[str, str]) -> str:
    """``NAME=path `` when the users file came from the environment, else nothing."""
    spec = None if profile is None else profile.provisioning
    if not isinstance(spec, FileProvisioning) or not spec.users_file_env:
        return ""
    if not environ.get(spec.users_file_env) or spec.users_file is None:
        return ""
    return f"{spec.users_file_env}={shlex.quote(str(spec.users_file))} "


def check_addresses(plan: RunPlan, profile: Profile) -> tuple[Address, ...]:
    """Validate every address the plan will connect to, and refuse a remote one not opted into.

    Pure: nothing is resolved or connected. For the local stack only its database can be
    elsewhere (``TOKENCHAOS_DATABASE_URL``); the service and provider are on loopback.

    Raises:
        UsageError: see ``harness.targets.address.check_remote_allowed``.
    """
    addresses = _addresses(plan, profile)
    check_remote_allowed(addresses, environment=None if plan.local else profile.environment,
                         profile_source=profile.source, allowed_hosts=plan.allowed_hosts)
    return addresses


def _addresses(plan: RunPlan, profile: Profile) -> tuple[Address, ...]:
    addresses: list[Address] = []
    database: tuple[str, str | None]
    if plan.local:
        database = ("TOKENCHAOS_DATABASE_URL",
                    plan.local_database_url or os.environ.get("TOKENCHAOS_DATABASE_URL"))
    else:
        origin = "--target-url" if plan.target_url else f"profile {profile.source}: base_url"
        addresses.append(http_address(plan.target_url or profile.base_url, role="target",
                                      origin=origin))
        if plan.provider_url:
            addresses.append(http_address(plan.provider_url, role="provider",
                                          origin="--provider-url"))
        observer = profile.observer
        written = observer.database_url if isinstance(observer, SqlObserverSpec) else None
        database = ("--database-url", plan.database_url) if plan.database_url else \
            (f"profile {profile.source}: [observer] database_url", written)
    origin, url = database
    if url:
        addresses.extend(Address(role="database", origin=origin, url=url, host=host)
                         for host in database_hosts(url, origin=origin))
    return tuple(addresses)


def _loading_line(plan: RunPlan, target: TargetInfo) -> str:
    where = "local stack" if plan.local else f"profile {plan.profile}"
    provider = f", provider {target.provider_url}" if target.provider_url else ""
    fees = "".join(f"; {f} fee {text}" for f, text in target.fees.items())
    return f"tokenchaos: loading {target.service_url} ({where}{provider}{fees})"


@contextlib.asynccontextmanager
async def open_target(plan: RunPlan, profile: Profile) -> AsyncIterator[
        tuple[TargetSession, ProviderClient | None, TargetInfo, Nemesis]]:
    """Start or reach the run's target: its session, provider client, description, and
    the nemesis that injects faults on it.

    Public because `tokenchaos doctor` reaches a target exactly as a run does.
    """
    from harness.faults.build import local_nemesis, target_nemesis

    async with contextlib.AsyncExitStack() as stack:
        target_url: str | None
        provider_url: str | None
        provider_key: str | None
        admin_key: str | None
        database_url: str | None
        local_stack: LocalStack | None = None
        if plan.local:
            local_stack = LocalStack(StackConfig.from_env(
                flaws=plan.flaws or None, database_url=plan.local_database_url,
                service_log_level=plan.local_log_level,
                fault_proxies=needs_fault_proxies(plan.runs) or None))
            info = await stack.enter_async_context(local_stack)
            target_url, provider_url = info.service_url, info.provider_url
            admin_key, database_url = info.admin_key, info.database_url
            provider_key = info.control_key
        else:
            target_url, provider_url = plan.target_url, plan.provider_url
            admin_key, database_url = None, plan.database_url
            provider_key = plan.provider_key
        session = await stack.enter_async_context(TargetSession.open(
            profile, limits=plan.limits, base_url=target_url, admin_key=admin_key,
            provider_url=provider_url, database_url=database_url))
        await session.check_health()
        provider = None
        if provider_url:
            assert provider_key, "RunPlan refuses a provider URL without its key"
            provider = await stack.enter_async_context(
                ProviderClient(provider_url, control_key=provider_key,
                               timeout_s=plan.limits.op_timeout_s))
        nemesis = await stack.enter_async_context(
            local_nemesis(local_stack) if local_stack is not None
            else target_nemesis(profile, base_url=session.base_url))
        yield session, provider, TargetInfo(
            profile=plan.profile, service_url=session.base_url, provider_url=provider_url,
            fees=profile.fees.describe()), nemesis


def _run_id(started_ns: int) -> str:
    stamp = datetime.fromtimestamp(started_ns / 1e9, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"
