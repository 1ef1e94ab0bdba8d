"""The catalog in the web console, over a real project, store and run: column lineage and profiles on the asset
page, catalog search, the SQL console (masking, limits, refusals, downloads, history, usage), recipes, data
requests and the usage page — pages and /api/v1 alike."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.console import bearer, served_copy, sign_in
from tests.helpers.timing import within


@pytest.fixture
def web(catalog_template: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[Any]:
    """(client, root, tokens) over a fresh copy of the catalog project."""
    with served_copy(catalog_template[0], tmp_path) as client:
        yield client, tmp_path / "shop", catalog_template[1]


def _audit(client: Any, token: str) -> list[dict[str, Any]]:
    return client.get("/api/v1/audit", headers=bearer(token), params={"limit": 1000}).json()["entries"]


# -- the asset page: columns, PII, lineage, profile ----------------------------------------------------------------

def test_asset_page_shows_pii_column_lineage_both_ways_and_profiles(web):
    client, _root, _tokens = web
    sign_in(client, "viewer")
    page = client.get("/assets/warehouse.customers").text
    row = re.search(r'<tr id="col-email_upper">.*?</tr>', page, re.S).group(0)
    assert "PII ← lake.customers.email" in row  # the tag travelled down lineage
    assert 'href="/assets/lake.customers/columns/email"' in row  # where it comes from, clickable
    key_row = re.search(r'<tr id="col-email_key">.*?</tr>', page, re.S).group(0)
    assert "anonymised" in key_row
    assert "PII" not in key_row
    email_row = re.search(r'<tr id="col-email">.*?</tr>', page, re.S).group(0)
    assert "@example.com" not in email_row
    assert "xxx" not in email_row  # no min, max or examples are kept
    id_row = re.search(r'<tr id="col-id">.*?</tr>', page, re.S).group(0)
    assert re.search(r"<td>0%</td><td>(9|10|11)</td>", id_row)
    assert "1 – 10" in id_row  # nulls, ~distinct, range
    assert "10 rows at the last profile" in page
    lake = client.get("/assets/lake.customers").text
    down = re.search(r'<tr id="col-email">.*?</tr>', lake, re.S).group(0)
    assert 'href="/assets/warehouse.customers/columns/email_upper"' in down  # and where it goes


def test_column_page_draws_the_whole_lineage_tree_up_and_down(web):
    client, _root, _tokens = web
    sign_in(client, "viewer")
    page = client.get("/assets/warehouse.orders/columns/amount").text
    assert 'href="/assets/lake.orders/columns/amount"' in page  # comes from
    up = client.get("/assets/mart.daily_sales/columns/store").text
    assert 'href="/assets/warehouse.orders/columns/store"' in up
    assert 'href="/assets/lake.orders/columns/store"' in up
    assert client.get("/assets/warehouse.orders/columns/nope").status_code == 404
    api = client.get("/api/v1/assets/warehouse.customers/columns/email_upper").json()
    assert api["upstream"]["children"][0] == {"asset": "lake.customers", "column": "email", "children": []}
    columns = client.get("/api/v1/assets/warehouse.customers/columns").json()
    by_name = {c["name"]: c for c in columns["columns"]}
    assert by_name["email"]["pii"]
    assert by_name["email"]["pii_from"] == "lake.customers.email"
    assert not by_name["email_key"]["pii"]
    assert by_name["email_key"]["anonymised"]
    assert by_name["id"]["profile"]["approx_distinct"] in (9, 10, 11)
    assert by_name["id"]["profile"]["null_share"] == 0


def test_search_is_the_catalogs_index_names_descriptions_prefixes(web):
    client, _root, _tokens = web
    sign_in(client, "viewer")
    page = client.get("/search", params={"q": "receipts"}).text  # a column description
    assert 'href="/assets/lake.customers"' in page
    assert "<code>email</code>" in page
    hits = client.get("/api/v1/search", params={"q": "custom"}).json()["hits"]  # the last word is a prefix
    assert hits[0]["kind"] == "asset"
    assert hits[0]["asset"] in ("lake.customers", "warehouse.customers")
    assert client.get("/api/v1/search", params={"q": "zzzz"}).json()["hits"] == []


# -- the SQL console -----------------------------------------------------------------------------------------------

def test_console_runs_masks_pii_for_analysts_and_records_usage(web):
    client, _root, tokens = web
    csrf = sign_in(client, "analyst")
    page = client.get("/console")
    assert page.status_code == 200
    assert 'name="sql"' in page.text
    answer = client.post("/console", data={"csrf": csrf, "sql": "select id, email, email_key from warehouse.customers "
                                           "order by id limit 2", "team": "crm"})
    assert answer.status_code == 200
    table = re.search(r'<table class="result".*?</table>', answer.text, re.S).group(0)
    assert "user1@example.com" not in table
    assert "•••" in table
    assert 'id="masked-note"' in answer.text
    assert "<code>email</code>" in answer.text
    assert "warehouse.customers" in answer.text  # what it read
    # the API, the same
    api = client.post("/api/v1/query", json={"sql": "select email, email_upper from warehouse.customers limit 1"},
                      headers=bearer(tokens["analyst"])).json()
    assert api["masked"] == ["email", "email_upper"]
    assert "@example.com" not in str(api["rows"])
    # an admin has PII clearance: unmasked, and the history says so
    cleared = client.post("/api/v1/query", json={"sql": "select email from warehouse.customers order by id limit 1"},
                          headers=bearer(tokens["admin"])).json()
    assert cleared["rows"] == [["user1@example.com"]]
    assert cleared["pii_shown"]
    assert cleared["masked"] == []
    history = client.get("/api/v1/query/history", headers=bearer(tokens["analyst"])).json()["entries"]
    assert [h["status"] for h in history] == ["ok", "ok"]
    assert history[1]["team"] == "crm"
    assert history[0]["team"] == "crm"  # the last team named is remembered
    usage = client.get("/api/v1/usage", headers=bearer(tokens["viewer"])).json()
    crm = [t for t in usage["teams"] if t["team"] == "crm"]
    assert crm
    assert crm[0]["users"] == 1
    assert crm[0]["queries"] == 2
    assert crm[0]["assets"] == 1
    assert "warehouse.customers" in [a["asset"] for a in usage["assets_read"]]
    audit = _audit(client, tokens["admin"])
    assert any(e["action"] == "console.query" and e["actor"] == "analyst" and e["outcome"] == "ok" for e in audit)


def test_console_refusals_timeouts_and_limits_are_clear_messages(web):
    client, _root, tokens = web
    csrf = sign_in(client, "analyst")
    refused = client.post("/console", data={"csrf": csrf, "sql": "delete from warehouse.orders"})
    assert refused.status_code == 400
    assert 'id="query-error"' in refused.text
    assert "Traceback" not in refused.text
    message = re.search(r'id="query-error">(.*?)</p>', refused.text, re.S).group(1)
    assert "SELECT" in message or "select" in message
    outside = client.post("/console", data={"csrf": csrf, "sql": "select * from read_csv('/etc/passwd')"})
    assert outside.status_code == 400
    assert "root:" not in outside.text
    slow = client.post("/console", data={"csrf": csrf, "sql": "select count(*) from range(100000000000) a",
                                         "timeout": "0.3"})
    assert slow.status_code == 400
    assert "longer than 0.3s" in slow.text
    limited = client.post("/console", data={"csrf": csrf, "sql": "select * from warehouse.orders", "limit": "5"})
    assert "only the first 5 are shown: the row limit was reached" in limited.text
    assert limited.text.count("<tr><td>") >= 5
    history = client.get("/console").text
    assert history.count(">refused<") == 2
    assert ">stopped<" in history
    api = client.post("/api/v1/query", json={"sql": "drop table mart.daily_sales"}, headers=bearer(tokens["analyst"]))
    assert api.status_code == 400
    assert api.json()["detail"]
    audit = _audit(client, tokens["admin"])
    assert any(e["action"] == "console.query" and e["outcome"] == "failed" for e in audit)


def test_console_downloads_csv_and_xlsx_masked_too(web):
    from openpyxl import load_workbook

    client, _root, tokens = web
    csrf = sign_in(client, "analyst")
    sql = "select id, email from warehouse.customers order by id"
    answer = client.post("/console/export", data={"csrf": csrf, "sql": sql, "format": "csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["id", "email"]
    assert len(rows) == 11
    assert rows[1][1] == "•••"
    excel = client.post("/api/v1/query/export", params={"format": "xlsx"}, json={"sql": sql},
                        headers=bearer(tokens["analyst"]))
    assert excel.status_code == 200
    sheet = load_workbook(io.BytesIO(excel.content)).active
    values = [[c.value for c in r] for r in sheet.iter_rows()]
    assert values[0] == ["id", "email"]
    assert values[1] == [1, "•••"]
    kinds = [h["kind"] for h in client.get("/api/v1/query/history", headers=bearer(tokens["analyst"])).json()
             ["entries"]]
    assert kinds.count("export") == 2


def test_viewers_cannot_use_the_console(web):
    client, _root, tokens = web
    csrf = sign_in(client, "viewer")
    assert client.get("/console").status_code == 403
    assert 'href="/console"' not in client.get("/recipes").text
    assert client.post("/console", data={"csrf": csrf, "sql": "select 1"}).status_code == 403
    assert client.post("/api/v1/query", json={"sql": "select 1"}, headers=bearer(tokens["viewer"])).status_code == 403


# -- recipes -------------------------------------------------------------------------------------------------------

def test_recipe_form_runs_with_typed_parameters_and_masks_for_viewers(web):
    client, _root, tokens = web
    csrf = sign_in(client, "viewer")
    listing = client.get("/recipes").text
    assert 'href="/recipes/store_sales"' in listing
    assert "One store" in listing
    form = client.get("/recipes/store_sales").text
    assert 'name="p_store"' in form
    assert 'type="date"' in form
    assert 'value="2026-11-01"' in form
    result = client.post("/recipes/store_sales", data={"csrf": csrf, "p_store": "2", "p_from_day": "2026-11-01",
                                                       "p_to_day": "2026-11-03", "team": "stores"})
    assert result.status_code == 200
    assert "3 rows" in result.text
    assert "2026-11-02" in result.text
    assert 'list="v_store"' in form
    assert '<option value="1"><option value="2"><option value="3">' in form  # picker
    nothing = client.post("/recipes/store_sales", data={"csrf": csrf, "p_store": "6", "p_from_day": "2026-11-01",
                                                        "p_to_day": "2026-11-03"}).text
    assert "0 rows" in nothing
    assert "&#39;6&#39; is not a value of warehouse.orders.store" in nothing
    wrong = client.post("/recipes/store_sales", data={"csrf": csrf, "p_store": "two"})
    assert wrong.status_code == 400
    assert "parameter store: &#39;two&#39; is not an int" in wrong.text
    mails = client.post("/recipes/customer_mails", data={"csrf": csrf, "p_upto": "2"})
    assert "user1@example.com" not in mails.text
    assert "•••" in mails.text
    download = client.post("/recipes/customer_mails/export", data={"csrf": csrf, "p_upto": "2", "format": "csv"})
    assert download.status_code == 200
    assert "•••" in download.text
    assert "@example.com" not in download.text
    api = client.post("/api/v1/recipes/store_sales/run", json={"params": {"store": "1"}},
                      headers=bearer(tokens["viewer"])).json()
    assert api["columns"] == ["day", "orders", "revenue"]
    assert len(api["rows"]) == 5
    assert client.get("/api/v1/recipes/nope", headers=bearer(tokens["viewer"])).status_code == 404
    recorded = client.get("/api/v1/query/history", headers=bearer(tokens["admin"])).json()["entries"]
    assert recorded == []  # the history is the user's own
    audit = _audit(client, tokens["admin"])
    assert any(e["action"] == "recipe.run" and e["target"] == "store_sales" and e["actor"] == "viewer"
               for e in audit)


def test_operators_promote_a_recipe_to_a_mart_model(web):
    client, root, tokens = web
    csrf = sign_in(client, "analyst")
    assert 'formaction="/recipes/store_sales/promote"' not in client.get("/recipes/store_sales").text
    assert client.post("/recipes/store_sales/promote", data={"csrf": csrf, "p_store": "1"}).status_code == 403
    csrf = sign_in(client, "operator")
    assert 'formaction="/recipes/store_sales/promote"' in client.get("/recipes/store_sales").text
    answer = client.post("/recipes/store_sales/promote", data={"csrf": csrf, "p_store": "1", "model": "store1_sales"},
                         follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/assets/mart.store1_sales"
    assert (root / "models" / "mart" / "store1_sales.sql").exists()
    assert client.get("/assets/mart.store1_sales").status_code == 200  # the site reloaded the project
    again = client.post("/api/v1/recipes/store_sales/promote", json={"params": {"store": "1"}, "name": "store1_sales"},
                        headers=bearer(tokens["operator"]))
    assert again.status_code == 400
    assert "already exists" in again.json()["detail"]


# -- data requests and usage ---------------------------------------------------------------------------------------

def test_data_request_intake_states_deliverable_and_lead_times(web):
    client, _root, tokens = web
    csrf = sign_in(client, "viewer")
    assert 'name="hypothesis"' in client.get("/requests/new").text
    bad = client.post("/requests", data={"csrf": csrf, "title": "x", "needed_by": "tomorrow"})
    assert bad.status_code == 400
    assert "is not a date" in bad.text
    made = client.post("/requests", data={"csrf": csrf, "title": "Sales per hour", "team": "stores",
                                          "purpose": "staffing", "hypothesis": "evenings are busier",
                                          "data_needed": "orders per store and hour", "needed_by": "2026-12-24"},
                       follow_redirects=False)
    assert made.status_code == 303
    request_id = int(made.headers["location"].rsplit("/", 1)[1])
    page = client.get(f"/requests/{request_id}").text
    assert "evenings are busier" in page
    assert "2026-12-24" in page
    assert 'action="/requests/' not in page  # viewer
    csrf = sign_in(client, "analyst")
    assert client.post(f"/requests/{request_id}/move", data={"csrf": csrf, "to": "in_progress"},
                       follow_redirects=False).status_code == 303
    undelivered = client.post(f"/requests/{request_id}/move", data={"csrf": csrf, "to": "delivered"})
    assert undelivered.status_code == 400
    assert "needs its deliverable" in undelivered.text
    unknown = client.post(f"/requests/{request_id}/move", data={"csrf": csrf, "to": "delivered",
                                                                "deliverable": "mart.nope"})
    assert unknown.status_code == 400
    assert "unknown asset" in unknown.text
    client.post(f"/requests/{request_id}/move", data={"csrf": csrf, "to": "delivered",
                                                      "deliverable": "recipe:store_sales"})
    detail = client.get(f"/api/v1/requests/{request_id}", headers=bearer(tokens["viewer"])).json()
    assert detail["status"] == "delivered"
    assert detail["assignee"] == "analyst"
    assert detail["deliverable"] == "recipe:store_sales"
    assert detail["lead_time_days"] is not None
    assert [e["to_status"] for e in detail["events"]] == ["new", "in_progress", "delivered"]
    listing = client.get("/requests").text
    assert 'href="/recipes/store_sales"' in listing
    assert "1 delivered" in listing
    api = client.post("/api/v1/requests", json={"title": "Churn", "needed_by": "2026-12-01"},
                      headers=bearer(tokens["viewer"]))
    assert api.status_code == 201
    assert api.json()["status"] == "new"
    lead = client.get("/api/v1/requests", headers=bearer(tokens["viewer"])).json()["lead_times"]
    assert lead["delivered"] == 1
    assert lead["open"] == 1
    closed = client.post(f"/api/v1/requests/{request_id}/move", json={"to": "new"}, headers=bearer(tokens["analyst"]))
    assert closed.status_code == 400
    assert "can move to closed, in_progress, not new" in closed.json()["detail"]
    audit = [(e["actor"], e["action"]) for e in _audit(client, tokens["admin"])]
    assert ("viewer", "request.new") in audit
    assert ("analyst", "request.delivered") in audit


def test_usage_page_self_served_versus_requests_and_unused_assets(web):
    client, _root, tokens = web
    client.post("/api/v1/query", json={"sql": "select count(*) from warehouse.orders", "team": "stores"},
                headers=bearer(tokens["analyst"]))
    client.post("/api/v1/requests", json={"title": "Churn", "team": "stores"}, headers=bearer(tokens["viewer"]))
    sign_in(client, "viewer")
    page = client.get("/usage").text
    assert re.search(r"<strong>1</strong> self-served queries and recipe runs · <strong>1</strong> data requests",
                     page)
    assert "50% self-served" in page
    teams = re.search(r'<table id="teams">.*?</table>', page, re.S).group(0)
    assert "<td>stores</td><td>1</td><td>1</td><td>0</td><td>1</td><td>1</td>" in teams
    unused = re.search(r'<table id="unused">.*?</table>', page, re.S).group(0)
    assert "warehouse.customers" not in unused  # a recipe reads it
    assert "mart.daily_sales" not in unused  # a use case lists it
    assert 'href="/assets/mart.old_report"' in unused
    assert "never" in unused  # nothing reads it


def test_catalog_pages_answer_fast(web):
    """Server-side time (Server-Timing) of each catalog page, warm: the p95 stays well under 100 ms (on an idle
    core: the limit is scaled by the machine's slowdown measured around the requests, tests/helpers/timing.py; a
    loaded CI machine took 150-170 ms)."""
    client, _root, _tokens = web
    sign_in(client, "analyst")
    pages = ["/assets/warehouse.customers", "/assets/warehouse.customers/columns/email", "/search?q=customer",
             "/console", "/recipes", "/recipes/store_sales", "/requests", "/usage"]
    for url in pages:
        assert client.get(url).status_code == 200, url

    def warm() -> list[float]:
        return sorted(float(client.get(url).headers["server-timing"].split("dur=")[1]) for url in pages * 5)

    def p95(times: list[float]) -> float:
        return times[int(len(times) * 0.95) - 1] / 1000  # milliseconds, in seconds

    within(0.1, warm, measure=p95, what="the catalog pages' p95 server time")


def test_queries_from_many_requests_at_once_all_answer(web):
    """Each request's masked session opens while others hold theirs (connections of one process to one file
    once shared a DuckDB instance and failed with 'the configuration has been locked')."""
    import itertools
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from kiban.web import catalog_views as cv
    from kiban.web.accounts import User

    client, _root, _tokens = web
    site = client.app.state.site
    analyst = client.app.state.accounts.require("analyst")
    cv.console(site).max_running = 8  # the default follows the machine's cores; eight people at once here
    # each thread is one person, one query at a time: a person picked by the query's number (n % 8) could have a
    # third query at once when two of theirs ran slow on a loaded machine, and the console rightly refuses it
    # (two per person)
    numbers, person = itertools.count(), threading.local()

    def become_someone() -> None:
        person.user = User(f"{analyst.name}{next(numbers)}", analyst.role, analyst.created_at)

    def query(n: int) -> int:
        result = cv.run_query(site, person.user, f"select count(*) + {n} from warehouse.orders, range(200)", None,
                              10, 30.0)
        return int(result.rows[0][0]) - n

    with ThreadPoolExecutor(8, initializer=become_someone) as pool:
        counts = list(pool.map(query, range(48)))
    assert counts == [200 * 200] * 48


def test_a_changed_recipe_file_is_read_again(web):
    client, root, _tokens = web
    sign_in(client, "viewer")
    assert "One store&#39;s orders" in client.get("/recipes").text
    path = root / "recipes" / "store_sales.yml"
    path.write_text(path.read_text().replace("One store's orders", "Orders of one store"))
    assert "Orders of one store" in client.get("/recipes").text
    (root / "recipes" / "broken.yml").write_text("sql: select $x\n")
    broken = client.get("/recipes")
    assert broken.status_code == 400
    assert "broken.yml" in broken.text
    assert "$x" in broken.text


def test_promote_over_the_api_writes_a_hostile_text_as_a_literal_only(web):
    """The issue's injection: a newline in a text parameter became SQL the nightly build ran."""
    import duckdb

    client, root, tokens = web
    (root / "recipes" / "by_code.yml").write_text(
        "sql: select order_id from warehouse.orders where cast(order_id as varchar) <> $code\n"
        "params:\n  code: {type: text}\n", encoding="utf-8")
    hostile = "x'\n;select read_text('/etc/passwd') as t;--\n-- */"
    answer = client.post("/api/v1/recipes/by_code/promote", json={"params": {"code": hostile}, "name": "by_code"},
                         headers=bearer(tokens["operator"]))
    assert answer.status_code == 200, answer.text
    text = (root / "models" / "mart" / "by_code.sql").read_bytes().decode()
    statements = duckdb.connect().extract_statements(text)
    assert len(statements) == 1
    assert "read_text" not in text.split("\n", 1)[0]
    assert str(statements[0].type).endswith("SELECT")
