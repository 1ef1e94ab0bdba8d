"""The HTTP API connector against a real HTTP server on loopback (kiban.collect.connectors.http)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest

from kiban.collect.connector import ReadContext, SourceError, read_batches
from kiban.collect.connectors.http import retry_after
from kiban.collect.spec import SourceSpec
from tests.helpers.timing import timed

TOKEN = "s3cret-token-value"
ITEMS = [{"id": i, "name": f"item {i}", "updated_at": f"2026-01-{i:02d}T00:00:00Z",
          "price": 100 * i, "maker": {"name": "acme", "country": {"code": "JP"}}, "tags": ["a", "b"]}
         for i in range(1, 8)]


class _Api(BaseHTTPRequestHandler):
    """A partner API: every kind of pagination, flaky endpoints, a bad page, a protected endpoint."""

    calls: ClassVar[dict[str, int]]
    requests: ClassVar[list[tuple[str, dict[str, str], dict[str, str]]]]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        type(self).calls[path] = type(self).calls.get(path, 0) + 1
        type(self).requests.append((path, query, dict(self.headers)))
        call = type(self).calls[path]
        route = getattr(self, "route_" + path.strip("/").replace("/", "_"), None)
        if route is None:
            self.answer(404, {"error": "no such path"})
            return
        route(query, call)

    def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def route_echo(self, q: dict[str, str], call: int) -> None:  # an error page that shows the request back
        self.answer(400, f"bad request: GET {self.path} with {dict(self.headers)} "
                         f"{{\"client_secret\": \"{q.get('client_secret', '')}\"}}")

    # -- pagination ------------------------------------------------------------------------------------
    def route_page(self, q: dict[str, str], call: int) -> None:
        page, size = int(q.get("page", 1)), int(q.get("per_page", 3))
        self.answer(200, {"data": {"items": ITEMS[(page - 1) * size:page * size]}, "page": page})

    def route_offset(self, q: dict[str, str], call: int) -> None:
        offset, limit = int(q["offset"]), int(q["limit"])
        self.answer(200, ITEMS[offset:offset + limit])

    def route_cursor(self, q: dict[str, str], call: int) -> None:
        start = int(q.get("cursor", "0").lstrip("c") or 0)
        chunk = ITEMS[start:start + 3]
        nxt = f"c{start + 3}" if start + 3 < len(ITEMS) else None
        self.answer(200, {"items": chunk, "meta": {"next_cursor": nxt}})

    def route_link(self, q: dict[str, str], call: int) -> None:
        page = int(q.get("page", 1))
        headers = {"Link": f'</link?page={page + 1}&x=1>; rel="next", </link?page=1>; rel="first"'} \
            if page * 3 < len(ITEMS) else {}
        self.answer(200, ITEMS[(page - 1) * 3:page * 3], headers)

    # -- failures --------------------------------------------------------------------------------------
    def route_retry429(self, q: dict[str, str], call: int) -> None:
        if call == 1:
            self.answer(429, {"error": "slow down"}, {"Retry-After": "1"})
        else:
            self.answer(200, ITEMS)

    def route_flaky500(self, q: dict[str, str], call: int) -> None:
        if call <= 3:
            self.answer(500 if call < 3 else 502, "<html>oops</html>")
        else:
            self.answer(200, ITEMS)

    def route_down(self, q: dict[str, str], call: int) -> None:
        self.answer(503, "maintenance")

    def route_badpage(self, q: dict[str, str], call: int) -> None:
        page = int(q["page"])
        if page == 2:
            self.answer(200, "<html><body>Internal proxy error</body>")
        else:
            self.answer(200, ITEMS[(page - 1) * 2:page * 2] if page <= 3 else [])

    def route_notobjects(self, q: dict[str, str], call: int) -> None:
        self.answer(200, [ITEMS[0], 42, "text", ITEMS[1], [1, 2]])

    def route_badcursorpage(self, q: dict[str, str], call: int) -> None:
        self.answer(200, "not json" if "cursor" in q else {"items": ITEMS[:2], "next": "c2"})

    def route_auth(self, q: dict[str, str], call: int) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.answer(401, {"error": "bad token"})
        else:
            self.answer(200, ITEMS[:2])

    def route_forbidden(self, q: dict[str, str], call: int) -> None:
        self.answer(403, {"error": "not for you"})

    def route_since(self, q: dict[str, str], call: int) -> None:
        since = q.get("updated_since")
        self.answer(200, {"data": [i for i in ITEMS if since is None or i["updated_at"] > since]})

    def route_orders(self, q: dict[str, str], call: int) -> None:
        """Protected, paged, incremental: what a partner's order API looks like."""
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.answer(401, {"error": "bad token"})
            return
        since, page = q.get("updated_since"), int(q.get("page", 1))
        rows: list[Any] = [i for i in ITEMS if since is None or i["updated_at"] > since]
        if since is None:
            rows.insert(2, "garbage")
        self.answer(200, {"data": rows[(page - 1) * 4:page * 4]})

    def route_endless(self, q: dict[str, str], call: int) -> None:
        self.answer(200, {"items": [ITEMS[0]], "next": f"t{call}"})

    def route_samecursor(self, q: dict[str, str], call: int) -> None:
        self.answer(200, {"items": [ITEMS[0]], "next": "again"})

    def route_mixed(self, q: dict[str, str], call: int) -> None:
        self.answer(200, [{"id": 1, "v": 1, "flag": True}, {"id": 2, "v": 2.5, "flag": None},
                          {"id": "x3", "v": None, "extra": "late"}])

    def route_shifting(self, q: dict[str, str], call: int) -> None:
        pages = {1: [{"id": 1, "v": 1}], 2: [{"id": "b2", "v": 2, "extra": "late"}]}
        self.answer(200, pages.get(int(q.get("page", 1)), []))

    def route_typed(self, q: dict[str, str], call: int) -> None:
        self.answer(200, [{"id": 1, "qty": "4"}, {"id": 2, "qty": "four"}, {"id": 3}])

    def route_slow(self, q: dict[str, str], call: int) -> None:
        time.sleep(1.0)
        self.answer(200, ITEMS)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the timeout test's client leaves before the slow answer: a broken pipe, on purpose


