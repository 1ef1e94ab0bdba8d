"""Runs emit OpenLineage START/COMPLETE/FAIL events with inputs, outputs and column lineage — to a real HTTP
receiver on loopback, or to a JSON-lines file; a dead receiver never fails the run."""

from __future__ import annotations

import json

from kiban.catalog.openlineage import emitter_for, run_uuid
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from tests.helpers.shop import SHOP_FILES, SHOP_LAKE


def _run(root):
    project = load_project(root)
    emitter = emitter_for(project)
    assert emitter is not None
    result = run_project(project, RunOptions(), [emitter])
    emitter.close()
    return result, emitter


def test_a_run_posts_start_and_complete_with_column_lineage(make_project, http_hook):
    port, received = http_hook
    root = make_project({**SHOP_FILES, "kiban.yml": f"name: shop\nopenlineage:\n  url: http://127.0.0.1:{port}/api/v1/lineage\n"},
                        lake=SHOP_LAKE)
    result, emitter = _run(root)
    assert result.ok
    assert emitter.failed == 0
    kinds = [(e["job"]["name"], e["eventType"]) for e in received]
    assert kinds[0] == ("shop", "START")
    assert kinds[-1] == ("shop", "COMPLETE")
    for asset in ("warehouse.orders", "warehouse.customers", "mart.daily_sales", "mart.old_report"):
        assert kinds.index((f"shop.{asset}", "START")) < kinds.index((f"shop.{asset}", "COMPLETE"))
    done = next(e for e in received if e["job"]["name"] == "shop.mart.daily_sales" and e["eventType"] == "COMPLETE")
    assert done["run"]["runId"] == run_uuid(result.run_id, "mart.daily_sales")
    assert done["run"]["facets"]["parent"]["run"]["runId"] == run_uuid(result.run_id)
    assert [i["name"] for i in done["inputs"]] == ["warehouse.orders"]
    output = done["outputs"][0]
    assert output["name"] == "mart.daily_sales"
    assert output["namespace"] == "kiban://shop"
    fields = output["facets"]["columnLineage"]["fields"]
    assert fields["revenue"] == {"inputFields": [{"namespace": "kiban://shop", "name": "warehouse.orders",
                                                  "field": "amount"}]}
    assert fields["orders"] == {"inputFields": []}
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 30
    assert "select order_date" in done["job"]["facets"]["sql"]["query"]
    orders = next(e for e in received if e["job"]["name"] == "shop.warehouse.orders" and e["eventType"] == "START")
    assert sorted(i["name"] for i in orders["inputs"]) == ["lake.customers", "lake.orders"]


def test_a_failed_build_is_a_fail_event_in_a_file(make_project):
    files = {**SHOP_FILES, "models/mart/old_report.sql": "select no_such_column from warehouse.orders",
             "kiban.yml": "name: shop\nopenlineage: {file: lineage/events.jsonl, namespace: prod}\n"}
    root = make_project(files, lake=SHOP_LAKE)
    result, _ = _run(root)
    assert not result.ok
    events = [json.loads(line) for line in (root / "lineage" / "events.jsonl").read_text().splitlines()]
    failed = [e for e in events if e["eventType"] == "FAIL"]
    assert {e["job"]["name"] for e in failed} == {"shop.mart.old_report", "shop"}
    report = next(e for e in failed if e["job"]["name"] == "shop.mart.old_report")
    assert "no_such_column" in report["run"]["facets"]["errorMessage"]["message"]
    assert all(e["job"]["namespace"] == "prod" for e in events)


def test_a_dead_receiver_does_not_fail_the_run(make_project, dead_port):
    config = f"name: shop\nopenlineage: {{url: 'http://127.0.0.1:{dead_port}/x', timeout: 0.5}}\n"
    root = make_project({**SHOP_FILES, "kiban.yml": config}, lake=SHOP_LAKE)
    result, emitter = _run(root)
    assert result.ok
    assert emitter.sent == 0
    assert emitter.failed > 0
    assert "Connect" in (emitter.last_error or "")


def test_the_cli_run_sends_events_too(make_project, cli, http_hook):
    port, received = http_hook
    root = make_project({**SHOP_FILES, "kiban.yml": f"name: shop\nopenlineage: {{url: 'http://127.0.0.1:{port}/ol'}}\n"},
                        lake=SHOP_LAKE)
    out = cli("--project", root, "run")
    assert out.returncode == 0, out.stderr
    assert ("shop", "COMPLETE") in [(e["job"]["name"], e["eventType"]) for e in received]


def test_openlineage_takes_a_url_or_a_file(make_project):
    import pytest

    from kiban.errors import KibanError

    root = make_project({"kiban.yml": "name: shop\nopenlineage: {}\n"})
    with pytest.raises(KibanError, match="either a url"):
        load_project(root)
