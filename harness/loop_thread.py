"""An event loop in a thread of its own, for sync code that drives the async harness.

Hypothesis rules are plain functions, while the runner, the target session and the
provider client are async and must stay on the one loop they were opened on. ``LoopThread``
starts that loop in a daemon thread; ``run`` hands it a coroutine and waits, bounded, for
its result. Every wait has a bound: a coroutine still running past it is cancelled, and
the caller gets ``TimeoutError``.

Nothing else lives here: no knowledge of targets, checkers or Hypothesis.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")
_JOIN_TIMEOUT_S = 10.0  # the loop's thread, once told to stop, ends within this


class LoopThread:
    """One event loop running in a daemon thread until ``close``.

    Use as a context manager::

        with LoopThread() as loop:
            answer = loop.run(fetch(), timeout_s=10.0)
    """

    def __init__(self, *, name: str = "tokenchaos-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether the loop has stopped (``run`` is then refused)."""
        return self._loop.is_closed() or not self._thread.is_alive()

    def run(self, coro: Coroutine[Any, Any, T], *, timeout_s: float) -> T:
        """Run ``coro`` on the loop and return its result, or raise what it raised.

        Raises:
            TimeoutError: it did not finish within ``timeout_s``; it is cancelled.
            RuntimeError: the loop is closed, or this is called from the loop's own thread
                (which would wait for itself forever).
        """
        assert timeout_s > 0, timeout_s
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run called from its own loop: await instead")
        if self.closed:
            coro.close()
            raise RuntimeError("LoopThread.run after close")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise TimeoutError(f"the coroutine did not finish within {timeout_s:g} s") from exc

    def close(self) -> None:
        """Cancel what still runs on the loop, stop it and join its thread (bounded)."""
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_JOIN_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(
                    asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
