"""A client of Toxiproxy's HTTP API: a real Toxiproxy server, or ours (``proxy_server``).

``ToxiproxyClient(api_url, timeout_s=...)`` is an async context manager over
``httpx.AsyncClient``. It uses only the API both servers speak: ``/version``,
``/proxies``, ``/proxies/{name}``, ``/proxies/{name}/toxics[/{toxic}]`` and ``/reset``.
Calls that change state are idempotent where a retry needs it: creating a proxy that
exists with the same upstream, adding a toxic that exists (it is updated), and removing a
toxic that is gone all succeed. Every failure is a ``FaultError`` whose message says what
to do; no httpx exception escapes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from harness.errors import FaultError
from harness.faults.toxics import TOXIC_ATTRIBUTES, Toxic, parse_toxic

__all__ = ["ProxyInfo", "ToxiproxyClient"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyInfo:
    """A proxy as the server reports it."""

    name: str
    listen: str  # "host:port", the bound port (a requested 0 is resolved)
    upstream: str
    enabled: bool
    toxics: tuple[Toxic, ...]

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyInfo:
        return cls(name=str(data["name"]), listen=str(data["listen"]),
                   upstream=str(data["upstream"]), enabled=bool(data["enabled"]),
                   toxics=tuple(parse_toxic(t) for t in data.get("toxics") or ()
                                if t.get("type") in _KNOWN_TYPES))


_KNOWN_TYPES = TOXIC_ATTRIBUTES.keys()


class ToxiproxyClient:
    """Drive a Toxiproxy API: ``async with ToxiproxyClient(url, timeout_s=5) as client:``."""

    def __init__(self, api_url: str, *, timeout_s: float) -> None:
        assert timeout_s > 0, timeout_s
        self.api_url = api_url.rstrip("/")
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> ToxiproxyClient:
        # Toxiproxy refuses browser user agents; ours names itself.
        self._client = httpx.AsyncClient(
            base_url=self.api_url, timeout=httpx.Timeout(self._timeout_s),
            headers={"User-Agent": "tokenchaos"}, trust_env=False)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def version(self) -> str:
        """The server's version (Toxiproxy >= 2.6 answers JSON, older ones plain text)."""
        response = await self._request("GET", "/version", what="read the version")
        with contextlib.suppress(ValueError):
            body = response.json()
            if isinstance(body, dict) and "version" in body:
                return str(body["version"])
        return response.text.strip()

    async def proxies(self) -> dict[str, ProxyInfo]:
        """Every proxy, by name."""
        response = await self._request("GET", "/proxies", what="list the proxies")
        with self._reading("the proxy list"):
            return {name: ProxyInfo.from_json(p) for name, p in response.json().items()}

    async def create_proxy(self, name: str, *, listen: str, upstream: str) -> ProxyInfo:
        """Create a proxy, enabled; one of that name with the same upstream is kept.

        Raises:
            FaultError: the server refused, or a proxy of that name forwards elsewhere.
        """
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": True}
        response = await self._request("POST", "/proxies", json=body,
                                       what=f"create proxy {name}", ok=(201, 409))
        if response.status_code == 201:
            with self._reading(f"proxy {name}"):
                return ProxyInfo.from_json(response.json())
        existing = await self.proxy(name)
        if existing.upstream != upstream:
            raise FaultError(f"the fault proxy API at {self.api_url} already has a proxy "
                             f"{name} forwarding to {existing.upstream}, not {upstream}; "
                             "delete it there or name another proxy")
        return existing

    async def proxy(self, name: str) -> ProxyInfo:
        response = await self._request("GET", f"/proxies/{name}", what=f"read proxy {name}")
        with self._reading(f"proxy {name}"):
            return ProxyInfo.from_json(response.json())

    async def delete_proxy(self, name: str) -> None:
        """Delete a proxy; one already gone is fine."""
        await self._request("DELETE", f"/proxies/{name}", what=f"delete proxy {name}",
                            ok=(204, 404))

    async def set_enabled(self, name: str, enabled: bool) -> None:
        """Enable a proxy, or disable it (it refuses and cuts every connection)."""
        await self._request("POST", f"/proxies/{name}", json={"enabled": enabled},
                            what=f"{'enable' if enabled else 'disable'} proxy {name}")

    async def add_toxic(self, proxy: str, toxic: Toxic) -> None:
        """Add a toxic; one of that name already there is updated to this one."""
        response = await self._request("POST", f"/proxies/{proxy}/toxics",
                                       json=toxic.to_json(), ok=(200, 201, 409),
                                       what=f"add toxic {toxic.name} to proxy {proxy}")
        if response.status_code == 409:
            await self._request("POST", f"/proxies/{proxy}/toxics/{toxic.name}",
                                json={"toxicity": toxic.toxicity,
                                      "attributes": dict(toxic.attributes)},
                                what=f"update toxic {toxic.name} of proxy {proxy}")

    async def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove a toxic; one already gone is fine (a heal may be retried)."""
        response = await self._request("DELETE", f"/proxies/{proxy}/toxics/{name}",
                                       what=f"remove toxic {name} from proxy {proxy}",
                                       ok=(204, 404))
        if response.status_code == 404 and "proxy not found" in response.text:
            raise FaultError(f"the fault proxy API at {self.api_url} has no proxy {proxy}; "
                             "create it first (or fix the proxy name in the profile)")

    async def toxics(self, proxy: str) -> tuple[Toxic, ...]:
        """The toxics of a proxy, those of types we know (a real Toxiproxy has more)."""
        response = await self._request("GET", f"/proxies/{proxy}/toxics",
                                       what=f"list the toxics of proxy {proxy}")
        with self._reading(f"the toxics of proxy {proxy}"):
            return tuple(parse_toxic(t) for t in response.json()
                         if t.get("type") in _KNOWN_TYPES)

    async def toxic_names(self, proxy: str) -> tuple[str, ...]:
        """The names of every toxic of a proxy, whatever its type."""
        response = await self._request("GET", f"/proxies/{proxy}/toxics",
                                       what=f"list the toxics of proxy {proxy}")
        with self._reading(f"the toxics of proxy {proxy}"):
            return tuple(str(t["name"]) for t in response.json())

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        await self._request("POST", "/reset", what="reset the proxies", ok=(200, 204))

    # -- the edge ------------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, what: str,
                       json: object | None = None,
                       ok: tuple[int, ...] = (200,)) -> httpx.Response:
        assert self._client is not None, "use ToxiproxyClient as an async context manager"
        try:
            response = await self._client.request(method, path, json=json)
        except httpx.TimeoutException as exc:
            raise FaultError(f"the fault proxy API at {self.api_url} did not answer within "
                             f"{self._timeout_s:g} s when asked to {what}; check that it "
                             "runs and is not overloaded") from exc
        except httpx.HTTPError as exc:
            raise FaultError(f"cannot reach the fault proxy API at {self.api_url} to "
                             f"{what} ({type(exc).__name__}: {exc}); start it (toxiproxy-"
                             "server) or fix its url in [faults.toxiproxy]") from exc
        if response.status_code not in ok:
            raise FaultError(f"the fault proxy API at {self.api_url} refused to {what}: "
                             f"{response.status_code} {_error_text(response)}")
        return response

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        try:
            yield
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise FaultError(f"the fault proxy API at {self.api_url} answered {what} in a "
                             f"shape we cannot read ({exc!r}); is it a Toxiproxy?") from exc


def _error_text(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict):
            return str(body.get("error") or body.get("title") or body)
    return response.text[:200].strip()
