"""pytest entry point (``pytest11``): options, fixtures and markers, all prefixed ``tokenchaos``."""

from __future__ import annotations

import pytest

__all__ = ["pytest_configure"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "tokenchaos_scenario(name): run a tokenchaos scenario against the target")
