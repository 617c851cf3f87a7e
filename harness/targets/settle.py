"""Settling: waiting, bounded, until a service that applies work later has applied it.

A service that answers a webhook 202 and applies it from an inbox, later, is correct, yet
its end state read the moment the provider has delivered everything is not its end state:
a refund still in the inbox reads as a refund dropped. The profile's ``[settle]`` says how
to tell that nothing is pending, and the runner asks before every observation:

``mode = "pending"``
    GET ``path`` (with the admin key, and ``headers``, whose ``{env:NAME}`` parts are read
    from the environment) until the count at ``pending`` (a dotted path in the JSON
    answer) is 0: the service says what it still has to do.
``mode = "stable"``
    Read the end state through the observer until it has not changed for ``stable_ms``:
    for a service that says nothing about its queue.

Either polls every ``interval_ms`` for at most ``timeout_s``. A service still unsettled at
the bound is reported (``Settled.settled`` false), never judged as if it had settled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from harness.errors import TargetError
from harness.model import Observation
from harness.protocol import json_path
from harness.targets.settle_profile import POLLS_MAX, SettleSpec

__all__ = ["Settled", "Settler"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settled:
    """What waiting took: the time, the polls, and whether the service did settle."""

    settled: bool
    waited_s: float
    polls_count: int
    note: str | None = None  # why it did not settle


Observe = Callable[[], Awaitable[Observation]]


class Settler:
    """Polls the service, as its profile says, until it has nothing pending (bounded)."""

    def __init__(self, spec: SettleSpec, *, client: httpx.AsyncClient, base_url: str,
                 headers: Mapping[str, str]) -> None:
        self._spec = spec
        self._client = client
        self._url = base_url.rstrip("/") + (spec.path or "")
        self._headers = {"Accept": "application/json", **headers, **spec.headers}

    async def settle(self, observe: Observe | None) -> Settled:
        """Wait until settled or the bound passes; ``observe`` reads the end state (stable)."""
        spec = self._spec
        if spec.mode == "stable" and observe is None:
            raise TargetError('[settle] mode = "stable" reads the end state, and the profile '
                              "has no [observer]")
        started = time.monotonic()
        deadline = started + spec.timeout_s
        polls = 0
        last: Observation | None = None
        unchanged_since = started
        while polls < POLLS_MAX:
            polls += 1
            now = time.monotonic()
            if spec.mode == "pending":
                count = await self._pending()
                if count == 0:
                    return Settled(settled=True, waited_s=now - started, polls_count=polls)
                why = f"{count} still pending at {spec.pending!r} of GET {spec.path}"
            else:
                assert observe is not None
                current = await observe()
                if current != last:
                    last, unchanged_since = current, now
                elif now - unchanged_since >= spec.stable_ms / 1000:
                    return Settled(settled=True, waited_s=now - started, polls_count=polls)
                why = f"the end state still changed within the last {spec.stable_ms} ms"
            if now >= deadline:
                return Settled(settled=False, waited_s=now - started, polls_count=polls,
                               note=f"not settled after {spec.timeout_s:g} s: {why}")
            await asyncio.sleep(min(spec.interval_ms / 1000, max(0.0, deadline - now)))
        return Settled(settled=False, waited_s=time.monotonic() - started, polls_count=polls,
                       note=f"not settled after {POLLS_MAX} polls")

    async def _pending(self) -> int:
        try:
            response = await self._client.get(self._url, headers=self._headers)
        except httpx.HTTPError as exc:
            raise TargetError(f"cannot settle: GET {self._url} failed: "
                              f"{type(exc).__name__} {exc}") from exc
        body: Any = None
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                body = None
        count = json_path(body, self._spec.pending or "") if body is not None else None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise TargetError(f"cannot settle: GET {self._url} answered "
                              f"{response.status_code}, with no count at "
                              f"{self._spec.pending!r}; fix [settle] in the profile")
        return count
