"""uvicorn's HTTP protocols with the service's JSON error shape for malformed framing.

When a request cannot even be parsed (a bad request line, a bad header, an invalid
``Content-Length``, broken chunked framing), uvicorn answers itself, before the app sees
anything, with ``400 text/plain "Invalid HTTP request received."``. The classes here are
uvicorn's own protocols (h11 and httptools) with only that answer replaced by
``{"error": {"code": "malformed_http", "message": ...}}``, so every answer of the service
is JSON. Pass ``http=HTTP_PROTOCOL`` to ``uvicorn.Config``.

Nothing here knows tokens or the app.
"""

from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HTTP_PROTOCOL", "MALFORMED_HTTP_BODY", "CoalescingTransport", "JsonErrorH11Protocol"]

MALFORMED_HTTP_BODY = json.dumps({"error": {
    "code": "malformed_http",
    "message": "the request is not valid HTTP/1.1 (request line, headers, Content-Length "
               "or chunked framing); send a well-formed request"}}).encode()


def _headers() -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"),
            (b"content-length", str(len(MALFORMED_HTTP_BODY)).encode()),
            (b"connection", b"close")]


class JsonErrorH11Protocol(H11Protocol):
    """uvicorn's h11 protocol; its 400 for an unparsable request is our JSON error."""

    def send_400_response(self, msg: str) -> None:
        try:
            output = self.conn.send(h11.Response(status_code=400, headers=_headers(),
                                                 reason=b"Bad Request"))
            output = (output or b"") + (self.conn.send(h11.Data(data=MALFORMED_HTTP_BODY))
                                        or b"")
            output += self.conn.send(h11.EndOfMessage()) or b""
            self.transport.write(output)
        except h11.LocalProtocolError:
            pass  # a response had already begun: all that is left is to hang up
        self.transport.close()


class CoalescingTransport:
    """A transport whose writes in one turn of the event loop leave in one send.

    The first write of a turn schedules the flush at the end of it (``call_soon``); the
    writes after it only append. ``close`` flushes first, so nothing written is dropped.
    Everything else is the wrapped transport's own.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


HTTP_PROTOCOL: type[asyncio.Protocol] = JsonErrorH11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is optional; h11 then serves
    pass
else:
    class JsonErrorHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol; its 400 for an unparsable request is our JSON.

        Its writes go out through ``CoalescingTransport``: uvicorn writes a response's
        head and its body apart, which would cost two sends and wake the client twice.
        """

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]

        def send_400_response(self, msg: str) -> None:
            cycle = getattr(self, "cycle", None)
            if cycle is None or not cycle.response_started:
                head = [b"HTTP/1.1 400 Bad Request\r\n"]
                head += [name + b": " + value + b"\r\n" for name, value in _headers()]
                self.transport.write(b"".join(head) + b"\r\n" + MALFORMED_HTTP_BODY)
            self.transport.close()

    # The one uvicorn's "auto" would pick: httptools when it is installed.
    HTTP_PROTOCOL = JsonErrorHttpToolsProtocol
    __all__ += ["JsonErrorHttpToolsProtocol"]
