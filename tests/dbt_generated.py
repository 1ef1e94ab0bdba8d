"""A generator of dbt projects (for tests and bench/dbt_import.py): seeds, staging views, a chain of
warehouse models and marts, project macros with adapter.dispatch, a custom generic test, tests of
every core kind, an exposure, a singular test, an incremental model, vars, env_var, aliases,
``{% for %}`` / ``{% if %}`` / ``{% set %}``; optionally dbt_utils macros when a copy of dbt-utils
is given to vendor.

Every model comes with its EXPECTED SQL, written here directly in DuckDB SQL without any Jinja and
reading the other models by their dbt names in one flat schema, so a test can compute what each
table must hold independently of the import's renderer.
"""

from __future__ import annotations

import csv
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

STATUSES = ["placed", "shipped", "completed", "returned"]
METHODS = ["credit_card", "coupon", "bank_transfer", "gift_card"]

MACROS = """\
{% macro cents_to_dollars(column, scale=2) -%}
    {{ return(adapter.dispatch('cents_to_dollars', 'gen_shop')(column, scale)) }}
{%- endmacro %}

{% macro default__cents_to_dollars(column, scale) -%}
    round({{ column }} / 100.0, {{ scale }})
{%- endmacro %}

{% macro duckdb__cents_to_dollars(column, scale) -%}
    round(cast({{ column }} as double) / 100, {{ scale }})
{%- endmacro %}

{% macro payment_methods() -%}
    {{ return(['credit_card', 'coupon', 'bank_transfer', 'gift_card']) }}
{%- endmacro %}

{% macro amount_band(column) -%}
    case {% for limit in [10, 20, 50] %}when {{ column }} < {{ limit }} then 'under_{{ limit }}'
    {% endfor %}else 'large' end
{%- endmacro %}
"""

GENERIC_TEST = """\
{% test is_positive(model, column_name) %}
select * from {{ model }} where {{ column_name }} <= 0
{% endtest %}
"""


@dataclass
class Generated:
    root: Path
    expected: dict[str, str] = field(default_factory=dict)  # dbt model name → plain DuckDB SQL (flat names)
    order: list[str] = field(default_factory=list)  # models in dependency order
    tests: int = 0
    seeds: list[str] = field(default_factory=list)


