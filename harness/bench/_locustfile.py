"""The bench's locust peer: FastHttpUsers driving the same sans-IO flows as the runner.

Run by ``harness.bench.harness`` as ``locust -f`` this file, never imported by the harness
itself (locust monkey-patches the standard library with gevent). What to load comes from
the JSON file named by ``TOKENCHAOS_BENCH_SPEC``: the endpoint (``tips``: each user tips
the hot creator 1 token from a fan of its own, through ``op_flow`` and ``drive_sync``;
``healthz``: GET the health path), the target, and the users' credentials. Between
locust's ``test_start`` and ``test_stop`` it counts completed ops and its own CPU time
(``resource.getrusage``, so locust's start-up is not charged), and writes them to the
spec's ``out`` file.

Imported without that variable (as every module of the package is, by its tests), it
defines nothing and imports no locust, so gevent patches nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness.model import F, Kind, Op, Outcome
from harness.protocol import (
    Credentials,
    Endpoints,
    Flow,
    FlowContext,
    HttpRequest,
    HttpResponse,
    Resolver,
    drive_sync,
    op_flow,
)
from harness.targets.profile import load_profile

__all__: list[str] = []  # locust finds the user class; nothing here is for import

SPEC_ENV = "TOKENCHAOS_BENCH_SPEC"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _health(spec: dict[str, Any]) -> Flow:
    """GET the health path: the transport alone, no op behind it."""
    response = yield HttpRequest(method="GET", url=spec["target_url"] + spec["health_path"])
    return Outcome(kind=Kind.OK if 200 <= response.status_code < 300 else Kind.FAIL,
                   status_code=response.status_code)


if os.environ.get(SPEC_ENV):  # run by ``locust -f``: locust is imported (and patched) already
    from locust import FastHttpUser, constant, events, task

    SPEC: dict[str, Any] = json.loads(Path(os.environ[SPEC_ENV]).read_text())
    _PROFILE = load_profile(SPEC["profile"], environ={})
    _CONTEXT = FlowContext(
        profile=_PROFILE, endpoints=Endpoints(target_url=SPEC["target_url"]),
        resolver=Resolver(users={name: Credentials(target_id=str(ids[0]), token=str(ids[1]))
                                 for name, ids in SPEC["users"].items()}),
        response_body_bytes_max=int(SPEC["response_body_bytes_max"]))
    _FANS = itertools.cycle(sorted(name for name in SPEC["users"] if name != SPEC["hot"]))
    _OP_IDS = itertools.count()
    _COUNTS: Counter[str] = Counter()
    _WINDOW: dict[str, float] = {}

    def _started(**_: object) -> None:
        _COUNTS.clear()
        _WINDOW.update(started_s=time.monotonic(), cpu_s=_cpu_s())

    def _stopped(**_: object) -> None:
        seconds = time.monotonic() - _WINDOW["started_s"]
        cpu_s = _cpu_s() - _WINDOW["cpu_s"]
        Path(SPEC["out"]).write_text(json.dumps({"ops": _COUNTS.total(), "seconds": seconds,
                                                 "cpu_s": cpu_s, "kinds": dict(_COUNTS)}))

    events.test_start.add_listener(_started)  # type: ignore[no-untyped-call]
    events.test_stop.add_listener(_stopped)  # type: ignore[no-untyped-call]

    class BenchUser(FastHttpUser):
        """One user: ops back to back, no wait, as the runner's workers do."""

        wait_time = constant(0)
        host = SPEC["target_url"]

        def on_start(self) -> None:
            self.fan = next(_FANS)

        @task
        def op(self) -> None:
            if SPEC["endpoint"] == "healthz":
                outcome = drive_sync(_health(SPEC), self._send)
            else:
                op_id = next(_OP_IDS)
                op = Op(id=op_id, f=F.TIP, value={"sender": self.fan, "recipient": SPEC["hot"],
                                                  "amount_tokens": 1},
                        idempotency_key=f"bench-locust-{os.getpid()}-{op_id}")
                outcome = drive_sync(op_flow(op, _CONTEXT), self._send)
            _COUNTS[outcome.kind.value] += 1

        def _send(self, request: HttpRequest) -> HttpResponse | Outcome:
            with self.client.request(request.method, request.url,
                                     headers=dict(request.headers),
                                     data=request.body or None,  # type: ignore[arg-type]
                                     catch_response=True, name=SPEC["endpoint"]) as answer:
                answer.success()  # our readers judge the answer, not locust
                if not answer.status_code:
                    return Outcome(kind=Kind.INFO, error="transport_error")
                headers = tuple((k.lower(), v) for k, v in answer.headers.items())
                body = (answer.content or b"")[:_CONTEXT.response_body_bytes_max + 1]
                return HttpResponse(status_code=answer.status_code, headers=headers, body=body)

