"""Schemathesis against the API's own OpenAPI description, in-process: no input makes the server fail (5xx),
and every answer matches the schema it promises."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.helpers.console import bearer


@pytest.fixture(scope="module")
def served(console_template: tuple[Path, dict[str, str], int], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from kiban.web import create_app

    root = tmp_path_factory.mktemp("schema") / "shop"
    shutil.copytree(console_template[0], root)
    app = create_app(root)
    token = console_template[1]["admin"]  # every operation is allowed, so the checks reach the handlers
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, headers=bearer(token))
    loaded.token = token  # type: ignore[attr-defined]
    return loaded


def test_the_api_keeps_its_promises(served: Any) -> None:
    """Every operation, with generated inputs (schemathesis' strategies driven by Hypothesis here: its pytest
    plugin does not run under this pytest)."""
    from hypothesis import given

    operations = [result.ok() for result in served.get_all_operations()]
    assert len(operations) >= 18
    headers = bearer(served.token)
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

        check()


def test_the_description_lists_every_api_route(served: Any) -> None:
    paths = set(served.raw_schema["paths"])
    assert {"/api/v1/today", "/api/v1/assets/{key}", "/api/v1/runs/{run_id}", "/api/v1/incidents/{incident_id}",
            "/api/v1/actions/resume", "/api/v1/search", "/health"} <= paths
    assert not any(p.startswith(("/login", "/runs", "/assets")) for p in paths)  # pages are not the API
