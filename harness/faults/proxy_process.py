"""The fault proxy server as a child process, tied to our lifetime.

``async with ProxyProcess() as api_url:`` starts ``python -m harness.faults.proxy_server``
on loopback, reads the one JSON line it prints (bounded in time), and stops it on exit
(SIGTERM, then SIGKILL past the bound). The child gets ``PR_SET_PDEATHSIG``: killing us
leaves no orphan. A child of its own, rather than a task in our loop, so that the proxy's
copying uses the other core and a stalled harness loop does not stall the links.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from types import TracebackType

from harness.errors import StackError

__all__ = ["ProxyProcess"]

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0


class ProxyProcess:
    """A fault proxy server child; ``api_url`` once started."""

    def __init__(self, *, host: str = "127.0.0.1", seed: int | None = None) -> None:
        self._host = host
        self._seed = seed
        self._process: asyncio.subprocess.Process | None = None
        self.api_url: str | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def __aenter__(self) -> str:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> str:
        """Start the child; return its API URL once it answers.

        Raises:
            StackError: it exited, or printed nothing readable, within the bound.
        """
        from harness.stack import _die_with_parent

        argv = [sys.executable, "-m", "harness.faults.proxy_server", "--host", self._host,
                "--port", "0"]
        if self._seed is not None:
            argv += ["--seed", str(self._seed)]
        self._process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent)
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(),
                                          timeout=_START_TIMEOUT_S)
        except TimeoutError as exc:
            raise StackError(f"the fault proxy did not start within {_START_TIMEOUT_S:.0f} "
                             "s; see its log above") from exc
        if not line:
            code = await self._process.wait()
            raise StackError(f"the fault proxy exited with {code} while starting; see its "
                             "log above")
        try:
            self.api_url = str(json.loads(line)["proxy_api_url"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(f"the fault proxy announced {line[:200]!r}, not "
                             '{"proxy_api_url": ...}') from exc
        return self.api_url

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL past the bound; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=_STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self.api_url = None
