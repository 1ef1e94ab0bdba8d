"""The shop's source systems, written the way they hand over data in real companies.

``generate.py`` computes the shop's rows in DuckDB; this module writes them where each system keeps them,
under ``sources_data/`` (the project's ``sources/*.yml`` collect from there)::

    sources_data/pos.sqlite                      the POS registers' operational database: stores, customers,
                                                 orders, order_lines, each with an updated_at (UTC text)
    sources_data/web/access.log-YYYYMMDD         the web shop's nginx access logs (combined format, JST)
    sources_data/master/products_YYYYMMDD.csv    merchandising's product master, exported from Excel (CP932)
    sources_data/staff/shifts_YYYYMMDD.xlsx      the stores' shift sheets, typed in by hand (one per week)

Every file is written under a temporary name and moved into place. A few rows are broken on purpose, as
they would be in life (see README.md, "Bad rows on purpose"); ``next_morning()`` adds the next morning's
deliveries: late POS updates and a product export with a new column.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import random
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

JST = ZoneInfo("Asia/Tokyo")
WEB_DAYS = 7  # days of access logs kept on the web server (logrotate, one file a day)
SHIFT_WEEKS = 2  # weeks of shift sheets
REQUESTS_PER_DAY_AT_SCALE_1 = 20_000
MIN_REQUESTS_PER_DAY = 400

# -- the POS database ----------------------------------------------------------------------------------------

POS_TABLES: dict[str, tuple[str, str]] = {
    # table: (DDL columns, SELECT from the generator's tables); times are UTC text 'YYYY-MM-DD HH:MM:SS',
    # as SQLite's CURRENT_TIMESTAMP writes them
    "stores": (
        "store_id INTEGER PRIMARY KEY, store_code TEXT NOT NULL, store_name TEXT NOT NULL, prefecture TEXT, "
        "region TEXT, opened_on DATE, floor_area_m2 INTEGER, updated_at TIMESTAMP NOT NULL",
        "SELECT store_id, store_code, store_name, prefecture, region, strftime(opened_on, '%Y-%m-%d'), "
        "floor_area_m2, {updated_at} FROM stores ORDER BY store_id",
    ),
    "customers": (
        "customer_id INTEGER PRIMARY KEY, full_name TEXT, email TEXT, phone TEXT, gender TEXT, birth_date DATE, "
        "prefecture TEXT, registered_at TIMESTAMP, updated_at TIMESTAMP NOT NULL",
        "SELECT customer_id, full_name, email, phone, gender, strftime(birth_date, '%Y-%m-%d'), prefecture, "
        "{registered_at}, {updated_at} FROM customers ORDER BY customer_id",
    ),
    "orders": (
        "order_id INTEGER PRIMARY KEY, store_id INTEGER NOT NULL, customer_id INTEGER, "
        "ordered_at TIMESTAMP NOT NULL, status TEXT NOT NULL, payment_method TEXT, updated_at TIMESTAMP NOT NULL",
        # a returned order is updated in place: the register database keeps only its latest version
        "SELECT order_id, store_id, customer_id, {ordered_at}, status, payment_method, {updated_at} FROM orders "
        "QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC) = 1 ORDER BY order_id",
    ),
    "order_lines": (
        "order_id INTEGER NOT NULL, line_no INTEGER NOT NULL, product_id INTEGER NOT NULL, quantity INTEGER NOT NULL, "
        "unit_price INTEGER NOT NULL, discount INTEGER NOT NULL, updated_at TIMESTAMP NOT NULL, "
        "PRIMARY KEY (order_id, line_no)",
        "SELECT order_id, line_no, product_id, quantity, unit_price, discount, {updated_at} FROM order_lines "
        "ORDER BY order_id, line_no",
    ),
}


def utc_text(column: str) -> str:
    """A TIMESTAMPTZ column as the POS database stores it."""
    return f"strftime(timezone('UTC', {column}), '%Y-%m-%d %H:%M:%S')"


def write_pos(con: duckdb.DuckDBPyConnection, target: Path) -> dict[str, int]:
    """The registers' SQLite database, with an index on every updated_at (incremental extracts use it)."""
    tmp = _tmp(target)
    counts: dict[str, int] = {}
    db = sqlite3.connect(tmp)
    try:
        db.execute("PRAGMA journal_mode = OFF")  # a new file, moved into place only when complete
        db.execute("PRAGMA synchronous = OFF")
        for table, (ddl, select) in POS_TABLES.items():
            db.execute(f"CREATE TABLE {table} ({ddl})")
            query = select.format(updated_at=utc_text("updated_at"), ordered_at=utc_text("ordered_at"),
                                  registered_at=utc_text("registered_at"))
            counts[table] = 0
            # Arrow batches, one Python list per column: several times faster than DuckDB's row tuples
            for batch in con.execute(query).to_arrow_reader(100_000):
                marks = ", ".join("?" * batch.num_columns)
                columns = [column.to_pylist() for column in batch.columns]
                db.executemany(f"INSERT INTO {table} VALUES ({marks})", zip(*columns, strict=True))
                counts[table] += batch.num_rows
            db.execute(f"CREATE INDEX {table}_updated_at ON {table} (updated_at)")
        db.commit()
    finally:
        db.close()
    os.replace(tmp, target)
    return counts