@pytest.fixture
def api() -> Iterator[tuple[str, type[_Api]]]:
    handler = type("Api", (_Api,), {"calls": {}, "requests": []})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def context(tmp_path: Path, source: dict[str, Any], table: dict[str, Any], **kwargs: Any) -> ReadContext:
    spec = SourceSpec.model_validate({"type": "http", "backoff": 0.01, **source, "tables": {"orders": table}})
    return ReadContext(source_name="partner", table_name="orders", source=spec, table=spec.tables["orders"],
                       project_root=tmp_path, batch_rows=spec.batch_rows, **kwargs)


def read_all(ctx: ReadContext) -> pa.Table:
    batches = list(read_batches(ctx))
    return pa.concat_tables([pa.Table.from_batches([b]) for b in batches], promote_options="permissive")


# -- pagination --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "requests"), [
    ({"path": "/page", "records": "data.items",
      "pagination": {"type": "page", "size_param": "per_page", "size": 3}}, 3),
    ({"path": "/page", "records": "data.items", "pagination": {"type": "page", "size_param": "per_page"}}, 4),
    ({"path": "/offset", "pagination": {"type": "offset", "limit": 3}}, 3),
    ({"path": "/cursor", "records": "items", "pagination": {"type": "cursor", "next": "meta.next_cursor"}}, 3),
    ({"path": "/link", "pagination": {"type": "link"}}, 3),
], ids=["page-size", "page-until-empty", "offset", "cursor", "link"])
def test_every_pagination_reads_every_record_once(api, tmp_path: Path, table: dict[str, Any],
                                                  requests: int) -> None:
    base, handler = api
    result = read_all(context(tmp_path, {"base_url": base}, table))
    assert result.column("id").to_pylist() == [1, 2, 3, 4, 5, 6, 7]
    assert result.column("name").to_pylist()[0] == "item 1"
    assert len(handler.requests) == requests


def test_link_pagination_follows_the_next_url_as_given(api, tmp_path: Path) -> None:
    base, handler = api
    read_all(context(tmp_path, {"base_url": base}, {"path": "/link", "params": {"x": 0},
                                                     "pagination": {"type": "link"}}))
    assert [q for _, q, _ in handler.requests] == [{"x": "0"}, {"page": "2", "x": "1"}, {"page": "3", "x": "1"}]