def _seeds(root: Path, rng: random.Random, customers: int, orders: int) -> None:
    (root / "seeds").mkdir(parents=True)
    with open(root / "seeds" / "raw_customers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "first_name", "last_name", "signup_date"])
        for i in range(1, customers + 1):
            w.writerow([i, rng.choice(["Aiko", "Ben", "Chen", "Dana", "Emi"]), f"L{i}",
                        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"])
    with open(root / "seeds" / "raw_orders.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "user_id", "order_date", "status"])
        for i in range(1, orders + 1):
            w.writerow([i, rng.randint(1, customers), f"2025-{rng.randint(1, 6):02d}-{rng.randint(1, 28):02d}",
                        rng.choice(STATUSES)])
    with open(root / "seeds" / "raw_payments.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "order_id", "payment_method", "amount"])
        pid = 0
        for i in range(1, orders + 1):
            for _ in range(rng.choice([1, 1, 2])):
                pid += 1
                w.writerow([pid, i, rng.choice(METHODS), rng.randint(100, 9000)])


def generate(root: Path, models: int = 36, seed: int = 0, dbt_utils: Path | None = None,
             customers: int = 60, orders: int = 200) -> Generated:
    """Write a dbt project of about ``models`` models into ``root`` (which must not exist)."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    gen = Generated(root, seeds=["raw_customers", "raw_orders", "raw_payments"])
    _seeds(root, rng, customers, orders)
    (root / "macros").mkdir()
    (root / "macros" / "shop.sql").write_text(MACROS)
    (root / "tests" / "generic").mkdir(parents=True)
    (root / "tests" / "generic" / "is_positive.sql").write_text(GENERIC_TEST)
    utils = dbt_utils is not None
    if utils:
        target = root / "dbt_packages" / "dbt_utils"
        target.mkdir(parents=True)
        shutil.copy(dbt_utils / "dbt_project.yml", target / "dbt_project.yml")
        shutil.copytree(dbt_utils / "macros", target / "macros")
        if (dbt_utils / "LICENSE").exists():
            shutil.copy(dbt_utils / "LICENSE", target / "LICENSE")
    (root / "dbt_project.yml").write_text(
        "name: gen_shop\nconfig-version: 2\nversion: '1.0'\nprofile: gen_shop\n"
        "vars:\n  min_amount: 5\n  include_returned: true\n"
        "models:\n  gen_shop:\n    +materialized: table\n    staging:\n      +materialized: view\n"
        "      +tags: [staging]\n")
    (root / "profiles.yml").write_text(
        "gen_shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: gen_shop.duckdb\n"
        "      threads: 1\n")
    models_dir = root / "models"
    (models_dir / "staging").mkdir(parents=True)
    (models_dir / "warehouse").mkdir()
    (models_dir / "marts").mkdir()
    sql: dict[str, tuple[str, str]] = {}  # name → (folder, jinja)
    props: list[str] = []

    sql["stg_customers"] = ("staging", "select id as customer_id, first_name, last_name, signup_date\n"
                                        "from {{ ref('raw_customers') }}\n")
    gen.expected["stg_customers"] = ("select id as customer_id, first_name, last_name, signup_date "
                                     "from raw_customers")
    sql["stg_orders"] = ("staging", "select id as order_id, user_id as customer_id, order_date, status\n"
                                     "from {{ ref('raw_orders') }}\n")
    gen.expected["stg_orders"] = "select id as order_id, user_id as customer_id, order_date, status from raw_orders"
    sql["stg_payments"] = ("staging", "select id as payment_id, order_id, payment_method,\n"
                                       "    {{ cents_to_dollars('amount') }} as amount\n"
                                       "from {{ ref('raw_payments') }}\n")
    gen.expected["stg_payments"] = ("select id as payment_id, order_id, payment_method, "
                                    "round(cast(amount as double) / 100, 2) as amount from raw_payments")
    props.append(_props("stg_customers", "customer_id", unique=True))
    props.append(_props("stg_orders", "order_id", unique=True,
                        extra="      - name: status\n        tests:\n          - accepted_values:\n"
                              f"              values: {STATUSES}\n"))
    props.append(_props("stg_payments", "payment_id", unique=True,
                        extra="      - name: amount\n        tests:\n          - is_positive\n"
                              "      - name: payment_method\n        tests:\n          - accepted_values:\n"
                              f"              values: {METHODS}\n              config:\n"
                              "                severity: warn\n"))
    gen.tests += 2 + 3 + 4
    # the order base every chain model keeps: order_id, customer_id, order_date, status, amount
    sql["int_orders"] = ("warehouse", """\
{% set methods = payment_methods() %}
with payments as (
    select order_id, sum(amount) as amount
    from {{ ref('stg_payments') }}
    group by order_id
)
select o.order_id, o.customer_id, o.order_date, o.status, coalesce(p.amount, 0) as amount
from {{ ref('stg_orders') }} as o
left join payments as p on o.order_id = p.order_id
""")
    gen.expected["int_orders"] = (
        "with payments as (select order_id, sum(amount) as amount from stg_payments group by order_id) "
        "select o.order_id, o.customer_id, o.order_date, o.status, coalesce(p.amount, 0) as amount "
        "from stg_orders as o left join payments as p on o.order_id = p.order_id")
    props.append(_props("int_orders", "order_id", unique=True,
                        extra="      - name: customer_id\n        tests:\n          - relationships:\n"
                              "              to: ref('stg_customers')\n              field: customer_id\n"))
    gen.tests += 3
    chain = ["int_orders"]
    n_chain = max(1, (models - 4) // 2)
    n_marts = max(1, models - 4 - n_chain)
    for i in range(n_chain):
        prev = rng.choice(chain[-3:])
        name = f"int_chain_{i}"
        kind = i % 6
        if kind == 0:
            jinja = ("{% set floor = var('min_amount') %}\nselect * from {{ ref('" + prev + "') }}\n"
                     "where amount >= {{ floor }}\n")
            expected = f"select * from {prev} where amount >= 5"
        elif kind == 1:
            jinja = ("select * from {{ ref('" + prev + "') }}\n"
                     "{% if not var('include_returned') %}where status <> 'returned'{% endif %}\n")
            expected = f"select * from {prev}"
        elif kind == 2:
            jinja = ("{{ config(materialized='view') }}\nselect order_id, customer_id, order_date,\n"
                     "    '{{ env_var('GEN_STATUS_PREFIX', 's_') }}' || status as status, amount\n"
                     "from {{ ref('gen_shop', '" + prev + "') }}\n")
            expected = f"select order_id, customer_id, order_date, 's_' || status as status, amount from {prev}"
        elif kind == 3:
            jinja = ("{{ config(materialized='incremental', unique_key='order_id') }}\n"
                     "select * from {{ ref('" + prev + "') }}\n{% if is_incremental() %}\n"
                     "where order_date > (select max(order_date) from {{ this }})\n{% endif %}\n")
            expected = f"select * from {prev}"
        elif kind == 4:
            jinja = ("select order_id, customer_id, order_date, status,\n"
                     "    {% for m in [1] %}amount * {{ m }}{% endfor %} as amount\n"
                     "from {{ ref('" + prev + "') }}\n")
            expected = f"select order_id, customer_id, order_date, status, amount * 1 as amount from {prev}"
        else:
            jinja = ("select *, {{ amount_band('amount') }} as band\nfrom {{ ref('" + prev + "') }}\n")
            jinja = ("with banded as (" + jinja + ")\nselect order_id, customer_id, order_date, status, amount "
                     "from banded where band is not null\n")
            expected = f"select order_id, customer_id, order_date, status, amount from {prev}"
        sql[name] = ("warehouse", jinja)
        gen.expected[name] = expected
        props.append(_props(name, "order_id", unique=True))
        gen.tests += 2
        chain.append(name)
    marts: list[str] = []
    for i in range(n_marts):
        src = rng.choice(chain)
        name = f"mart_{i}"
        kind = i % 4
        if kind == 0:
            jinja = ("select customer_id,\n{% for s in " + repr(STATUSES) + " %}"
                     "    sum(case when status like '%{{ s }}' then amount else 0 end) as {{ s }}_amount,\n"
                     "{% endfor %}    count(*) as orders\nfrom {{ ref('" + src + "') }}\ngroup by customer_id\n")
            expected = ("select customer_id, " + "".join(
                f"sum(case when status like '%{s}' then amount else 0 end) as {s}_amount, " for s in STATUSES)
                + f"count(*) as orders from {src} group by customer_id")
            props.append(_props(name, "customer_id", unique=True))
            gen.tests += 2
        elif kind == 1:
            jinja = ("{{ config(alias='daily_" + str(i) + "') }}\nselect order_date, count(*) as orders, "
                     "sum(amount) as amount\nfrom {{ ref('" + src + "') }}\ngroup by order_date\n")
            expected = f"select order_date, count(*) as orders, sum(amount) as amount from {src} group by order_date"
            props.append(_props(name, "order_date", unique=True))
            gen.tests += 2
        elif kind == 2:
            jinja = ("select c.customer_id, c.first_name, count(o.order_id) as orders\n"
                     "from {{ ref('stg_customers') }} as c\nleft join {{ ref('" + src + "') }} as o "
                     "on c.customer_id = o.customer_id\ngroup by c.customer_id, c.first_name\n")
            expected = (f"select c.customer_id, c.first_name, count(o.order_id) as orders from stg_customers as c "
                        f"left join {src} as o on c.customer_id = o.customer_id group by c.customer_id, c.first_name")
            props.append(_props(name, "customer_id", unique=True,
                                extra="      - name: orders\n        tests:\n          - not_null:\n"
                                      "              config:\n                where: \"orders > 0\"\n"))
            gen.tests += 3
        else:
            if utils:
                jinja = ("select {{ dbt_utils.generate_surrogate_key(['order_id', 'status']) }} as order_key,\n"
                         "    {{ dbt_utils.star(ref('" + src + "'), except=['status']) }}\n"
                         "from {{ ref('" + src + "') }}\n")
                expected = None
            else:
                jinja = ("select md5(cast(order_id as varchar)) as order_key, order_id, customer_id, order_date, "
                         "amount\nfrom {{ ref('" + src + "') }}\n")
                expected = (f"select md5(cast(order_id as varchar)) as order_key, order_id, customer_id, order_date, "
                            f"amount from {src}")
            props.append(_props(name, "order_key", unique=True))
            gen.tests += 2
            if expected is None:
                expected = ""
        sql[name] = ("marts", jinja)
        gen.expected[name] = expected
        marts.append(name)
    if utils:
        sql["mart_spine"] = ("marts", "{{ dbt_utils.date_spine(datepart='day', "
                             "start_date=\"cast('2025-01-01' as date)\", end_date=\"cast('2025-02-01' as date)\") }}\n")
        gen.expected["mart_spine"] = ""
        sql["mart_pivot"] = ("marts", "select customer_id,\n  {{ dbt_utils.pivot('payment_method', "
                             "dbt_utils.get_column_values(ref('stg_payments'), 'payment_method', "
                             "order_by='payment_method')) }}\nfrom {{ ref('stg_payments') }} as p\n"
                             "join {{ ref('stg_orders') }} as o on p.order_id = o.order_id\ngroup by customer_id\n")
        gen.expected["mart_pivot"] = ""
        sql["mart_union"] = ("marts", "{{ dbt_utils.union_relations(relations=[ref('stg_orders'), "
                             "ref('stg_customers')], source_column_name=none) }}\n")
        gen.expected["mart_union"] = ""
        index = next(i for i, p in enumerate(props) if p.startswith("  - name: mart_0\n"))
        props[index] = props[index].replace(
            "    columns:\n", "    tests:\n      - dbt_utils.unique_combination_of_columns:\n"
            "          combination_of_columns: [customer_id, orders]\n"
            "      - dbt_utils.expression_is_true:\n          expression: \"orders >= 0\"\n    columns:\n"
            "      - name: orders\n        tests:\n          - dbt_utils.accepted_range:\n"
            "              min_value: 0\n          - dbt_utils.not_constant\n", 1)
        gen.tests += 4
    for name, (folder, text) in sql.items():
        (models_dir / folder / f"{name}.sql").write_text(text)
    (models_dir / "schema.yml").write_text("version: 2\n\nmodels:\n" + "".join(props) + (
        "\nexposures:\n  - name: weekly_review\n    type: dashboard\n    owner:\n      name: Shop analysts\n"
        "      email: analysts@example.com\n    description: The weekly review of sales.\n    depends_on:\n"
        f"      - ref('{marts[0]}')\n"))
    (root / "tests" / "assert_amounts_positive.sql").write_text(
        "select * from {{ ref('int_orders') }} where amount < 0\n")
    gen.tests += 1
    gen.order = list(sql)
    return gen


def _props(name: str, key: str, unique: bool, extra: str = "") -> str:
    tests = "          - not_null\n" + ("          - unique\n" if unique else "")
    return (f"  - name: {name}\n    description: Generated model {name}.\n    columns:\n"
            f"      - name: {key}\n        tests:\n{tests}{extra}")
