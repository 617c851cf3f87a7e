"""The pgbench script of the service bench is built from the service's own tip SQL."""

from __future__ import annotations

import pytest

from harness.bench.service import TIP_VARIABLES, pgbench_script
from reference_impl import service


def test_pgbench_script_runs_the_statements_the_service_runs_for_a_tip() -> None:
    script = pgbench_script(service.TIP_STATEMENTS)
    assert "spend_tips(" in script
    assert "%(" not in script
    for name in ("sender", "recipient", "amount", "key"):
        assert f"\\set {name} " in script
    statements = [line for line in script.splitlines() if not line.startswith("\\")]
    assert len(statements) == len(service.TIP_STATEMENTS)
    assert all(statement.endswith(";") for statement in statements)


def test_pgbench_script_maps_each_named_parameter_to_its_variable() -> None:
    script = pgbench_script(["SELECT %(sender_ids)s, %(keys)s, 100 %% 7"],
                            amount_tokens=3)
    assert script.splitlines()[-1] == (
        f"SELECT ({TIP_VARIABLES['sender_ids']}), ({TIP_VARIABLES['keys']}), "
        "100 % 7;")
    assert "\\set amount 3" in script


def test_pgbench_script_refuses_a_parameter_it_cannot_fill() -> None:
    with pytest.raises(ValueError, match="channel"):
        pgbench_script(["SELECT %(channel)s"])
    with pytest.raises(ValueError, match="positional"):
        pgbench_script(["SELECT %s"])