def test_small_batches_bound_memory(api, tmp_path: Path) -> None:
    base, _ = api
    ctx = context(tmp_path, {"base_url": base, "batch_rows": 2}, {"path": "/offset",
                                                                    "pagination": {"type": "offset", "limit": 3}})
    sizes = [b.num_rows for b in read_batches(ctx)]
    assert sizes == [2, 2, 2, 1]


def test_nested_values_as_json_text_or_flattened_one_level(api, tmp_path: Path) -> None:
    base, _ = api
    as_json = read_all(context(tmp_path, {"base_url": base}, {"path": "/offset", "pagination": {"type": "offset"}}))
    assert json.loads(as_json.column("maker").to_pylist()[0]) == {"name": "acme", "country": {"code": "JP"}}
    assert as_json.column("tags").to_pylist()[0] == '["a", "b"]'
    flat = read_all(context(tmp_path, {"base_url": base}, {"path": "/offset", "nested": "flatten",
                                                           "pagination": {"type": "offset"}}))
    assert "maker" not in flat.column_names
    assert flat.column("maker_name").to_pylist()[0] == "acme"
    assert flat.column("maker_country").to_pylist()[0] == '{"code": "JP"}'


def test_column_kinds_widen_and_missing_keys_are_null(api, tmp_path: Path) -> None:
    base, _ = api
    result = read_all(context(tmp_path, {"base_url": base}, {"path": "/mixed"}))
    assert result.schema.field("v").type == pa.float64()
    assert result.column("v").to_pylist() == [1.0, 2.5, None]
    assert result.schema.field("id").type == pa.string()  # integers and a text value: text
    assert result.column("id").to_pylist() == ["1", "2", "x3"]
    assert result.column("extra").to_pylist() == [None, None, "late"]
    assert result.column("flag").to_pylist() == [True, None, None]


def test_fields_that_change_within_a_load_are_noted(api, tmp_path: Path) -> None:
    """Like a header that differs between the files of one load: a field that appears only on a later page, and
    a field whose values change kind between batches, are said — not merged silently."""
    base, _ = api
    ctx = context(tmp_path, {"base_url": base, "batch_rows": 1}, {"path": "/shifting", "pagination": {"type": "page"}})
    assert [b.num_rows for b in read_batches(ctx)] == [1, 1]
    assert any("new extra (from page 2 record 1)" in n for n in ctx.notes), ctx.notes
    assert any("field id held integer values, then text ones" in n for n in ctx.notes), ctx.notes


def test_declared_types_keep_columns_stable_and_quarantine_what_does_not_fit(api, tmp_path: Path) -> None:
    base, _ = api
    ctx = context(tmp_path, {"base_url": base}, {"path": "/typed", "columns": [
        {"name": "qty", "type": "integer"}, {"name": "note", "type": "varchar"}]})
    result = read_all(ctx)
    assert result.schema.field("qty").type == pa.int64()
    assert result.column("qty").to_pylist() == [4, None]
    assert result.column("note").to_pylist() == [None, None]
    [bad] = ctx.bad_rows
    assert bad.location == "page 1 record 2"
    assert bad.column == "qty"
    assert "column qty" in bad.reason
    assert '"four"' in bad.reason
    assert json.loads(bad.raw)["qty"] == "four"


# -- bad pages and records ---------------------------------------------------------------------------------


def test_a_page_that_is_not_json_is_quarantined_and_the_rest_is_read(api, tmp_path: Path) -> None:
    base, _ = api
    ctx = context(tmp_path, {"base_url": base}, {"path": "/badpage", "pagination": {"type": "page"}})
    result = read_all(ctx)
    assert result.column("id").to_pylist() == [1, 2, 5, 6]
    [bad] = ctx.bad_rows
    assert bad.location == "page 2"
    assert "not JSON" in bad.reason
    assert bad.raw == "<html><body>Internal proxy error</body>"


def test_records_that_are_not_objects_are_quarantined_with_page_and_record(api, tmp_path: Path) -> None:
    base, _ = api
    ctx = context(tmp_path, {"base_url": base}, {"path": "/notobjects"})
    assert read_all(ctx).column("id").to_pylist() == [1, 2]
    assert [(b.location, b.raw) for b in ctx.bad_rows] == [
        ("page 1 record 2", "42"), ("page 1 record 3", '"text"'), ("page 1 record 5", "[1, 2]")]
    assert all("must be a JSON object" in b.reason for b in ctx.bad_rows)


