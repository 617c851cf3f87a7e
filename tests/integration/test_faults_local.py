"""Process and database faults on a real local stack: real signals, a real PostgreSQL.

One stack serves the module (the embedded, durable server: a crash must tell the truth);
every test heals what it injected and checks, with ``heal_all``, that nothing is left
stopped and everything runs. A last test stops a stack in the middle of its faults and
checks that no process of it is left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from harness.faults.local import ProcessNemesis
from harness.faults.spec import Fault, FaultKind
from harness.stack import StackConfig
from tests.integration.stackapi import Api, StackThread

KILL = Fault(kind=FaultKind.KILL_SERVICE)
PAUSE = Fault(kind=FaultKind.PAUSE_SERVICE)
TERMINATE = Fault(kind=FaultKind.TERMINATE_SESSIONS)
RESTART = Fault(kind=FaultKind.DATABASE_RESTART)
CRASH = Fault(kind=FaultKind.DATABASE_CRASH)
_HEALTHY_WAIT_S = 60.0  # a bound on waiting, never an assertion on speed


@pytest.fixture(scope="module")
def stack() -> Iterator[StackThread]:
    runner = StackThread(StackConfig(database_url=None))  # the embedded server, durable
    with runner:
        yield runner


@pytest.fixture(scope="module")
def nemesis(stack: StackThread) -> ProcessNemesis:
    return ProcessNemesis(stack.stack)


@pytest.fixture
def api(stack: StackThread, nemesis: ProcessNemesis) -> Iterator[Api]:
    """The API; after the test, ``heal_all`` leaves nothing stopped and everything up."""
    assert stack.stack.info is not None
    client = Api(stack.stack.info)
    yield client
    client.close()
    stack.call(nemesis.heal_all())
    _assert_all_running(stack)


def test_every_process_fault_is_a_capability_with_the_embedded_database(
        nemesis: ProcessNemesis) -> None:
    assert nemesis.capabilities == {"kill_service", "pause_service", "terminate_sessions",
                                    "database_restart", "database_crash"}


def test_kill_leaves_the_service_dead_until_heal_then_it_answers_on_the_same_port(
        stack: StackThread, nemesis: ProcessNemesis, api: Api) -> None:
    user = api.create_user()
    old_pid = _service_pid(stack)
    stack.call(nemesis.inject(KILL))
    assert not _alive(old_pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(api.info.service_url + "/healthz", timeout=5)
    stack.call(nemesis.heal(KILL))
    assert httpx.get(api.info.service_url + "/healthz", timeout=30).status_code == 200
    assert api.balance(user) == 0  # the same database, the same user
    assert _service_pid(stack) != old_pid
    assert stack.stack.info is not None
    assert stack.stack.info.service_pid == _service_pid(stack)


def test_pause_holds_a_request_until_resume_then_it_completes(
        stack: StackThread, nemesis: ProcessNemesis, api: Api) -> None:
    user = api.create_user()
    stack.call(nemesis.inject(PAUSE))
    assert _state(_service_pid(stack)) == "T"
    with ThreadPoolExecutor(max_workers=1) as pool, httpx.Client(timeout=60) as client:
        pending = pool.submit(client.get, api.info.service_url + "/v1/me",
                              headers={"Authorization": f"Bearer {user.token}"})
        time.sleep(0.5)  # a lower bound only: the request is held at least this long
        assert not pending.done()
        stack.call(nemesis.heal(PAUSE))
        response = pending.result(timeout=_HEALTHY_WAIT_S)
    assert response.status_code == 200, response.text
    assert _state(_service_pid(stack)) != "T"


def test_terminated_sessions_are_replaced_and_the_next_request_succeeds(
        stack: StackThread, nemesis: ProcessNemesis, api: Api) -> None:
    user = api.create_user()
    before = _service_backends(stack)
    assert before  # the pool keeps connections open
    stack.call(nemesis.inject(TERMINATE))
    assert nemesis.sessions_terminated_count >= len(before)
    stack.call(nemesis.heal(TERMINATE))
    assert api.balance(user) == 0
    assert api.create_user().id > user.id
    assert not (_service_backends(stack) & before)


def test_database_restart_is_an_outage_until_heal_and_the_service_answers_after(
        stack: StackThread, nemesis: ProcessNemesis, api: Api) -> None:
    user = api.create_user()
    stack.call(nemesis.inject(RESTART))
    postgres = stack.stack.postgres
    assert postgres is not None
    assert not postgres.running
    assert httpx.get(api.info.service_url + "/healthz", timeout=30).status_code == 503
    stack.call(nemesis.heal(RESTART))
    assert postgres.running
    _wait_healthy(api.info.service_url)
    assert api.balance(user) == 0
    assert api.create_user().id > user.id


def test_an_acknowledged_write_survives_a_database_crash(
        stack: StackThread, nemesis: ProcessNemesis, api: Api) -> None:
    fan, creator = api.create_user(), api.create_user("creator")  # acknowledged: 201
    postgres = stack.stack.postgres
    assert postgres is not None
    old_pid = postgres.pid
    stack.call(nemesis.inject(CRASH))  # right after the 201s: no checkpoint since
    assert not postgres.running
    stack.call(nemesis.heal(CRASH))
    assert postgres.pid != old_pid
    _wait_healthy(api.info.service_url)
    assert api.me(fan)["id"] == fan.id
    assert api.me(creator)["id"] == creator.id


def test_heal_all_alone_starts_a_crashed_database_and_a_killed_service(
        stack: StackThread, nemesis: ProcessNemesis, api: Api) -> None:
    user = api.create_user()
    stack.call(nemesis.inject(PAUSE))
    stack.call(nemesis.inject(CRASH))
    stack.call(nemesis.inject(RESTART))  # already down: nothing more to do
    stack.call(nemesis.heal_all())
    _assert_all_running(stack)
    stack.call(nemesis.inject(KILL))
    stack.call(nemesis.heal_all())
    _assert_all_running(stack)
    assert api.balance(user) == 0


def test_stopping_the_stack_mid_fault_leaves_no_process() -> None:
    runner = StackThread(StackConfig(database_url=None))
    with runner:
        nemesis = ProcessNemesis(runner.stack)
        first_service = _service_pid(runner)
        runner.call(nemesis.inject(KILL))
        runner.call(nemesis.heal(KILL))
        postgres = runner.stack.postgres
        assert postgres is not None and postgres.pid is not None
        pids = {first_service, _service_pid(runner), postgres.pid,
                *_children(postgres.pid)}
        runner.call(nemesis.inject(PAUSE))  # stopped, and the database crashed under it
        runner.call(nemesis.inject(CRASH))
        root = postgres.root
    assert not [pid for pid in pids if _alive(pid)]
    assert not root.exists()


# ---------------------------------------------------------------------------------------


def _service_pid(stack: StackThread) -> int:
    process = stack.stack.service_process
    assert process is not None
    return process.pid


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    try:
        return _state(pid) != "Z"
    except OSError:
        return False


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(child) for child in path.read_text().split()} if path.exists() else set()


def _service_backends(stack: StackThread) -> set[int]:
    postgres = stack.stack.postgres
    assert postgres is not None
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE usename = "
                            "'tokenchaos_service'").fetchall()
    return {int(row[0]) for row in rows}


def _wait_healthy(service_url: str) -> None:
    deadline = time.monotonic() + _HEALTHY_WAIT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(service_url + "/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the service was not healthy within {_HEALTHY_WAIT_S:.0f} s")


def _assert_all_running(stack: StackThread) -> None:
    postgres = stack.stack.postgres
    assert postgres is not None
    assert postgres.running
    assert stack.stack.service_running
    assert _state(_service_pid(stack)) not in ("T", "t", "Z")
    info = stack.stack.info
    assert info is not None
    _wait_healthy(info.service_url)
