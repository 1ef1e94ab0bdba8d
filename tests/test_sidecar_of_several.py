"""One YAML file may describe several models, as dbt's ``schema.yml`` does (``models:`` with a ``name`` each)."""

from __future__ import annotations

import pytest

from kiban.checks.suite import suite_of
from kiban.errors import ProjectError, ProjectErrors
from kiban.project import load_project

SCHEMA = """version: 2
models:
  - name: orders
    description: One row per order.
    owner: sales@shop.example
    tags: [sales]
    columns:
      - name: id
        checks:
          - not_null
  - name: Customers
    materialized: view
    columns:
      - name: id
        description: Member number.
"""


def test_a_file_of_several_models_describes_each(project_dir) -> None:  # type: ignore[no-untyped-def]
    root = project_dir({"models/warehouse/orders.sql": "select 1 as id",
                        "models/warehouse/sub/customers.sql": "select 1 as id",
                        "models/warehouse/plain.sql": "select 1 as id",
                        "models/warehouse/schema.yml": SCHEMA})
    project = load_project(root)
    orders, customers = project.assets["warehouse.orders"], project.assets["warehouse.customers"]
    assert orders.config.description == "One row per order."
    assert orders.config.tags == ("sales",)
    assert customers.config.materialized == "view"
    assert customers.config.columns[0].description == "Member number."
    assert project.assets["warehouse.plain"].config_path is None
    check = suite_of(orders, project.assets).checks[0]
    location = check.location()
    assert location is not None
    assert location.path.name == "schema.yml"
    assert location.line == 10


@pytest.mark.parametrize(("text", "message", "line"), [
    ("models:\n  - name: ordres\n", "no model warehouse.ordres", 2),
    ("models:\n  - description: x\n", "needs a `name:`", 2),
    ("models:\n  - name: orders\n    materialised: view\n", "materialised", 3),
    ("models:\n  - name: orders\n  - name: orders\n", "described twice", 3),
    ("sources:\n  - name: x\nmodels: []\n", "unknown key 'sources'", 1),
])
def test_mistakes_in_a_file_of_several_are_placed(project_dir, text: str, message: str,  # type: ignore[no-untyped-def]
                                                  line: int) -> None:
    root = project_dir({"models/warehouse/orders.sql": "select 1 as id", "models/warehouse/schema.yml": text})
    with pytest.raises((ProjectError, ProjectErrors)) as caught:
        load_project(root)
    errors = caught.value.errors if isinstance(caught.value, ProjectErrors) else [caught.value]
    assert any(message in str(e) and e.location is not None and e.location.line == line for e in errors), errors


def test_a_model_with_its_own_sidecar_cannot_be_described_again(project_dir) -> None:  # type: ignore[no-untyped-def]
    root = project_dir({"models/warehouse/orders.sql": "select 1 as id", "models/warehouse/orders.yml": "tags: [a]\n",
                        "models/warehouse/schema.yml": "models:\n  - name: orders\n"})
    with pytest.raises(ProjectError, match="described twice"):
        load_project(root)


def test_a_lonely_sidecar_still_says_what_is_wrong(project_dir) -> None:  # type: ignore[no-untyped-def]
    root = project_dir({"models/warehouse/orders.sql": "select 1 as id", "models/warehouse/ordres.yml": "tags: [a]\n"})
    with pytest.raises(ProjectError, match=r"has no SQL file ordres\.sql"):
        load_project(root)
