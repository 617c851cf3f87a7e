"""The fault proxy's HTTP API: the subset of Toxiproxy's API the harness uses.

``python -m harness.faults.proxy_server --host 127.0.0.1 --port 0`` serves it alone and
prints one JSON line ``{"proxy_api_url": ...}`` once it answers, then serves until SIGTERM
or SIGINT. Routes and JSON shapes are Toxiproxy's:

- ``GET /version``: ``{"version": ...}``
- ``GET /proxies`` (an object by name), ``POST /proxies`` (``{name, listen, upstream,
  enabled}``; 201, 409 if the name exists)
- ``GET``, ``POST`` (``{"enabled": bool}``), ``DELETE`` (204) ``/proxies/{name}``
- ``GET``, ``POST /proxies/{name}/toxics``; ``GET``, ``POST`` (update), ``DELETE``
  ``/proxies/{name}/toxics/{toxic}``
- ``POST /reset``: every proxy enabled, every toxic removed (204)

An error is ``{"error": "...", "status": N}`` with that 4xx status; nothing it refuses
changes anything, and no traceback ever reaches the client. This module is the HTTP edge;
the proxying is ``harness.faults.proxy``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import random
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from harness.errors import ProviderError
from harness.faults.proxy import (
    DuplicateToxic,
    FaultProxy,
    ProxyLimits,
    TooManyToxics,
    UnknownToxic,
)
from harness.faults.toxics import parse_toxic

__all__ = ["ApiError", "ProxyRegistry", "create_app", "main", "split_address"]

PROXIES_MAX = 32
_BODY_BYTES_MAX = 64 * 1024
_NAME_CHARS_MAX = 128


class ApiError(Exception):
    """An answer in Toxiproxy's error shape."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        assert 400 <= status < 600, status
        self.status = status


class ProxyRegistry:
    """The proxies one API server runs, by name (Toxiproxy's collection)."""

    def __init__(self, *, seed: int | None = None, limits: ProxyLimits | None = None,
                 proxies_max: int = PROXIES_MAX) -> None:
        self.proxies: dict[str, FaultProxy] = {}
        self.limits = limits or ProxyLimits()
        self.proxies_max = proxies_max
        self._rng = random.Random(seed)
        self._lock = asyncio.Lock()

    def get(self, name: str) -> FaultProxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(f"proxy not found: {name}", 404)
        return proxy

    async def create(self, *, name: str, listen: str, upstream: str,
                     enabled: bool) -> FaultProxy:
        async with self._lock:
            if name in self.proxies:
                raise ApiError(f"proxy already exists: {name}", 409)
            if len(self.proxies) >= self.proxies_max:
                raise ApiError(f"this server runs at most {self.proxies_max} proxies; "
                               "delete one first", 400)
            listen_host, listen_port = split_address(listen, field="listen")
            upstream_host, upstream_port = split_address(upstream, field="upstream")
            proxy = FaultProxy(name=name, listen_host=listen_host, listen_port=listen_port,
                               upstream_host=upstream_host, upstream_port=upstream_port,
                               rng=random.Random(self._rng.getrandbits(64)),
                               limits=self.limits)
            if enabled:
                try:
                    await proxy.start()
                except OSError as exc:
                    raise ApiError(f"cannot listen on {listen}: {exc.strerror or exc}; pick "
                                   "another port, or 0 for a free one", 400) from exc
            self.proxies[name] = proxy
            return proxy

    async def set_enabled(self, proxy: FaultProxy, enabled: bool) -> None:
        try:
            await proxy.set_enabled(enabled)
        except OSError as exc:
            raise ApiError(f"cannot listen on {proxy.listen} again: {exc.strerror or exc}; "
                           "delete the proxy and create it on another port", 409) from exc

    async def delete(self, name: str) -> None:
        async with self._lock:
            proxy = self.get(name)
            del self.proxies[name]
        await proxy.close()

    async def reset(self) -> None:
        for proxy in list(self.proxies.values()):
            proxy.remove_all_toxics()
            await self.set_enabled(proxy, True)

    async def close(self) -> None:
        proxies, self.proxies = list(self.proxies.values()), {}
        for proxy in proxies:
            await proxy.close()


