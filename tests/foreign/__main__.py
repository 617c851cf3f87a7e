"""Serve the foreign service alone: ``python -m tests.foreign --database-url ... ``.

Prints one JSON line, ``{"url": ...}``, once it answers, then serves until SIGTERM or
SIGINT. Flaws come from ``--flaw`` (repeatable) or ``FOREIGN_FLAWS`` (comma-separated).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from tests.child_service import serve_until_signal
from tests.foreign.app import create_app
from tests.foreign.flaws import FLAW_NAMES_ENV


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.foreign")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--provider-url", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--staging-token", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--flaw", action="append", default=[])
    args = parser.parse_args()
    flaws = tuple(args.flaw) or tuple(
        name for name in os.environ.get(FLAW_NAMES_ENV, "").split(",") if name)
    try:
        app = create_app(database_url=args.database_url, provider_url=args.provider_url,
                         webhook_secret=args.webhook_secret, staging_token=args.staging_token,
                         flaws=flaws)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve_until_signal(app, port=args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
