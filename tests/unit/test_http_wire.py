"""The ops' HTTP/1.1 writer and reader, fed bytes: no socket."""

from __future__ import annotations

import pytest

from harness.protocol import HttpRequest
from harness.targets.http_wire import (
    HEADERS_COUNT_MAX,
    InvalidRequest,
    MalformedResponse,
    ResponseReader,
    encode_request,
    split_url,
)


def _read(*chunks: bytes, body_bytes_max: int = 100) -> ResponseReader:
    reader = ResponseReader(body_bytes_max=body_bytes_max)
    for chunk in chunks:
        reader.feed(chunk)
    return reader


def test_split_url_gives_origin_and_target_without_fragment() -> None:
    assert split_url("http://127.0.0.1:8080/v1/tips?x=1#f") == ("http://127.0.0.1:8080",
                                                                "/v1/tips?x=1")
    assert split_url("https://example.test") == ("https://example.test", "/")


@pytest.mark.parametrize("url", ["ftp://example.test/", "/v1/tips", "http:///x"])
def test_split_url_refuses_what_is_not_an_absolute_http_url(url: str) -> None:
    with pytest.raises(InvalidRequest):
        split_url(url)


def test_a_request_is_written_with_host_length_and_its_headers() -> None:
    data = encode_request(HttpRequest(method="POST", url="http://h:1/tips", body=b'{"a":1}',
                                      headers=(("Authorization", "Bearer t"),)),
                          host="h:1", target="/tips")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /tips HTTP/1.1"
    assert set(lines[1:]) == {b"Host: h:1", b"Authorization: Bearer t",
                              b"Accept-Encoding: identity", b"Content-Length: 7"}
    assert body == b'{"a":1}'


def test_a_get_without_body_has_no_content_length() -> None:
    data = encode_request(HttpRequest(method="GET", url="http://h/"), host="h", target="/")
    assert b"content-length" not in data.lower()
    assert data.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("header", [("X-Id", "1\r\nX-Evil: 1"), ("X-Id", "a\nb"),
                                    ("X-Id", "a\0b"), ("X\r\nY", "1")])
def test_a_header_that_would_split_the_request_is_refused(header: tuple[str, str]) -> None:
    with pytest.raises(InvalidRequest):
        encode_request(HttpRequest(method="GET", url="http://h/", headers=(header,)),
                       host="h", target="/")


@pytest.mark.parametrize("name", ["Host", "Content-Length", "transfer-encoding"])
def test_framing_headers_are_the_transports_own(name: str) -> None:
    with pytest.raises(InvalidRequest):
        encode_request(HttpRequest(method="POST", url="http://h/", headers=((name, "1"),)),
                       host="h", target="/")


def test_a_content_length_answer_is_complete_and_keeps_the_connection() -> None:
    reader = ResponseReader(body_bytes_max=100)
    assert not reader.feed(b"HTTP/1.1 201 Created\r\nContent-Length: 8\r\nX-A: B\r\n\r\n{\"ok\"")
    assert reader.feed(b":1}")
    response = reader.response()
    assert (response.status_code, response.body) == (201, b'{"ok":1}')
    assert ("x-a", "B") in response.headers
    assert reader.keep_alive


def test_an_answer_split_anywhere_reads_the_same() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    for cut in range(1, len(data)):
        reader = ResponseReader(body_bytes_max=100)
        assert not reader.feed(data[:cut])
        assert reader.feed(data[cut:])
        assert reader.response().body == b"hello"


def test_a_chunked_answer_is_joined() -> None:
    reader = ResponseReader(body_bytes_max=100)
    assert not reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert reader.feed(b"4\r\ndefg\r\n0\r\n\r\n")
    assert reader.response().body == b"abcdefg"
    assert reader.keep_alive


def test_a_body_past_the_bound_is_cut_and_the_connection_not_reused() -> None:
    reader = ResponseReader(body_bytes_max=10)
    assert reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 50)
    assert reader.response().body == b"x" * 10
    assert not reader.keep_alive


def test_a_chunked_body_past_the_bound_is_cut_too() -> None:
    reader = ResponseReader(body_bytes_max=4)
    assert reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                       b"3\r\ndef\r\n")
    assert reader.response().body == b"abcd"
    assert not reader.keep_alive


def test_connection_close_answers_are_not_kept() -> None:
    reader = _read(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert reader.response().status_code == 200
    assert not reader.keep_alive


def test_an_http_1_0_answer_is_not_kept() -> None:
    reader = _read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not reader.keep_alive


def test_a_body_framed_by_the_close_ends_at_eof() -> None:
    reader = ResponseReader(body_bytes_max=100)
    assert not reader.feed(b"HTTP/1.1 200 OK\r\n\r\npartial")
    assert reader.feed_eof()
    assert reader.response().body == b"partial"
    assert not reader.keep_alive


def test_a_server_that_closes_early_leaves_the_answer_incomplete() -> None:
    reader = ResponseReader(body_bytes_max=100)
    assert not reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert not reader.feed_eof()
    head_only = ResponseReader(body_bytes_max=100)
    assert not head_only.feed(b"HTTP/1.1 200 OK\r\nContent-Le")
    assert not head_only.feed_eof()


def test_an_interim_answer_is_skipped() -> None:
    reader = _read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 OK\r\nContent-Length: 2\r\n\r\n{}")
    assert (reader.response().status_code, reader.response().headers) == (
        201, (("content-length", "2"),))


def test_no_content_needs_no_length() -> None:
    reader = _read(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert reader.response().body == b""
    assert reader.keep_alive


def test_garbage_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        _read(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_too_many_header_lines_are_malformed() -> None:
    with pytest.raises(MalformedResponse, match="header lines"):
        _read(b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * (HEADERS_COUNT_MAX + 1) + b"\r\n")


def test_a_head_past_its_byte_bound_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="head over"):
        _read(b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"v" * 70_000 + b"\r\n\r\n")


def test_bytes_after_a_complete_answer_are_malformed() -> None:
    reader = _read(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(MalformedResponse, match="after the end"):
        reader.feed(b"HTTP/1.1 200 OK\r\n")


def test_one_reader_reads_answer_after_answer_on_a_kept_connection() -> None:
    reader = ResponseReader(body_bytes_max=100)
    assert reader.feed(b"HTTP/1.1 201 OK\r\nContent-Length: 1\r\n\r\na")
    reader.expect_next(body_bytes_max=100)
    assert reader.feed(b"HTTP/1.1 402 X\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n")
    assert (reader.response().status_code, reader.response().body) == (402, b"b")
    assert reader.response().headers == (("transfer-encoding", "chunked"),)


def test_a_reader_after_connection_close_cannot_expect_another_answer() -> None:
    reader = _read(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    with pytest.raises(AssertionError):
        reader.expect_next(body_bytes_max=100)


@pytest.mark.parametrize("method", ["HEAD", "CONNECT", "G\r\nET", ""])
def test_a_method_the_ops_never_send_is_refused(method: str) -> None:
    with pytest.raises(InvalidRequest):
        encode_request(HttpRequest(method=method, url="http://h/"), host="h", target="/")


def test_a_target_with_a_line_break_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        encode_request(HttpRequest(method="GET", url="http://h/"), host="h",
                       target="/a HTTP/1.1\r\nX: y")
