"""A model version's promotion belongs to the publish of its training asset: refused together, or made together.

On main a blocking check that refused ``demand_model`` v2 kept v1 in the published table, but the registry had
already made v2 current (and v1 retired), so scoring used the version nobody published.
"""

from __future__ import annotations

import duckdb

from kiban.ml.registry import open_registry
from tests.helpers.ml import make_ml_project, query, run, set_algo, versions

MODEL = "warehouse.demand_model"
# a blocking check on the training asset's published row that only the first version passes
ONLY_V1 = "checks:\n  - expression: version < 2\n"


def test_a_refused_publish_undoes_the_promotion_and_scoring_keeps_the_published_version(make_project):
    root = make_ml_project(make_project)
    set_algo(root, "dummy")
    assert run(root).status == "success"
    scored = query(root, "select * from mart.demand_forecast order by all")
    (root / "models/warehouse/demand_model.yml").write_text(ONLY_V1)
    set_algo(root, "linear")  # better: the promotion gate would make it current
    refused = run(root)
    assert refused.outcomes[MODEL].status == "failed"
    assert "expression" in (refused.outcomes[MODEL].error or "")
    v1, v2 = versions(root)
    assert (v1.status, v2.status) == ("current", "rejected"), (v1, v2)
    assert v2.reason is not None
    assert v2.reason.startswith("not published")
    assert "v1 stays current" in v2.reason
    assert query(root, f"select version, current_version from {MODEL}") == [(1, 1)]
    assert query(root, "select * from mart.demand_forecast order by all") == scored
    # and what scores next is still v1: the version the published table names
    (root / "models/mart/demand_forecast.py").write_text(
        (root / "models/mart/demand_forecast.py").read_text() + "\n# touched\n")
    assert run(root, "mart.demand_forecast").status == "success"
    assert query(root, "select * from mart.demand_forecast order by all") == scored


def test_a_promotion_whose_publish_committed_is_current_even_if_the_registry_missed_it(make_project):
    root = make_ml_project(make_project)
    set_algo(root, "dummy")
    run(root)
    set_algo(root, "linear")
    run(root)
    v1, v2 = versions(root)
    assert (v1.status, v2.status) == ("retired", "current")
    # a process killed between the warehouse's commit and the registry's: the registry says pending …
    registry = open_registry(root)
    try:
        with registry.store.engine.begin() as conn:
            conn.exec_driver_sql("update model_versions set status = 'pending' where version = 2")
            conn.exec_driver_sql("update model_versions set status = 'current' where version = 1")
    finally:
        registry.store.close()
    con = duckdb.connect(str(root / "kiban.duckdb"))
    try:
        from kiban.ml.training import settle

        assert settle(root, MODEL, con) == 2  # … and follows the warehouse when it next looks
    finally:
        con.close()
    assert [v.status for v in versions(root)] == ["retired", "current"]
