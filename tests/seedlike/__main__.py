"""Serve the seed-shaped service alone: ``python -m tests.seedlike --database-url ...``.

Prints one JSON line, ``{"url": ...}``, once it answers, then serves until SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from harness.provider.server import serve_asgi
from tests.seedlike.app import create_app


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.seedlike")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--provider-url", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    app = create_app(database_url=args.database_url, provider_url=args.provider_url,
                     webhook_secret=args.webhook_secret)
    asyncio.run(_serve(app, port=args.port))
    return 0


async def _serve(app: object, *, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await serve_asgi(app, port=port)  # type: ignore[arg-type]
    try:
        print(json.dumps({"url": running.url}), flush=True)
        await stop.wait()
    finally:
        await running.stop()


if __name__ == "__main__":
    sys.exit(main())