# -- the product master, exported from Excel -----------------------------------------------------------------

PRODUCT_COLUMNS = ["product_id", "sku", "product_name", "category", "brand", "unit_price", "unit_cost",
                   "launched_on", "is_active", "updated_at"]


def product_rows(con: duckdb.DuckDBPyConnection) -> list[list[str]]:
    """The product master as Excel shows it: yyyy/mm/dd dates, Japan time, TRUE/FALSE, empty cells."""
    rows = con.execute("""
        SELECT product_id::VARCHAR, sku, product_name, coalesce(category, ''), brand, unit_price::VARCHAR,
               unit_cost::VARCHAR, strftime(launched_on, '%Y/%m/%d'), CASE WHEN is_active THEN 'TRUE' ELSE 'FALSE' END,
               strftime(timezone('Asia/Tokyo', updated_at), '%Y/%m/%d %H:%M:%S')
        FROM products ORDER BY product_id
    """).fetchall()
    return [list(r) for r in rows]


def write_product_export(target: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """A CSV as Excel's 「CSV (コンマ区切り)」 writes it on a Japanese PC: CP932, CRLF, no BOM."""
    tmp = _tmp(target)
    count = 0
    with tmp.open("w", encoding="cp932", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    os.replace(tmp, target)
    return count


def bad_price(rows: list[list[str]]) -> list[list[str]]:
    """One price typed with a thousands separator (「1,990」): the loader refuses it as an integer."""
    for row in reversed(rows):
        if int(row[5]) >= 1000:
            row[5] = f"{int(row[5]):,}"
            break
    return rows


# -- the web shop's access logs ------------------------------------------------------------------------------

_AGENTS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]
_REFERERS = ["-", "https://www.google.com/", "https://search.yahoo.co.jp/", "https://www.instagram.com/",
             "https://shop.example/"]
_HOUR_WEIGHTS = [1, 1, 0, 0, 0, 1, 2, 4, 6, 6, 6, 7, 9, 8, 6, 6, 6, 7, 9, 11, 12, 11, 8, 4]
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def nginx_time(moment: dt.datetime) -> str:
    """``[29/Nov/2026:13:05:09 +0900]`` without the brackets (no locale involved)."""
    return f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment:%Y:%H:%M:%S} +0900"


