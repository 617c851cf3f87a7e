"""``python -m harness.provider``: serve the provider simulator alone (see ``server.main``)."""

from __future__ import annotations

import sys

from harness.provider.server import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
