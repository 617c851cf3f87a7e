"""The async transport's exception table covers every exception httpx exports."""

from __future__ import annotations

import inspect

import httpx
import pytest

from harness.model import Kind
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
