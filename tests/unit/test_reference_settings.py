"""Settings come from TOKENCHAOS_* variables; flaws are installed by name or refused."""

from __future__ import annotations

import pytest

from harness.limits import DEFAULT_LIMITS
from reference_impl import db
from reference_impl.errors import ConfigError
from reference_impl.flaws import FLAWS, Flaw, install_flaws
from reference_impl.service import OPERATIONS
from reference_impl.settings import Settings

_ENV = {"TOKENCHAOS_DATABASE_URL": "postgresql://u@h/db",
        "TOKENCHAOS_ADMIN_KEY": "adm_0123456789abcdef",
        "TOKENCHAOS_WEBHOOK_SECRET": "whsec_x"}


def test_from_env_reads_required_values_and_defaults_the_rest() -> None:
    settings = Settings.from_env(_ENV)
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.stripe_api_key == "sk_test_tokenchaos"
    assert settings.provider_url == "https://api.stripe.com"
    assert settings.flaws == ()


def test_from_env_reads_the_optional_values() -> None:
    settings = Settings.from_env({**_ENV, "TOKENCHAOS_PROVIDER_URL": "http://127.0.0.1:9",
                                  "TOKENCHAOS_STRIPE_API_KEY": "sk_test_other",
                                  "TOKENCHAOS_FLAWS": " a, b,,",
                                  "TOKENCHAOS_POOL_SIZE_MIN": "1",
                                  "TOKENCHAOS_POOL_SIZE_MAX": "4"})
    assert settings.provider_url == "http://127.0.0.1:9"
    assert settings.stripe_api_key == "sk_test_other"
    assert settings.flaws == ("a", "b")
    assert (settings.pool_size_min, settings.pool_size_max) == (1, 4)


@pytest.mark.parametrize("missing", sorted(_ENV))
def test_a_missing_required_variable_names_itself(missing: str) -> None:
    env = {key: value for key, value in _ENV.items() if key != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


@pytest.mark.parametrize(("name", "value"), [("TOKENCHAOS_POOL_SIZE_MAX", "many"),
                                             ("TOKENCHAOS_POOL_SIZE_MIN", "0"),
                                             ("TOKENCHAOS_ADMIN_KEY", "short")])
def test_bad_values_are_refused_with_a_message(name: str, value: str) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({**_ENV, name: value})


def test_an_unknown_flaw_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(ConfigError, match="unknown flaw 'no_such_flaw'"):
        install_flaws(OPERATIONS, ["no_such_flaw"])


def test_a_flaw_replaces_exactly_its_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    async def buggy_tip(*args: object, **kwargs: object) -> None:
        """Stand-in replacement."""

    flaw = Flaw(name="demo", operation="tip", replacement=buggy_tip,
                description="demo", caught_by=("conservation",))
    monkeypatch.setitem(FLAWS, "demo", flaw)
    installed = install_flaws(OPERATIONS, ["demo"])
    assert installed["tip"] is buggy_tip
    assert {name for name in OPERATIONS if installed[name] is not OPERATIONS[name]} == {"tip"}


def test_two_flaws_on_one_operation_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("one", "two"):
        monkeypatch.setitem(FLAWS, name, Flaw(name=name, operation="tip",
                                              replacement=OPERATIONS["tip"], description=name,
                                              caught_by=()))
    with pytest.raises(ConfigError, match="both replace 'tip'"):
        install_flaws(OPERATIONS, ["one", "two"])


def test_the_registry_names_every_operation_of_the_spec() -> None:
    assert {"tip", "charge_minute", "open_call", "end_call", "create_purchase",
            "apply_payment_succeeded", "apply_charge_refunded", "apply_dispute_created",
            "apply_dispute_closed", "verify_webhook"} <= set(OPERATIONS)


def test_under_load_the_service_waits_longer_than_a_client_instead_of_answering_503() -> None:
    """A pool wait or a lock wait that expires answers 503: it must outlast the client.

    A correct service on a busy machine is slow, not broken; a client that gives up sees
    a timeout (indeterminate) and retries with its key, where a 503 would read as a fault.
    """
    settings = Settings(database_url="postgresql://localhost/x", admin_key="k" * 16,
                        webhook_secret="whsec_x")
    client_timeout_s = DEFAULT_LIMITS.op_timeout_s
    assert settings.pool_timeout_s > 2 * client_timeout_s
    assert settings.lock_timeout_ms / 1000 > 2 * client_timeout_s
    assert settings.statement_timeout_ms > settings.lock_timeout_ms


def test_transient_retries_are_bounded_but_survive_a_burst_of_deadlocks() -> None:
    assert 8 <= db.TRANSACTION_ATTEMPTS_MAX <= 20
    worst_case_backoff_ms = sum(
        min(db.RETRY_BACKOFF_MS_BASE * 2**attempt, db.RETRY_BACKOFF_MS_MAX)
        for attempt in range(db.TRANSACTION_ATTEMPTS_MAX - 1))
    assert worst_case_backoff_ms < 3000