def split_address(address: object, *, field: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:port"``) as a pair.

    Raises:
        ApiError: 400, not of that form.
    """
    if not isinstance(address, str) or ":" not in address:
        raise ApiError(f"{field} must be host:port, not {address!r}", 400)
    host, _, port_text = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ApiError(f"{field} must be host:port with a port from 0 to 65535, not "
                       f"{address!r}", 400)
    return host, int(port_text)


def create_app(registry: ProxyRegistry) -> Starlette:
    """The API over ``registry``; its lifespan closes every proxy at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        del app
        try:
            yield
        finally:
            await registry.close()

    def route(path: str, handler: Any, *methods: str) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(registry, request)  # type: ignore[no-any-return]
            except ApiError as exc:
                return _error(str(exc), exc.status)
            except Exception as exc:  # an answer, never a traceback
                return _error(f"internal error: {type(exc).__name__}", 500)
        return Route(path, endpoint, methods=list(methods))

    async def http_error(request: Request, exc: Exception) -> Response:
        del request
        assert isinstance(exc, HTTPException)
        return _error(str(exc.detail), exc.status_code)

    return Starlette(lifespan=lifespan, exception_handlers={HTTPException: http_error},
                     routes=[
        route("/version", _version, "GET"),
        route("/reset", _reset, "POST"),
        route("/proxies", _proxy_index, "GET"),
        route("/proxies", _proxy_create, "POST"),
        route("/proxies/{proxy}", _proxy_show, "GET"),
        route("/proxies/{proxy}", _proxy_update, "POST", "PATCH"),
        route("/proxies/{proxy}", _proxy_delete, "DELETE"),
        route("/proxies/{proxy}/toxics", _toxic_index, "GET"),
        route("/proxies/{proxy}/toxics", _toxic_create, "POST"),
        route("/proxies/{proxy}/toxics/{toxic}", _toxic_show, "GET"),
        route("/proxies/{proxy}/toxics/{toxic}", _toxic_update, "POST", "PATCH"),
        route("/proxies/{proxy}/toxics/{toxic}", _toxic_delete, "DELETE"),
    ])


# -- handlers ----------------------------------------------------------------------------

async def _version(registry: ProxyRegistry, request: Request) -> Response:
    del registry, request
    try:
        version = importlib.metadata.version("tokenchaos")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        version = "0"
    return JSONResponse({"version": f"tokenchaos-{version}"})


async def _reset(registry: ProxyRegistry, request: Request) -> Response:
    del request
    await registry.reset()
    return Response(status_code=204)


async def _proxy_index(registry: ProxyRegistry, request: Request) -> Response:
    del request
    return JSONResponse({name: p.to_json() for name, p in registry.proxies.items()})


async def _proxy_create(registry: ProxyRegistry, request: Request) -> Response:
    body = await _json_object(request)
    name = body.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= _NAME_CHARS_MAX:
        raise ApiError("missing required field: name (a string of at most "
                       f"{_NAME_CHARS_MAX} characters)", 400)
    if not body.get("upstream"):
        raise ApiError("missing required field: upstream", 400)
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ApiError(f"enabled must be true or false, not {enabled!r}", 400)
    proxy = await registry.create(name=name, listen=body.get("listen") or "127.0.0.1:0",
                                  upstream=body["upstream"], enabled=enabled)
    return JSONResponse(proxy.to_json(), status_code=201)


async def _proxy_show(registry: ProxyRegistry, request: Request) -> Response:
    return JSONResponse(registry.get(request.path_params["proxy"]).to_json())


async def _proxy_update(registry: ProxyRegistry, request: Request) -> Response:
    proxy = registry.get(request.path_params["proxy"])
    body = await _json_object(request)
    for key, current in (("listen", proxy.listen), ("upstream", proxy.upstream)):
        if key in body and body[key] != current:
            raise ApiError(f"this proxy cannot change its {key}; delete it and create it "
                           "again", 400)
    enabled = body.get("enabled", proxy.enabled)
    if not isinstance(enabled, bool):
        raise ApiError(f"enabled must be true or false, not {enabled!r}", 400)
    await registry.set_enabled(proxy, enabled)
    return JSONResponse(proxy.to_json())


async def _proxy_delete(registry: ProxyRegistry, request: Request) -> Response:
    await registry.delete(request.path_params["proxy"])
    return Response(status_code=204)


async def _toxic_index(registry: ProxyRegistry, request: Request) -> Response:
    proxy = registry.get(request.path_params["proxy"])
    return JSONResponse([t.to_json() for t in proxy.toxics])


async def _toxic_create(registry: ProxyRegistry, request: Request) -> Response:
    proxy = registry.get(request.path_params["proxy"])
    toxic = _parse(await _json_object(request))
    try:
        proxy.add_toxic(toxic)
    except DuplicateToxic as exc:
        raise ApiError(str(exc), 409) from exc
    except TooManyToxics as exc:
        raise ApiError(str(exc), 400) from exc
    return JSONResponse(toxic.to_json())


async def _toxic_show(registry: ProxyRegistry, request: Request) -> Response:
    proxy = registry.get(request.path_params["proxy"])
    return JSONResponse(_find_toxic(proxy, request.path_params["toxic"]))


async def _toxic_update(registry: ProxyRegistry, request: Request) -> Response:
    proxy = registry.get(request.path_params["proxy"])
    name = request.path_params["toxic"]
    current = _find_toxic(proxy, name)
    body = await _json_object(request)
    merged = {**current, **body, "name": name, "type": current["type"]}
    if body.get("type", current["type"]) != current["type"]:
        raise ApiError("a toxic cannot change its type; delete it and add another", 400)
    toxic = _parse(merged)
    try:
        proxy.update_toxic(toxic)
    except UnknownToxic as exc:  # pragma: no cover - found just above, in the same step
        raise ApiError(str(exc), 404) from exc
    return JSONResponse(toxic.to_json())


async def _toxic_delete(registry: ProxyRegistry, request: Request) -> Response:
    proxy = registry.get(request.path_params["proxy"])
    try:
        proxy.remove_toxic(request.path_params["toxic"])
    except UnknownToxic as exc:
        raise ApiError(str(exc), 404) from exc
    return Response(status_code=204)


# -- helpers -----------------------------------------------------------------------------

def _find_toxic(proxy: FaultProxy, name: str) -> dict[str, object]:
    for toxic in proxy.toxics:
        if toxic.name == name:
            return toxic.to_json()
    raise ApiError(f"toxic not found: {name}", 404)


def _parse(body: dict[str, Any]) -> Any:
    try:
        return parse_toxic(body)
    except ValueError as exc:
        raise ApiError(str(exc), 400) from exc


async def _json_object(request: Request) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _BODY_BYTES_MAX:
            raise ApiError(f"bad request body: larger than {_BODY_BYTES_MAX} bytes", 413)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(f"bad request body: not JSON ({exc})", 400) from exc
    if not isinstance(body, dict):
        raise ApiError("bad request body: a JSON object is expected", 400)
    return body


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve alone until SIGTERM or SIGINT, after printing ``{"proxy_api_url": ...}``."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.faults.proxy_server",
        description="A TCP fault proxy with a Toxiproxy-compatible HTTP API.")
    parser.add_argument("--host", default="127.0.0.1", help="address of the API")
    parser.add_argument("--port", type=int, default=0, help="port of the API; 0: a free one")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for jitter and toxicity draws; fresh if not given")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve_until_signalled(host=args.host, port=args.port, seed=args.seed))
    except ProviderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve_until_signalled(*, host: str, port: int, seed: int | None) -> None:
    from harness.provider.server import serve_asgi

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await serve_asgi(create_app(ProxyRegistry(seed=seed)), host=host, port=port)
    try:
        print(json.dumps({"proxy_api_url": running.url}), flush=True)
        await stop.wait()
    finally:
        await running.stop()


if __name__ == "__main__":
    sys.exit(main())
