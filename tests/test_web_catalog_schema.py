"""Schemathesis over the catalog's API on a project that has PII columns, profiles and recipes (the shared
schema test runs on one without them): no input makes the server fail, every answer matches its schema."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.helpers.console import bearer


@pytest.fixture(scope="module")
def served(catalog_template: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Any:
    from kiban.web import create_app

    root = tmp_path_factory.mktemp("catalog-schema") / "shop"
    shutil.copytree(catalog_template[0], root)
    loaded = schemathesis.openapi.from_asgi("/openapi.json", create_app(root),
                                            headers=bearer(catalog_template[1]["admin"]))
    loaded.token = catalog_template[1]["admin"]  # type: ignore[attr-defined]
    return loaded


def test_the_catalog_api_keeps_its_promises(served: Any) -> None:
    operations = [r.ok() for r in served.get_all_operations() if "catalog" in (r.ok().tags or [])]
    assert len(operations) >= 14
    headers = bearer(served.token)
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

        check()


def test_the_description_lists_the_catalog_routes(served: Any) -> None:
    paths = set(served.raw_schema["paths"])
    assert {"/api/v1/assets/{key}/columns", "/api/v1/assets/{key}/columns/{column}", "/api/v1/query",
            "/api/v1/query/export", "/api/v1/query/history", "/api/v1/recipes", "/api/v1/recipes/{name}/run",
            "/api/v1/recipes/{name}/promote", "/api/v1/requests", "/api/v1/requests/{request_id}/move",
            "/api/v1/usage"} <= paths
    assert not any(p.startswith(("/console", "/recipes", "/requests", "/usage")) for p in paths)
