"""The data dictionary: profiles (one scan per table, PII masked, refreshed by runs), full-text search (Japanese
too), PII propagation and suggestions, and a static site that works offline."""

from __future__ import annotations

import json
import re

import pytest

from kiban.catalog.dictionary import build_dictionary
from kiban.catalog.hooks import catalog_listeners
from kiban.catalog.lineage import build_column_graph
from kiban.catalog.pii import is_card_number, is_my_number, name_kind, pii_columns, sample_values, suggest, value_kind
from kiban.catalog.profile import load_profiles, profile_assets
from kiban.catalog.search import SearchIndex
from kiban.catalog.site import write_site
from kiban.catalog.warehouse import published_columns
from kiban.graph import build_graph
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.store import Store
from tests.helpers.shop import build_shop
from tests.helpers.timing import within


@pytest.fixture
def shop(make_project):
    root = build_shop(make_project)
    project = load_project(root)
    store = Store(project.state_url)
    yield project, build_graph(project), store
    store.close()


def test_profiles_take_one_scan_per_table_and_mask_pii(shop):
    project, graph, store = shop
    pii = set(pii_columns(project, build_column_graph(graph)))
    profiles = profile_assets(project, store, ["lake.customers", "mart.daily_sales"], pii)
    by = {(p.asset, p.column): p for p in profiles}
    email = by[("lake.customers", "email")]
    assert email.rows == 20
    assert email.null_share == 0.0
    assert 15 <= email.approx_distinct <= 25
    assert "@example" not in json.dumps([email.min_value, email.max_value, email.examples])
    assert email.min_value is None
    assert email.max_value is None
    assert email.examples == []  # not even its shape
    revenue = by[("mart.daily_sales", "revenue")]
    assert revenue.data_type == "DOUBLE"
    assert float(revenue.min_value) <= float(revenue.max_value)
    stored = load_profiles(store, "shop")
    assert [p.column for p in stored["lake.customers"]] == ["id", "name", "email", "phone"]


def test_a_run_refreshes_the_profiles_of_what_it_published(shop):
    project, _graph, store = shop
    profile_assets(project, store, ["mart.daily_sales"])
    (project.root / "models" / "mart" / "daily_sales.sql").write_text(
        "select order_date, count(*) as orders, sum(amount) as revenue from warehouse.orders "
        "where amount > 50 group by order_date")
    project = load_project(project.root)
    before = load_profiles(store, "shop")["mart.daily_sales"][0].profiled_at
    listeners = catalog_listeners(project)
    assert run_project(project, RunOptions(), listeners).ok
    after = load_profiles(store, "shop")["mart.daily_sales"]
    assert after[0].profiled_at > before
    assert listeners[0].error is None


def test_the_dictionary_joins_docs_types_lineage_and_pii(shop):
    project, graph, store = shop
    dictionary = build_dictionary(project, graph, store)
    customers = dictionary.assets["warehouse.customers"]
    assert customers.owner == "crm-team"
    assert customers.downstream == []
    cols = {c.name: c for c in customers.columns}
    assert cols["email"].pii
    assert cols["email"].pii_from == "lake.customers.email"
    assert cols["email"].type == "VARCHAR"
    assert not cols["email_hash"].pii
    assert cols["email_hash"].anonymised
    assert cols["email_upper"].sources == ["lake.customers.email"]
    orders = {c.name: c for c in dictionary.assets["warehouse.orders"].columns}
    assert orders["email"].pii
    assert not orders["amount"].pii
    sales = dictionary.assets["mart.daily_sales"]
    assert [c.name for c in sales.columns] == ["revenue", "order_date", "orders"]  # documented first


def test_search_finds_assets_columns_and_japanese_words(shop):
    project, graph, store = shop
    index = SearchIndex(build_dictionary(project, graph, store).assets.values())
    assert index.search("revenue")[0].asset == "mart.daily_sales"
    assert index.search("revenue")[0].column == "revenue"
    assert index.search("売上")[0].asset == "mart.daily_sales"
    assert index.search("日別")[0].asset == "mart.daily_sales"
    assert {(h.asset, h.column) for h in index.search("email hash")} == {("warehouse.customers", "email_hash")}
    assert index.search("crm")[0].asset == "warehouse.customers"  # by owner
    assert index.search("rece")[0].column == "email"  # a prefix of "receipts", the e-mail's description
    assert index.search("zzz nothing") == []
    # typos are forgiven when nothing matches exactly, and weigh less than an exact match
    assert "mart.daily_sales" in {h.asset for h in index.search("ordr")}  # orders
    assert index.search("reveneu")[0].column == "revenue"
    assert {"lake.customers", "warehouse.customers"} <= {h.asset for h in index.search("custmers")}
    assert index.search("reveneu")[0].score < index.search("revenue")[0].score
    assert index.search("qqqq") == []
    assert index.search("xy") == []  # too far, too short


