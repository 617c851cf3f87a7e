"""The locust transport: runs a sans-IO flow over locust's ``FastHttpSession``.

Imported only inside a locust process (``harness/locustfile.py``): locust monkey-patches
the standard library with gevent at import, so the harness itself never imports this.
Like ``http_async``, it sends, maps transport errors to outcomes in one table, and never
judges an answer: that is ``harness.protocol``'s job.

Every request goes through ``FastHttpSession.request``, which fires locust's request
event, so locust's statistics, CSV and HTML report count every request of every flow
under the name given (the op kind; a provider step gets ``provider:`` before it). In
locust's terms a request fails when the answer is a 5xx or never came: what our history
records as indeterminate. A refusal the profile lists (a 402 for want of funds) is a
correct answer, not a locust failure.

    nothing was sent          ConnectionRefusedError                -> FAIL connect_error
    it may have been applied  TimeoutError (socket.timeout)         -> INFO read_timeout
                              any other transport error             -> INFO connection_reset
"""

from __future__ import annotations

from typing import Any

from harness.model import Kind, Outcome
from harness.protocol import Flow, HttpRequest, HttpResponse, drive_sync

__all__ = ["OUTCOME_BY_EXCEPTION", "drive_locust", "outcome_for_error", "send_locust"]

OUTCOME_BY_EXCEPTION: tuple[tuple[type[BaseException], Kind, str], ...] = (
    (ConnectionRefusedError, Kind.FAIL, "connect_error"),
    (TimeoutError, Kind.INFO, "read_timeout"),
    (BaseException, Kind.INFO, "connection_reset"),  # anything else: it may have landed
)


def outcome_for_error(error: BaseException) -> Outcome:
    """The Outcome a transport error means, from ``OUTCOME_BY_EXCEPTION``."""
    for exception_type, kind, text in OUTCOME_BY_EXCEPTION:
        if isinstance(error, exception_type):
            assert kind in (Kind.FAIL, Kind.INFO)
            return Outcome(kind=kind, error=text)
    raise AssertionError(f"unmapped {type(error).__name__}")  # BaseException closes it


def drive_locust(flow: Flow, session: Any, *, name: str, body_bytes_max: int) -> Outcome:
    """Run ``flow`` over a locust ``FastHttpSession``; its Outcome, or a transport error's."""
    return drive_sync(flow, lambda request: send_locust(session, request, name=name,
                                                        body_bytes_max=body_bytes_max))


def send_locust(session: Any, request: HttpRequest, *, name: str,
                body_bytes_max: int) -> HttpResponse | Outcome:
    """Send one request, fire locust's request event, return the answer or the Outcome.

    The body is cut one byte past ``body_bytes_max``, so the protocol sees it was too big.
    """
    shown = name if not _is_provider(request, name) else f"provider: {name}"
    with session.request(request.method, request.url, name=shown,
                         data=request.body or None, headers=dict(request.headers),
                         catch_response=True, allow_redirects=False) as answer:
        status = int(answer.status_code or 0)
        if status == 0:  # no answer: connection refused, reset, or timed out
            error = answer.error if isinstance(answer.error, BaseException) else \
                ConnectionResetError(str(answer.error))
            outcome = outcome_for_error(error)
            answer.failure(f"{outcome.error}: {type(error).__name__}")
            return outcome
        if status >= 500:
            answer.failure(f"{status}")
        else:
            answer.success()
        body = bytes(answer.content or b"")[:body_bytes_max + 1]
        return HttpResponse(status_code=status, headers=tuple(answer.headers.items()),
                            body=body)


def _is_provider(request: HttpRequest, name: str) -> bool:
    return "/_tokenchaos/" in request.url or name.startswith(("authenticate", "refund",
                                                              "dispute"))
