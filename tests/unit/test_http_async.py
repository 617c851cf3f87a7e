"""The async transport's exception table covers every error the pool, httpx and aiohttp export."""

from __future__ import annotations

import inspect
from unittest import mock

import aiohttp
import httpx
import pytest

from harness.model import Kind
from harness.targets import http_pool
from harness.targets.http_async import map_transport_errors, outcome_for_exception

# What each httpx exception must mean. A new httpx exception fails this test until it is
# placed here, on purpose: someone must decide whether it means "nothing was sent".
EXPECTED: dict[str, tuple[Kind, str] | None] = {
    "ConnectError": (Kind.FAIL, "connect_error"),
    "ConnectTimeout": (Kind.FAIL, "connect_error"),
    "PoolTimeout": (Kind.FAIL, "connect_error"),
    "ReadTimeout": (Kind.INFO, "read_timeout"),
    "WriteTimeout": (Kind.INFO, "write_timeout"),
    "ReadError": (Kind.INFO, "connection_reset"),
    "WriteError": (Kind.INFO, "connection_reset"),
    "RemoteProtocolError": (Kind.INFO, "connection_reset"),
    "CloseError": (Kind.INFO, "transport_error"),
    "LocalProtocolError": (Kind.INFO, "transport_error"),
    "ProtocolError": (Kind.INFO, "transport_error"),
    "NetworkError": (Kind.INFO, "transport_error"),
    "TimeoutException": (Kind.INFO, "transport_error"),
    "TransportError": (Kind.INFO, "transport_error"),
    "ProxyError": (Kind.INFO, "transport_error"),
    "UnsupportedProtocol": (Kind.INFO, "transport_error"),
    "DecodingError": (Kind.INFO, "transport_error"),
    "TooManyRedirects": (Kind.INFO, "transport_error"),
    "RequestError": (Kind.INFO, "transport_error"),
    "HTTPStatusError": (Kind.INFO, "transport_error"),
    "HTTPError": (Kind.INFO, "transport_error"),
    # Not transport failures: programmer errors that must escape, never become outcomes.
    "CookieConflict": None, "InvalidURL": None, "StreamError": None, "StreamClosed": None,
    "StreamConsumed": None, "RequestNotRead": None, "ResponseNotRead": None,
}

EXPORTED = sorted(name for name in httpx.__all__
                  if inspect.isclass(getattr(httpx, name))
                  and issubclass(getattr(httpx, name), BaseException))


def _instance(name: str) -> BaseException:
    cls = getattr(httpx, name)
    request = httpx.Request("GET", "http://127.0.0.1:9/")
    if name == "HTTPStatusError":
        return cls("x", request=request, response=httpx.Response(500, request=request))
    if issubclass(cls, httpx.RequestError):
        return cls("x", request=request)
    return cls("x") if name not in ("RequestNotRead", "ResponseNotRead", "StreamConsumed",
                                    "StreamClosed") else cls()


def test_every_exported_exception_is_placed_in_the_table() -> None:
    assert set(EXPORTED) == set(EXPECTED)


@pytest.mark.parametrize("name", EXPORTED)
def test_each_httpx_exception_maps_as_the_table_says(name: str) -> None:
    exc = _instance(name)
    expected = EXPECTED[name]
    if expected is None:
        assert not isinstance(exc, httpx.HTTPError)
        with pytest.raises(type(exc)), map_transport_errors():
            raise exc
        return
    assert isinstance(exc, httpx.HTTPError)
    outcome = outcome_for_exception(exc)
    assert (outcome.kind, outcome.error) == expected
    with map_transport_errors() as mapped:
        raise exc
    assert mapped.outcome == outcome