def test_typo_tolerance_stays_fast_on_a_big_index():
    import random

    from kiban.catalog.dictionary import AssetDoc, ColumnDoc

    rng = random.Random(4)
    letters = "abcdefghijklmnopqrstuvwxyz"
    docs = [AssetDoc(f"warehouse.t{i}", "warehouse", f"t{i}", description=" ".join(
        "".join(rng.choice(letters) for _ in range(rng.randint(4, 10))) for _ in range(6)),
        columns=[ColumnDoc("".join(rng.choice(letters) for _ in range(8))) for _ in range(5)]) for i in range(3000)]
    index = SearchIndex(docs)
    index.search("qzxwv")  # builds the cut word lists once

    def five_searches() -> None:
        for _ in range(5):
            index.search("qzxwvk")  # no exact match: the fuzzy path over every word

    within(5 * 0.1, five_searches, what="five fuzzy searches of 3,000 assets")  # 0.1 s each, scaled by the load


def test_pii_detectors_know_japanese_formats():
    assert is_my_number("123456789018")
    assert not is_my_number("123456789012")
    assert is_card_number("4111 1111 1111 1111")
    assert not is_card_number("4111 1111 1111 1112")
    for phone in ("090-1234-5678", "03-1234-5678", "0312345678", "+81 90-1234-5678", "(03) 1234-5678",
                  "0120-123-456", "+1 415 555 2671"):
        assert value_kind(phone) == "phone number", phone
    assert value_kind("hanako@example.co.jp") == "e-mail address"
    for harmless in ("2026-12-01", "12345", "hello", "1234-5678", None, 3.5):
        assert value_kind(harmless) is None, harmless
    assert name_kind("customer_email") == "e-mail address"
    assert name_kind("tel_no") == "phone number"
    assert name_kind("birth_date") == "date of birth"
    assert name_kind("my_number") == "My Number"
    assert name_kind("amount") is None
    assert name_kind("details") is None


def test_pii_suggestions_from_names_and_sampled_values(make_project):
    lake = {"members": "select i as id, 'm' || i || '@example.jp' as contact, "
                       "'080-' || lpad(i::varchar, 4, '0') || '-5678' as tel_like, i * 10 as points "
                       "from range(1, 51) t(i)"}
    root = make_project({"models/warehouse/members.sql": "select id, contact, tel_like as reach, points "
                                                         "from lake.members"}, lake=lake)
    assert run_project(load_project(root), RunOptions()).ok
    project = load_project(root)
    published = published_columns(project)
    columns = build_column_graph(build_graph(project), {k: [c for c, _ in v] for k, v in published.items()})
    found = {(s.asset, s.column): s.reason for s in suggest(project, columns, sample_values(project, published))}
    assert found[("lake.members", "contact")] == "100% of sampled values look like a e-mail address"
    assert "phone number" in found[("warehouse.members", "reach")]
    assert ("lake.members", "points") not in found
    assert ("lake.members", "id") not in found


def test_the_static_site_works_offline(shop, tmp_path):
    project, graph, store = shop
    profile_assets(project, store)
    written = write_site(build_dictionary(project, graph, store), tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    assert "mart.daily_sales" in index
    assert "日別売上" in index
    page = (tmp_path / "site" / "assets" / "warehouse.customers.html").read_text()
    assert "pii from lake.customers.email" in page
    assert "crm-team" in page
    assert "@example" not in page
    md = (tmp_path / "site" / "markdown" / "mart.daily_sales.md").read_text()
    assert "| `revenue` | DOUBLE | Sum of order amounts in yen (売上). |" in md
    for path in written:  # nothing to fetch from the network: no http(s) URL in src/href
        if path.suffix == ".html":
            assert not re.search(r"(src|href)=['\"]?(https?:)?//", path.read_text()), path


def test_cli_docs_profile_build_search_and_pii(make_project, cli, tmp_path):
    root = build_shop(make_project)
    assert cli("--project", root, "docs", "profile").returncode == 0
    out = cli("--project", root, "docs", "build", "--out", tmp_path / "site")
    assert out.returncode == 0
    assert (tmp_path / "site" / "index.html").exists()
    out = cli("--project", root, "search", "売上", "--json")
    assert json.loads(out.stdout)[0]["asset"] == "mart.daily_sales"
    out = cli("--project", root, "pii", "suggest", "--json")
    suggested = {(s["asset"], s["column"]) for s in json.loads(out.stdout)}
    assert ("lake.customers", "name") not in suggested  # "name" alone is too vague to suggest
    assert ("warehouse.customers", "email_hash") not in suggested  # declared anonymised
