"""The reference token service: a correct, hardened FastAPI + PostgreSQL implementation.

Run it with ``python -m reference_impl --host 127.0.0.1 --port 8000`` (settings from the
``TOKENCHAOS_*`` environment), or build the ASGI app with
``create_app(Settings.from_env())``. The package never imports the harness: the harness
talks to it over HTTP, as to any other deployment.
"""

from reference_impl.app import create_app
from reference_impl.settings import Settings

__all__ = ["Settings", "create_app"]