# What each aiohttp exception must mean, decided one by one as for httpx's.
AIOHTTP_EXPECTED: dict[str, tuple[Kind, str] | None] = {
    "ConnectionTimeoutError": (Kind.FAIL, "connect_error"),
    "ClientConnectorError": (Kind.FAIL, "connect_error"),
    "ClientConnectorDNSError": (Kind.FAIL, "connect_error"),
    "ClientConnectorCertificateError": (Kind.FAIL, "connect_error"),
    "ClientConnectorSSLError": (Kind.FAIL, "connect_error"),
    "ClientSSLError": (Kind.FAIL, "connect_error"),
    "ClientProxyConnectionError": (Kind.FAIL, "connect_error"),
    "SocketTimeoutError": (Kind.INFO, "read_timeout"),
    "ServerTimeoutError": (Kind.INFO, "read_timeout"),
    "ServerDisconnectedError": (Kind.INFO, "connection_reset"),
    "ClientOSError": (Kind.INFO, "connection_reset"),
    "ClientConnectionResetError": (Kind.INFO, "connection_reset"),
    "ClientPayloadError": (Kind.INFO, "connection_reset"),
    "ClientResponseError": (Kind.INFO, "connection_reset"),
    "ClientHttpProxyError": (Kind.INFO, "connection_reset"),
    "ContentTypeError": (Kind.INFO, "connection_reset"),
    "TooManyRedirects": (Kind.INFO, "connection_reset"),
    "WSServerHandshakeError": (Kind.INFO, "connection_reset"),
    "ClientConnectionError": (Kind.INFO, "transport_error"),
    "ServerConnectionError": (Kind.INFO, "transport_error"),
    "ServerFingerprintMismatch": (Kind.INFO, "transport_error"),
    "ClientError": (Kind.INFO, "transport_error"),
    "InvalidURL": (Kind.INFO, "transport_error"),
    "InvalidUrlClientError": (Kind.INFO, "transport_error"),
    "InvalidUrlRedirectClientError": (Kind.INFO, "transport_error"),
    "NonHttpUrlClientError": (Kind.INFO, "transport_error"),
    "NonHttpUrlRedirectClientError": (Kind.INFO, "transport_error"),
    "RedirectClientError": (Kind.INFO, "transport_error"),
    "UploadAbortedError": (Kind.INFO, "transport_error"),
    # Not raised by a client request: websockets, multipart parsing, warnings.
    "WebSocketError": None, "EofStream": None, "WSMessageTypeError": None,
    "BadContentDispositionHeader": None, "BadContentDispositionParam": None,
}

AIOHTTP_EXPORTED = sorted(name for name in aiohttp.__all__
                          if inspect.isclass(getattr(aiohttp, name))
                          and issubclass(getattr(aiohttp, name), BaseException))


def _aiohttp_instance(name: str) -> BaseException:
    cls = getattr(aiohttp, name)
    if issubclass(cls, aiohttp.ClientConnectorError):
        key = mock.Mock(ssl=None, host="127.0.0.1", port=9)
        return cls(key, OSError(111, "refused")) if name not in (
            "ClientConnectorCertificateError",) else cls(key, ValueError("bad certificate"))
    if issubclass(cls, aiohttp.ClientResponseError):
        return cls(mock.Mock(real_url="http://127.0.0.1:9/"), (), status=400, message="x")
    if issubclass(cls, aiohttp.ServerFingerprintMismatch):
        return cls(b"a", b"b", "127.0.0.1", 9)
    if issubclass(cls, aiohttp.InvalidURL):
        return cls("http://[")
    if name == "WebSocketError":
        return cls(1002, "x")  # type: ignore[no-any-return]
    return cls("x")  # type: ignore[no-any-return]


def test_every_exported_aiohttp_exception_is_placed_in_the_table() -> None:
    assert set(AIOHTTP_EXPORTED) == set(AIOHTTP_EXPECTED)


@pytest.mark.parametrize("name", AIOHTTP_EXPORTED)
def test_each_aiohttp_exception_maps_as_the_table_says(name: str) -> None:
    exc = _aiohttp_instance(name)
    expected = AIOHTTP_EXPECTED[name]
    if expected is None:
        assert not isinstance(exc, aiohttp.ClientError)
        with pytest.raises(type(exc)), map_transport_errors():
            raise exc
        return
    assert isinstance(exc, aiohttp.ClientError)
    outcome = outcome_for_exception(exc)
    assert (outcome.kind, outcome.error) == expected
    with map_transport_errors() as mapped:
        raise exc
    assert mapped.outcome == outcome


# What each of the ops' pool's errors must mean: its module draws the same tree.
POOL_EXPECTED: dict[type[http_pool.PoolError], tuple[Kind, str]] = {
    http_pool.PoolConnectError: (Kind.FAIL, "connect_error"),
    http_pool.PoolReadTimeout: (Kind.INFO, "read_timeout"),
    http_pool.PoolConnectionReset: (Kind.INFO, "connection_reset"),
    http_pool.PoolError: (Kind.INFO, "transport_error"),
}


def test_every_pool_error_is_placed_in_the_table() -> None:
    exported = {getattr(http_pool, name) for name in http_pool.__all__
                if inspect.isclass(getattr(http_pool, name))
                and issubclass(getattr(http_pool, name), BaseException)}
    assert exported == set(POOL_EXPECTED)


@pytest.mark.parametrize("cls", sorted(POOL_EXPECTED, key=lambda cls: cls.__name__))
def test_each_pool_error_maps_as_the_table_says(cls: type[http_pool.PoolError]) -> None:
    outcome = outcome_for_exception(cls("x"))
    assert (outcome.kind, outcome.error) == POOL_EXPECTED[cls]
    with map_transport_errors() as mapped:
        raise cls("x")
    assert mapped.outcome == outcome
