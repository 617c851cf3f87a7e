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

__all__ = ["HTTP_PROTOCOL", "MALFORMED_HTTP_BODY", "JsonErrorH11Protocol"]

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


HTTP_PROTOCOL: type[asyncio.Protocol] = JsonErrorH11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is optional; h11 then serves
    pass
else:
    class JsonErrorHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol; its 400 for an unparsable request is our JSON."""

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
