"""Deterministic data generator for the kiban ``shop`` example project.

The shop is a Japanese retail chain: stores with POS registers, a product master, a customer
(membership) master, a web shop and the stores' shift sheets. This script computes their rows in
DuckDB and writes them the way each source system hands them over (``source_systems.py``), under
``sources_data/``; ``kiban run`` then collects them into the lake (``sources/*.yml``)::

    sources_data/pos.sqlite                     stores, customers, orders, order_lines (updated_at, UTC)
    sources_data/web/access.log-YYYYMMDD        nginx combined logs of the last 7 days
    sources_data/master/products_YYYYMMDD.csv   the product master exported from Excel (CP932)
    sources_data/staff/shifts_YYYYMMDD.xlsx     the stores' shift sheets of the last 2 weeks

Everything is computed inside DuckDB with hash-based pseudo random numbers
(``hash(key..., seed, salt)``) or Python's ``random`` seeded with the day, so a given ``--seed`` /
``--scale`` / ``--end-date`` always produces the same rows, and scale 1.0 (about one million order
lines) takes seconds.

A few deliberately bad rows are injected at every scale, so that the demo has something to
quarantine and check:

* order lines with a negative quantity;
* order lines pointing at a ``product_id`` that is not in the product master;
* customers whose email address is invalid;
* a product whose category is NULL, and one whose price was typed as 「1,990」 (quarantined);
* one access-log line a day cut short by the log rotation (quarantined);
* one shift a week whose start time says 休 (quarantined).

``--next-morning`` adds what arrives before the next run: three returns booked in the POS database
(the orders arrive again with a later ``updated_at``) and a new product export whose template gained
a column, ``jan_code`` (schema drift), with a new product whose price is still 「未定」.

Usage::

    python examples/shop/generate.py                 # scale 1.0 into examples/shop/sources_data
    python examples/shop/generate.py --scale 0.01    # tiny data set for tests
    python examples/shop/generate.py --next-morning  # after a `kiban run`: the next morning's deliveries
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import source_systems as systems  # this folder: how each source system writes its data

DEFAULT_SEED = 42
# Yesterday in Japan: the demo's data always ends where a nightly load would have left it, so its
# service levels (data through yesterday) hold on any day. Pass --end-date for a fixed data set.
DEFAULT_END_DATE = dt.datetime.now(ZoneInfo("Asia/Tokyo")).date() - dt.timedelta(days=1)
DAYS = 90
TIMEZONE = "Asia/Tokyo"

# Sizes at scale 1.0 and the floors that keep a tiny scale meaningful.
ORDER_LINES_AT_SCALE_1 = 1_000_000
CUSTOMERS_AT_SCALE_1 = 50_000
PRODUCTS_AT_SCALE_1 = 2_000
STORES_AT_SCALE_1 = 50
MIN_CUSTOMERS = 200
MIN_PRODUCTS = 40
MIN_STORES = 3

# How many bad rows of each kind are injected (independent of the scale).
DUPLICATE_ORDER_HEADERS = 5
NEGATIVE_QUANTITY_LINES = 6
UNKNOWN_PRODUCT_LINES = 4
INVALID_EMAIL_CUSTOMERS = 2
NULL_CATEGORY_PRODUCTS = 1
UNKNOWN_PRODUCT_ID_BASE = 9_000_000

# The replenishment initiative (initiatives/replenishment.yml, written by this script): from PILOT_DAY of the
# history on, the stores with an even store_id order their deliveries from the demand forecast, run out less
# often, and sell PILOT_UPLIFT more orders than they would have. The other half is the control group.
PILOT_DAY = 60
PILOT_UPLIFT = 0.06
ANONYMOUS_SHARE = 0.35  # share of POS orders without a membership card
ACTIVE_CUSTOMER_SHARE = 0.8  # the rest of the members did not buy in the 90 days

# (store name, prefecture, region, size class). The first stores are flagships in different
# regions so that a tiny scale with only a few stores still looks like a chain.
STORES: list[tuple[str, str, str, str]] = [
    ("新宿店", "東京都", "関東", "L"),
    ("梅田店", "大阪府", "近畿", "L"),
    ("博多店", "福岡県", "九州・沖縄", "L"),
    ("札幌駅前店", "北海道", "北海道", "M"),
    ("名古屋栄店", "愛知県", "中部", "L"),
    ("渋谷店", "東京都", "関東", "L"),
    ("池袋店", "東京都", "関東", "L"),
    ("銀座店", "東京都", "関東", "L"),
    ("横浜みなとみらい店", "神奈川県", "関東", "L"),
    ("心斎橋店", "大阪府", "近畿", "L"),
    ("仙台一番町店", "宮城県", "東北", "M"),
    ("京都四条店", "京都府", "近畿", "M"),
    ("三宮店", "兵庫県", "近畿", "M"),
    ("広島店", "広島県", "中国", "M"),
    ("天神店", "福岡県", "九州・沖縄", "M"),
    ("上野店", "東京都", "関東", "M"),
    ("吉祥寺店", "東京都", "関東", "M"),
    ("立川店", "東京都", "関東", "M"),
    ("町田店", "東京都", "関東", "M"),
    ("二子玉川店", "東京都", "関東", "M"),
    ("川崎店", "神奈川県", "関東", "M"),
    ("藤沢店", "神奈川県", "関東", "S"),
    ("大宮店", "埼玉県", "関東", "M"),
    ("浦和店", "埼玉県", "関東", "S"),
    ("川越店", "埼玉県", "関東", "S"),
    ("千葉店", "千葉県", "関東", "M"),
    ("船橋店", "千葉県", "関東", "M"),
    ("柏店", "千葉県", "関東", "S"),
    ("水戸店", "茨城県", "関東", "S"),
    ("宇都宮店", "栃木県", "関東", "S"),
    ("高崎店", "群馬県", "関東", "S"),
    ("名古屋駅店", "愛知県", "中部", "M"),
    ("豊田店", "愛知県", "中部", "S"),
    ("静岡店", "静岡県", "中部", "S"),
    ("浜松店", "静岡県", "中部", "S"),
    ("金沢店", "石川県", "中部", "S"),
    ("新潟店", "新潟県", "中部", "S"),
    ("岐阜店", "岐阜県", "中部", "S"),
    ("長野店", "長野県", "中部", "S"),
    ("天王寺店", "大阪府", "近畿", "M"),
    ("西宮店", "兵庫県", "近畿", "S"),
    ("奈良店", "奈良県", "近畿", "S"),
    ("岡山店", "岡山県", "中国", "S"),
    ("高松店", "香川県", "四国", "S"),
    ("松山店", "愛媛県", "四国", "S"),
    ("熊本店", "熊本県", "九州・沖縄", "S"),
    ("鹿児島店", "鹿児島県", "九州・沖縄", "S"),
    ("那覇店", "沖縄県", "九州・沖縄", "S"),
    ("旭川店", "北海道", "北海道", "S"),
    ("盛岡店", "岩手県", "東北", "S"),
]

SIZE_CLASSES: list[tuple[str, float, int]] = [  # (class, sales weight, typical floor area m2)
    ("L", 2.2, 1800),
    ("M", 1.0, 900),
    ("S", 0.6, 450),
]

# (category, share of the assortment, min price, max price, product nouns, variants); the nouns and
# variants are space-separated lists.
CATALOG: list[tuple[str, float, int, int, str, str]] = [
    ("Food", 0.25, 150, 1500,
     "レトルトカレー 玄米 ドライフルーツ ミックスナッツ バウムクーヘン 味噌汁 パスタ はちみつ",
     "120g 200g 300g 500g 徳用"),
    ("Beverages", 0.12, 100, 2500,
     "緑茶 ほうじ茶 ミネラルウォーター 炭酸水 コーヒー豆 ジャスミン茶",
     "350ml 500ml 2L 6本入 200g"),
    ("Household", 0.15, 150, 2000,
     "洗濯洗剤 食器用スポンジ ティッシュ ハンドソープ ゴミ袋 掃除用クロス",
     "詰替用 本体 3個入 大容量 無香料"),
    ("Apparel", 0.12, 990, 8000,
     "Tシャツ 靴下 パジャマ カーディガン スニーカー ストール",
     "ホワイト ブラック ネイビー グレー ベージュ"),
    ("Electronics", 0.06, 1500, 20000,
     "モバイルバッテリー イヤホン LEDデスクライト 電気ケトル USBケーブル 加湿器",
     "ホワイト ブラック コンパクト スタンダード"),
    ("Beauty", 0.10, 500, 4000,
     "化粧水 乳液 日焼け止め リップクリーム ハンドクリーム シャンプー",
     "敏感肌用 しっとり さっぱり 携帯用 大容量"),
    ("Stationery", 0.10, 100, 1500,
     "ボールペン ノート 付箋 クリアファイル マスキングテープ 手帳",
     "A5 B5 0.5mm 5色 10冊組"),
    ("Home", 0.10, 500, 6000,
     "収納ボックス マグカップ クッション バスタオル フライパン 保存容器",
     "S M L ホワイト グレー"),
]  # fmt: skip

BRANDS = ["KIBAN", "Hinoki", "Sora", "Mori", "Umi", "Tsuki", "Kaze", "Yama"]

FAMILY_NAMES: list[tuple[str, str]] = [
    ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"), ("田中", "tanaka"), ("伊藤", "ito"),
    ("渡辺", "watanabe"), ("山本", "yamamoto"), ("中村", "nakamura"), ("小林", "kobayashi"),
    ("加藤", "kato"), ("吉田", "yoshida"), ("山田", "yamada"), ("佐々木", "sasaki"),
    ("山口", "yamaguchi"), ("松本", "matsumoto"), ("井上", "inoue"), ("木村", "kimura"),
    ("林", "hayashi"), ("斎藤", "saito"), ("清水", "shimizu"), ("山崎", "yamazaki"), ("森", "mori"),
    ("池田", "ikeda"), ("橋本", "hashimoto"), ("阿部", "abe"), ("石川", "ishikawa"),
    ("山下", "yamashita"), ("中島", "nakajima"), ("石井", "ishii"), ("小川", "ogawa"),
]  # fmt: skip

GIVEN_NAMES: list[tuple[str, str, str]] = [
    ("陽葵", "himari", "female"), ("結衣", "yui", "female"), ("美咲", "misaki", "female"),
    ("さくら", "sakura", "female"), ("愛", "ai", "female"), ("葵", "aoi", "female"),
    ("陽菜", "hina", "female"), ("花子", "hanako", "female"), ("直美", "naomi", "female"),
    ("恵子", "keiko", "female"), ("由美", "yumi", "female"), ("真由美", "mayumi", "female"),
    ("彩", "aya", "female"), ("優子", "yuko", "female"), ("明美", "akemi", "female"),
    ("蓮", "ren", "male"), ("大翔", "hiroto", "male"), ("悠真", "yuma", "male"),
    ("翔太", "shota", "male"), ("健太", "kenta", "male"), ("拓也", "takuya", "male"),
    ("大輔", "daisuke", "male"), ("誠", "makoto", "male"), ("太郎", "taro", "male"),
    ("浩", "hiroshi", "male"), ("隆", "takashi", "male"), ("直樹", "naoki", "male"),
    ("和也", "kazuya", "male"), ("翔", "sho", "male"), ("亮", "ryo", "male"),
]  # fmt: skip

EMAIL_DOMAINS = ["example.com", "example.net", "example.org", "mail.example.jp"]

# Relative order volume by ISO day of week (1 = Monday ... 7 = Sunday).
DOW_FACTORS = [0.85, 0.85, 0.9, 0.9, 1.05, 1.45, 1.35]
# Opening hours are 10:00-21:00 JST; relative traffic per opening hour.
HOUR_WEIGHTS = {10: 5, 11: 7, 12: 11, 13: 10, 14: 7, 15: 7, 16: 8, 17: 10, 18: 11, 19: 9, 20: 5}
LINES_PER_ORDER_WEIGHTS = {1: 30, 2: 25, 3: 17, 4: 11, 5: 7, 6: 5, 7: 3, 8: 2}
STATUS_WEIGHTS = {"completed": 95.0, "cancelled": 2.5, "returned": 2.5}
PAYMENT_WEIGHTS = {"credit_card": 35, "cash": 30, "e_money": 20, "qr_code": 15}
QUANTITY_WEIGHTS_GROCERY = {1: 60, 2: 22, 3: 10, 4: 5, 5: 3}
QUANTITY_WEIGHTS_OTHER = {1: 85, 2: 11, 3: 3, 4: 1}
DISCOUNT_SHARE = 0.12
DISCOUNT_PCT_WEIGHTS = {10: 60, 20: 30, 30: 10}



@dataclass(frozen=True)
class Config:
    """Parameters of one generator run and the table sizes derived from them."""

    scale: float = 1.0
    seed: int = DEFAULT_SEED
    end_date: dt.date = DEFAULT_END_DATE

    @property
    def start_date(self) -> dt.date:
        """First day (JST) of the 90-day order history."""
        return self.end_date - dt.timedelta(days=DAYS - 1)

    @property
    def pilot_start(self) -> dt.date:
        """The first day of the replenishment pilot (initiatives/replenishment.yml)."""
        return self.start_date + dt.timedelta(days=PILOT_DAY)

    @property
    def n_stores(self) -> int:
        """Number of stores (at most the 50 named stores)."""
        return min(len(STORES), max(MIN_STORES, round(STORES_AT_SCALE_1 * self.scale)))

    @property
    def n_products(self) -> int:
        """Number of products in the product master."""
        return max(MIN_PRODUCTS, round(PRODUCTS_AT_SCALE_1 * self.scale))

    @property
    def n_customers(self) -> int:
        """Number of members in the customer master."""
        return max(MIN_CUSTOMERS, round(CUSTOMERS_AT_SCALE_1 * self.scale))

    @property
    def target_order_lines(self) -> int:
        """Approximate number of order lines to generate."""
        return max(1, round(ORDER_LINES_AT_SCALE_1 * self.scale))

    @property
    def target_orders(self) -> float:
        """Expected number of orders, derived from the lines-per-order distribution."""
        weights = LINES_PER_ORDER_WEIGHTS
        mean_lines = sum(n * w for n, w in weights.items()) / sum(weights.values())
        return self.target_order_lines / mean_lines


def _literal(value: object) -> str:
    """Render a Python constant as a DuckDB SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    raise TypeError(f"cannot render {value!r} as SQL")


