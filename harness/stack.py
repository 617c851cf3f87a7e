"""The local stack: PostgreSQL + payment-provider simulator + reference service, on loopback.

Database, in this order: ``TOKENCHAOS_DATABASE_URL`` (used as given); else the embedded
PostgreSQL wheel (a fresh server in a temporary directory). The provider runs inside this
process's event loop; the reference service runs as a child process, so that it uses the
other core and so that a fault can SIGKILL, SIGSTOP or restart it. Every child is tied to
our lifetime (``PR_SET_PDEATHSIG``): killing us leaves no orphan.

With ``StackConfig.fault_proxies``, a fault proxy child (``harness.faults``) sits on three
links, one proxy each, named after the link: ``service`` (``StackInfo.service_url`` goes
through it; ``direct_service_url`` does not), ``webhooks`` (the provider delivers through
it) and ``database`` (the service's database URL goes through it; ``database_url``, for
the harness's observers, stays direct). Health checks always use the direct URL.

The embedded server is durable, and the service connects to it as its own role,
``tokenchaos_service``: a password, no superuser, owner of its database ``tokenchaos`` and
nothing more. ``StackInfo.database_url`` is that role's URL, never the superuser's.

This module starts and stops things; it never judges them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.errors import StackError, UsageError
from harness.pg import EmbeddedPostgres, create_service_database, free_port

__all__ = ["LocalStack", "StackConfig", "StackInfo"]

_HEALTH_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1
_SERVICE_ROLE = "tokenchaos_service"  # on the embedded server only
_SERVICE_DATABASE = "tokenchaos"


@dataclass(frozen=True, slots=True, kw_only=True)
class StackConfig:
    """What to start. Secrets are drawn fresh unless given."""

    database_url: str | None = None  # None: embedded PostgreSQL
    flaws: tuple[str, ...] = ()  # reference-service flaws to install (the bug zoo)
    admin_key: str = field(default_factory=lambda: "adm_" + secrets.token_urlsafe(24))
    webhook_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_urlsafe(24))
    control_key: str = field(default_factory=lambda: "tck_" + secrets.token_urlsafe(24))
    host: str = "127.0.0.1"
    service_port: int | None = None  # None: a free port
    provider_port: int | None = None
    seed: int | None = None  # provider ids; None draws fresh ones (a reused database stays valid)
    service_log_level: str = "warning"  # the service's own log on our stderr
    fault_proxies: bool = False  # put our fault proxy on the service, webhooks, database links

    def __post_init__(self) -> None:
        from harness.provider.app import check_control_key

        try:
            check_control_key(self.control_key)
        except ValueError as exc:
            raise UsageError(f"TOKENCHAOS_PROVIDER_KEY: {exc}") from exc

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> StackConfig:
        """Defaults, then ``TOKENCHAOS_*`` variables, then explicit overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("TOKENCHAOS_DATABASE_URL"):
            values["database_url"] = env["TOKENCHAOS_DATABASE_URL"]
        if env.get("TOKENCHAOS_FLAWS"):
            values["flaws"] = tuple(f for f in env["TOKENCHAOS_FLAWS"].split(",") if f)
        if env.get("TOKENCHAOS_PROVIDER_KEY"):
            values["control_key"] = env["TOKENCHAOS_PROVIDER_KEY"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class StackInfo:
    """Where the running stack answers: the one JSON line ``tokenchaos serve`` prints.

    ``control_key`` is the provider's control key, printed as ``provider_key``: a harness
    pointed at this stack's provider sends it (``tokenchaos run --provider-key``).
    """

    service_url: str
    provider_url: str
    admin_key: str
    webhook_secret: str
    database_url: str
    service_pid: int
    control_key: str
    # With fault proxies, service_url goes through the service link's proxy; this one
    # does not (health checks, and whoever must reach the service during a fault).
    direct_service_url: str = ""
    proxy_api_url: str | None = None  # the fault proxy's Toxiproxy API; None: no proxies

    def __post_init__(self) -> None:
        if not self.direct_service_url:
            object.__setattr__(self, "direct_service_url", self.service_url)

    def to_json(self) -> dict[str, str | int]:
        data: dict[str, str | int] = {
            "service_url": self.service_url, "provider_url": self.provider_url,
            "provider_key": self.control_key,
            "admin_key": self.admin_key, "webhook_secret": self.webhook_secret,
            "database_url": self.database_url, "service_pid": self.service_pid}
        if self.proxy_api_url is not None:
            data["direct_service_url"] = self.direct_service_url
            data["proxy_api_url"] = self.proxy_api_url
        return data


class LocalStack:
    """Start with ``async with LocalStack(config) as info:``; everything stops on exit."""

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig.from_env()
        self._postgres: EmbeddedPostgres | None = None
        self._provider: Any = None  # harness.provider.server.RunningProvider
        self._service: subprocess.Popen[bytes] | None = None
        self._service_env: dict[str, str] = {}
        self._service_argv: list[str] = []
        self._fault_proxy: Any = None  # harness.faults.proxy_process.ProxyProcess
        self.info: StackInfo | None = None

    async def __aenter__(self) -> StackInfo:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> StackInfo:
        """Start PostgreSQL, the provider and the service; return once all answer."""
        from harness.provider.server import ProviderConfig, serve_provider

        config = self.config
        database_url = config.database_url or await self._start_postgres()
        service_port = config.service_port or free_port(config.host)
        direct_service_url = f"http://{config.host}:{service_port}"
        links = {"service": direct_service_url, "webhooks": direct_service_url,
                 "database": database_url}
        proxy_api_url = None
        if config.fault_proxies:
            proxy_api_url, links = await self._start_fault_proxies(links)
        service_url = links["service"]
        self._provider = await serve_provider(
            ProviderConfig(webhook_url=f"{links['webhooks']}/v1/webhooks/stripe",
                           webhook_secret=config.webhook_secret,
                           control_key=config.control_key, seed=config.seed),
            host=config.host, port=config.provider_port or 0)
        provider_url = str(self._provider.url)
        self._service_env = {
            **os.environ,
            "TOKENCHAOS_DATABASE_URL": links["database"],
            "TOKENCHAOS_ADMIN_KEY": config.admin_key,
            "TOKENCHAOS_PROVIDER_URL": provider_url,
            "TOKENCHAOS_WEBHOOK_SECRET": config.webhook_secret,
            "TOKENCHAOS_FLAWS": ",".join(config.flaws),
        }
        self._service_argv = [sys.executable, "-m", "reference_impl",
                              "--host", config.host, "--port", str(service_port),
                              "--log-level", config.service_log_level]
        self._spawn_service()
        await self._wait_healthy(direct_service_url)
        assert self._service is not None
        self.info = StackInfo(service_url=service_url, provider_url=provider_url,
                              admin_key=config.admin_key, webhook_secret=config.webhook_secret,
                              database_url=database_url, service_pid=self._service.pid,
                              control_key=config.control_key,
                              direct_service_url=direct_service_url,
                              proxy_api_url=proxy_api_url)
        return self.info

    async def stop(self) -> None:
        """Stop the service, the provider and PostgreSQL, in that order. Idempotent."""
        self._stop_service()
        provider, self._provider = self._provider, None
        if provider is not None:
            await provider.stop()
        fault_proxy, self._fault_proxy = self._fault_proxy, None
        if fault_proxy is not None:
            await fault_proxy.stop()
        postgres, self._postgres = self._postgres, None
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)

    async def restart_service(self) -> None:
        """Kill the service (SIGKILL, as a crash) and start it again on the same port."""
        await self.kill_service()
        await self.start_service()

    async def kill_service(self) -> None:
        """SIGKILL the service, as a crash, and reap it; a no-op if it is not running.

        Raises:
            StackError: it did not exit within 10 s of SIGKILL.
        """
        assert self.info is not None, "start the stack first"
        process = self._service
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()  # a stopped process dies of SIGKILL too
        try:
            await asyncio.to_thread(process.wait, _STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"the reference service (pid {process.pid}) did not exit within "
                             f"{_STOP_TIMEOUT_S:.0f} s of SIGKILL") from exc

    async def start_service(self) -> None:
        """Start the service again on the same port, if it is not running; wait until healthy.

        ``info.service_pid`` becomes the new process's.

        Raises:
            StackError: it exited while starting, or was not healthy within 30 s.
        """
        info = self.info
        assert info is not None, "start the stack first"
        if self._service is None or self._service.poll() is not None:
            self._spawn_service()  # from the loop's thread: see _start_postgres
        assert self._service is not None
        self.info = dataclasses.replace(info, service_pid=self._service.pid)
        await self._wait_healthy(info.direct_service_url)

    def pause_service(self) -> None:
        """SIGSTOP the service: it keeps its sockets, connections and locks, and answers
        nothing until ``resume_service``."""
        assert self.info is not None, "start the stack first"
        self._signal_service(signal.SIGSTOP)

    def resume_service(self) -> None:
        """SIGCONT the service (harmless when it is not stopped)."""
        self._signal_service(signal.SIGCONT)

    @property
    def service_running(self) -> bool:
        """Whether the service process is alive (stopped by SIGSTOP counts as alive)."""
        return self._service is not None and self._service.poll() is None

    def _signal_service(self, sig: signal.Signals) -> None:
        process = self._service
        if process is None or process.poll() is not None:
            raise StackError(f"the reference service is not running; cannot send it "
                             f"{sig.name}")
        process.send_signal(sig)

    @property
    def postgres(self) -> EmbeddedPostgres | None:
        return self._postgres

    @property
    def service_process(self) -> subprocess.Popen[bytes] | None:
        return self._service

    async def _start_postgres(self) -> str:
        # Started from this (the loop's) thread on purpose: PR_SET_PDEATHSIG fires when the
        # thread that forked the child ends, and a worker thread may end before we do.
        self._postgres = EmbeddedPostgres()
        admin_url = self._postgres.start()
        return create_service_database(admin_url, role=_SERVICE_ROLE, database=_SERVICE_DATABASE)

    async def _start_fault_proxies(self, links: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Start the fault proxy child and one proxy per link (named after the link);
        return its API URL and each link's URL rewritten to go through its proxy."""
        from harness.faults.proxy_process import ProxyProcess
        from harness.faults.toxiproxy import ToxiproxyClient

        self._fault_proxy = ProxyProcess(host=self.config.host, seed=self.config.seed)
        api_url = await self._fault_proxy.start()
        proxied: dict[str, str] = {}
        async with ToxiproxyClient(api_url, timeout_s=_STOP_TIMEOUT_S) as client:
            for name, url in links.items():
                parts = urllib.parse.urlsplit(url)
                assert parts.hostname is not None and parts.port is not None, name
                proxy = await client.create_proxy(
                    name, listen=f"{self.config.host}:0",
                    upstream=f"{parts.hostname}:{parts.port}")
                host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
                netloc = f"{host}:{proxy.listen_port}"
                if "@" in parts.netloc:
                    netloc = parts.netloc.rpartition("@")[0] + "@" + netloc
                proxied[name] = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        return api_url, proxied

    def _spawn_service(self) -> None:
        self._service = subprocess.Popen(
            self._service_argv, env=self._service_env, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)

    async def _wait_healthy(self, service_url: str) -> None:
        deadline = time.monotonic() + _HEALTH_TIMEOUT_S
        last = "no answer"
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self._service is not None
                if self._service.poll() is not None:
                    raise StackError(f"the reference service exited with "
                                     f"{self._service.returncode} while starting; see its "
                                     "log above")
                try:
                    response = await client.get(f"{service_url}/healthz")
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:200]}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                await asyncio.sleep(0.05)
        raise StackError(f"the reference service at {service_url} was not healthy within "
                         f"{_HEALTH_TIMEOUT_S:.0f} s (last answer: {last})")

    def _stop_service(self) -> None:
        process, self._service = self._service, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a SIGSTOPped service cannot exit
            process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel to SIGTERM it when we die."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