def write_web_logs(folder: Path, end_date: dt.date, scale: float, seed: int, store_codes: Sequence[str],
                   skus: Sequence[str]) -> dict[str, int]:
    """One nginx combined log per day for the last WEB_DAYS days; each day has one line cut short."""
    folder.mkdir(parents=True, exist_ok=True)
    per_day = max(MIN_REQUESTS_PER_DAY, round(REQUESTS_PER_DAY_AT_SCALE_1 * scale))
    counts: dict[str, int] = {}
    wanted = set()
    for back in range(WEB_DAYS - 1, -1, -1):
        day = end_date - dt.timedelta(days=back)
        rng = random.Random(f"{seed}:web:{day.isoformat()}")
        lines = sorted(_requests(rng, day, per_day, store_codes, skus))
        text = [line for _, line in lines]
        # logrotate cut the writer off mid-line once that day: a malformed line the loader quarantines
        cut = rng.randrange(len(text) // 2, len(text))
        text[cut] = text[cut][: text[cut].index('"GET ') + 8]  # cut inside the request
        name = f"access.log-{day:%Y%m%d}"
        target = folder / name
        tmp = _tmp(target)
        tmp.write_text("\n".join(text) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        counts[name] = len(text)
        wanted.add(name)
    remove_others(folder, "access.log-*", wanted)
    return counts


def _requests(rng: random.Random, day: dt.date, n: int, store_codes: Sequence[str],
              skus: Sequence[str]) -> Iterable[tuple[dt.datetime, str]]:
    count = round(n * (1.3 if day.isoweekday() >= 6 else 1.0))
    # draws made in bulk (a few C calls per day instead of a dozen Python calls per line)
    hours = rng.choices(range(24), weights=_HOUR_WEIGHTS, k=count)
    nets = rng.choices(["203.0.113", "198.51.100", "192.0.2"], k=count)
    agents = rng.choices(_AGENTS, k=count)
    referers = rng.choices(_REFERERS, k=count)
    midnight = dt.datetime.combine(day, dt.time(0), JST)
    for i in range(count):
        moment = midnight + dt.timedelta(seconds=hours[i] * 3600 + int(rng.random() * 3600))
        kind = rng.random()
        status = 200
        if kind < 0.30:
            path = f"/stores/{_skewed(rng, store_codes)}"  # a store's page: opening hours, flyer, map
        elif kind < 0.55:
            path = f"/products/{_skewed(rng, skus)}"
        elif kind < 0.65:
            path = f"/products/{_skewed(rng, skus)}/stock?store={_skewed(rng, store_codes)}"  # in stock nearby?
        elif kind < 0.72:
            path = f"/search?q={rng.choice(['%E3%82%AB%E3%83%AC%E3%83%BC', 'tshirt', 'towel', 'coffee'])}"
        elif kind < 0.80:
            path = "/"
        elif kind < 0.95:
            path = rng.choice(["/static/app.js", "/static/style.css", "/favicon.ico"])
            status = rng.choice([200, 304, 304])
        else:
            path = rng.choice(["/cart", "/checkout", "/wp-login.php", "/products/SKU-999999"])
            status = 404 if path.startswith(("/wp", "/products")) else 200
        if kind > 0.998:
            status = 502
        size = 0 if status == 304 else 300 + int(rng.random() * 59_700)
        line = (f'{nets[i]}.{1 + int(rng.random() * 254)} - - [{nginx_time(moment)}] "GET {path} HTTP/1.1" '
                f'{status} {size} "{referers[i]}" "{agents[i]}"')
        yield moment, line


def _skewed(rng: random.Random, values: Sequence[str]) -> str:
    """Popular things first: a few stores and products get most of the traffic."""
    return values[min(len(values) - 1, int(len(values) * rng.random() ** 2))]


# -- the stores' shift sheets --------------------------------------------------------------------------------

SHIFT_HEADER = ["日付", "店舗コード", "社員番号", "氏名", "開始", "終了", "休憩(分)", "役割"]
_SHIFTS = [("09:30", "18:30", 60), ("12:00", "21:00", 60), ("10:00", "15:00", 0), ("16:00", "21:30", 30)]
_ROLES = ["店長", "副店長", "レジ", "品出し", "レジ", "品出し", "アルバイト", "アルバイト"]
STAFF_BY_SIZE = {"L": 14, "M": 9, "S": 6}


def write_shift_sheets(con: duckdb.DuckDBPyConnection, folder: Path, end_date: dt.date, seed: int) -> dict[str, int]:
    """One workbook per week (Monday first), one sheet, a title row above the header, as the stores keep them.

    Typed by hand: a few cells say 休 (day off) where a time should be; the loader quarantines those rows.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    folder.mkdir(parents=True, exist_ok=True)
    stores = con.execute("SELECT store_id, store_code, floor_area_m2 FROM stores ORDER BY store_id").fetchall()
    names = con.execute("SELECT full_name FROM customers ORDER BY customer_id LIMIT 400").fetchall()
    monday = end_date - dt.timedelta(days=end_date.weekday())
    counts: dict[str, int] = {}
    wanted = set()
    for week in range(SHIFT_WEEKS - 1, -1, -1):
        start = monday - dt.timedelta(weeks=week)
        rng = random.Random(f"{seed}:shifts:{start.isoformat()}")
        rows: list[list[Any]] = []
        for store_id, code, area in stores:
            size = "L" if area >= 1300 else "M" if area >= 650 else "S"
            for n in range(STAFF_BY_SIZE[size]):
                staff_id = f"E{store_id:03d}{n + 1:02d}"
                name = names[(store_id * 31 + n) % len(names)][0] if names else staff_id
                role = _ROLES[min(n, len(_ROLES) - 1)]
                for offset in range(7):
                    day = start + dt.timedelta(days=offset)
                    if day > end_date or rng.random() < 0.3:  # not yet worked, or a day off
                        continue
                    begin, end, rest = _SHIFTS[rng.randrange(len(_SHIFTS))]
                    rows.append([day, code, staff_id, name, _time(begin), _time(end), rest, role])
        if rows:  # a hand-typed sheet: a day off written where the start time goes
            rows[rng.randrange(len(rows))][4] = "休"
        book = Workbook(write_only=True)  # streams the rows: a fraction of the time and memory
        sheet = book.create_sheet("シフト表")
        title = WriteOnlyCell(sheet, value=f"{start:%Y年%m月%d日}週 シフト表（全店）")
        title.font = Font(bold=True, size=14)
        sheet.append([title])
        sheet.append(SHIFT_HEADER)
        for row in rows:
            day_cell = WriteOnlyCell(sheet, value=row[0])
            day_cell.number_format = "yyyy/mm/dd"
            sheet.append([day_cell, *row[1:]])
        name = f"shifts_{start:%Y%m%d}.xlsx"
        target = folder / name
        tmp = _tmp(target)
        book.save(tmp)
        os.replace(tmp, target)
        counts[name] = len(rows)
        wanted.add(name)
    remove_others(folder, "shifts_*.xlsx", wanted)
    return counts


def _time(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


# -- the next morning ----------------------------------------------------------------------------------------


def next_morning(root: Path, end_date: dt.date, seed: int) -> dict[str, Any]:
    """What arrives before the next nightly run: returns booked in the POS database, and merchandising's new
    product export, whose template gained a column (``jan_code``) and whose newest product has no price yet."""
    data = root / "sources_data"
    morning = dt.datetime.combine(end_date + dt.timedelta(days=1), dt.time(8, 0), JST)
    stamp = morning.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    db = sqlite3.connect(data / "pos.sqlite")
    try:
        rng = random.Random(f"{seed}:returns:{end_date}")
        completed = [r[0] for r in db.execute(
            "SELECT order_id FROM orders WHERE status = 'completed' ORDER BY order_id").fetchall()]
        returned = sorted(rng.sample(completed, min(3, len(completed))))
        db.executemany("UPDATE orders SET status = 'returned', updated_at = ? WHERE order_id = ?",
                       [(stamp, order_id) for order_id in returned])
        db.commit()
    finally:
        db.close()
    exports = sorted((data / "master").glob("products_*.csv"))
    with exports[-1].open(encoding="cp932", newline="") as previous:
        rows = list(csv.reader(previous))
    header, body = rows[0], rows[1:]
    header = [*header[:2], "jan_code", *header[2:]]
    updated = morning.strftime("%Y/%m/%d %H:%M:%S")
    new_body = [[r[0], r[1], f"4900000{int(r[0]):06d}", *r[2:]] for r in body]
    last = max(int(r[0]) for r in body)
    template = new_body[0]
    new_body.append([str(last + 1), f"SKU-{last + 1:06d}", f"4900000{last + 1:06d}", "KIBAN 新商品 (予約受付中)",
                     template[4], "KIBAN", "未定", "", f"{end_date + dt.timedelta(days=14):%Y/%m/%d}", "TRUE", updated])
    target = data / "master" / f"products_{end_date + dt.timedelta(days=1):%Y%m%d}.csv"
    write_product_export(target, header, new_body)
    return {"returned_orders": returned, "product_export": target.name, "products": len(new_body)}


# -- files ---------------------------------------------------------------------------------------------------


def _tmp(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    return tmp


def remove_others(folder: Path, pattern: str, keep: set[str]) -> None:
    """Files of an earlier generation (another end date) would be collected as if they were new."""
    for stale in folder.glob(pattern):
        if stale.name not in keep:
            stale.unlink()