def _values(rows: Sequence[Sequence[object]], columns: Sequence[str]) -> str:
    """Return a ``SELECT`` over a ``VALUES`` list, for small reference tables."""
    body = ",\n".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
    return f"SELECT * FROM (VALUES {body}) AS t({', '.join(columns)})"


def _pick(u: str, weights: Mapping[Any, float]) -> str:
    """Return a ``CASE`` expression that maps the uniform number ``u`` onto ``weights``' keys."""
    total = sum(weights.values())
    parts: list[str] = []
    cumulative = 0.0
    items = list(weights.items())
    for value, weight in items[:-1]:
        cumulative += weight / total
        parts.append(f"WHEN {u} < {cumulative!r} THEN {_literal(value)}")
    return f"CASE {' '.join(parts)} ELSE {_literal(items[-1][0])} END"


def _choice(values: Sequence[str], u: str) -> str:
    """Return an expression that picks one of ``values`` with the uniform number ``u``."""
    return f"{_literal(list(values))}[1 + floor({u} * {len(values)})::INTEGER]"


def _coprime(n: int) -> int:
    """Return a large multiplier coprime to ``n``, used to permute ``0..n-1``."""
    for candidate in (7919, 104_729, 1_299_709, 15_485_863):
        if math.gcd(candidate, n) == 1:
            return candidate
    return 1


