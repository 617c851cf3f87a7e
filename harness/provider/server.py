"""Serving the provider: inside the caller's event loop, or alone as ``python -m harness.provider``.

``serve_provider(config)`` binds a loopback socket itself (so the port is known before
uvicorn starts, and port 0 picks a free one), runs uvicorn as a task of the running loop,
and returns once it answers; ``await running.stop()`` shuts it down. The embedded server
never installs signal handlers: the program that embeds it owns SIGINT and SIGTERM.

``main()`` is the stand-alone entry (used by ``tokenchaos provider`` and ``python -m
harness.provider``): it prints one JSON line ``{provider_url, provider_key, webhook_secret}``
(``announcement``) once the provider answers, and serves until SIGTERM or SIGINT. The
``provider_key`` is the control key the harness must send to ``/_tokenchaos``. This module
starts and stops; the API lives in ``app.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from harness.errors import ProviderError
from harness.provider.app import ProviderConfig, create_app, new_control_key
from harness.provider.signing import new_webhook_secret

__all__ = ["PROVIDER_KEY_ENV", "ProviderConfig", "RunningProvider", "RunningServer",
           "announcement", "main", "serve_asgi", "serve_provider"]

PROVIDER_KEY_ENV = "TOKENCHAOS_PROVIDER_KEY"  # the control key, where a flag does not give it

_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.01


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal capture, which would steal the embedding program's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(slots=True, kw_only=True)
class RunningServer:
    """An ASGI app served by uvicorn in this event loop."""

    url: str  # "http://127.0.0.1:PORT", no trailing slash
    host: str
    port: int
    _server: uvicorn.Server
    _task: asyncio.Task[None]

    async def stop(self) -> None:
        """Shut down gracefully (the app's lifespan ends); idempotent."""
        if self._task.done():
            return
        self._server.should_exit = True
        done, _ = await asyncio.wait({self._task}, timeout=_STOP_TIMEOUT_S)
        if not done:
            self._server.force_exit = True
            done, _ = await asyncio.wait({self._task}, timeout=_STOP_TIMEOUT_S)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass(slots=True, kw_only=True)
class RunningProvider(RunningServer):
    """The provider served in this event loop; ``config`` is how it started."""

    config: ProviderConfig


def announcement(running: RunningProvider) -> dict[str, str]:
    """The JSON line a stand-alone provider prints: where it is and the keys to use it."""
    return {"provider_url": running.url, "provider_key": running.config.control_key,
            "webhook_secret": running.config.webhook_secret}


async def serve_provider(config: ProviderConfig, *, host: str = "127.0.0.1",
                         port: int = 0) -> RunningProvider:
    """Start the provider in the running event loop; return once it accepts connections.

    Raises:
        ProviderError: the port is taken, or the server did not start in time.
    """
    running = await serve_asgi(create_app(config), host=host, port=port)
    return RunningProvider(url=running.url, host=running.host, port=running.port,
                           config=config, _server=running._server, _task=running._task)


async def serve_asgi(app: ASGIApp, *, host: str = "127.0.0.1",
                     port: int = 0) -> RunningServer:
    """Serve any ASGI app with uvicorn in the running event loop (port 0: a free one).

    Raises:
        ProviderError: the port is taken, or the server did not start in time.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ProviderError(f"cannot listen on {host}:{port}: {exc}; pick another port, or 0 "
                            "for a free one") from exc
    bound_port = int(sock.getsockname()[1])
    server = _EmbeddedServer(uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False,
        timeout_graceful_shutdown=int(_STOP_TIMEOUT_S)))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]),
                                                  name=f"uvicorn :{bound_port}")
    try:
        await _wait_started(server, task)
    except BaseException:
        server.should_exit = True
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        sock.close()  # on success the asyncio server owns the socket and closes it
        raise
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    return RunningServer(url=f"http://{url_host}:{bound_port}", host=host, port=bound_port,
                         _server=server, _task=task)


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    polls_max = int(_START_TIMEOUT_S / _POLL_INTERVAL_S)
    for _ in range(polls_max):
        if server.started:
            return
        if task.done():
            reason = task.exception() if not task.cancelled() else "cancelled"
            raise ProviderError(f"the provider stopped while starting: {reason!r}")
        await asyncio.sleep(_POLL_INTERVAL_S)
    raise ProviderError(f"the provider did not start within {_START_TIMEOUT_S:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve alone until SIGTERM or SIGINT, after printing ``announcement``'s JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.provider",
        description="The payment-provider simulator: a Stripe-compatible API with webhooks.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    parser.add_argument("--webhook-url", default=None,
                        help="where to deliver webhooks (the service's endpoint)")
    parser.add_argument("--webhook-secret", default=None,
                        help="signing secret (whsec_...); drawn fresh if not given")
    parser.add_argument("--provider-key", default=None,
                        help=f"control key of /_tokenchaos (default ${PROVIDER_KEY_ENV}, "
                             "else drawn fresh)")
    parser.add_argument("--tolerance-s", type=int, default=300,
                        help="the target's signature tolerance; stale copies are older")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for ids; fresh if not given (a fixed seed repeats ids)")
    args = parser.parse_args(argv)
    control_key = args.provider_key or os.environ.get(PROVIDER_KEY_ENV) or new_control_key()
    try:
        config = ProviderConfig(webhook_url=args.webhook_url,
                                webhook_secret=args.webhook_secret or new_webhook_secret(),
                                control_key=control_key, tolerance_s=args.tolerance_s,
                                seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve_until_signalled(config, host=args.host, port=args.port))
    except ProviderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve_until_signalled(config: ProviderConfig, *, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await serve_provider(config, host=host, port=port)
    try:
        print(json.dumps(announcement(running)), flush=True)
        await stop.wait()
    finally:
        await running.stop()
