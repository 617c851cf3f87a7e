"""HTTP/1.1 on the wire, sans-IO: request bytes from an ``HttpRequest``, answers read by httptools.

The ops' connection pool (``http_pool``) owns every socket, clock and timeout; this module
only turns a request into bytes and bytes into an ``HttpResponse``, so each rule of the
format is tested by feeding bytes, with no socket. It never judges an answer.

A request is written with ``Host``, ``Content-Length`` whenever it has a body, and
``Accept-Encoding: identity`` (the ops' answers are small JSON: decoding compressed
ones would cost more than it saves). A header or target with CR, LF or NUL is refused
with ``InvalidRequest`` before a byte is written: a value learned from the target must
never split a request in two.

An answer's head is bounded (``HEAD_BYTES_MAX``, ``HEADERS_COUNT_MAX``) and its body is
kept up to ``body_bytes_max`` bytes: past that the answer is cut there and its connection
is not reused (the rest of the body is never read). A body without ``Content-Length`` or
chunked framing ends when the peer closes, as HTTP/1.1 says.
"""

from __future__ import annotations

import httptools

from harness.protocol import HttpRequest, HttpResponse

__all__ = ["HEADERS_COUNT_MAX", "HEAD_BYTES_MAX", "InvalidRequest", "MalformedResponse",
           "ResponseReader", "encode_request", "split_url"]

HEAD_BYTES_MAX = 64 * 1024  # status line and headers of one answer
HEADERS_COUNT_MAX = 128  # header lines of one answer
_NO_BODY_STATUSES = frozenset({204, 304})
_METHODS_SENT = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_WITH_LENGTH = frozenset({"POST", "PUT", "PATCH"})
_TRANSPORT_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})


class InvalidRequest(ValueError):
    """A request that cannot be written as HTTP/1.1; nothing of it was sent."""


class MalformedResponse(Exception):
    """The peer's bytes are not one HTTP/1.1 answer (or break a bound on its head)."""


def split_url(url: str) -> tuple[str, str]:
    """``("http://host:port", "/path?query")`` of an absolute http(s) URL, fragment dropped.

    Raises:
        InvalidRequest: not an absolute http or https URL.
    """
    scheme_end = url.find("://")
    if scheme_end < 0 or url[:scheme_end].lower() not in ("http", "https"):
        raise InvalidRequest(f"not an absolute http(s) URL: {url[:200]!r}")
    path_start = url.find("/", scheme_end + 3)
    origin, target = (url, "/") if path_start < 0 else (url[:path_start], url[path_start:])
    target = target.partition("#")[0] or "/"
    if len(origin) == scheme_end + 3:
        raise InvalidRequest(f"no host in URL {url[:200]!r}")
    return origin, target


def encode_request(request: HttpRequest, *, host: str, target: str) -> bytes:
    """The bytes of ``request`` for a keep-alive HTTP/1.1 connection to ``host``.

    Raises:
        InvalidRequest: a method, target or header that would not be one request.
    """
    method = request.method
    if method not in _METHODS_SENT:
        # HEAD's answer has a Content-Length and no body: no op sends one.
        raise InvalidRequest(f"not an HTTP method the ops send: {method!r}")
    parts = [method, " ", target, " HTTP/1.1\r\nHost: ", host]
    identity = True
    breaks_count = 1 + len(request.headers)  # one CR LF before each line after the first
    for name, value in request.headers:
        lowered = name.lower()
        if lowered in _TRANSPORT_HEADERS:
            raise InvalidRequest("Host, Content-Length and Transfer-Encoding are the "
                                 "transport's to write")
        if lowered == "accept-encoding":
            identity = False
        parts += ("\r\n", name, ": ", value)
    if identity:
        parts.append("\r\nAccept-Encoding: identity")
        breaks_count += 1
    body = request.body
    if body or method in _WITH_LENGTH:
        parts += ("\r\nContent-Length: ", str(len(body)))
        breaks_count += 1
    head = "".join(parts)
    # The CR LF between lines, and no other CR, LF or NUL: nothing may split the request.
    if head.count("\n") != breaks_count or head.count("\r") != breaks_count or "\0" in head:
        raise InvalidRequest(f"CR, LF or NUL in the request head of {method} "
                             f"{target[:200]!r}")
    return head.encode("latin-1") + b"\r\n\r\n" + body