class _Sql:
    """Builds the hash-based random expressions for one seed.

    DuckDB's multi-argument ``hash(a, b, ...)`` combines the argument hashes with a final XOR, so
    ``hash(k, 'x')`` and ``hash(k, 'y')`` would be strongly correlated. Instead the keys are hashed
    once, XOR-ed with a 64-bit constant derived from the seed and the salt, and hashed again: the
    second (murmur-style) hash mixes the constant into every bit, so different salts and seeds
    give independent streams.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def salt_constant(self, salt: str) -> int:
        """Return a 63-bit constant for ``salt`` under this seed (stable across runs and platforms)."""
        digest = hashlib.blake2b(f"{self.seed}:{salt}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF

    def h(self, salt: str, *keys: str) -> str:
        """Return a well-mixed UBIGINT hash of the SQL expressions ``keys`` for ``salt``."""
        return f"hash(xor(hash({', '.join(keys)}), {self.salt_constant(salt)}::UBIGINT))"

    def u(self, salt: str, *keys: str) -> str:
        """Return a uniform number in [0, 1) that depends only on ``keys``, the seed and ``salt``."""
        return f"(({self.h(salt, *keys)} >> 11)::DOUBLE / 9007199254740992.0)"

    def perm(self, index: str, n: int, salt: str) -> str:
        """Map ``index`` in ``0..n-1`` to an id in ``1..n`` through a fixed permutation."""
        offset = self.salt_constant(salt) % n
        return f"((({index})::BIGINT * {_coprime(n)} + {offset}) % {n} + 1)"


def _build(con: duckdb.DuckDBPyConnection, cfg: Config) -> None:
    """Create the five lake tables as in-memory DuckDB tables."""
    sql = _Sql(cfg.seed)
    con.execute("SET TimeZone = 'UTC'")
    extract_at = f"timezone('{TIMEZONE}', TIMESTAMP '{cfg.end_date + dt.timedelta(days=1)} 02:00:00')"
    window_start = f"timezone('{TIMEZONE}', TIMESTAMP '{cfg.start_date} 00:00:00')"

    # --- stores ---------------------------------------------------------------------------
    store_rows = [(i + 1, *row) for i, row in enumerate(STORES[: cfg.n_stores])]
    con.execute(
        "CREATE TABLE store_src AS "
        + _values(store_rows, ["store_id", "store_name", "prefecture", "region", "size_class"])
    )
    con.execute("CREATE TABLE size_class AS " + _values(SIZE_CLASSES, ["size_class", "weight", "area"]))
    con.execute(f"""
        CREATE TABLE stores AS
        SELECT
            s.store_id::INTEGER AS store_id,
            printf('S%03d', s.store_id) AS store_code,
            s.store_name,
            s.prefecture,
            s.region,
            (DATE '2005-04-01' + floor({sql.u("opened", "s.store_id")} * 6500)::INTEGER) AS opened_on,
            (c.area * (0.8 + 0.4 * {sql.u("area", "s.store_id")}))::INTEGER AS floor_area_m2,
            {window_start} - to_seconds(floor({sql.u("store_upd", "s.store_id")} * 86400 * 400)::BIGINT)
                AS updated_at,
            c.weight * (0.85 + 0.3 * {sql.u("store_w", "s.store_id")}) AS _weight
        FROM store_src s JOIN size_class c USING (size_class)
        ORDER BY s.store_id
    """)

    # --- products -------------------------------------------------------------------------
    catalog_rows = [
        (name, share, lo, hi, nouns.split(), more.split()) for name, share, lo, hi, nouns, more in CATALOG
    ]
    con.execute(
        "CREATE TABLE catalog AS "
        + _values(catalog_rows, ["category", "share", "min_price", "max_price", "nouns", "variants"])
    )
    categories = [c[0] for c in CATALOG]
    category_pick = _pick(sql.u("category", "i"), {c[0]: c[1] for c in CATALOG})
    price_u = sql.u("price", "p.product_id")
    con.execute(f"""
        CREATE TABLE products AS
        WITH base AS (
            SELECT
                i::INTEGER AS product_id,
                CASE WHEN i <= {len(categories)} THEN {_literal(categories)}[i] ELSE {category_pick} END
                    AS category
            FROM range(1, {cfg.n_products + 1}) AS r(i)
        ), priced AS (
            SELECT
                p.product_id,
                p.category,
                {_choice(BRANDS, sql.u("brand", "p.product_id"))} AS brand,
                c.nouns[1 + floor({sql.u("noun", "p.product_id")} * len(c.nouns))::INTEGER] AS noun,
                c.variants[1 + floor({sql.u("variant", "p.product_id")} * len(c.variants))::INTEGER]
                    AS variant,
                exp(ln(c.min_price) + {price_u} * (ln(c.max_price) - ln(c.min_price))) AS raw_price
            FROM base p JOIN catalog c USING (category)
        ), rounded AS (
            -- shelf prices end in 90 yen: 190, 490, 1,990, 12,990 ...
            SELECT *, (CASE WHEN raw_price < 1000 THEN ceil(raw_price / 100) * 100 - 10
                            ELSE ceil(raw_price / 1000) * 1000 - 10 END)::INTEGER AS unit_price
            FROM priced
        )
        SELECT
            product_id,
            printf('SKU-%06d', product_id) AS sku,
            brand || ' ' || noun || ' ' || variant AS product_name,
            category,
            brand,
            unit_price,
            round(unit_price * (0.45 + 0.25 * {sql.u("cost", "product_id")}))::INTEGER AS unit_cost,
            DATE '2015-01-01' + floor(
                {sql.u("launch", "product_id")} * (DATE '{cfg.start_date}' - DATE '2015-01-01')
            )::INTEGER AS launched_on,
            {sql.u("active", "product_id")} >= 0.03 AS is_active,
            {window_start} - to_seconds(floor({sql.u("prod_upd", "product_id")} * 86400 * 700)::BIGINT)
                AS updated_at
        FROM rounded
        ORDER BY product_id
    """)

    # --- customers ------------------------------------------------------------------------
    con.execute("CREATE TABLE family_names AS " + _values(FAMILY_NAMES, ["kanji", "romaji"]))
    con.execute("CREATE TABLE given_names AS " + _values(GIVEN_NAMES, ["kanji", "romaji", "gender"]))
    registration_days = f"(DATE '{cfg.start_date}' - DATE '2016-01-01')"
    registered = (
        f"timezone('{TIMEZONE}', TIMESTAMP '2016-01-01 00:00:00' + to_seconds(floor("
        f"{sql.u('registered', 'c.customer_id')} * {registration_days} * 86400)::BIGINT))"
    )
    con.execute(f"""
        CREATE TABLE customers AS
        WITH ids AS (
            SELECT
                i::INTEGER AS customer_id,
                1 + floor({sql.u("family", "i")} * {len(FAMILY_NAMES)})::INTEGER AS f_idx,
                1 + floor({sql.u("given", "i")} * {len(GIVEN_NAMES)})::INTEGER AS g_idx,
                1 + floor({sql.u("home_store", "i")} * {cfg.n_stores})::INTEGER AS home_store_id
            FROM range(1, {cfg.n_customers + 1}) AS r(i)
        ), fam AS (
            SELECT row_number() OVER () AS f_idx, kanji, romaji FROM family_names
        ), giv AS (
            SELECT row_number() OVER () AS g_idx, kanji, romaji, gender FROM given_names
        ), c AS (
            SELECT ids.customer_id, ids.home_store_id,
                   fam.kanji AS family_kanji, fam.romaji AS family_romaji,
                   giv.kanji AS given_kanji, giv.romaji AS given_romaji, giv.gender
            FROM ids JOIN fam USING (f_idx) JOIN giv USING (g_idx)
        ), r AS (
            SELECT c.*, {registered} AS registered_at FROM c
        )
        SELECT
            r.customer_id,
            r.family_kanji || ' ' || r.given_kanji AS full_name,
            r.given_romaji || '.' || r.family_romaji || r.customer_id::VARCHAR || '@'
                || {_choice(EMAIL_DOMAINS, sql.u("domain", "r.customer_id"))} AS email,
            '0' || {_choice(["70", "80", "90"], sql.u("carrier", "r.customer_id"))}
                || '-' || lpad(floor({sql.u("tel1", "r.customer_id")} * 10000)::INTEGER::VARCHAR, 4, '0')
                || '-' || lpad(floor({sql.u("tel2", "r.customer_id")} * 10000)::INTEGER::VARCHAR, 4, '0')
                AS phone,
            CASE WHEN {sql.u("gender_na", "r.customer_id")} < 0.03 THEN 'unspecified' ELSE r.gender END
                AS gender,
            (DATE '1950-01-01' + floor({sql.u("birth", "r.customer_id")} * 20800)::INTEGER) AS birth_date,
            s.prefecture,
            r.registered_at,
            r.registered_at + to_seconds(floor({sql.u("cust_upd", "r.customer_id")}
                * epoch({window_start} - r.registered_at))::BIGINT) AS updated_at
        FROM r JOIN stores s ON s.store_id = r.home_store_id
        ORDER BY r.customer_id
    """)

    # --- orders ---------------------------------------------------------------------------
    dow = _literal(DOW_FACTORS)
    days_elapsed = f"(d.day - DATE '{cfg.start_date}')"
    con.execute(f"""
        CREATE TABLE store_days AS
        WITH days AS (
            SELECT r.d::DATE AS day
            FROM range(DATE '{cfg.start_date}', DATE '{cfg.end_date}' + 1, INTERVAL 1 DAY) AS r(d)
        ), weighted AS (
            SELECT
                s.store_id,
                d.day,
                s._weight * {dow}[isodow(d.day)]
                    * CASE WHEN day(d.day) BETWEEN 25 AND 27 THEN 1.12 ELSE 1.0 END
                    * (1.0 + 0.05 * {days_elapsed} / {DAYS})
                    * (0.9 + 0.2 * {sql.u("day_noise", "s.store_id", "d.day")})
                    -- every store closes for one stock-taking day in the middle of the period
                    * CASE WHEN {days_elapsed} = 40 + s.store_id % 14 THEN 0 ELSE 1 END AS w
            FROM stores s CROSS JOIN days d
        ), expected AS (
            SELECT store_id, day, {cfg.target_orders!r} * w / sum(w) OVER () AS mean_orders,
                   store_id % 2 = 0 AND day >= DATE '{cfg.pilot_start}' AS piloted
            FROM weighted
        )
        SELECT
            store_id,
            day,
            floor(mean_orders * CASE WHEN piloted THEN {1 + PILOT_UPLIFT} ELSE 1 END
                  + {sql.u("round", "store_id", "day")})::INTEGER AS n_orders,
            CASE WHEN piloted THEN mean_orders * {PILOT_UPLIFT} END AS _planted
        FROM expected
    """)
    hour = _pick(sql.u("hour", "store_id", "day", "seq"), HOUR_WEIGHTS)
    n_active = max(1, math.ceil(cfg.n_customers * ACTIVE_CUSTOMER_SHARE))
    customer_index = f"floor({n_active} * pow({sql.u('customer', 'store_id', 'day', 'seq')}, 1.25))"
    status = _pick(sql.u("status", "order_id"), STATUS_WEIGHTS)
    payment = _pick(sql.u("payment", "order_id"), PAYMENT_WEIGHTS)
    n_lines = _pick(sql.u("n_lines", "order_id"), LINES_PER_ORDER_WEIGHTS)
    con.execute(f"""
        CREATE TABLE orders AS
        WITH slots AS (
            SELECT store_id, day, unnest(range(n_orders)) AS seq FROM store_days WHERE n_orders > 0
        ), timed AS (
            SELECT
                store_id,
                day,
                seq,
                day + to_seconds(
                    ({hour}) * 3600 + floor({sql.u("second", "store_id", "day", "seq")} * 3600)::BIGINT
                ) AS local_ts,
                CASE WHEN {sql.u("anonymous", "store_id", "day", "seq")} < {ANONYMOUS_SHARE} THEN NULL
                     ELSE {sql.perm(customer_index, cfg.n_customers, "customer")} END AS customer_id
            FROM slots
        ), numbered AS (
            SELECT
                (1000000 + row_number() OVER (ORDER BY local_ts, store_id, seq))::BIGINT AS order_id,
                store_id,
                customer_id::INTEGER AS customer_id,
                timezone('{TIMEZONE}', local_ts) AS ordered_at,
                strftime(local_ts, '%Y-%m') AS _month
            FROM timed
        ), with_status AS (
            SELECT *, {status} AS status, {payment} AS payment_method, ({n_lines})::INTEGER AS _n_lines
            FROM numbered
        )
        SELECT
            order_id,
            store_id,
            customer_id,
            ordered_at,
            status,
            payment_method,
            least(
                ordered_at + CASE status
                    WHEN 'completed' THEN to_seconds(5 + floor({sql.u("upd", "order_id")} * 115)::BIGINT)
                    WHEN 'cancelled' THEN to_seconds(60 + floor({sql.u("upd", "order_id")} * 1800)::BIGINT)
                    ELSE to_seconds(3600 + floor({sql.u("upd", "order_id")} * 14 * 86400)::BIGINT) END,
                {extract_at}
            ) AS updated_at,
            _month,
            _n_lines
        FROM with_status
    """)

    # --- order lines ----------------------------------------------------------------------
    product_index = f"floor({cfg.n_products} * pow({sql.u('product', 'order_id', 'line_no')}, 1.6))"
    quantity = (
        f"CASE WHEN p.category IN ('Food', 'Beverages') "
        f"THEN {_pick(sql.u('qty', 'l.order_id', 'l.line_no'), QUANTITY_WEIGHTS_GROCERY)} "
        f"ELSE {_pick(sql.u('qty', 'l.order_id', 'l.line_no'), QUANTITY_WEIGHTS_OTHER)} END"
    )
    discount_pct = _pick(sql.u("discount_pct", "order_id", "line_no"), DISCOUNT_PCT_WEIGHTS)
    con.execute(f"""
        CREATE TABLE order_lines AS
        WITH expanded AS (
            SELECT order_id, ordered_at, _month, unnest(range(1, _n_lines + 1))::INTEGER AS line_no
            FROM orders
        ), picked AS (
            SELECT *, {sql.perm(product_index, cfg.n_products, "product")}::INTEGER AS product_id
            FROM expanded
        ), priced AS (
            SELECT l.order_id, l.line_no, l.product_id, ({quantity})::INTEGER AS quantity, p.unit_price,
                   l.ordered_at, l._month
            FROM picked l JOIN products p USING (product_id)
        )
        SELECT
            order_id,
            line_no,
            product_id,
            quantity,
            unit_price,
            CASE WHEN {sql.u("discount", "order_id", "line_no")} < {DISCOUNT_SHARE}
                 THEN (floor(quantity * unit_price * ({discount_pct}) / 1000.0) * 10)::INTEGER
                 ELSE 0 END AS discount,
            ordered_at + to_seconds(1 + floor({sql.u("line_upd", "order_id", "line_no")} * 4)::BIGINT)
                AS updated_at,
            _month
        FROM priced
    """)

    _inject_bad_rows(con, cfg, extract_at)


def _inject_bad_rows(con: duckdb.DuckDBPyConnection, cfg: Config, extract_at: str) -> None:
    """Add the few deliberately bad rows that the demo's checks and quarantine catch."""
    sql = _Sql(cfg.seed)
    # Duplicated order headers: the POS re-sends a completed order when it is returned days later.
    con.execute(f"""
        INSERT INTO orders
        SELECT
            order_id, store_id, customer_id, ordered_at,
            'returned' AS status,
            payment_method,
            least(updated_at + INTERVAL 1 DAY * k, {extract_at}) AS updated_at,
            _month, _n_lines
        FROM (
            SELECT *, row_number() OVER (ORDER BY {sql.h("dup", "order_id")}, order_id) AS k
            FROM orders
            WHERE status = 'completed' AND ordered_at < {extract_at} - INTERVAL 6 DAY
            ORDER BY {sql.h("dup", "order_id")}, order_id
            LIMIT {DUPLICATE_ORDER_HEADERS}
        )
    """)
    # Negative quantities and unknown products on a few lines.
    n_bad = NEGATIVE_QUANTITY_LINES + UNKNOWN_PRODUCT_LINES
    con.execute(f"""
        CREATE TABLE bad_lines AS
        SELECT order_id, line_no, row_number() OVER (ORDER BY h, order_id, line_no) AS k
        FROM (
            SELECT order_id, line_no, {sql.h("bad_line", "order_id", "line_no")} AS h
            FROM order_lines ORDER BY h, order_id, line_no LIMIT {n_bad}
        )
    """)
    con.execute(f"""
        UPDATE order_lines l
        SET quantity = CASE WHEN b.k <= {NEGATIVE_QUANTITY_LINES} THEN -l.quantity ELSE l.quantity END,
            product_id = CASE WHEN b.k > {NEGATIVE_QUANTITY_LINES}
                              THEN {UNKNOWN_PRODUCT_ID_BASE} + b.k::INTEGER ELSE l.product_id END
        FROM bad_lines b
        WHERE l.order_id = b.order_id AND l.line_no = b.line_no
    """)
    # Invalid email addresses: a full-width at sign (a classic typing slip) and a missing domain.
    con.execute(f"""
        UPDATE customers c
        SET email = CASE WHEN b.k = 1 THEN replace(c.email, '@', chr(65312))  -- full-width at sign
                         ELSE split_part(c.email, '@', 1) || '@' END
        FROM (
            SELECT customer_id, row_number() OVER (ORDER BY h, customer_id) AS k
            FROM (SELECT customer_id, {sql.h("bad_email", "customer_id")} AS h FROM customers
                  ORDER BY h, customer_id LIMIT {INVALID_EMAIL_CUSTOMERS})
        ) b
        WHERE c.customer_id = b.customer_id
    """)
    # A product whose category was never filled in.
    con.execute(f"""
        UPDATE products SET category = NULL
        WHERE product_id IN (SELECT product_id FROM products
                             ORDER BY {sql.h("null_category", "product_id")}, product_id
                             LIMIT {NULL_CATEGORY_PRODUCTS})
    """)


