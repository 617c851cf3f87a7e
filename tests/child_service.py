"""A test service run as a child process: how it announces its URL, serves, and stops.

The foreign and the seed-shaped test services both run as ``python -m tests.<name>``: the
child serves an ASGI app on loopback and prints one JSON line ``{"url": ...}`` once it
answers, then serves until SIGTERM or SIGINT. The parent reads that line (bounded) and
stops the child with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import Any

from harness.provider.server import serve_asgi

__all__ = ["announced_url", "serve_until_signal", "stop_child"]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


async def serve_until_signal(app: Any, *, port: int) -> None:
    """In the child: serve ``app``, print its URL as one JSON line, return on a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await serve_asgi(app, port=port)
    try:
        print(json.dumps({"url": running.url}), flush=True)
        await stop.wait()
    finally:
        await running.stop()


async def announced_url(process: asyncio.subprocess.Process, *, name: str) -> str:
    """In the parent: the URL the child printed, or a clear error if it died first."""
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=START_TIMEOUT_S)
    if not line:
        code = await process.wait()
        raise RuntimeError(f"the {name} exited with {code} before it answered")
    return str(json.loads(line)["url"])


async def stop_child(process: asyncio.subprocess.Process) -> None:
    """In the parent: SIGTERM, then SIGKILL past the bound."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout=STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        with contextlib.suppress(ProcessLookupError):
            await process.wait()
