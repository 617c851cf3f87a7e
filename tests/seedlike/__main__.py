"""Serve the seed-shaped service alone: ``python -m tests.seedlike --database-url ...``.

Prints one JSON line, ``{"url": ...}``, once it answers, then serves until SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tests.child_service import serve_until_signal
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
    asyncio.run(serve_until_signal(app, port=args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
