"""A run's build errors are kept and shown without the data values an engine error quotes.

A model that fails on a personal value (``email::int``, ``error('…' || email)``) made DuckDB quote the e-mail in its
message; the attempt's error went to the state store and the web's run and asset pages, which every viewer reads.
The message keeps its class, its words and the names it gives (column, type), never the value: a grammar of real
engine errors over random values proves it, and a viewer's pages over a real failed run show no e-mail.
"""

from __future__ import annotations

import shutil

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiban.errors import without_values
from tests.helpers.console import bearer, run, sign_in

# expressions over a text value {v} that make DuckDB fail with a message that may quote it
FAILING = ["{v}::int", "{v}::date", "{v}::uuid", "{v}::decimal(4, 1)", "{v}::boolean", "error('bad: ' || {v})",
           "strptime({v}, '%Y-%m-%d')", "json({v})", "{v}::blob::int", "[1][{v}::int]", "{v}::timestamp",
           "{v}::interval", "from_base64({v})", "{v}::tinyint"]
VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=6,
                 max_size=30).filter(lambda v: v.strip() == v and not v.isdigit())


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(FAILING), VALUES)
def test_an_engine_error_keeps_its_class_and_names_never_the_value(template, value):
    con = duckdb.connect()
    try:
        con.execute(f"select {template.format(v='x')} from (select ? as x)", [value]).fetchall()
    except (duckdb.Error, UnicodeDecodeError) as exc:  # DuckDB may cut a quoted value mid-character
        message = str(exc)
    else:
        return  # this value does not fail this expression
    finally:
        con.close()
    shown = without_values(message)
    assert value not in shown, (template, message)
    assert shown.split(":")[0] == message.split(":")[0]  # the class stays


@pytest.mark.parametrize("message", [
    'Binder Error: Referenced column "amount_typo" not found in FROM clause!',
    "Catalog Error: Table with name nope does not exist!",
    "timed out after 5 s (the query was interrupted)",
    "check not_null_id of warehouse.orders failed: 3 of 10 rows are null",
])
def test_messages_that_quote_no_value_are_unchanged(message):
    assert without_values(message) == message


def test_a_viewer_sees_a_failed_builds_error_without_the_email(catalog_template, tmp_path):
    from fastapi.testclient import TestClient

    from kiban.web import create_app

    root = tmp_path / "shop"
    shutil.copytree(catalog_template[0], root)
    tokens = catalog_template[1]
    (root / "models" / "warehouse" / "bad_cast.sql").write_text("select id, email::int as x from lake.customers\n")
    (root / "models" / "warehouse" / "bad_call.sql").write_text(
        "select id, error('no: ' || email) as x from lake.customers\n")
    result = run(root, select=["warehouse.bad_cast", "warehouse.bad_call"])
    assert sorted(result.failed) == ["warehouse.bad_call", "warehouse.bad_cast"]
    assert "Conversion Error" in result.outcomes["warehouse.bad_cast"].error  # what kind of failure stays
    assert "email" in result.outcomes["warehouse.bad_cast"].error  # and which column
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        sign_in(client, "viewer")
        pages = [client.get(f"/runs/{result.run_id}").text, client.get("/assets/warehouse.bad_cast").text,
                 client.get(f"/api/v1/runs/{result.run_id}", headers=bearer(tokens["viewer"])).text,
                 client.get("/api/v1/assets/warehouse.bad_call", headers=bearer(tokens["viewer"])).text]
    assert "Conversion Error" in pages[0]
    assert not [p for p in pages if "@example.com" in p]


def test_a_models_own_error_message_stays_a_value_never_does():
    code = "select case when amount < 0 then error('negative amount') end, error('no: ' || email) from t"
    assert without_values("Invalid Input Error: negative amount", code) == "Invalid Input Error: negative amount"
    hidden = without_values("Invalid Input Error: no: user1@example.com", code)
    assert "user1" not in hidden
    assert hidden.startswith("Invalid Input Error: ")