STATE = ("lake", "kiban.duckdb", "kiban.duckdb.wal", ".kiban")  # what kiban made from the previous data


def start_over(out: Path) -> list[str]:
    """Remove what kiban collected and built from the previous data: the new sources replace the old ones
    completely (the same order ids, other days), so loads of both must not meet in one lake."""
    removed = []
    for name in STATE:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def generate(
    out: Path | str,
    scale: float = 1.0,
    seed: int = DEFAULT_SEED,
    end_date: dt.date = DEFAULT_END_DATE,
) -> dict[str, int]:
    """Write the shop's source systems under ``out/sources_data`` and return the rows (or lines) of each.

    Re-running replaces the previous data completely, and removes the lake, the warehouse and the state
    store kiban made from it (``start_over``); every file is written atomically.
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    cfg = Config(scale=scale, seed=seed, end_date=end_date)
    start_over(Path(out))
    data = Path(out) / "sources_data"
    data.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        _build(con, cfg)
        counts = {f"pos.sqlite {t}": n for t, n in systems.write_pos(con, data / "pos.sqlite").items()}
        products = systems.bad_price(systems.product_rows(con))
        export = data / "master" / f"products_{cfg.end_date:%Y%m%d}.csv"
        counts[f"master/{export.name}"] = systems.write_product_export(export, systems.PRODUCT_COLUMNS, products)
        systems.remove_others(export.parent, "products_*.csv", {export.name})
        store_codes = [r[0] for r in con.execute("SELECT store_code FROM stores ORDER BY store_id").fetchall()]
        skus = [r[0] for r in con.execute("SELECT sku FROM products ORDER BY product_id").fetchall()]
        for name, n in systems.write_web_logs(data / "web", cfg.end_date, cfg.scale, cfg.seed, store_codes,
                                              skus).items():
            counts[f"web/{name}"] = n
        for name, n in systems.write_shift_sheets(con, data / "staff", cfg.end_date, cfg.seed).items():
            counts[f"staff/{name}"] = n
        write_initiative(con, cfg, Path(out))
    return counts


INITIATIVE = """\
# Written by generate.py (the pilot's dates follow the generated history): see docs/initiatives.md.
question: Does ordering deliveries from the demand forecast sell more?
hypothesis: >-
  Stores whose deliveries are ordered from mart.demand_forecast run out of stock less often than stores
  ordered by hand from last week's average, and complete more orders per day.
