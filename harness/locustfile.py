"""Load mode for locust: users that draw ops from a load profile, recorded and judged.

Run by ``tokenchaos load`` (which starts locust as a subprocess: locust monkey-patches the
standard library with gevent, so the harness never imports this module), or directly:
``locust -f harness/locustfile.py --host URL`` with ``TOKENCHAOS_PROVIDER_URL``,
``TOKENCHAOS_PROVIDER_KEY`` and ``TOKENCHAOS_ADMIN_KEY`` set; distributed with locust's
own ``--master`` / ``--worker``.

Each locust user provisions its own fans and creator through the profile, funds its fans
with real purchases (credited by the provider's webhooks; it reads their balances until
the credit shows, a bounded number of times), then draws ops by the mix
(``harness.load_mix``). Its ``hot_tip`` ops go to the run's hot creators, which every user
of every process shares: ``tokenchaos load`` provisions them once and names them in the
configuration; a locustfile run directly has the first user of each process provision
that process's own. Every op goes through the sans-IO builders and readers of
``harness.protocol`` over locust's ``FastHttpSession`` (``harness.targets.http_locust``),
which fires locust's request event for every request.

Every locust process but a master records its own history: its users and every invoke
and completion, written to ``histories/<tag>.jsonl`` when its test stops (an op cut off
by the stop completes as indeterminate, counted in ``ops_stopped_count``). The master,
or the one process of a local run, writes locust's figures to ``locust.json`` as it
quits, once every worker's history is there; then its ``quitting`` listener sets
locust's exit code from the verdict: the parent's (``verdict.json``, when ``tokenchaos
load`` judges), or its own, by running ``python -m harness.load DIR``, the same judge,
in a process without gevent.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.lock import Semaphore
from locust import FastHttpUser, events, task
from locust.runners import MasterRunner, WorkerRunner

from harness.errors import TokenchaosError
from harness.history import History, HistoryWriter
from harness.load_config import (
    CONFIG_ENV,
    FIGURES_FILE,
    HISTORIES_DIR,
    VERDICT_FILE,
    LoadConfig,
    write_atomically,
)
from harness.load_merge import SHARED_USERS_KEY, WALL_START_KEY
from harness.load_mix import (
    DEFAULT_MIX,
    LoadMix,
    UserPlan,
    hot_creator_names,
    provisioning_request,
    read_provisioned,
)
from harness.model import Event, F, Kind, Op, Outcome
from harness.protocol import (
    Credentials,
    Endpoints,
    FlowContext,
    Resolver,
    Unresolved,
    Unsupported,
    op_flow,
)
from harness.scenario import traits_of
from harness.targets.http_locust import drive_locust, send_locust
from harness.targets.profile import load_profile
from scenarios._common import OpFactory

__all__ = ["TokenUser"]

CREDIT_READS_MAX = 50  # reads of a fan's balance while its funding webhook is on its way
CREDIT_READ_PAUSE_S = 0.1
_POLL_S = 0.1

def _arguments(parser: Any) -> None:
    parser.add_argument("--tokenchaos-config", env_var=CONFIG_ENV, default="",
                        include_in_web_ui=False,
                        help="The load configuration tokenchaos load writes (JSON).")

class _Recorder:
    """This process's history, op factory and ids, shared by all its locust users."""

    def __init__(self, environment: Any) -> None:
        options = environment.parsed_options
        text = getattr(options, "tokenchaos_config", "") or os.environ.get(CONFIG_ENV, "")
        self.config = LoadConfig.from_json(text) if text else \
            LoadConfig.from_environment(os.environ, host=environment.host)
        runner = environment.runner
        self.tag = f"w{runner.worker_index}" if isinstance(runner, WorkerRunner) else "local"
        self.profile = load_profile(self.config.profile)
        self.mix = LoadMix(weights=self.config.mix) if self.config.mix else DEFAULT_MIX
        target = traits_of(self.profile)
        self.ops = OpFactory(scenario=f"load-{self.tag}-{os.getpid()}", seed=self.config.seed,
                             target=target)
        self.resolver = Resolver()
        self.ctx = FlowContext(profile=self.profile, endpoints=Endpoints(
            target_url=(self.config.target_url or self.profile.base_url).rstrip("/"),
            provider_url=self.config.provider_url,
            provider_control_key=self.config.provider_key),
            resolver=self.resolver, response_body_bytes_max=self.config.response_body_bytes_max)
        self.history = History()
        self.users: dict[str, str] = {}
        self.stats: dict[str, int | str] = {}
        self.start_ns = time.monotonic_ns()
        self.wall_start_ns = time.time_ns()
        self.next_process = 0
        self.users_count = 0
        self.closed = False  # written: nothing more is recorded
        # The hot creators: the run's, from the configuration (shared with every other
        # process: the merge keeps their names), or this process's own, made on first need.
        self.hot_creators: tuple[str, ...] = ()
        self.shared: tuple[str, ...] = ()
        self._hot_lock = Semaphore()
        for name, credentials in self.config.hot_creators.items():
            self.resolver.users[name] = Credentials(target_id=credentials["target_id"],
                                                    token=credentials["token"])
            self.users[name] = "creator"
            self.hot_creators = self.shared = (*self.shared, name)

    def new_plan(self, client: Any) -> UserPlan:
        """The next locust user's plan, with the hot creators it shares."""
        index = self.users_count
        self.users_count += 1
        rng = random.Random(f"{self.config.seed}-{self.tag}-{index}")
        return UserPlan(prefix=f"u{index}", ops=self.ops, mix=self.mix, rng=rng,
                        hot_creators=self._hot_creators(client))

    def _hot_creators(self, client: Any) -> tuple[str, ...]:
        """The creators every user tips; without the run's, this process provisions its
        own, once: the other users starting meanwhile wait for them on the lock."""
        if self.mix.weights.get("hot_tip", 0) == 0:
            return ()
        with self._hot_lock:
            if not self.hot_creators:
                names = hot_creator_names()
                self.provision(client, dict.fromkeys(names, "creator"))
                self.hot_creators = names
        return self.hot_creators

    def process(self) -> int:
        process, self.next_process = self.next_process, self.next_process + 1
        return process

    def count(self, key: str) -> None:
        value = self.stats.get(key, 0)
        self.stats[key] = (value if isinstance(value, int) else 0) + 1

    def provision(self, client: Any, users: dict[str, str]) -> None:
        """Create this locust user's accounts; remember them for the history."""
        for name, kind in users.items():
            request = provisioning_request(name, kind, profile=self.profile,
                                           base_url=self.ctx.endpoints.target_url,
                                           admin_key=self.config.admin_key)
            answer = send_locust(client, request, name="provision",
                                 body_bytes_max=self.config.response_body_bytes_max)
            if isinstance(answer, Outcome):
                self.count("provisioning_failed_count")
                raise TokenchaosError(f"provisioning {name}: {answer.error}")
            self.resolver.users[name] = read_provisioned(name, kind, answer, profile=self.profile)
            self.users[name] = kind

    def run_op(self, op: Op, client: Any, process: int) -> Outcome | None:
        """Invoke, drive and complete one op on ``process``; None when it was not sent."""
        try:
            flow = op_flow(op, self.ctx)
        except (Unresolved, Unsupported) as exc:
            self.count("ops_skipped_count" if isinstance(exc, Unresolved)
                       else "ops_unsupported_count")
            return None
        self._record(process, Kind.INVOKE, op, None)
        self.count("ops_invoked_count")
        try:
            outcome = drive_locust(flow, client, name=op.f.value,
                                   body_bytes_max=self.config.response_body_bytes_max)
        except gevent.GreenletExit:  # the test stopped with this op in flight
            if not self.closed:
                self.count("ops_stopped_count")
            self._record(process, Kind.INFO, op, Outcome(kind=Kind.INFO, error="stopped"))
            raise
        self._record(process, outcome.kind, op, outcome)
        self.count(f"ops_{outcome.kind.value}_count")
        self.resolver.learn(op, outcome)
        return outcome

    def _record(self, process: int, kind: Kind, op: Op, outcome: Outcome | None) -> None:
        if self.closed:
            return
        value = dict(op.value) if outcome is None else {**op.value, **outcome.value}
        self.history.append(Event(
            index=len(self.history), time_ns=time.monotonic_ns() - self.start_ns,
            process=process, kind=kind, f=op.f, op_id=op.id, value=value,
            idempotency_key=op.idempotency_key,
            error=None if outcome is None else outcome.error,
            status_code=None if outcome is None else outcome.status_code,
            body_excerpt=None if outcome is None else outcome.body_excerpt))

    def write(self) -> Path:
        """This process's history, as one scenario, to ``histories/<tag>.jsonl``."""
        for process, invoke in sorted(self.history.outstanding().items()):
            self.count("ops_stopped_count")
            self.history.append(Event(
                index=len(self.history), time_ns=time.monotonic_ns() - self.start_ns,
                process=process, kind=Kind.INFO, f=invoke.f, op_id=invoke.op_id,
                value=dict(invoke.value), idempotency_key=invoke.idempotency_key,
                error="stopped"))
        self.closed = True
        path = self.config.out_dir / HISTORIES_DIR / f"{self.tag}.jsonl"
        partial = path.with_name(f".{path.name}.partial")
        partial.unlink(missing_ok=True)
        target_ids = {name: self.resolver.users[name].target_id for name in self.users}
        with HistoryWriter(partial) as writer:
            writer.begin(name=f"load-{self.tag}", seed=self.config.seed,
                         params={"seed": self.config.seed, WALL_START_KEY: self.wall_start_ns,
                                 "mix": self.mix.text(),
                                 SHARED_USERS_KEY: ",".join(self.shared)},
                         users=self.users, target_ids=target_ids)
            for event in self.history:
                writer.event(event)
            writer.end({**self.stats, "locust_users_count": self.users_count,
                        "duration_ms": (time.monotonic_ns() - self.start_ns) // 1_000_000})
        partial.replace(path)
        return path

_RECORDER: list[_Recorder] = []

def _recorder(environment: Any) -> _Recorder:
    if not _RECORDER:
        _RECORDER.append(_Recorder(environment))
    return _RECORDER[0]

class TokenUser(FastHttpUser):
    """One locust user: its own fans and creator, funded, then ops by the mix (its tips
    shared between its own creator and the run's hot creators)."""

    host = "http://127.0.0.1"  # every request carries an absolute URL from the protocol
    network_timeout = 10.0
    connection_timeout = 3.0
    max_retries = 0  # a retry would be a second request the history never saw

    def on_start(self) -> None:
        recorder = _recorder(self.environment)
        self.recorder = recorder
        self.process = recorder.process()
        self.plan = recorder.new_plan(self.client)
        recorder.provision(self.client, self.plan.users)
        for purchase in self.plan.funding():
            self._perform(purchase)
        for fan in self.plan.fans:
            self._await_credit(fan)

    @task
    def act(self) -> None:
        self._perform(self.plan.next_op())

    def _perform(self, op: Op) -> Outcome | None:
        outcome = self.recorder.run_op(op, self.client, self.process)
        if outcome is not None:
            self.plan.completed(op, outcome)
            if outcome.kind == Kind.INFO:  # Jepsen: this process may still be running it
                self.process = self.recorder.process()
        return outcome

    def _await_credit(self, fan: str) -> None:
        """Read ``fan``'s balance until its funding shows (bounded); the reads are ops."""
        for _ in range(CREDIT_READS_MAX):
            outcome = self._perform(self.plan.ops.read_balance(fan))
            balance = None if outcome is None else outcome.value.get("balance_tokens")
            if isinstance(balance, int) and balance > 0:
                return
            gevent.sleep(CREDIT_READ_PAUSE_S)

def _on_test_stop(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner) or not _RECORDER:
        return
    _RECORDER[0].write()

def _on_quitting(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    options = environment.parsed_options
    text = getattr(options, "tokenchaos_config", "") or os.environ.get(CONFIG_ENV, "")
    config = _RECORDER[0].config if _RECORDER else (
        LoadConfig.from_json(text) if text else
        LoadConfig.from_environment(os.environ, host=environment.host))
    tags = [f"w{index}" for index in range(runner.worker_index_max)] \
        if isinstance(runner, MasterRunner) else ["local"]
    _wait_for(lambda: all((config.out_dir / HISTORIES_DIR / f"{tag}.jsonl").exists()
                          for tag in tags), config.histories_wait_s_max)
    write_atomically(config.out_dir / FIGURES_FILE, _figures_json(environment, tags))
    environment.process_exit_code = _verdict_exit_code(config)

def _verdict_exit_code(config: LoadConfig) -> int:
    """The exit code of the verdict: the parent's, or this run's own judge's."""
    import json

    verdict_path = config.out_dir / VERDICT_FILE
    if config.judge == "parent":
        if not _wait_for(verdict_path.exists, config.verdict_wait_s_max):
            return 2
        code = json.loads(verdict_path.read_text(encoding="utf-8")).get("exit_code", 2)
        return code if code in (0, 1, 2) else 2
    judged = subprocess.run([sys.executable, "-m", "harness.load", str(config.out_dir)],
                            env={**os.environ, CONFIG_ENV: config.to_json()}, check=False)
    return judged.returncode if judged.returncode in (0, 1, 2) else 2

def _wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        gevent.sleep(_POLL_S)
    return True

def _figures_json(environment: Any, tags: list[str]) -> str:
    """Locust's figures, overall and per request name, as ``locust.json`` holds them."""
    import json

    def row(entry: Any) -> dict[str, Any]:
        return {"name": entry.name, "method": entry.method,
                "requests_count": entry.num_requests, "failures_count": entry.num_failures,
                "rps": round(entry.total_rps, 2),
                "latency_ms_p50": entry.get_response_time_percentile(0.5) or 0,
                "latency_ms_p95": entry.get_response_time_percentile(0.95) or 0}

    stats = environment.stats
    rows = [row(entry) for entry in sorted(stats.entries.values(),
                                            key=lambda e: (e.name, e.method))]
    return json.dumps({"workers": tags, "total": row(stats.total), "requests": rows},
                      separators=(",", ":"))

assert F.TIP.value == "tip"  # request names are the op kinds' values


events.init_command_line_parser.add_listener(_arguments)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_on_test_stop)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_on_quitting)  # type: ignore[no-untyped-call]
