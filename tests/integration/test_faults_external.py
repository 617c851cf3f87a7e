"""Process faults on a local stack whose database is ``TOKENCHAOS_DATABASE_URL``.

The harness does not manage that database, so it neither restarts nor crashes it; it
still terminates the service's sessions, connected as the service's own role.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.faults.local import ProcessNemesis
from harness.faults.spec import Fault, FaultKind
from tests.integration.stackapi import Api, StackThread

TERMINATE = Fault(kind=FaultKind.TERMINATE_SESSIONS)


@pytest.fixture
def nemesis(stack_thread: StackThread) -> Iterator[ProcessNemesis]:
    nemesis = ProcessNemesis(stack_thread.stack)
    yield nemesis
    stack_thread.call(nemesis.heal_all())


def test_database_faults_are_left_out_and_say_why(nemesis: ProcessNemesis) -> None:
    assert nemesis.capabilities == {"kill_service", "pause_service", "terminate_sessions"}
    for capability in ("database_restart", "database_crash"):
        assert nemesis.why_not(capability).startswith(
            "the local stack's database is TOKENCHAOS_DATABASE_URL, which the harness does "
            "not manage")


def test_sessions_are_terminated_as_the_services_own_role(
        stack_thread: StackThread, nemesis: ProcessNemesis, module_api: Api) -> None:
    user = module_api.create_user()
    stack_thread.call(nemesis.inject(TERMINATE))
    assert nemesis.sessions_terminated_count >= 1
    stack_thread.call(nemesis.heal(TERMINATE))
    assert module_api.balance(user) == 0
    assert module_api.create_user().id > user.id
