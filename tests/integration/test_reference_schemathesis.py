"""Schemathesis fuzzes the live service against its own ``/openapi.json``.

Every operation of the document gets a bounded, derandomized number of generated
requests over real HTTP, authenticated as the route expects (the admin key for admin
routes, a funded user's token for user routes). Each answer must be no server error,
have a documented status code and content type, and a body that fits the documented
schema. After all of it, the books must still balance.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.stackapi import Api

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION_MAX = 25
_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
           response_schema_conformance]
_ADMIN_PATHS = ("/v1/users", "/v1/audit/")


def test_every_operation_holds_to_its_schema_under_generated_requests(api: Api) -> None:
    fan = api.create_user()
    api.fund(fan, 1000)
    schema = schemathesis.openapi.from_url(api.info.service_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, [op.label for op in operations]
    statuses: Counter[int] = Counter()
    for operation in operations:
        path = operation.path
        token = api.info.admin_key if path.startswith(_ADMIN_PATHS) else fan.token
        _fuzz(operation, base_url=api.info.service_url,
              headers={"Authorization": f"Bearer {token}"}, statuses=statuses)
    # The fuzzing reached the service's answers, not only its refusals.
    assert statuses[200] and statuses[201] and statuses[422], statuses
    api.settle()
    totals = api.totals()
    assert totals["drift_accounts"] == 0, totals
    assert totals["minted"] - totals["clawed_back"] == totals["balances"] - totals["debts"]
    assert totals["ledger_minted"] == totals["minted"], totals
    assert totals["unbalanced_transactions"] == 0, totals


def _fuzz(operation: Any, *, base_url: str, headers: dict[str, str],
          statuses: Counter[int]) -> None:
    @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION_MAX, derandomize=True,
                         deadline=None, database=None, print_blob=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(case=operation.as_strategy())
    def run(case: Any) -> None:
        case.headers = {**(case.headers or {}), **headers}
        response = case.call(base_url=base_url, timeout=30)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=_CHECKS)

    run()
