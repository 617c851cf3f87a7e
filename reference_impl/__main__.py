"""``python -m reference_impl --host 127.0.0.1 --port 8000``: run the service under uvicorn.

Settings come from the ``TOKENCHAOS_*`` environment (see ``settings.py``). Logs go to
stderr. SIGTERM and SIGINT shut down gracefully (in-flight requests finish, the pool
closes) and the process exits 0. Exit 2: bad settings or flaw names (a message on
stderr, no traceback); exit 3: the service could not start (the database never
answered, a migration failed).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import uvicorn

from reference_impl.app import create_app
from reference_impl.errors import ConfigError
from reference_impl.http_protocol import HTTP_PROTOCOL
from reference_impl.settings import Settings

__all__ = ["main"]

EXIT_OK = 0
EXIT_BAD_SETTINGS = 2
EXIT_STARTUP_FAILED = 3
_GRACEFUL_SHUTDOWN_S = 10


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, read settings, serve until SIGTERM or SIGINT; return the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("stripe").setLevel(logging.WARNING)  # it logs every request at INFO
    # The pool warns of every failed reconnection attempt while the database is down; the
    # service's own warning of the outage (web._OutageLog) says it once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    log = logging.getLogger("reference_impl")
    try:
        app = create_app(Settings.from_env())
    except ConfigError as exc:
        print(f"reference_impl: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_config=None, log_level=args.log_level,
        access_log=args.access_log, lifespan="on", proxy_headers=False, server_header=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S, timeout_keep_alive=5, backlog=2048,
        http=HTTP_PROTOCOL)
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM/SIGINT itself, then re-raises the signal against the handlers
    # it found in place; these make that re-raise a no-op, so a graceful stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    server.run()
    if not server.started:
        log.error("the service did not start; see the errors above")
        return EXIT_STARTUP_FAILED
    log.info("stopped")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reference_impl",
        description="The tokenchaos reference token service. Configure it with TOKENCHAOS_* "
                    "variables: DATABASE_URL, ADMIN_KEY, WEBHOOK_SECRET (required), "
                    "PROVIDER_URL, STRIPE_API_KEY, FLAWS, POOL_SIZE_MIN, POOL_SIZE_MAX.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    parser.add_argument("--access-log", action="store_true",
                        help="log every request (off by default: it costs under load)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