def test_a_bad_page_that_holds_the_next_cursor_stops_the_load(api, tmp_path: Path) -> None:
    base, _ = api
    ctx = context(tmp_path, {"base_url": base}, {"path": "/badcursorpage", "records": "items",
                                                 "pagination": {"type": "cursor", "next": "next"}})
    with pytest.raises(SourceError, match="page 2 is not JSON, and the next page's cursor is in it"):
        read_all(ctx)
    assert [b.location for b in ctx.bad_rows] == ["page 2"]


def test_a_missing_records_path_shows_the_keys_that_are_there(api, tmp_path: Path) -> None:
    base, _ = api
    ctx = context(tmp_path, {"base_url": base}, {"path": "/page", "records": "data.rows"})
    with pytest.raises(SourceError) as err:
        read_all(ctx)
    text = str(err.value)
    assert text.startswith("source partner, table orders: records path 'data.rows' is not in page 1")
    assert "data has no 'rows' (it has: items)" in text


def test_an_object_page_without_records_path_suggests_one(api, tmp_path: Path) -> None:
    base, _ = api
    with pytest.raises(SourceError, match=r"it has: data, page") as err:
        read_all(context(tmp_path, {"base_url": base}, {"path": "/page"}))
    assert err.value.hint is not None
    assert "records: data" not in err.value.hint  # data is an object, not a list
    with pytest.raises(SourceError) as err2:
        read_all(context(tmp_path, {"base_url": base}, {"path": "/cursor"}))
    assert err2.value.hint == "say where the records are, e.g. `records: items`"


def test_max_pages_and_repeated_cursors_stop_runaway_pagination(api, tmp_path: Path) -> None:
    base, handler = api
    with pytest.raises(SourceError, match="more than max_pages=5 pages"):
        read_all(context(tmp_path, {"base_url": base}, {"path": "/endless", "records": "items", "max_pages": 5,
                                                        "pagination": {"type": "cursor", "next": "next"}}))
    assert handler.calls["/endless"] == 5
    with pytest.raises(SourceError, match="sends the cursor 'again' again"):
        read_all(context(tmp_path, {"base_url": base}, {"path": "/samecursor", "records": "items",
                                                        "pagination": {"type": "cursor", "next": "next"}}))
    # an API that ignores the page parameter sends page 1 again and again
    with pytest.raises(SourceError, match="page 2 is the same as page 1: the API seems to ignore `p`"):
        read_all(context(tmp_path, {"base_url": base}, {"path": "/page", "records": "data.items",
                                                        "pagination": {"type": "page", "param": "p"}}))


# -- retries -----------------------------------------------------------------------------------------------


def test_429_waits_for_retry_after_then_succeeds(api, tmp_path: Path) -> None:
    base, handler = api
    result, took = timed(lambda: read_all(context(tmp_path, {"base_url": base, "backoff": 0}, {"path": "/retry429"})))
    assert result.num_rows == 7
    assert handler.calls["/retry429"] == 2
    assert took.seconds >= 0.95  # Retry-After: 1 was honoured
    assert took.seconds - 1 < 2 * took.slowdown, took  # ... and no backoff on top (2 s of slack on an idle machine)


def test_5xx_is_retried_with_backoff(api, tmp_path: Path) -> None:
    base, handler = api
    assert read_all(context(tmp_path, {"base_url": base}, {"path": "/flaky500"})).num_rows == 7
    assert handler.calls["/flaky500"] == 4


