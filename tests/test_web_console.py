"""The web console's pages and API over a real project, store and run."""

from __future__ import annotations

import re

from tests.helpers.console import FIXED_SQL, bearer, run, sign_in, sign_in_with_form

# -- pages ---------------------------------------------------------------------------------------------------------

def test_the_board_shows_each_use_case_with_its_verdict_deadline_and_budget(console):
    client, _root, _tokens, _incident = console
    sign_in_with_form(client, "viewer")
    page = client.get("/")
    assert page.status_code == 200
    assert "morning_sales" in page.text
    assert "Store managers read yesterday" in page.text
    assert re.search(r'class="pill s-(pending|failed|at_risk|met|late|not_due)"', page.text)
    assert "budget left" in page.text
    assert "1 open incident" in page.text


def test_asset_page_has_description_columns_lineage_runs_checks_and_charts(console):
    client, root, _tokens, _incident = console
    run(root, select=["warehouse.orders"], full_refresh=True)  # a second build: the charts have two points
    sign_in(client, "analyst")
    page = client.get("/assets/warehouse.orders")
    assert page.status_code == 200
    text = page.text
    assert "Every POS order, cleaned" in text
    assert "data-team@shop.example" in text
    assert "total in yen, tax included" in text
    assert "pos, finance" in text
    assert 'href="/assets/lake.orders"' in text
    assert 'href="/assets/mart.daily_sales"' in text
    assert "select id, store, amount, day from lake.orders" in text  # analysts see the SQL
    assert text.count("<circle") >= 4  # two builds in each of the two charts
    assert 'aria-label="build time"' in text
    assert 'aria-label="rows"' in text
    sign_in(client, "viewer")
    assert "from lake.orders" not in client.get("/assets/orders").text  # viewers do not


def test_runs_list_and_one_runs_gantt_timeline(console):
    client, _root, _tokens, _incident = console
    sign_in(client, "viewer")
    runs = client.get("/runs").text
    run_id = re.search(r'href="/runs/([0-9T]+-[0-9a-f]+)"', runs).group(1)
    page = client.get(f"/runs/{run_id}").text
    assert 'class="gantt"' in page
    assert "warehouse.orders" in page
    assert "mart.daily_sales" in page
    assert "amount_typo" in page  # the failure's error


def test_incident_page_shows_root_cause_and_offers_operators_the_workarounds(console):
    client, _root, _tokens, incident = console
    sign_in(client, "operator")
    page = client.get(f"/incidents/{incident}").text
    assert "mart.daily_sales" in page
    assert "kiban run --resume" in page
    assert "Store managers" in page
    assert 'action="/actions/resume"' in page
    assert 'action="/actions/backfill"' in page
    sign_in(client, "viewer")
    assert 'action="/actions/resume"' not in client.get(f"/incidents/{incident}").text


def test_search_finds_assets_and_columns(console):
    client, _root, _tokens, _incident = console
    sign_in(client, "viewer")
    page = client.get("/search", params={"q": "yen"}).text
    assert 'href="/assets/warehouse.orders"' in page
    assert "<code>amount</code>" in page
    assert "0 found" in client.get("/search", params={"q": "nothing-like-this"}).text
    assert 'href="/assets/warehouse.orders"' in client.get("/search", params={"q": "ordr"}).text  # a typo


def test_graph_page_draws_every_asset_coloured_by_state(console):
    client, _root, _tokens, _incident = console
    sign_in(client, "viewer")
    page = client.get("/graph").text
    assert page.count('class="node st-') == 3
    assert page.count("l-7,-3.5v7z") == 2  # two arrowheads
    assert "mart.daily_sales: failed" in page
    assert 'class="node st-failed"' in page
    assert "✕ mart.daily_sales" in page
    filtered = client.get("/graph", params={"layer": "mart"}).text
    assert filtered.count('class="node st-') == 1
    owned = client.get("/graph", params={"owner": "stores@shop.example"}).text
    assert owned.count('class="node st-') == 1
    near = client.get("/graph", params={"focus": "+warehouse.orders", "depth": "1"}).text
    assert near.count('class="node st-') == 2
    assert 'data-centre="warehouse.orders"' in near
    wrong = client.get("/graph", params={"focus": "+ordrs"})
    assert wrong.status_code == 400
    assert "no asset matches" in wrong.text


def test_an_operator_resumes_the_failed_run_after_the_fix(console):
    client, root, tokens, _incident = console
    (root / "models/mart/daily_sales.sql").write_text(FIXED_SQL)
    csrf = sign_in(client, "operator")
    answer = client.post("/actions/resume", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/jobs/")
    job_id = answer.headers["location"].rsplit("/", 1)[1]
    client.app.state.jobs.wait(job_id, 60)
    job = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(tokens["viewer"])).json()
    assert job["status"] == "success"
    assert job["user"] == "operator"
    detail = client.get(f"/api/v1/runs/{job['run_id']}", headers=bearer(tokens["viewer"])).json()
    assert [a["asset"] for a in detail["attempts"]] == ["mart.daily_sales"]  # only what the failed run left
    audit = client.get("/api/v1/audit", headers=bearer(tokens["admin"])).json()["entries"]
    assert any(e["action"] == "run.resume" and e["actor"] == "operator" and e["ip"] for e in audit)
    assert any(e["action"] == "resume.finished" and e["outcome"] == "ok" for e in audit)


# -- API -------------------------------------------------------------------------------------------------------------