owner: stocking@shop.example
sponsor: Head of store operations
status: running
usecases: [demand_forecast]     # the forecast must be ready by 06:00 for the pilot to work
assets: [mart.demand_forecast]
kpi: {{metric: completed_orders, name: completed orders}}   # a metric of kiban.yml (`metrics:`)
unit: store
intervention:
  start: {start}           # the pilot's first day
  treated: [{treated}]
  # control: every other store (the default when treated is given); not randomised: difference-in-differences
value_per_unit: 1200            # gross margin of an average order, in yen
currency: JPY
"""


def write_initiative(con: duckdb.DuckDBPyConnection, cfg: Config, out: Path) -> dict[str, object]:
    """initiatives/replenishment.yml with the pilot's start and stores, and the planted truth next to the data
    (sources_data/planted.json): the effect per piloted store and day in completed orders."""
    import json

    treated = [r[0] for r in con.execute(
        "SELECT store_code FROM stores WHERE store_id % 2 = 0 ORDER BY store_id").fetchall()]
    planted = con.execute("SELECT avg(_planted) FROM store_days WHERE _planted IS NOT NULL").fetchone()
    completed = STATUS_WEIGHTS["completed"] / sum(STATUS_WEIGHTS.values())
    truth = {"initiative": "replenishment", "start": cfg.pilot_start.isoformat(), "treated": treated,
             "effect_per_store_day": float(planted[0] or 0.0) * completed, "uplift": PILOT_UPLIFT}
    folder = out / "initiatives"
    folder.mkdir(exist_ok=True)
    text = INITIATIVE.format(start=cfg.pilot_start.isoformat(), treated=", ".join(treated))
    tmp = folder / ".replenishment.yml.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, folder / "replenishment.yml")
    (out / "sources_data" / "planted.json").write_text(json.dumps(truth, indent=2), encoding="utf-8")
    return truth


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Generate the lake of the kiban shop example.")
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = about 1,000,000 order lines")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 42)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="project folder (default: this one)"
    )
    parser.add_argument(
        "--next-morning",
        action="store_true",
        help="add the next morning's deliveries to the sources written before (late POS updates, a new "
        "product export with one more column); run it between two `kiban run`s",
    )
    parser.add_argument(
        "--truth", action="store_true",
        help="print the effect planted for the replenishment initiative (sources_data/planted.json) and exit",
    )
    parser.add_argument(
        "--end-date",
        type=dt.date.fromisoformat,
        default=DEFAULT_END_DATE,
        help=f"last day (JST) of the 90-day history (default {DEFAULT_END_DATE})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    args = _parse_args(argv)
    started = time.perf_counter()
    if args.truth:
        import json

        truth = json.loads((Path(args.out) / "sources_data" / "planted.json").read_text(encoding="utf-8"))
        print(f"planted truth for {truth['initiative']}: {truth['effect_per_store_day']:+.2f} completed orders per "
              f"piloted store and day (+{truth['uplift']:.0%}), from {truth['start']}")
        return 0
    if args.next_morning:
        done = systems.next_morning(Path(args.out), args.end_date, args.seed)
        print(f"POS: orders {', '.join(map(str, done['returned_orders']))} returned this morning")
        print(f"master: {done['product_export']} ({done['products']:,} products, a new column jan_code)")
        return 0
    previous = [name for name in STATE if (Path(args.out) / name).exists()]
    counts = generate(args.out, scale=args.scale, seed=args.seed, end_date=args.end_date)
    if previous:
        print(f"started over: removed {', '.join(previous)} (made from the previous data)")
    elapsed = time.perf_counter() - started
    data = Path(args.out) / "sources_data"
    for name, rows in counts.items():
        print(f"{name:<34} {rows:>10,} rows  -> {data}")
    print(f"generated scale {args.scale} seed {args.seed} in {elapsed:.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