def test_a_server_that_stays_down_fails_after_the_retries(api, tmp_path: Path) -> None:
    base, handler = api
    with pytest.raises(SourceError, match=r"HTTP 503 from http://127.0.0.1:\d+/down, 3 attempt\(s\)"):
        read_all(context(tmp_path, {"base_url": base, "retries": 2}, {"path": "/down"}))
    assert handler.calls["/down"] == 3


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = dt.datetime(2026, 12, 2, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after("3") == 3.0
    assert retry_after("Wed, 02 Dec 2026 12:00:05 GMT", now) == 5.0
    assert retry_after("Wed, 02 Dec 2026 11:59:00 GMT", now) == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_unreachable_host_is_a_clear_error(tmp_path: Path, dead_port: int) -> None:
    ctx = context(tmp_path, {"base_url": f"http://127.0.0.1:{dead_port}/v1", "retries": 1}, {"path": "/orders"})
    with pytest.raises(SourceError, match=rf"source partner, table orders: cannot reach "
                                          rf"http://127.0.0.1:{dead_port}/v1/orders.*2 attempt"):
        read_all(ctx)


def test_timeout(api, tmp_path: Path) -> None:
    base, _ = api
    with pytest.raises(SourceError, match=r"no answer within timeout=0.2 s from .*/slow, 1 attempt"):
        read_all(context(tmp_path, {"base_url": base, "timeout": 0.2, "retries": 0}, {"path": "/slow"}))


def test_rate_limit_spaces_requests(api, tmp_path: Path) -> None:
    base, _ = api
    started = time.monotonic()
    read_all(context(tmp_path, {"base_url": base, "rate_limit": 10}, {"path": "/offset",
                                                                      "pagination": {"type": "offset", "limit": 2}}))
    assert time.monotonic() - started >= 0.3  # 4 requests at most 10 per second: 3 gaps of 0.1 s


# -- credentials and paths ---------------------------------------------------------------------------------


def test_auth_header_comes_from_the_environment(api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, handler = api
    monkeypatch.setenv("PARTNER_TOKEN", TOKEN)
    source = {"base_url": base, "auth": {"header": "Authorization", "value": "Bearer env:PARTNER_TOKEN"}}
    assert read_all(context(tmp_path, source, {"path": "/auth"})).num_rows == 2
    assert handler.requests[-1][2]["Authorization"] == f"Bearer {TOKEN}"


def test_refused_credentials_name_the_variable_never_the_secret(api, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = api
    monkeypatch.setenv("PARTNER_TOKEN", "wrong-" + TOKEN)
    source = {"base_url": base, "auth": {"value": "Bearer env:PARTNER_TOKEN"}}
    ctx = context(tmp_path, source, {"path": "/auth"})
    with pytest.raises(SourceError) as err:
        read_all(ctx)
    text = str(err.value)
    assert "credentials refused (HTTP 401)" in text
    assert "PARTNER_TOKEN" in text
    assert TOKEN not in text
    with pytest.raises(SourceError, match=r"HTTP 403"):
        read_all(context(tmp_path, source, {"path": "/forbidden"}))


def test_missing_variable_and_unknown_path(api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = api
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    with pytest.raises(SourceError, match=r"environment variable NO_SUCH_TOKEN is not set \(auth.value"):
        read_all(context(tmp_path, {"base_url": base, "auth": {"value": "env:NO_SUCH_TOKEN"}}, {"path": "/auth"}))
    with pytest.raises(SourceError, match=r"path not found \(HTTP 404\): GET http://127.0.0.1:\d+/nope") as err:
        read_all(context(tmp_path, {"base_url": base}, {"path": "/nope"}))
    assert err.value.hint is not None
    assert "path:" in err.value.hint


def test_a_secret_in_the_url_is_redacted(tmp_path: Path, dead_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTNER_KEY", "k-123456789")
    ctx = context(tmp_path, {"base_url": f"http://127.0.0.1:{dead_port}/env:PARTNER_KEY", "retries": 0},
                  {"path": "/x"})
    with pytest.raises(SourceError) as err:
        read_all(ctx)
    assert "k-123456789" not in str(err.value)
    assert "***" in str(err.value)


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="paginaton"):
        read_all(context(tmp_path, {"base_url": "http://127.0.0.1:1"}, {"path": "/x", "paginaton": {}}))


# -- incremental -------------------------------------------------------------------------------------------


def test_incremental_sends_since_and_checks_the_cursor_column(api, tmp_path: Path) -> None:
    base, handler = api
    table = {"path": "/since", "records": "data", "mode": "incremental", "cursor": "updated_at",
             "since_param": "updated_since"}
    first = read_all(context(tmp_path, {"base_url": base}, table))
    assert first.num_rows == 7
    assert "updated_since" not in handler.requests[-1][1]
    since = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    later = read_all(context(tmp_path, {"base_url": base}, table, since=since, cursor=since))
    assert handler.requests[-1][1]["updated_since"] == "2026-01-05T00:00:00Z"
    assert later.column("id").to_pylist() == [6, 7]
    with pytest.raises(SourceError, match=r"cursor column 'modified' is not in the records \(they have: id,"):
        read_all(context(tmp_path, {"base_url": base}, {**table, "cursor": "modified"}))


# -- end to end: `kiban collect` lands it, a second load asks only for what is new -----------------------------


def test_kiban_collect_lands_an_api_incrementally_without_leaking_the_token(api, tmp_path: Path) -> None:
    base, handler = api
    root = tmp_path / "proj"
    (root / "sources").mkdir(parents=True)
    (root / "kiban.yml").write_text("name: partner_demo\ntimezone: Asia/Tokyo\n")
    (root / "sources" / "partner.yml").write_text(f"""
type: http
base_url: {base}
auth: {{header: Authorization, value: "Bearer env:PARTNER_TOKEN"}}
tables:
  orders:
    path: /orders
    records: data
    pagination: {{type: page}}
    mode: incremental
    cursor: updated_at
    since_param: updated_since
    primary_key: [id]
    columns:
      - {{name: id, type: bigint}}
      - {{name: updated_at, type: timestamptz}}
""")
    env = {**os.environ, "PARTNER_TOKEN": TOKEN, "COLUMNS": "200", "NO_COLOR": "1"}

    def collect() -> str:
        done = subprocess.run([sys.executable, "-m", "kiban", "--project", str(root), "collect"], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    first = collect()
    assert "1 row(s) quarantined" in first
    second = collect()
    # the last cursor minus the default look-back of a time cursor (5 s): records at the edge are asked again
    assert handler.requests[-1][1]["updated_since"] == "2026-01-06T23:59:55Z"
    import duckdb

    files = sorted(str(p) for p in (root / "lake" / "partner" / "orders").rglob("*.parquet"))
    ids = duckdb.connect().execute(f"select id from read_parquet({files}, union_by_name = true) order by id").fetchall()
    assert [i for (i,) in ids] == [1, 2, 3, 4, 5, 6, 7]
    quarantined = list((root / "lake" / "_quarantine").rglob("*.parquet"))
    assert quarantined
    raws = duckdb.connect().execute(f"select location, raw from read_parquet('{quarantined[0]}')").fetchall()
    assert raws == [("page 1 record 3", '"garbage"')]
    for path in [*root.rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in first + second


def test_query_parameters_and_headers_never_reach_a_message(api, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Literal and env: secrets in `params:` and `headers:` are sent, and never shown, even when the server's
    error page echoes the whole request (what reaches attempts, OpenLineage and /runs is this message)."""
    from kiban.collect.secrets import redact

    base, handler = api
    monkeypatch.setenv("PARTNER_CLIENT_SECRET", "cs-from-the-env-77")
    source = {"base_url": base, "retries": 0, "headers": {"X-Api-Key": "literal-key-123"},
              "params": {"access_token": "at-literal-456", "client_secret": "env:PARTNER_CLIENT_SECRET",
                         "lang": "ja"}}
    with pytest.raises(SourceError) as err:
        read_all(context(tmp_path, source, {"path": "/echo"}))
    _path, sent_query, sent_headers = handler.requests[-1]
    assert sent_query["client_secret"] == "cs-from-the-env-77"
    assert sent_query["access_token"] == "at-literal-456"
    assert sent_headers["X-Api-Key"] == "literal-key-123"
    text = str(err.value)
    assert "HTTP 400" in text
    assert "lang=ja" in text
    for secret in ("cs-from-the-env-77", "at-literal-456", "literal-key-123"):
        assert secret not in text, text
    # and the generic redaction knows these names in any text
    for leak in ("?access_token=abc123&x=1", "client_secret=s3cr3t", '"refresh_token": "rt-999"',
                 "Authorization: Bearer eyJhbGciOi.payload", "x-api-key: k-0987654"):
        shown = redact(leak)
        assert not any(v in shown for v in ("abc123", "s3cr3t", "rt-999", "eyJhbGciOi", "k-0987654")), shown
