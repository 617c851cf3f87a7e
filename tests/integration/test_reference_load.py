"""Under load on a busy machine the correct service answers slowly, never with a 5xx.

Two busy-loop processes keep both cores of a small machine saturated while many mutual
tips race over a few accounts (every tip locks both of its accounts, so they queue on
the same rows and wait for pool connections). A correct service may be slow then; it
must not shed the load with 503s (a pool timeout or lock timeout of a few seconds, or a
deadlock retried too few times).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from reference_impl.testing import ServiceClient
from tests.integration.reference_stack import service_with_provider

pytestmark = pytest.mark.integration

ADMIN_KEY = "adm_load_0123456789"
SECRET = "whsec_load"
TIPS_COUNT = 200
TIPS_IN_FLIGHT_MAX = 32
CPU_HOGS_COUNT = 2  # one per core of the machine this was seen on


@pytest.fixture
def cpu_hogs() -> Iterator[None]:
    """Busy-loop children for the test's duration, killed (by their own pids) after it."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(CPU_HOGS_COUNT)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait(timeout=10)


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[ServiceClient]:
    async with service_with_provider(database_url, admin_key=ADMIN_KEY,
                                     webhook_secret=SECRET) as client:
        yield client


async def test_mutual_tips_under_cpu_contention_get_no_5xx(
        service: ServiceClient, cpu_hogs: None) -> None:
    users = [await service.create_user() for _ in range(3)]
    for user in users:
        await service.fund(user, 10000)
    gate = asyncio.Semaphore(TIPS_IN_FLIGHT_MAX)

    async def tip(index: int) -> int:
        sender, recipient = users[index % 3], users[(index + 1 + index // 3 % 2) % 3]
        async with gate:
            response = await service.tip(sender, recipient, 1 + index % 7,
                                         key=uuid.uuid4().hex)
            return response.status_code

    statuses = Counter(await asyncio.gather(*(tip(index) for index in range(TIPS_COUNT))))
    assert statuses == {201: TIPS_COUNT}, statuses
    balances = [(await service.me(user))["balance"] for user in users]
    assert sum(balances) == 3 * 10500
