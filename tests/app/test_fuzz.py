"""Property-based: schemathesis generates valid and invalid requests for every operation in /openapi.json.

No input may produce a 5xx, and every response must match the documented status codes and schemas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.settings import Settings

# schemathesis passes per-request cookies and raw bytes as `data`, both merely deprecated by the test client.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The OpenAPI document does not depend on the models, so an app that never loads any can provide it.
schema = schemathesis.openapi.from_dict(create_app(Settings(models_dir=Path("unused"))).openapi())


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_no_request_is_a_server_error(case: Any, client: TestClient) -> None:
    response = client.request(**case.as_transport_kwargs(base_url=str(client.base_url)))
    case.validate_response(response, checks=CHECKS)
