"""The public surface is deliberate: ``harness.__all__`` is pinned, and every module of the
harness says what it is (a docstring) and what it exports (``__all__``)."""

from __future__ import annotations

import importlib
import pkgutil

import harness

EXPECTED = {
    "DEFAULT_LIMITS", "AccountState", "Anomaly", "Batch", "Delivery", "DeliveryPolicy",
    "DeliveryVariant", "Event", "F", "IntentTruth", "Kind", "Limits", "Observation", "Op",
    "Outcome", "Pause", "ProviderError", "ProviderTruth", "ProvisioningFailed", "Scenario",
    "ScenarioParams", "SetPolicy", "Settle", "StackError", "Step", "TargetError",
    "TargetUnreachable", "TokenchaosError", "Totals", "UsageError", "Validity", "Verdict",
    "merge_validity",
}


def test_harness_exports_exactly_the_shared_data_bounds_and_errors() -> None:
    assert set(harness.__all__) == EXPECTED
    public = {name for name in vars(harness) if not name.startswith("_")}
    modules = {name for name, value in vars(harness).items()
               if type(value).__name__ == "module"}
    assert public - modules == EXPECTED


# Importing these monkey-patches the standard library with gevent (locust does at import):
# they run only in a locust process, and are checked from their source instead.
_LOCUST_MODULES = frozenset({"harness.locustfile"})


def test_locust_modules_have_a_docstring_and_all() -> None:
    import ast
    from pathlib import Path

    for name in _LOCUST_MODULES:
        path = Path(importlib.import_module("harness").__path__[0]).parent / (
            name.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), name
        assert any(isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for node in tree.body), name


def _modules() -> list[str]:
    names = []
    for package in ("harness", "reference_impl", "scenarios"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if not info.name.rsplit(".", 1)[-1].startswith("__") \
                    and info.name not in _LOCUST_MODULES:
                names.append(info.name)
    return names


def test_every_module_has_a_docstring() -> None:
    missing = [name for name in _modules() if not importlib.import_module(name).__doc__]
    assert missing == []


def test_every_harness_module_declares_all() -> None:
    exempt = {"harness.provider.__main__"}
    missing = [name for name in _modules() if name.startswith("harness.")
               and name not in exempt
               and not hasattr(importlib.import_module(name), "__all__")]
    assert missing == []