def test_api_mirrors_the_pages(console):
    client, _root, tokens, incident = console
    head = bearer(tokens["viewer"])
    today = client.get("/api/v1/today", headers=head).json()
    assert [u["name"] for u in today["usecases"]] == ["morning_sales"]
    assert {"verdict", "deadline", "estimated_finish", "budget_left", "attainment"} <= set(today["usecases"][0])
    asset = client.get("/api/v1/assets/warehouse.orders", headers=head).json()
    assert asset["downstream"] == ["mart.daily_sales"]
    assert asset["sql"] is None  # viewer: no SQL
    analyst = bearer(tokens["analyst"])
    assert client.get("/api/v1/assets/daily_sales", headers=analyst).json()["sql"].startswith("select")
    missing = client.get("/api/v1/assets/daily_sale", headers=head)  # the pages' resolver: a 404 that helps
    assert missing.status_code == 404
    assert "did you mean 'daily_sales'" in missing.json()["detail"]
    graph = client.get("/api/v1/assets", headers=head).json()
    assert {n["key"]: n["state"] for n in graph["nodes"]}["mart.daily_sales"] == "failed"
    runs = client.get("/api/v1/runs", headers=head).json()
    assert runs["runs"][0]["status"] == "failed"
    assert runs["runs"][0]["counts"] == {"failed": 1, "success": 1}
    found = client.get(f"/api/v1/incidents/{incident}", headers=head).json()
    assert found["workaround"] == "kiban run --resume"
    assert found["events"]
    hits = client.get("/api/v1/search", params={"q": "order number"}, headers=head).json()["hits"]
    assert {"kind": "column", "asset": "warehouse.orders", "column": "id", "text": "order number"} in hits
    assert client.get("/api/v1/usecases/morning_sales", headers=head).json()["assets"] == ["mart.daily_sales"]
    assert client.get("/api/v1/usecases/nope", headers=head).status_code == 404
    assert client.get("/api/v1/me", headers=head).json() == {"name": "viewer", "role": "viewer"}


def test_api_actions_validate_the_selection_and_acknowledge_incidents(console):
    client, _root, tokens, incident = console
    head = bearer(tokens["operator"])
    wrong = client.post("/api/v1/actions/run", json={"selection": ["mart.daily_sale"]}, headers=head)
    assert wrong.status_code == 400
    assert "daily_sales" in wrong.json()["detail"]  # did you mean
    acked = client.post(f"/api/v1/incidents/{incident}/ack", json={"note": "looking"}, headers=head).json()
    assert acked["status"] == "acknowledged"
    assert acked["events"][-1]["actor"] == "operator"
    resolved = client.post(f"/api/v1/incidents/{incident}/resolve", json={"note": "fixed"}, headers=head).json()
    assert resolved["status"] == "resolved"
    assert client.post("/api/v1/incidents/999/ack", json={}, headers=head).status_code == 400


def test_a_model_added_on_disk_while_serving_can_be_run_at_once(console):
    client, root, tokens, _incident = console
    head = bearer(tokens["operator"])
    (root / "models/mart/order_count.sql").write_text("select count(*) as n from warehouse.orders\n")
    job = client.post("/api/v1/actions/run", json={"selection": ["mart.order_count"]}, headers=head)
    assert job.status_code == 202, job.text  # found in the project on disk, not refused by the served one
    client.app.state.jobs.wait(job.json()["id"], 60)
    done = client.get(f"/api/v1/jobs/{job.json()['id']}", headers=head).json()
    assert done["status"] == "success", done
    (root / "models/mart/order_count.sql").unlink()


def test_api_workarounds_rebuild_a_selection_and_report_a_backfill_that_cannot_run(console):
    client, _root, tokens, _incident = console
    head = bearer(tokens["operator"])
    job = client.post("/api/v1/actions/run", json={"selection": ["warehouse.orders"]}, headers=head)
    assert job.status_code == 202
    assert job.json()["status"] == "running"
    named = job.json()["run_id"]  # from the first answer: the run's row may appear long before it is planned
    client.app.state.jobs.wait(job.json()["id"], 60)
    done = client.get(f"/api/v1/jobs/{job.json()['id']}", headers=head).json()
    assert done["status"] in ("success", "nothing")
    assert done["detail"] == "kiban run warehouse.orders"
    assert done["run_id"] == named
    built = client.get(f"/api/v1/runs/{named}", headers=head).json()
    assert built["run"]["selection"] == ["warehouse.orders"]
    backfill = client.post("/api/v1/actions/backfill", headers=head,
                           json={"selection": ["warehouse.orders"], "start": "2026-11-01", "end": "2026-11-02"})
    assert backfill.status_code == 202
    client.app.state.jobs.wait(backfill.json()["id"], 60)
    failed = client.get(f"/api/v1/jobs/{backfill.json()['id']}", headers=head).json()
    assert failed["status"] == "failed"
    assert "incremental" in failed["error"]  # the core's own explanation


def test_a_fix_refused_before_its_run_began_links_to_no_run(console):
    """The job names its run at once; when the run never begins (the project on disk no longer loads), the job
    says why and drops that id, instead of linking to a run page that will never exist."""
    client, root, tokens, _incident = console
    head = bearer(tokens["operator"])
    model = root / "models/warehouse/orders.sql"
    kept = model.read_text()
    model.write_text("select from from where")  # a half-edited file: the project does not load
    try:
        job = client.post("/api/v1/actions/run", json={"selection": ["warehouse.orders"]}, headers=head)
        assert job.status_code == 202
        named = job.json()["run_id"]  # None only when the job was refused before this answer was written
        client.app.state.jobs.wait(job.json()["id"], 60)
        done = client.get(f"/api/v1/jobs/{job.json()['id']}", headers=head).json()
        assert done["status"] == "failed"
        assert "orders.sql" in done["error"]
        assert done["run_id"] is None
        if named is not None:
            assert client.get(f"/api/v1/runs/{named}", headers=head).status_code == 404
    finally:
        model.write_text(kept)
