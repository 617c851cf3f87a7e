"""The flaw registry: every flaw replaces a real operation with one of the same shape.

Also: the correct service's modules never refer to flaws in code (only the wiring in
``app.py``, ``settings.py`` and ``__main__.py`` may), and an app built with flaw names
calls the flawed operations.
"""

from __future__ import annotations

import inspect
import io
import tokenize
from pathlib import Path

import pytest

from harness.checkers import CHECKERS
from reference_impl import db, service
from reference_impl.app import create_app
from reference_impl.errors import ConfigError
from reference_impl.flaws import FLAWS, Flaw, install_flaws
from reference_impl.settings import Settings

DESIGN_FLAWS = (
    "tip_lost_update",
    "call_charge_no_lock",
    "credit_every_delivery",
    "refund_not_idempotent",
    "refund_zeroes_balance_without_ledger",
    "purchase_blocks_credit",
    "tip_lock_order_deadlock",
    "tip_ignores_idempotency_key",
    "partial_refund_claws_whole",
    "call_minute_charged_twice",
    "refund_before_success_dropped",
    "webhook_signature_not_verified",
    "webhook_timestamp_not_enforced",
)
REFERENCE_DIR = Path(service.__file__).parent
WIRING_MODULES = frozenset({"app.py", "settings.py", "__main__.py"})
ALL_FLAWS = pytest.mark.parametrize("flaw", list(FLAWS.values()), ids=list(FLAWS))


def test_every_flaw_of_the_design_is_registered() -> None:
    missing = [name for name in DESIGN_FLAWS if name not in FLAWS]
    assert not missing, missing


def test_flaw_names_are_unique_snake_case_module_names() -> None:
    assert len({flaw.name for flaw in FLAWS.values()}) == len(FLAWS)
    for name, flaw in FLAWS.items():
        assert name == flaw.name
        assert name.isidentifier() and name == name.lower(), name
        assert inspect.getmodule(flaw.replacement).__name__ == f"reference_impl.flaws.{name}"


@ALL_FLAWS
def test_flaw_replaces_an_operation_with_the_same_signature(flaw: Flaw) -> None:
    correct = service.OPERATIONS.get(flaw.operation)
    assert correct is not None, f"{flaw.name} replaces {flaw.operation!r}, no such operation"
    assert flaw.replacement is not correct
    assert _shape(flaw.replacement) == _shape(correct)
    assert (inspect.iscoroutinefunction(inspect.unwrap(flaw.replacement))
            == inspect.iscoroutinefunction(inspect.unwrap(correct)))


@ALL_FLAWS
def test_flaw_description_is_one_line_naming_a_checker_that_catches_it(flaw: Flaw) -> None:
    assert flaw.description.strip() == flaw.description
    assert "\n" not in flaw.description
    assert len(flaw.description) <= 200, flaw.description
    assert flaw.caught_by, flaw.name
    unknown = [name for name in flaw.caught_by if name not in CHECKERS]
    assert not unknown, f"{flaw.name}: {unknown} are not checkers"
    assert all(name in flaw.description for name in flaw.caught_by), flaw.description


@ALL_FLAWS
def test_flaw_docstring_first_line_names_the_bug(flaw: Flaw) -> None:
    docstring = inspect.getdoc(flaw.replacement)
    assert docstring, f"{flaw.name}: the replacement has no docstring"
    first_line = docstring.splitlines()[0].lower()
    missing = [word for word in flaw.name.split("_") if word not in first_line]
    assert not missing, f"{flaw.name}: {first_line!r} does not say {missing}"
    module = inspect.getmodule(flaw.replacement)
    assert module is not None and module.__doc__, flaw.name
    assert module.caught_by == flaw.caught_by  # type: ignore[attr-defined]


def test_correct_modules_have_no_flaw_in_their_code() -> None:
    offenders = []
    for path in sorted(REFERENCE_DIR.glob("*.py")):
        if path.name in WIRING_MODULES:
            continue
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        for token in tokens:
            if token.type == tokenize.NAME and "flaw" in token.string.lower():
                offenders.append(f"{path.name}:{token.start[0]}: {token.string}")
    assert not offenders, offenders


def test_install_flaws_replaces_only_the_named_operation() -> None:
    installed = install_flaws(service.OPERATIONS, ["tip_lost_update"])
    assert installed["tip"] is FLAWS["tip_lost_update"].replacement
    changed = [name for name, correct in service.OPERATIONS.items()
               if installed[name] is not correct]
    assert changed == ["tip"]


def test_install_flaws_refuses_unknown_names_and_two_flaws_on_one_operation() -> None:
    with pytest.raises(ConfigError, match=r"unknown flaw 'no_such_flaw'.*tip_lost_update"):
        install_flaws(service.OPERATIONS, ["no_such_flaw"])
    with pytest.raises(ConfigError, match="both replace 'tip'"):
        install_flaws(service.OPERATIONS, ["tip_lost_update", "tip_lock_order_deadlock"])


def test_app_built_with_flaw_names_from_the_environment_calls_the_flaws() -> None:
    settings = Settings.from_env({
        "TOKENCHAOS_DATABASE_URL": "postgresql://127.0.0.1:1/unused",
        "TOKENCHAOS_ADMIN_KEY": "adm_" + "x" * 20, "TOKENCHAOS_WEBHOOK_SECRET": "whsec_x",
        "TOKENCHAOS_FLAWS": "credit_every_delivery, webhook_signature_not_verified"})
    operations = create_app(settings).state.operations
    assert operations["apply_payment_succeeded"] is \
        FLAWS["credit_every_delivery"].replacement
    assert operations["verify_webhook"] is FLAWS["webhook_signature_not_verified"].replacement
    assert operations["tip"] is service.OPERATIONS["tip"]


def _shape(function: object) -> list[tuple[str, object, object]]:
    """Names, kinds and defaults of the parameters (annotations are strings here)."""
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


FAULT_ONLY_FLAWS = ("answer_before_commit", "idempotency_key_after_effect",
                    "webhook_ack_before_commit", "no_reconnect_after_database_restart")


def test_flaws_only_a_fault_reveals_name_the_fault_scenarios_that_catch_them() -> None:
    for name in FAULT_ONLY_FLAWS:
        scenarios = FLAWS[name].scenarios
        assert scenarios, f"{name} is invisible without a fault: name the scenarios"
        assert all(s == s.lower() and s.replace("-", "").isalpha() for s in scenarios), scenarios
    assert not any(FLAWS[name].scenarios for name in DESIGN_FLAWS)  # the smoke suite's


def test_the_pool_is_made_through_the_registry_so_a_flaw_can_replace_it() -> None:
    settings = Settings.from_env({
        "TOKENCHAOS_DATABASE_URL": "postgresql://127.0.0.1:1/unused",
        "TOKENCHAOS_ADMIN_KEY": "adm_" + "x" * 20, "TOKENCHAOS_WEBHOOK_SECRET": "whsec_x",
        "TOKENCHAOS_FLAWS": "no_reconnect_after_database_restart"})
    assert service.OPERATIONS["create_pool"] is db.create_pool
    operations = create_app(settings).state.operations
    assert operations["create_pool"] is \
        FLAWS["no_reconnect_after_database_restart"].replacement
    assert operations["tip"] is service.OPERATIONS["tip"]
