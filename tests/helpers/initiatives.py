"""An initiative's project: daily sales per store, a use case, and an initiative whose effect is planted in the
data (shared by the initiative and team tests)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from kiban.value.simulate import Scenario, panel
from tests.conftest import write_parquet

BASE = {
    "models/mart/daily_sales.sql": "select day, store, sales from lake.sales\n",
    "usecases/stocking.yml": "assets: [mart.daily_sales]\nneed: {by: \"06:00\", on: every_day}\n",
}
LAKE = {"sales": "select date '2026-01-01' + i::int as day, 'S' || (i % 4) as store, 100.0 as sales "
                  "from range(0, 40) t(i)"}
GOOD = """\
question: Does replenishing from the forecast sell more?
hypothesis: fewer stock-outs
owner: stocking
status: running
usecases: [stocking]
assets: [daily_sales]
kpi: {asset: daily_sales, date: day, unit: store, value: sales, name: sales, measure: yen}
intervention: {start: 2026-01-20, treated: [S0, S1]}
value_per_unit: 0.3
currency: JPY
"""


def write_planted(root: Path) -> tuple[float, date]:
    p = panel(7, Scenario(units=40, days=300, start_day=200, effect=30.0))
    rows = [(d.isoformat(), u, float(v)) for i, u in enumerate(p.panel.units)
            for d, v in zip(p.panel.days, p.panel.values[i], strict=True)]
    csv = root / "sales.csv"
    csv.write_text("day,store,sales\n" + "\n".join(f"{d},{u},{v}" for d, u, v in rows), encoding="utf-8")
    write_parquet(root / "lake" / "sales" / "part-0.parquet",
                  f"select cast(day as date) as day, store, sales from read_csv_auto('{csv}')")
    csv.unlink()
    treated = ", ".join(p.treated)
    (root / "initiatives").mkdir(exist_ok=True)
    (root / "initiatives" / "replenish.yml").write_text(
        GOOD.replace("2026-01-20", p.start.isoformat()).replace("S0, S1", treated), encoding="utf-8")
    return 30.0, p.start
