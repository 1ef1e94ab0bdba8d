"""Deliveries: a mart as xlsx (formatted, formula-safe) or CSV (BOM or CP932) to a folder, an e-mail attachment
(a real aiosmtpd on loopback) or a chat webhook (a real HTTP server); retried, recorded, PII masked."""

from __future__ import annotations

import csv
import email
import email.policy
import socket
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from openpyxl import load_workbook

from kiban.deliveries.send import deliver, history
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.store import Store
from tests.helpers.console import sign_in
from tests.helpers.shop import DELIVERY_FILES, SHOP_LAKE


def build(make_project, deliveries: str, channels: str = "") -> Any:
    kiban_yml = f"name: shop\ntimezone: UTC\ndeliveries:\n{deliveries}{channels}"
    root = make_project({**DELIVERY_FILES, "kiban.yml": kiban_yml}, lake=SHOP_LAKE)
    project = load_project(root)
    assert run_project(project, RunOptions()).ok
    return project, Store(project.state_url)


def test_an_xlsx_to_a_folder_is_formatted_formula_safe_and_recorded(make_project):
    project, store = build(make_project, """  weekly:
    mart: mart.weekly_marketing
    format: xlsx
    folder: exports/marketing
    file: "weekly_{date}.xlsx"
    usecase: marketing
""")
    record = deliver(project, store, "weekly")
    assert record.status == "delivered", record.error
    assert record.rows == 30, record.error
    assert record.attempts == 1, record.error
    [path] = list((project.root / "exports" / "marketing").glob("weekly_*.xlsx"))
    sheet = load_workbook(path).active
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["order_date", "revenue", "orders"]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref
    assert sheet["A1"].font.bold
    row = {h: c for h, c in zip(header, sheet[2], strict=True)}
    for name in ("evil", "plus", "minus", "at"):  # text, never a formula
        assert row[name].data_type == "s", name
    assert row["evil"].value.startswith("=HYPERLINK")
    assert row["store_name"].value == "日本語の店"
    assert row["order_date"].number_format == "yyyy-mm-dd"
    assert row["orders"].number_format == "#,##0"
    assert [r.status for r in history(store, project.name, "weekly")] == ["delivered"]
    assert history(store, project.name)[0].usecase == "marketing"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp932"])
def test_csv_in_utf8_with_a_bom_or_cp932_escapes_formulas(make_project, encoding):
    project, store = build(make_project, f"""  weekly:
    mart: mart.weekly_marketing
    format: csv
    encoding: {encoding}
    folder: out
""")
    record = deliver(project, store, "weekly")
    assert record.status == "delivered", record.error
    data = (project.root / "out").glob("weekly_*.csv").__next__().read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    rows = list(csv.DictReader(data.decode(encoding).splitlines()))
    assert rows[0]["evil"].startswith("'=")
    assert rows[0]["plus"] == "'+1+2"
    assert rows[0]["minus"] == "'-3"
    assert rows[0]["at"] == "'@SUM(A1)"
    assert rows[0]["store_name"] == "日本語の店"


def test_pii_never_leaves_in_a_delivery(make_project):
    project, store = build(make_project, "  contacts: {mart: mart.contacts, format: csv, folder: out}\n")
    assert deliver(project, store, "contacts").status == "delivered"
    text = next((project.root / "out").glob("*.csv")).read_text("utf-8-sig")
    assert "@example.com" not in text
    assert "•••" in text


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_email_attachment_through_a_real_smtp_server(make_project):
    port = _port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        project, store = build(make_project, "  weekly: {mart: mart.weekly_marketing, channel: mail}\n",
                               f"channels:\n  mail: {{type: email, smtp: 'smtp://127.0.0.1:{port}', "
                               "from: kiban@example.com, to: [marketing@example.com]}\n")
        record = deliver(project, store, "weekly")
    finally:
        controller.stop()
    assert record.status == "delivered", record.error
    [envelope] = inbox.envelopes
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename().startswith("weekly_")
    assert attachment.get_filename().endswith(".xlsx")
    assert attachment.get_content()[:2] == b"PK"  # a zip: the workbook


def test_a_chat_webhook_is_told_and_a_dead_one_is_retried_then_recorded_failed(make_project, http_hook, dead_port):
    port, received = http_hook
    project, store = build(make_project, "  weekly: {mart: mart.weekly_marketing, format: csv, channel: chat}\n"
                           "  lost: {mart: mart.weekly_marketing, channel: dead, retries: 2}\n",
                           f"channels:\n  chat: {{type: webhook, url: 'http://127.0.0.1:{port}/hook'}}\n"
                           f"  dead: {{type: webhook, url: 'http://127.0.0.1:{dead_port}/hook'}}\n")
    assert deliver(project, store, "weekly").status == "delivered"
    assert received[0]["fields"]["rows"] == "30"
    assert received[0]["fields"]["file"].endswith(".csv")
    waits: list[float] = []
    record = deliver(project, store, "lost", sleep=waits.append)
    assert record.status == "failed"
    assert record.attempts == 3
    assert waits == [1.0, 2.0]
    assert "cannot reach webhook" in (record.error or "")
    assert [r.status for r in history(store, project.name)] == ["failed", "delivered"]


def test_after_the_use_case_is_met_it_goes_out_once(make_project):
    from kiban.deliveries.due import due
    from kiban.graph import build_graph

    root = make_project({**DELIVERY_FILES, "kiban.yml": "name: shop\ntimezone: UTC\ndeliveries:\n"
                         "  weekly: {mart: mart.weekly_marketing, folder: out, usecase: marketing, "
                         "after: usecase_met}\n",
                         "usecases/marketing.yml": "description: marketing reads it\nowner: m\n"
                         "assets: [mart.weekly_marketing]\nneed: {by: '23:59', on: every_day}\n"},
                        lake=SHOP_LAKE)
    project = load_project(root)
    graph = build_graph(project)
    store = Store(project.state_url)
    assert due(project, graph, store) == []  # nothing published yet: not ready
    assert run_project(project, RunOptions()).ok
    ready = due(project, graph, store)
    assert [n for n, _ in ready] == ["weekly"]
    assert "marketing is" in ready[0][1]
    assert deliver(project, store, "weekly").status == "delivered"
    assert due(project, graph, store) == []  # delivered since the data was ready: not again today


def test_the_use_case_page_shows_its_deliveries(make_project):
    from fastapi.testclient import TestClient

    from kiban.web import create_app
    from kiban.web.accounts import Accounts

    root = make_project({**DELIVERY_FILES, "kiban.yml": "name: shop\ntimezone: UTC\ndeliveries:\n"
                         "  weekly: {mart: mart.weekly_marketing, folder: out, usecase: marketing}\n",
                         "usecases/marketing.yml": "description: marketing reads it\nowner: m\n"
                         "assets: [mart.weekly_marketing]\nneed: {by: '23:59', on: every_day}\n"},
                        lake=SHOP_LAKE)
    project = load_project(root)
    assert run_project(project, RunOptions()).ok
    store = Store(project.state_url)
    assert deliver(project, store, "weekly").status == "delivered"
    Accounts(store).add_user("viewer", "viewer-password", "viewer")
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        sign_in(client, "viewer")
        page = client.get("/usecases/marketing")
    assert page.status_code == 200
    assert 'id="deliveries"' in page.text
    assert "weekly_" in page.text
    assert ">delivered<" in page.text
