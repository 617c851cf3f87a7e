"""A session with one target: its profile, where it answers, one HTTP client, one observer.

``TargetSession.open`` builds two clients with every option written out from ``Limits``
(pool size, timeouts, no redirects, no proxies from the environment): an ``HttpPool`` of
keep-alive HTTP/1.1 connections for the scenario's ops (``make_ops_client``; its cost per
request does not grow with the pool) and an ``httpx.AsyncClient`` for the control plane
(provisioning, observers, health checks), and the observer the profile names. The runner
borrows all of it; nothing here judges answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from harness.errors import TargetUnreachable
from harness.limits import Limits
from harness.protocol import PROVIDER_API_KEY_DEFAULT, Credentials, Endpoints
from harness.targets.http_pool import HttpPool
from harness.targets.observers import Observer, make_observer
from harness.targets.profile import Profile
from harness.targets.provisioning import provision
from harness.targets.settle import Settler

__all__ = ["TargetSession", "make_client", "make_ops_client"]


@dataclass(kw_only=True)
class TargetSession:
    """Everything the runner needs to talk to one target (and to the provider's API)."""

    profile: Profile
    base_url: str  # the target, without a trailing slash
    client: httpx.AsyncClient
    observer: Observer | None
    # The scenario's ops go here; None: over ``client`` (a session built by hand).
    ops_client: HttpPool | None = None
    admin_key: str | None = None
    provider_url: str | None = None  # for provider ops and webhook envelopes
    provider_api_key: str = PROVIDER_API_KEY_DEFAULT
    # Users of each kind taken from a users file so far: each scenario gets the next ones.
    users_taken: Counter[str] = field(default_factory=Counter)
    settler: Settler | None = None  # the profile's [settle]; None: observed when delivered

    @classmethod
    @asynccontextmanager
    async def open(cls, profile: Profile, *, limits: Limits, base_url: str | None = None,
                   admin_key: str | None = None, provider_url: str | None = None,
                   database_url: str | None = None) -> AsyncIterator[TargetSession]:
        """Open a session; the client is closed when the block ends.

        Args:
            base_url, admin_key: override the profile's (which already applied its env).
            provider_url: the provider simulator, when the run has one.
            database_url: overrides the SQL observer's connection string.
        """
        url = (base_url or profile.base_url).rstrip("/")
        async with make_client(limits) as client, make_ops_client(limits) as ops_client:
            key = admin_key or profile.admin_key
            observer = make_observer(profile, client=client, base_url=url, admin_key=key,
                                     database_url=database_url, timeout_s=limits.op_timeout_s)
            settler = None
            if profile.settle is not None:
                headers = {profile.auth.header: profile.auth.value(key)} if key else {}
                settler = Settler(profile.settle, client=client, base_url=url, headers=headers)
            yield cls(profile=profile, base_url=url, client=client, observer=observer,
                      ops_client=ops_client, admin_key=key,
                      provider_url=provider_url.rstrip("/") if provider_url else None,
                      settler=settler)

    @property
    def system_accounts(self) -> Mapping[str, str]:
        """Accounts outside any scenario's users that the observer also reads (fees go to
        them): logical name -> the target's id."""
        spec = self.profile.observer
        return {} if spec is None else spec.system_accounts

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(target_url=self.base_url, provider_url=self.provider_url,
                         provider_api_key=self.provider_api_key)

    async def provision(self, users: Mapping[str, str], *,
                        concurrency: int) -> dict[str, Credentials]:
        """Accounts for the scenario's users, as the profile says (see ``provisioning``).

        From a users file, every call takes users no earlier call of this session took.
        """
        credentials = await provision(users, profile=self.profile, client=self.client,
                                      base_url=self.base_url, admin_key=self.admin_key,
                                      concurrency=concurrency, taken=self.users_taken)
        self.users_taken.update(users.values())
        return credentials

    async def check_health(self) -> None:
        """Raise ``TargetUnreachable`` unless the profile's health path answers 2xx."""
        if self.profile.health_path is None:
            return
        url = self.base_url + self.profile.health_path
        try:
            response = await self.client.get(url)
        except httpx.HTTPError as exc:
            raise TargetUnreachable(f"the target at {self.base_url} does not answer: GET {url} "
                                    f"failed with {type(exc).__name__}; is it running?") from exc
        if not 200 <= response.status_code < 300:
            raise TargetUnreachable(f"the target at {self.base_url} is not healthy: GET {url} "
                                    f"answered {response.status_code} {response.text[:200]!r}")


# How long an idle pooled connection is kept: well below the 5 s after which uvicorn (and
# most servers) close an idle keep-alive connection. Reusing one at the moment the server
# closes it loses the request (connection reset, an indeterminate op), which is what an
# idle pause of a few seconds, such as a fault's hold, would otherwise provoke.
KEEPALIVE_S = 2.0


def make_client(limits: Limits) -> httpx.AsyncClient:
    """An AsyncClient sized and timed by ``limits``, every option explicit."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=limits.connections_max,
                            max_keepalive_connections=limits.connections_max,
                            keepalive_expiry=KEEPALIVE_S),
        timeout=httpx.Timeout(connect=limits.connect_timeout_s, read=limits.op_timeout_s,
                              write=limits.op_timeout_s, pool=limits.op_timeout_s),
        follow_redirects=False,
        trust_env=False,  # a proxy from the environment must not stand between us and it
        http2=False,
    )


def make_ops_client(limits: Limits) -> HttpPool:
    """The ops' connection pool, sized and timed by ``limits`` as ``make_client`` is.

    ``connections_max`` per origin, one per op in flight, so no op waits for one;
    ``connect_timeout_s`` bounds connecting (past it nothing was sent, FAIL), and
    ``op_timeout_s`` each request's answer (INFO). It keeps no cookies, follows no
    redirects, reads no proxy from the environment, and never resends a request.
    """
    return HttpPool(connections_max=limits.connections_max,
                    connect_timeout_s=limits.connect_timeout_s,
                    read_timeout_s=limits.op_timeout_s, keepalive_s=KEEPALIVE_S)