class ResponseReader:
    """Reads one answer fed as bytes; ``feed`` says when it is complete.

    ``keep_alive`` says, once complete, whether the connection may carry another request:
    not after ``Connection: close``, an answer cut at the body bound, or an answer that
    ended with the connection.
    """

    __slots__ = ("_body", "_body_bytes_max", "_body_size", "_done", "_framed", "_head_size",
                 "_headers", "_parser", "_status", "keep_alive")

    def __init__(self, *, body_bytes_max: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._done = True
        self.keep_alive = True
        self.expect_next(body_bytes_max=body_bytes_max)

    def expect_next(self, *, body_bytes_max: int) -> None:
        """Read the next answer on the same connection (one parser serves them all)."""
        assert body_bytes_max >= 1
        assert self._done, "the answer before is not complete"
        assert self.keep_alive, "the connection cannot carry another answer"
        self._body_bytes_max = body_bytes_max
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._body_size = 0
        self._head_size = 0
        self._status = 0
        self._framed = True  # False: the body ends when the peer closes
        self._done = False
        self.keep_alive = False

    def feed(self, data: bytes) -> bool:
        """Take the next bytes from the peer; True once the answer is complete (or cut).

        Raises:
            MalformedResponse: not HTTP/1.1, a head past its bounds, or bytes past the end.
        """
        if self._done:
            raise MalformedResponse(f"{len(data)} bytes after the end of the answer")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            raise MalformedResponse("the peer switched protocols") from exc
        except httptools.HttpParserError as exc:
            if self._done and self._body_size > self._body_bytes_max:
                return True  # cut at the bound: what follows is never parsed
            if isinstance(exc.__context__, MalformedResponse):  # a bound a callback hit
                raise exc.__context__ from None
            raise MalformedResponse(f"not an HTTP/1.1 answer: {exc}") from exc
        return self._done

    def feed_eof(self) -> bool:
        """The peer closed; True when that ended the answer (a body framed by the close)."""
        if not self._done and self._status and not self._framed:
            self._done = True
            self.keep_alive = False
        return self._done

    def response(self) -> HttpResponse:
        """The answer read; call it once ``feed`` or ``feed_eof`` returned True."""
        assert self._done
        body = b"".join(self._body)[:self._body_bytes_max]
        return HttpResponse(status_code=self._status, headers=tuple(self._headers), body=body)

    # -- httptools callbacks -------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._grow_head(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value))
        if len(self._headers) >= HEADERS_COUNT_MAX:
            raise MalformedResponse(f"more than {HEADERS_COUNT_MAX} header lines")
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        names = {name for name, _ in self._headers}
        self._framed = ("content-length" in names or "transfer-encoding" in names
                        or self._status in _NO_BODY_STATUSES or self._status < 200)

    def on_body(self, body: bytes) -> None:
        if self._body_size <= self._body_bytes_max:
            self._body.append(body)
        self._body_size += len(body)
        if self._body_size > self._body_bytes_max and not self._done:
            self._done = True  # enough to show the answer is too large: stop here
            self.keep_alive = False
            raise MalformedResponse("cut at the body bound")  # stops httptools' parse

    def on_message_complete(self) -> None:
        if self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers.clear()
            self._status = 0
            return
        self._done = True
        self.keep_alive = self._parser.should_keep_alive() and self._framed

    def _grow_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > HEAD_BYTES_MAX:
            raise MalformedResponse(f"an answer head over {HEAD_BYTES_MAX} bytes")
