"""The ``tokenchaos`` command: thin wrappers that parse flags and call into the stages.

Exit codes: 0 every checker that ran held; 1 an invariant broke; 2 the harness could not
judge (unreachable target, bad profile, a flag that does not apply, a stack that would not
start, or a crash of the harness itself: a harness failure is never 1). ``TokenchaosError``
maps to 2 with its message; any other exception maps to 2 with one line, its traceback in
a ``tokenchaos-crash-*.log`` file the line names (``tokenchaos --debug`` prints it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.errors import TokenchaosError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from harness.limits import Limits
    from harness.report.record import RunRecord, ScenarioRecord
    from harness.scenario import Scenario, ScenarioParams
    from harness.zoo import Zoo, ZooRow

__all__ = ["FLAG_RULES", "FlagRule", "app", "check_concurrency", "check_flags_apply",
           "crash_line", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=False, help=(
    "Concurrency test and chaos harness for token services.\n\n"
    "Exit codes: 0 every checker that ran held; 1 an invariant broke (a bug in the "
    "target); 2 the harness could not judge: a bad flag or profile, an unreachable "
    "target, a verdict of unknown, or a crash of the harness itself. A harness failure "
    "is never 1."))

EXIT_OK = 0
EXIT_INVARIANT_BROKE = 1
EXIT_CANNOT_JUDGE = 2


def main() -> None:
    """Console-script entry point: run the app and exit 0, 1 or 2, and nothing else.

    Outside standalone mode, click returns the code of a command's ``typer.Exit`` instead
    of exiting with it: that code is the process's exit code (1 when an invariant broke).
    Only a command's own ``typer.Exit`` can give 1. Our errors exit 2 with their message;
    click's usage errors exit 2; any other exception (a crash of the harness itself, or a
    stray ``SystemExit`` from a library) exits 2 with one line naming the error, where it
    was raised and the log file holding the traceback (``--debug`` prints it instead).
    """
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException as exc:  # the one place that maps every exception to a code
        sys.exit(_exit_code_for_exception(exc))
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _exit_code_for_exception(exc: BaseException) -> int:
    """Print what went wrong in one line and return the exit code (never 1)."""
    known = _our_error(exc)
    if known is not None:
        typer.echo(f"tokenchaos: {known}", err=True)
        assert known.exit_code != EXIT_INVARIANT_BROKE, "only a verdict exits 1"
        return known.exit_code
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    show = getattr(exc, "show", None)
    if isinstance(exc, typer.TyperException) and callable(show):
        show()  # click's usage errors: the usage line, then what is wrong
        return EXIT_CANNOT_JUDGE
    if isinstance(exc, typer.Abort):
        typer.echo("tokenchaos: aborted", err=True)
        return EXIT_CANNOT_JUDGE
    if isinstance(exc, BrokenPipeError) or isinstance(exc.__context__, BrokenPipeError):
        # The reader of our output went away (``| head``); rich turns that into exit 1.
        # Point stdout at /dev/null so the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        typer.echo("tokenchaos: stdout was closed before the output ended", err=True)
        return EXIT_CANNOT_JUDGE
    typer.echo(crash_line(exc, debug=_OPTIONS.debug), err=True)
    return EXIT_CANNOT_JUDGE


def _our_error(exc: BaseException) -> TokenchaosError | None:
    """The ``TokenchaosError`` this is, or the first one of a group made only of ours."""
    if isinstance(exc, TokenchaosError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_our_error(inner) for inner in exc.exceptions]
        if leaves and all(leaf is not None for leaf in leaves):
            return leaves[0]
    return None


def crash_line(exc: BaseException, *, debug: bool) -> str:
    """One line about a crash of the harness; the traceback goes to a log file, or stderr.

    The line says what failed (the exception and its message), where (the innermost file
    and line of the traceback), where the traceback is, and that it is the harness's fault.
    """
    import tempfile
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, SystemExit):
        what = f"a library called sys.exit({exc.code!r}) inside tokenchaos"
    text = "".join(traceback.format_exception(exc))
    if debug:
        sys.stderr.write(text)
        trace = "traceback above"
    else:
        try:
            fd, log_path = tempfile.mkstemp(prefix="tokenchaos-crash-", suffix=".log")
            with open(fd, "w", encoding="utf-8") as log:
                log.write(f"{_command_line()}\n\n{text}")
            trace = f"traceback in {log_path}"
        except OSError as log_error:
            sys.stderr.write(text)
            trace = f"traceback above (no log file: {log_error})"
    return (f"tokenchaos: internal error, not a verdict: {what}{where}; {trace}. "
            "This is a bug in tokenchaos: please report it with that traceback "
            "(tokenchaos --debug ... prints it)")


@dataclass(slots=True)
class _GlobalOptions:
    debug: bool = False


_OPTIONS = _GlobalOptions(debug=os.environ.get("TOKENCHAOS_DEBUG", "") not in ("", "0"))


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option(
        "--debug", help="On a crash of the harness, print the traceback instead of writing "
                        "it to a tokenchaos-crash-*.log file (also TOKENCHAOS_DEBUG=1).")] = False,
) -> None:
    """Options of every command (given before the command's name)."""
    if debug:
        _OPTIONS.debug = True


async def _wait_for_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


# Options several commands take, written once.
TargetUrlOption = Annotated[str | None, typer.Option(
    help="Base URL of the target (overrides the profile's).")]
ProviderUrlOption = Annotated[str | None, typer.Option(
    help="The provider simulator your target uses (tokenchaos provider).")]
ProviderKeyOption = Annotated[str | None, typer.Option(
    help="The control key that provider printed (default: TOKENCHAOS_PROVIDER_KEY).")]
DatabaseUrlOption = Annotated[str | None, typer.Option(
    help="Read-only database URL for a profile with a SQL observer.")]
AllowRemoteOption = Annotated[list[str] | None, typer.Option(
    "--allow-remote", metavar="HOST",
    help="Allow connecting to HOST, which is not loopback (repeatable), as for run.")]


@app.command()
def serve(
    flaw: Annotated[list[str] | None, typer.Option(
        "--flaw", help="Install this flaw in the reference service (repeatable).")] = None,
    service_port: Annotated[int | None, typer.Option(help="Port of the service.")] = None,
    provider_port: Annotated[int | None, typer.Option(help="Port of the provider.")] = None,
    provider_key: Annotated[str | None, typer.Option(
        envvar="TOKENCHAOS_PROVIDER_KEY", show_envvar=False,
        help="The provider's control key (default: drawn fresh, printed as provider_key)."
    )] = None,
) -> None:
    """Start the local stack, print one JSON line with its URLs and secrets, serve until Ctrl-C."""
    from harness.stack import LocalStack, StackConfig

    flaws = tuple(flaw or ())
    _check_flaw_names(flaws)
    _check_port("--service-port", service_port)
    _check_port("--provider-port", provider_port)
    config = StackConfig.from_env(flaws=flaws or None, service_port=service_port,
                                  provider_port=provider_port, control_key=provider_key,
                                  service_log_level="info")

    async def _serve() -> None:
        async with LocalStack(config) as info:
            typer.echo(json.dumps(info.to_json()))
            sys.stdout.flush()
            await _wait_for_signal()

    asyncio.run(_serve())


@app.command()
def provider(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 0,
    webhook_url: Annotated[str | None, typer.Option(
        help="Where to deliver webhooks (your service's endpoint).")] = None,
    webhook_secret: Annotated[str | None, typer.Option(
        help="Signing secret (whsec_...); drawn fresh if not given.")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed for ids (default: fresh ids every start, so a database that outlives "
             "the provider never sees an id twice).")] = None,
    provider_key: Annotated[str | None, typer.Option(
        envvar="TOKENCHAOS_PROVIDER_KEY", show_envvar=False,
        help="Control key of /_tokenchaos (default: drawn fresh, printed as provider_key)."
    )] = None,
) -> None:
    """Run the payment-provider simulator alone, for a staging service pointed at it.

    Prints one JSON line: provider_url, provider_key (give it to tokenchaos run
    --provider-key) and webhook_secret (give it to your service).
    """
    import secrets

    from harness.provider.app import new_control_key
    from harness.provider.server import ProviderConfig, announcement, serve_provider
    from harness.targets.address import http_address

    _check_port("--port", port, zero_ok=True)
    if webhook_url is not None:
        http_address(webhook_url, role="webhook", origin="--webhook-url")
    secret = webhook_secret or "whsec_" + secrets.token_urlsafe(24)
    try:
        config = ProviderConfig(webhook_url=webhook_url, webhook_secret=secret,
                                control_key=provider_key or new_control_key(), seed=seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc

    async def _serve() -> None:
        running = await serve_provider(config, host=host, port=port)
        try:
            typer.echo(json.dumps(announcement(running)))
            sys.stdout.flush()
            await _wait_for_signal()
        finally:
            await running.stop()

    asyncio.run(_serve())


def _check_flaw_names(flaws: tuple[str, ...]) -> None:
    if not flaws:
        return
    from reference_impl.flaws import FLAWS

    unknown = [name for name in flaws if name not in FLAWS]
    if unknown:
        known = ", ".join(sorted(FLAWS)) or "(none registered)"
        raise UsageError(f"unknown flaw {unknown[0]!r}; known flaws: {known}")


def _check_port(flag: str, port: int | None, *, zero_ok: bool = False) -> None:
    low = 0 if zero_ok else 1
    if port is not None and not low <= port <= 65535:
        free = "; 0 picks a free one" if zero_ok else "; leave it out to pick a free one"
        raise UsageError(f"{flag} {port}: a port is a number from {low} to 65535{free}")


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path


# ---------------------------------------------------------------------------------------
# Which flags apply where: one table. A flag given where it does not apply is a usage error
# naming the flag and what to do instead, never silently ignored. A row says which traits
# of the invocation the flag needs (all of them) and which it cannot be given with. The
# traits of a ``run`` are its target's kind: ``local`` (the local stack) or ``remote`` (a
# profile), plus ``sql_observer`` when that profile reads the end state over SQL. A name
# starting with ``TOKENCHAOS_`` is an environment variable, given when set and not empty.


@dataclass(frozen=True, slots=True, kw_only=True)
class FlagRule:
    """Where one flag applies, and what to do instead where it does not."""

    command: str
    flag: str  # "--target-url", or an environment variable the command would read
    advice: str  # what to do instead; "{target}" is replaced by the --target given
    requires: frozenset[str] = frozenset()
    excludes: frozenset[str] = frozenset()


LOCAL, REMOTE, SQL_OBSERVER, UPDATE_README = "local", "remote", "sql_observer", "update_readme"

_LOCAL_STARTS_ITS_OWN = "--target local starts its own reference service, provider and database"

FLAG_RULES: tuple[FlagRule, ...] = (
    FlagRule(command="run", flag="--target-url", requires=frozenset({REMOTE}), advice=(
        f"{_LOCAL_STARTS_ITS_OWN}, so a URL would be ignored; to test a service you run, "
        "name its profile: --target reference --target-url URL")),
    FlagRule(command="run", flag="TOKENCHAOS_TARGET_URL", requires=frozenset({REMOTE}), advice=(
        f"{_LOCAL_STARTS_ITS_OWN}, so that URL would be ignored; unset it, or name the "
        "profile that reads it: --target reference")),
    FlagRule(command="run", flag="--provider-url", requires=frozenset({REMOTE}), advice=(
        f"{_LOCAL_STARTS_ITS_OWN}; --provider-url is the simulator a remote target uses: "
        "give it with --target PROFILE")),
    FlagRule(command="run", flag="--database-url", requires=frozenset({REMOTE}), advice=(
        f"{_LOCAL_STARTS_ITS_OWN} (set TOKENCHAOS_DATABASE_URL to choose the local stack's "
        "database); --database-url is for a remote target's SQL observer")),
    FlagRule(command="run", flag="--database-url", requires=frozenset({SQL_OBSERVER}), advice=(
        "profile {target} does not read the end state over SQL; --database-url is only for "
        'a profile with [observer] kind = "sql"')),
    FlagRule(command="run", flag="--provider-key", requires=frozenset({REMOTE}), advice=(
        f"{_LOCAL_STARTS_ITS_OWN} with a key of its own (set TOKENCHAOS_PROVIDER_KEY to "
        "choose it); --provider-key is the key of the provider a remote target uses")),
    FlagRule(command="run", flag="--flaw", requires=frozenset({LOCAL}), advice=(
        "flaws are installed in the local reference service: use --flaw with --target "
        "local, or start a flawed service with tokenchaos serve --flaw NAME and test it with "
        "--target reference --target-url URL")),
    FlagRule(command="doctor", flag="--target-url", requires=frozenset({REMOTE}), advice=(
        f"{_LOCAL_STARTS_ITS_OWN}, so a URL would be ignored; to examine a service you run, "
        "name its profile: --target PROFILE --target-url URL")),
    FlagRule(command="doctor", flag="--provider-url", requires=frozenset({REMOTE}), advice=(
        f"{_LOCAL_STARTS_ITS_OWN}; --provider-url is the simulator a remote target uses: "
        "give it with --target PROFILE")),
    FlagRule(command="doctor", flag="--provider-key", requires=frozenset({REMOTE}), advice=(
        f"{_LOCAL_STARTS_ITS_OWN} with a key of its own; --provider-key is the key of the "
        "provider a remote target uses")),
    FlagRule(command="doctor", flag="--database-url", requires=frozenset({REMOTE}), advice=(
        f"{_LOCAL_STARTS_ITS_OWN}; --database-url is for a remote target's SQL observer")),
    FlagRule(command="doctor", flag="--database-url", requires=frozenset({SQL_OBSERVER}),
             advice=("profile {target} does not read the end state over SQL; --database-url "
                     'is only for a profile with [observer] kind = "sql"')),
    FlagRule(command="zoo", flag="--readme", requires=frozenset({UPDATE_README}), advice=(
        "--readme names the file --update-readme rewrites; add --update-readme, or drop it")),
    FlagRule(command="zoo", flag="--flaw", excludes=frozenset({UPDATE_README}), advice=(
        "--update-readme writes the whole matrix; run it without --flaw")),
)
# The machine reaches its target as run does, so the same flags apply to it.
FLAG_RULES += tuple(replace(rule, command="machine") for rule in FLAG_RULES
                    if rule.command == "run")


def check_flags_apply(command: str, given: Collection[str], traits: Collection[str], *,
                      target: str = "") -> None:
    """Raise ``UsageError`` for the first given flag that does not apply here.

    Args:
        command: the command's name ("run").
        given: the flags the user gave (and the ``TOKENCHAOS_*`` variables set).
        traits: what this invocation is (``LOCAL``, ``REMOTE``, ``SQL_OBSERVER``, ...).
        target: the ``--target`` given, for the advice.
    """
    for rule in FLAG_RULES:
        if rule.command != command or rule.flag not in given:
            continue
        missing = sorted(rule.requires - set(traits))
        clashing = sorted(rule.excludes & set(traits))
        if missing or clashing:
            kind = "env variable" if rule.flag.startswith("TOKENCHAOS_") else "flag"
            where = f"--target {target}" if command in ("run", "doctor", "machine") \
                else f"this {command}"
            raise UsageError(f"the {kind} {rule.flag} does not apply to {where}: "
                             + rule.advice.replace("{target}", target))


def _given_flags(ctx: typer.Context, environ: Mapping[str, str] | None = None) -> set[str]:
    """The flags given on the command line, and the table's variables that are set."""
    environ = os.environ if environ is None else environ
    given = {name for name in {rule.flag for rule in FLAG_RULES}
             if name.startswith("TOKENCHAOS_") and environ.get(name)}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            given.update(opt for opt in param.opts if opt.startswith("--"))
    return given


def _run_traits(target: str) -> frozenset[str]:
    if target == "local":
        return frozenset({LOCAL})
    from harness.targets.profile import SqlObserverSpec, load_profile

    profile = load_profile(target)
    if isinstance(profile.observer, SqlObserverSpec):
        return frozenset({REMOTE, SQL_OBSERVER})
    return frozenset({REMOTE})


# ---------------------------------------------------------------------------------------
# run, check, list, zoo


@app.command()
def run(
    ctx: typer.Context,
    target: Annotated[str, typer.Option(
        help="'local' starts the local stack (reference service); otherwise a profile name "
             "or .toml file describing a deployment you run.")] = "local",
    suite: Annotated[str | None, typer.Option(help="smoke (default), full or load.")] = None,
    scenario: Annotated[list[str] | None, typer.Option(
        "--scenario", help="Run only this scenario (repeatable).")] = None,
    seed: Annotated[list[int] | None, typer.Option(
        "--seed", help="Seed (repeatable); default: the suite's seeds.")] = None,
    scale: Annotated[int | None, typer.Option(help="Multiply the scenarios' sizes.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Ops in flight at once.")] = None,
    duration: Annotated[float | None, typer.Option(
        help="Bound on the run, in seconds, counted from when the target answers its "
             "health check (after the local stack has started): it covers provisioning "
             "users, every scenario, quiescence and the observations, not start-up.")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Where reports go.")] = None,
    flaw: Annotated[list[str] | None, typer.Option(
        "--flaw", help="Install this flaw in the local reference service (repeatable).")] = None,
    target_url: TargetUrlOption = None,
    provider_url: ProviderUrlOption = None,
    provider_key: Annotated[str | None, typer.Option(
        help="The control key that provider printed (provider_key; default: "
             "TOKENCHAOS_PROVIDER_KEY).")] = None,
    database_url: DatabaseUrlOption = None,
    latency_bound_ms: Annotated[int | None, typer.Option(
        envvar="TOKENCHAOS_LATENCY_BOUND_MS", show_envvar=False,
        help="Fail the run when an op takes longer (default: slow ops are only reported; "
             "[tool.tokenchaos] latency_bound_ms).")] = None,
    allow_remote: Annotated[list[str] | None, typer.Option(
        "--allow-remote", metavar="HOST",
        help="Allow this run to connect to HOST, which is not loopback (repeatable). "
             "Without it (or [target] environment = \"staging\" in the profile) a run "
             "refuses any address but 127.0.0.0/8, ::1 and localhost.")] = None,
) -> None:
    """Run a suite (default: the smoke suite against the local stack), judge it, report.

    The first line printed names the address the run is about to load.
    """
    from harness.campaign import RunPlan, run_plan
    from harness.progress import make_progress
    from harness.runner import run_loop

    check_flags_apply("run", _given_flags(ctx), _run_traits(target), target=target)
    from scenarios import get_suite

    defaults = _project_defaults()
    suite_name = suite or str(defaults.get("suite", "smoke"))
    runs = _plan_runs(suite_name, scenario, seed, scale, concurrency)
    if duration is None:  # the suite's own bound (the full suite's is longer than smoke's)
        duration = get_suite(suite_name).duration_s_max
    flaws = tuple(flaw or ())
    _check_flaw_names(flaws)
    local = target == "local"
    plan = RunPlan(runs=runs, suite=None if scenario else (suite or "smoke"),
                   profile="reference" if local else target, local=local, flaws=flaws,
                   target_url=target_url, provider_url=provider_url,
                   provider_key=None if local else (
                       provider_key or os.environ.get("TOKENCHAOS_PROVIDER_KEY")),
                   database_url=database_url,
                   allowed_hosts=tuple(allow_remote or ()),
                   report_dir=report_dir or Path(str(defaults.get("report_dir", "reports"))),
                   limits=_limits(duration, _latency_bound(latency_bound_ms, defaults)),
                   command=_command_line())
    check_concurrency(concurrency, plan.limits)
    printer = _ScenarioPrinter()
    outcome = run_loop(run_plan(plan, progress=make_progress(),
                                announce=lambda line: typer.echo(line, err=True),
                                on_scenario=printer))
    _print_outcome(outcome.record, outcome.report_dir, details=False)
    raise typer.Exit(outcome.exit_code)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def load(
    ctx: typer.Context,
    target: Annotated[str, typer.Option(
        help="'local' starts the local stack (reference service); otherwise a profile name "
             "or .toml file describing a deployment you run.")] = "local",
    mix: Annotated[str | None, typer.Option(
        help="The load profile: weights of purchase, tip (to the user's own creator), "
             "hot_tip (to one of the 2 hot creators every user shares, where tips race), "
             "call_charge, webhook_replay, read_balance; e.g. hot_tip=1 for tips that "
             "all race (default: hot_tip=6, tip=4, call_charge=4, read_balance=2, "
             "purchase=1, webhook_replay=1).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the users' draws.")] = 1,
    report_dir: Annotated[Path | None, typer.Option(help="Where reports go.")] = None,
    flaw: Annotated[list[str] | None, typer.Option(
        "--flaw", help="Install this flaw in the local reference service (repeatable).")] = None,
    target_url: TargetUrlOption = None,
    provider_url: ProviderUrlOption = None,
    provider_key: ProviderKeyOption = None,
    allow_remote: AllowRemoteOption = None,
) -> None:
    """Load the target with locust, then judge the whole run.

    tokenchaos load [OPTIONS] -- LOCUST FLAGS

    Each locust user has two fans and a creator of its own and runs one op
    at a time; every user of every locust process also tips the run's 2 hot
    creators (hot_tip), so tips to one recipient are in flight at once.

    Locust's own flags go after --: -u/--users, -r/--spawn-rate,
    -t/--run-time (default 30s), --master, --expect-workers N, --web-ui (do
    not pass --headless). Start workers with locust itself:
    locust -f harness/locustfile.py --worker --master-host HOST.
    """
    from harness.load import LoadPlan, run_load
    from harness.load_mix import DEFAULT_MIX, parse_mix

    if target == "local":
        given = _given_flags(ctx)
        for flag in ("--target-url", "--provider-url", "--provider-key"):
            if flag in given:
                raise UsageError(f"the flag {flag} does not apply to --target local: "
                                 f"{_LOCAL_STARTS_ITS_OWN}")
    elif flaw:
        raise UsageError("the flag --flaw does not apply to a profile: flaws are installed in "
                         "the local reference service (--target local)")
    flaws = tuple(flaw or ())
    _check_flaw_names(flaws)
    local = target == "local"
    defaults = _project_defaults()
    plan = LoadPlan(profile="reference" if local else target, local=local, flaws=flaws,
                    target_url=target_url, provider_url=provider_url,
                    provider_key=None if local else (
                        provider_key or os.environ.get("TOKENCHAOS_PROVIDER_KEY")),
                    allowed_hosts=tuple(allow_remote or ()),
                    mix=parse_mix(mix) if mix else DEFAULT_MIX, seed=seed,
                    locust_args=tuple(ctx.args),
                    report_dir=report_dir or Path(str(defaults.get("report_dir", "reports"))),
                    command=_command_line())
    outcome = asyncio.run(run_load(plan, announce=lambda line: typer.echo(line, err=True)))
    _print_load(outcome.record, outcome.figures)
    _print_outcome(outcome.record, outcome.report_dir, details=True)
    raise typer.Exit(outcome.exit_code)


def _print_load(record: RunRecord, figures: Mapping[str, object]) -> None:
    """Locust's figures, per request name and in all, beside the run's verdict."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"locust: {record.run_id}, verdict {_word(record.valid)}")
    for column in ("request", "requests", "failures", "rps", "p50 ms", "p95 ms"):
        table.add_column(column)
    rows = figures.get("requests")
    total = figures.get("total")
    for row in [*(rows if isinstance(rows, list) else []),
                *([total] if isinstance(total, dict) else [])]:
        table.add_row(str(row.get("name")), str(row.get("requests_count")),
                      str(row.get("failures_count")), str(row.get("rps")),
                      str(row.get("latency_ms_p50")), str(row.get("latency_ms_p95")))
    console = Console(stderr=False, highlight=False)
    console.print(table)
    stats = record.scenarios[0].stats if record.scenarios else {}
    races_count = stats.get("recipient_races_count")
    if isinstance(races_count, int):
        # Whether the load raced at all: a lost update needs two tips to one row at once.
        console.print(f"tips sent while another tip to the same recipient was in flight: "
                      f"{races_count}")


@app.command()
def machine(
    ctx: typer.Context,
    target: Annotated[str, typer.Option(
        help="'local' starts the local stack (reference service); otherwise a profile name "
             "or .toml file describing a deployment you run.")] = "local",
    profile: Annotated[str, typer.Option(
        help="The settings profile: dev (a few random programs), ci (30 programs of 12 "
             "steps, the same every run) or nightly (many long random programs).")] = "ci",
    flaw: Annotated[list[str] | None, typer.Option(
        "--flaw", help="Install this flaw in the local reference service (repeatable).")] = None,
    report_dir: Annotated[Path | None, typer.Option(
        help="Where the programs' history goes.")] = None,
    target_url: TargetUrlOption = None,
    provider_url: ProviderUrlOption = None,
    provider_key: ProviderKeyOption = None,
    database_url: DatabaseUrlOption = None,
    allow_remote: AllowRemoteOption = None,
) -> None:
    """Explore the target with a Hypothesis state machine; print a failing program.

    Programs fund fans, tip, replay tips, read balances, charge calls (what the profile
    offers) and send batches of ops at once; every checker judges every step. Exits 0 when
    every checker held, 1 with the shrunk program and its anomalies when one broke, 2
    when something could not be judged.
    """
    from harness.stateful import format_result, machine_plan, run_machine

    check_flags_apply("machine", _given_flags(ctx), _run_traits(target), target=target)
    flaws = tuple(flaw or ())
    _check_flaw_names(flaws)
    local = target == "local"
    defaults = _project_defaults()
    plan = machine_plan(profile="reference" if local else target, local=local, flaws=flaws,
                        report_dir=report_dir or Path(str(defaults.get("report_dir",
                                                                       "reports"))),
                        target_url=target_url, provider_url=provider_url,
                        provider_key=None if local else (
                            provider_key or os.environ.get("TOKENCHAOS_PROVIDER_KEY")),
                        database_url=database_url, allowed_hosts=tuple(allow_remote or ()))
    result = run_machine(plan, profile=profile,
                         announce=lambda line: typer.echo(line, err=True))
    for line in format_result(result):
        typer.echo(line)
    raise typer.Exit(result.exit_code)


@app.command()
def doctor(
    ctx: typer.Context,
    target: Annotated[str, typer.Option(
        help="A profile name or .toml file describing your service; 'local' examines the "
             "reference profile against the local stack it starts.")] = "local",
    target_url: TargetUrlOption = None,
    provider_url: ProviderUrlOption = None,
    provider_key: ProviderKeyOption = None,
    database_url: DatabaseUrlOption = None,
    allow_remote: AllowRemoteOption = None,
) -> None:
    """Try each op of a profile once with two users; say what works and what it lacks.

    Prints, per op, what was sent (secrets masked), what came back, how the profile read
    it and what the profile is missing. Exits 0 when the profile can run the suite, 2
    otherwise; never 1 (it judges the profile, not the service).
    """
    from harness.doctor import DoctorPlan, format_report, run_doctor

    check_flags_apply("doctor", _given_flags(ctx), _run_traits(target), target=target)
    local = target == "local"
    plan = DoctorPlan(profile="reference" if local else target, local=local,
                      target_url=target_url, provider_url=provider_url,
                      provider_key=None if local else (
                          provider_key or os.environ.get("TOKENCHAOS_PROVIDER_KEY")),
                      database_url=database_url, allowed_hosts=tuple(allow_remote or ()))
    report = asyncio.run(run_doctor(plan))
    for line in format_report(report):
        typer.echo(line)
    raise typer.Exit(EXIT_OK if report.ok else EXIT_CANNOT_JUDGE)


@app.command()
def check(
    history: Annotated[Path, typer.Argument(help="A history.jsonl written by a run.")],
    latency_bound_ms: Annotated[int | None, typer.Option(
        envvar="TOKENCHAOS_LATENCY_BOUND_MS", show_envvar=False,
        help="Judge latency too, as run --latency-bound-ms did.")] = None,
) -> None:
    """Re-judge a saved run offline: the same checkers over the same history and state.

    Every line of the file is checked first (JSON, a known type, its fields and their
    types, the history invariants); the first bad one is named by its line number and
    exits 2. A scenario the run did not finish (no end line) is not judged: it is unknown.
    """
    from harness.checkers.latency import describe_performance, measure_latency
    from harness.history import load
    from harness.judge import exit_code_for, judge
    from harness.limits import DEFAULT_LIMITS
    from harness.model import Validity
    from harness.scenario import NotRun
    from scenarios import get_scenario

    bound_ms = _latency_bound(latency_bound_ms, _project_defaults())
    runs = load(_existing_file(history), cut_last_line_ok=False)
    if not runs:
        raise UsageError(f"{history}: holds no scenario")
    scenarios = []
    for loaded in runs:
        try:
            scenarios.append(get_scenario(loaded.name))
        except UsageError as exc:
            raise UsageError(f"{history}: {exc}") from exc
    validities: list[Validity] = []
    for scenario_, loaded in zip(scenarios, runs, strict=True):
        if not loaded.complete:
            validities.append("unknown")
            typer.echo(f"{loaded.name:22} {'(not judged)':20} unknown: the run did not "
                       "finish this scenario (no end line)")
            continue
        left_out = [NotRun(**part) for part in loaded.not_run]
        verdicts = judge(scenario_.without(left_out), loaded, latency_ms_max=bound_ms)
        for name, verdict in verdicts.items():
            validities.append(verdict.valid)
            typer.echo(f"{loaded.name:22} {name:20} {_word(verdict.valid)}")
            for anomaly in verdict.anomalies[:3]:
                typer.echo(f"    {anomaly.explanation}")
        performance = measure_latency(loaded.events, latency_ms_max=bound_ms,
                                      latency_ms_slow=DEFAULT_LIMITS.latency_ms_slow)
        for line in describe_performance(loaded.name, performance):
            typer.echo(line, err=True)
    raise typer.Exit(exit_code_for(validities))


@app.command()
def shrink(
    report: Annotated[Path, typer.Argument(help="The directory of a failing run: "
                                                "reports/<run-id>/.")],
    scenario: Annotated[str | None, typer.Option(
        help="The scenario to shrink (default: the run's first that broke).")] = None,
    candidates: Annotated[int, typer.Option(help="Candidate schedules to try, at most.")] = 200,
    runs: Annotated[int, typer.Option(
        help="Replays of one candidate, at most; it fails at its first failing one.")] = 10,
    confirm_runs: Annotated[int, typer.Option(
        help="Replays of the final schedule, for its 'fails k of n'.")] = 10,
    time_limit: Annotated[float, typer.Option(
        help="Seconds for the search (the confirmation replays come after).")] = 180.0,
) -> None:
    """Shrink a failing scenario to the fewest concurrent requests that still break it.

    Replays the scenario's schedule on a fresh target like the run's (the local stack with
    the same flaws, or the same profile), removes batches then ops inside a batch (delta
    debugging; ops never leave their batch), rerunning each candidate, until nothing more
    can go. Writes a pytest file and a plain httpx script beside the report and links them
    from index.html. Exit 0 when a smaller failing schedule was written, 2 otherwise.
    """
    from harness.runner import run_loop
    from harness.shrink.command import shrink_report
    from harness.shrink.replay import ShrinkBounds

    bounds = ShrinkBounds(candidates_max=candidates, runs_max=runs,
                          confirm_runs=confirm_runs, time_limit_s=time_limit)
    result = run_loop(shrink_report(report, scenario=scenario, bounds=bounds,
                                    say=lambda line: typer.echo(line, err=True)))
    typer.echo(result.reason)
    typer.echo(f"pytest file: {result.reproducers.pytest_file}")
    typer.echo(f"httpx script: {result.reproducers.script_file}")
    typer.echo(f"summary: {result.summary_file}; report: {report / 'index.html'}")
    raise typer.Exit(result.exit_code)


@app.command("list")
def list_() -> None:
    """List scenarios, suites, checkers and flaws, one line each."""
    from harness.checkers import DESCRIPTIONS
    from reference_impl.flaws import FLAWS
    from scenarios import SCENARIOS, SUITES

    typer.echo("scenarios:")
    for name, item in SCENARIOS.items():
        typer.echo(f"  {name:22} {item.summary}")
    typer.echo("suites:")
    for name, suite_ in SUITES.items():
        typer.echo(f"  {name:22} {suite_.summary}")
    typer.echo("checkers:")
    for name, description in DESCRIPTIONS.items():
        typer.echo(f"  {name:22} {description}")
    typer.echo("flaws:")
    for name, flaw_ in FLAWS.items():
        typer.echo(f"  {name:22} {flaw_.description}")


@app.command()
def zoo(
    ctx: typer.Context,
    flaw: Annotated[list[str] | None, typer.Option(
        "--flaw", help="Only this flaw (repeatable); default: every flaw.")] = None,
    seed: Annotated[int, typer.Option(help="The smoke suite's seed for every run.")] = 1,
    report_dir: Annotated[Path | None, typer.Option(
        help="Where zoo.json, zoo.md and every run's report go.")] = None,
    update_readme: Annotated[bool, typer.Option(
        "--update-readme", help="Rewrite the matrix block of the README.")] = False,
    readme: Annotated[Path, typer.Option(help="The README to update.")] = Path("README.md"),
) -> None:
    """Run the smoke suite against the correct service and each flaw; print the matrix.

    Exits 0 when the correct service is clean and every flaw is caught by a checker its
    description names, 1 otherwise.
    """
    from harness.zoo import run_zoo, write_zoo, zoo_markdown
    from harness.zoo import update_readme as rewrite_readme

    check_flags_apply("zoo", _given_flags(ctx), {UPDATE_README} if update_readme else set())
    flaws = tuple(flaw or ())
    _check_flaw_names(flaws)
    defaults = _project_defaults()
    out_dir = report_dir or Path(str(defaults.get("report_dir", "reports")))
    result = asyncio.run(run_zoo(flaws=flaws or None, seed=seed, report_dir=out_dir,
                                 on_row=_print_zoo_row))
    json_path, markdown_path = write_zoo(result, out_dir)
    _print_zoo(result)
    typer.echo(f"matrix: {json_path}, {markdown_path}")
    if update_readme:
        changed = rewrite_readme(readme, zoo_markdown(result))
        typer.echo(f"{readme}: {'updated' if changed else 'unchanged'}")
    raise typer.Exit(EXIT_OK if result.ok else EXIT_INVARIANT_BROKE)


def _print_zoo_row(row: ZooRow) -> None:
    name = row.flaw or "correct service"
    if row.flaw is None:
        verdict = "clean" if row.clean else f"NOT CLEAN ({_word(row.valid)})"
    elif not row.caught:
        verdict = "NOT CAUGHT"
    else:
        verdict = (f"caught by {', '.join(row.checkers_fired)} in "
                   f"{len(row.scenarios_caught)} scenario(s)")
        if not row.caught_as_described:
            verdict += f", NOT by {' or '.join(row.caught_by)}"
    typer.echo(f"tokenchaos zoo: {name}: {verdict} ({row.wall_s:.1f} s)", err=True)


def _print_zoo(result: Zoo) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tokenchaos zoo (smoke suite, seed {result.seed})")
    for column in ("flaw", "scenarios that caught it", "checkers that fired",
                   "ops to detection", "wall time"):
        table.add_column(column)
    for row in (result.correct, *result.flaws):
        if row.flaw is None:
            scenarios = "none: clean" if row.clean else f"NOT CLEAN ({_word(row.valid)})"
        else:
            scenarios = ", ".join(row.scenarios_caught) or "NOT CAUGHT"
        checkers = ", ".join(f"[bold]{n}[/bold]" if n in row.caught_by else n
                             for n in row.checkers_fired) or "-"
        table.add_row(row.flaw or "correct service", scenarios, checkers,
                      "-" if row.ops_to_detection is None else str(row.ops_to_detection),
                      f"{row.wall_s:.1f} s")
    Console(highlight=False).print(table)
    typer.echo(f"verdict: {'every flaw caught, correct service clean' if result.ok else 'NOT OK'}")


@app.command()
def bench(
    part: Annotated[list[str] | None, typer.Option(
        "--part", help="Which figures (repeatable); default every part.")] = None,
    ops: Annotated[list[int] | None, typer.Option(
        "--ops", help="Checker history sizes in ops (repeatable); default 10000 and 100000.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic histories.")] = 1,
    out: Annotated[Path | None, typer.Option(
        help="Also save the figures as JSON here.")] = None,
    reps: Annotated[int, typer.Option(
        help="Interleaved repetitions of each side-by-side measurement.")] = 3,
    duration: Annotated[float, typer.Option(
        help="Seconds per measurement, for the parts that load a service.")] = 10.0,
    clients: Annotated[list[int] | None, typer.Option(
        "--clients", help="Concurrent clients (repeatable); default 1, 16 and 64; the "
                          "harness part runs at the largest.")] = None,
) -> None:
    """Print figures side by side with a peer: checkers, harness, service."""
    from harness.bench import BenchOptions, load_parts, write_json

    parts = load_parts()
    names = part or list(parts)
    unknown = [name for name in names if name not in parts]
    if unknown:
        raise UsageError(f"unknown bench part {unknown}; parts: {', '.join(parts)}")
    sizes = tuple(ops or (10_000, 100_000))
    if any(not 100 <= size <= 5_000_000 for size in sizes):
        raise UsageError("--ops takes sizes from 100 to 5000000")
    if ops and "checkers" not in names:
        raise UsageError("--ops sizes the checkers part; add --part checkers or drop --ops")
    if not 1 <= reps <= 100 or not 0 < duration <= 3600:
        raise UsageError("--reps takes 1 to 100, --duration seconds up to 3600")
    if clients and any(not 1 <= count <= 1024 for count in clients):
        raise UsageError("--clients takes counts from 1 to 1024")
    options = BenchOptions(ops=sizes, seed=seed, reps=reps, duration_s=duration,
                           clients=tuple(clients or (1, 16, 64)))
    results = []
    for name in names:
        result = parts[name](options)
        results.append(result)
        typer.echo(f"{name}:")
        for line in (*result.table, *result.notes):
            typer.echo(f"  {line}")
    if out is not None:
        write_json(results, out)


def _plan_runs(suite_name: str, names: list[str] | None, seeds: list[int] | None,
               scale: int | None, concurrency: int | None
               ) -> tuple[tuple[Scenario, ScenarioParams], ...]:
    import dataclasses

    from scenarios import get_scenario, get_suite

    suite_ = get_suite(suite_name)
    if names:
        for name in names:
            get_scenario(name)  # raises UsageError naming the known ones
        extra = [n for n in names if n not in suite_.scenarios]
        suite_ = dataclasses.replace(suite_, scenarios=tuple(
            [n for n in suite_.scenarios if n in names] + extra))
    if seeds:
        suite_ = suite_.with_seeds(seeds)
    runs = []
    for name, params in suite_.runs():
        if scale is not None or concurrency is not None:
            try:
                params = dataclasses.replace(
                    params, scale=scale or params.scale,
                    concurrency=concurrency or params.concurrency)
            except AssertionError as exc:
                raise UsageError("--scale and --concurrency must be at least 1") from exc
        runs.append((get_scenario(name), params))
    return tuple(runs)


def check_concurrency(concurrency: int | None, limits: Limits) -> None:
    """Refuse a ``--concurrency`` the runner cannot keep in flight (it is never lowered).

    Raises:
        UsageError: over ``limits.ops_in_flight_max`` (or the connections in the pool).
    """
    bound = min(limits.ops_in_flight_max, limits.connections_max)
    if concurrency is not None and concurrency > bound:
        raise UsageError(
            f"--concurrency {concurrency} is more than the runner keeps in flight: "
            f"Limits.ops_in_flight_max = {limits.ops_in_flight_max}, over "
            f"{limits.connections_max} pooled connections; give --concurrency {bound} or "
            "less (run.json's workers_count says what each scenario ran with)")


def _limits(duration: float | None, latency_bound_ms: int | None = None) -> Limits:
    import dataclasses

    from harness.limits import DEFAULT_LIMITS

    limits = dataclasses.replace(DEFAULT_LIMITS, latency_ms_max=latency_bound_ms)
    if duration is None:
        return limits
    if not DEFAULT_LIMITS.op_timeout_s < duration <= 24 * 3600:
        raise UsageError(f"--duration {duration}: give seconds between "
                         f"{DEFAULT_LIMITS.op_timeout_s:.0f} and 86400")
    return dataclasses.replace(limits, run_duration_s_max=duration)


def _latency_bound(flag: int | None, defaults: dict[str, object]) -> int | None:
    """The latency bound to judge by: the flag (or its env), else [tool.tokenchaos]."""
    value = flag if flag is not None else defaults.get("latency_bound_ms")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 86_400_000:
        raise UsageError(f"latency bound {value!r}: give whole milliseconds from 1 to 86400000 "
                         "(--latency-bound-ms, or latency_bound_ms in [tool.tokenchaos])")
    return value


def _project_defaults(path: Path = Path("pyproject.toml")) -> dict[str, object]:
    """``[tool.tokenchaos]`` of the pyproject in the working directory, if any."""
    import tomllib

    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read [tool.tokenchaos]: {exc}") from exc
    section = data.get("tool", {}).get("tokenchaos", {})
    return dict(section) if isinstance(section, dict) else {}


def _command_line() -> str:
    import shlex

    return shlex.join(["tokenchaos", *sys.argv[1:]])


def _word(valid: object) -> str:
    return "held" if valid is True else "BROKE" if valid is False else "unknown"


class _ScenarioPrinter:
    """Print each scenario's verdicts as it is judged, the "never credited" finding first."""

    def __init__(self) -> None:
        self.finding_printed = False

    def __call__(self, scenario: ScenarioRecord) -> None:
        from rich.console import Console
        from rich.markup import escape

        console = Console(stderr=False, highlight=False)
        finding = _credit_finding(scenario)
        if finding is not None and not self.finding_printed:
            self.finding_printed = True
            console.print(f"\n[bold]{escape(finding)}[/bold]")
        _print_scenario(console, scenario)


def _credit_finding(scenario: ScenarioRecord) -> str | None:
    from harness.checkers.credit import never_credited_finding

    verdict = scenario.verdicts.get("exactly_once_credit")
    return None if verdict is None else never_credited_finding(verdict)


def _print_scenario(console: Console, scenario: ScenarioRecord) -> None:
    """One scenario's verdict line and, unless it held, what did not hold and how to rerun."""
    from rich.markup import escape

    console.print(f"\n[bold]{escape(scenario.name)}[/bold] (seed {scenario.seed}): "
                  f"{_word(scenario.valid)}")
    durability = durability_line(scenario)
    if durability is not None:
        console.print(f"  {durability}", markup=False)
    if scenario.valid is True:
        return
    for name, verdict in scenario.verdicts.items():
        if verdict.valid is True:
            continue
        console.print(f"  {name}: {_word(verdict.valid)}"
                      + (f" — {verdict.note}" if verdict.note else ""), markup=False)
        for anomaly in verdict.anomalies[:3]:
            console.print(f"    {anomaly.explanation}", markup=False)
    console.print(f"  reproduce: {scenario.reproduce}", markup=False, soft_wrap=True)


def _print_outcome(record: RunRecord, report_dir: Path, *, details: bool = True) -> None:
    """The run's summary: the "never credited" finding first, the table, the schema
    check's verdict (an SQL-observed target), the verdict.

    ``details`` also prints every scenario that did not hold (``run`` printed them live).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from harness.progress import not_sent_summary
    from harness.shrink.command import not_shrinkable, shrink_command
    from scenarios import SCENARIOS

    console = Console(stderr=False, highlight=False)
    findings = [f for f in map(_credit_finding, record.scenarios) if f is not None]
    if findings:
        console.print(f"\n[bold]{escape(findings[0])}[/bold]"
                      + (f" (in {len(findings)} scenarios)" if len(findings) > 1 else ""))
    table = Table(title=f"tokenchaos run {record.run_id}")
    table.add_column("scenario")
    table.add_column("verdict")
    table.add_column("checkers that did not hold")
    table.add_column("ops not sent")
    for scenario in record.scenarios:
        if not scenario.ran:
            table.add_row(scenario.name, "not run", "-", "-")
            continue
        bad = [f"{name} ({_word(v.valid)})" for name, v in scenario.verdicts.items()
               if v.valid is not True]
        table.add_row(scenario.name, _word(scenario.valid), ", ".join(bad) or "-",
                      not_sent_summary(scenario.stats))
    console.print(table)
    _print_schema(console, record)
    _print_not_run(console, record)
    for scenario in record.scenarios:
        if scenario.valid is True:
            continue
        if details:
            _print_scenario(console, scenario)
        else:
            console.print(f"{scenario.name} (seed {scenario.seed}): {_word(scenario.valid)}; "
                          f"reproduce: {scenario.reproduce}", markup=False, soft_wrap=True)
        if scenario.valid is False:
            known = SCENARIOS.get(scenario.name)
            why_not = not_shrinkable(scenario.reproduce,
                                     injects_faults=known is not None and bool(known.faults))
            shrink = shrink_command(report_dir, scenario.name) if why_not is None \
                else f"not available: {why_not}"
            console.print(f"  shrink: {shrink}", markup=False, soft_wrap=True)
    _print_performance(console, record)
    _print_durability(console, record)
    console.print(f"\nverdict: {_word(record.valid)}; report: {report_dir / 'index.html'}")


_DURABILITY_FIGURES = ("faults", "attempted", "acknowledged", "lost", "duplicated",
                       "indeterminate", "recovered", "unexpected")


def durability_line(scenario: ScenarioRecord) -> str | None:
    """The durability figures of a scenario that injected faults, in one line; else None."""
    verdict = scenario.verdicts.get("durability")
    if verdict is None or not verdict.counts.get("faults"):
        return None
    c = verdict.counts
    recovery = c.get("recovery_ms_max")
    faults = int(c.get("faults", 0))
    return (f"durability: {faults} fault{'s' if faults != 1 else ''}; "
            f"{c.get('acknowledged', 0)} of "
            f"{c.get('attempted', 0)} ops acknowledged, {c.get('lost', 0)} lost, "
            f"{c.get('duplicated', 0)} duplicated; {c.get('recovered', 0)} of "
            f"{c.get('indeterminate', 0)} indeterminate found applied, "
            f"{c.get('unexpected', 0)} refused yet applied"
            + (f"; recovered within {recovery:,} ms of each heal" if recovery is not None
               else ""))


def _print_durability(console: Console, record: RunRecord) -> None:
    """The durability figures summed over the run's fault scenarios (none: nothing)."""
    verdicts = [s.verdicts["durability"] for s in record.scenarios
                if "durability" in s.verdicts and s.verdicts["durability"].counts.get("faults")]
    if not verdicts:
        return
    total = {k: sum(int(v.counts.get(k, 0)) for v in verdicts) for k in _DURABILITY_FIGURES}
    worst = max((int(v.counts["recovery_ms_max"]) for v in verdicts
                 if v.counts.get("recovery_ms_max") is not None), default=None)
    console.print(
        f"\ndurability: {total['faults']} faults in {len(verdicts)} scenario"
        f"{'s' if len(verdicts) != 1 else ''}; "
        f"{total['acknowledged']} ops acknowledged around them, {total['lost']} lost, "
        f"{total['duplicated']} duplicated; {total['recovered']} of "
        f"{total['indeterminate']} indeterminate found applied"
        + (f"; slowest recovery {worst:,} ms after a heal" if worst is not None else ""),
        markup=False)


def _print_loop_lag(console: Console, record: RunRecord) -> None:
    """The harness's loop lag over the run, worst scenario named, and the workers that ran."""
    from harness.loop_lag import LagSummary, run_lag_line

    lags = {s.name: lag for s in record.scenarios
            if (lag := LagSummary.from_stats(s.stats)) is not None}
    line = run_lag_line(lags, {s.name: s.stats.get("workers_count") for s in record.scenarios})
    if line is not None:
        console.print(f"\n{line}", markup=False)


def _print_schema(console: Console, record: RunRecord) -> None:
    """The schema check's verdict, with what broke it or why it could not be checked."""
    verdict = record.schema
    if verdict is None:
        return
    console.print(f"\nschema of the target's database: {_word(verdict.valid)}", markup=False)
    for anomaly in verdict.anomalies:
        console.print(f"  {anomaly.explanation}", markup=False, soft_wrap=True)
    if verdict.valid == "unknown" and verdict.note:
        console.print(f"  not checked: {verdict.note}", markup=False, soft_wrap=True)


def _not_run_lines(record: RunRecord) -> list[str]:
    """One line per scenario, or part of one, not run for this target, with the reason."""
    lines: list[str] = []
    for scenario in record.scenarios:
        if scenario.not_run_reason is not None:
            lines.append(f"{scenario.name} ({scenario.not_run_reason})")
        lines.extend(f"{scenario.name}: {part.part} ({part.reason})"
                     for part in scenario.not_run)
    return lines


def _print_not_run(console: Console, record: RunRecord) -> None:
    lines = _not_run_lines(record)
    if not lines:
        return
    console.print("\nnot run for this target (what its profile declares it cannot do; "
                  "not tested, not judged):", markup=False)
    for line in lines:
        console.print(f"  {line}", markup=False)


def _print_performance(console: Console, record: RunRecord) -> None:
    """Slow ops as findings, apart from the verdicts, with one summary line for the run,
    then the harness's own event-loop lag and workers per scenario."""
    from harness.checkers.latency import describe_performance

    measured = [s.performance for s in record.scenarios if s.performance is not None]
    _print_loop_lag(console, record)
    if not measured:
        return
    slow = sum(p.slow_ops_count for p in measured)
    ops = sum(p.ops_measured_count for p in measured)
    slowest = max((op for p in measured for op in p.slowest), default=None,
                  key=lambda op: op.latency_ms)
    summary = f"\nperformance: {slow} of {ops} ops took longer than " \
              f"{measured[0].latency_ms_slow} ms"
    if slowest is not None:
        summary += f"; slowest {slowest.f} #{slowest.index}, {slowest.latency_ms} ms"
    console.print(summary, markup=False)
    for scenario in record.scenarios:
        if scenario.performance is not None:
            for line in describe_performance(scenario.name, scenario.performance):
                console.print("  " + line, markup=False)
