"""Demand per store and product, and the model that forecasts it for the next day.

Two Python assets in one file (kiban reads them without importing it; see docs/ml.md):

* ``warehouse.daily_demand`` — units sold per store, product and day over the last weeks, zero on days
  without a sale, plus one row per pair for tomorrow; each row carries the features known the evening before.
  Only the pairs that sell every day or so are forecast (``MIN_UNITS``): a product a store sells twice a month
  is restocked by its reorder point, not by a daily forecast — and there is nothing to learn from its zeros.
* ``warehouse.demand_model`` — a gradient-boosted regressor trained on those rows. The last week is the
  hold-out: a new version becomes current only if its skill there (how much it beats the naive forecast) is
  higher than the current version's.
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pyarrow as pa
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

import kiban

FEATURES = ["store_id", "product_id", "weekday", "lag_1", "lag_7", "mean_7", "mean_28"]
HISTORY_DAYS = 56  # the window of days the features and the model are built from
MIN_UNITS = 28  # a pair is forecast when it sold at least this many units in the window (one every other day)
HOLDOUT_DAYS = 7  # the newest days: the hold-out the promotion gate compares versions on
TRAINING_ROWS = 300_000  # a fixed sample of the training rows keeps a training within seconds

DAILY_DEMAND = f"""
WITH last AS (SELECT max(order_date) AS last_day FROM lines),
sold AS (
    SELECT store_id, product_id, order_date AS day, CAST(sum(quantity) AS INTEGER) AS qty
    FROM lines, last
    WHERE order_status = 'completed' AND order_date > last_day - {HISTORY_DAYS}
    GROUP BY ALL
),
pairs AS (SELECT store_id, product_id FROM sold GROUP BY ALL HAVING sum(qty) >= {MIN_UNITS}),
grid AS (  -- every such pair on every day of the window, and tomorrow
    SELECT p.store_id, p.product_id, CAST(d.day AS DATE) AS day
    FROM pairs AS p,
         (SELECT unnest(generate_series(last_day - {HISTORY_DAYS - 1}, last_day + 1, INTERVAL 1 DAY)) AS day
          FROM last) AS d
),
daily AS (
    SELECT g.store_id, g.product_id, g.day,
           CASE WHEN g.day <= last_day THEN coalesce(s.qty, 0) END AS qty
    FROM grid AS g CROSS JOIN last
    LEFT JOIN sold AS s USING (store_id, product_id, day)
)
SELECT store_id, product_id, day, isodow(day) AS weekday, qty,
       lag(qty, 1) OVER w AS lag_1,
       lag(qty, 7) OVER w AS lag_7,
       avg(qty) OVER (w ROWS BETWEEN 7 PRECEDING AND 1 PRECEDING) AS mean_7,
       avg(qty) OVER (w ROWS BETWEEN 28 PRECEDING AND 1 PRECEDING) AS mean_28
FROM daily
WINDOW w AS (PARTITION BY store_id, product_id ORDER BY day)
ORDER BY day, store_id, product_id
"""


@kiban.asset
def daily_demand(warehouse_order_lines: pa.Table) -> pa.Table:
    """Units sold per store, product and day, with the features of each day (tomorrow's qty is empty)."""
    con = duckdb.connect()
    try:
        con.register("lines", warehouse_order_lines)
        return con.execute(DAILY_DEMAND).to_arrow_table()
    finally:
        con.close()


def mae(actual: pd.Series, forecast: pd.Series) -> float:
    """Mean absolute error: units forecast wrong per store, product and day."""
    return float((forecast - actual).abs().mean())


@kiban.train(metric="skill", direction="max")
def demand_model(daily_demand: pd.DataFrame) -> kiban.Trained:
    """Next-day units per store and product.

    ``skill`` is 1 - MAE / MAE of the naive forecast (last week's average) on the hold-out week: above 0 the
    model beats the naive forecast. A new version is promoted only if its skill is higher than the current one's.
    (``threshold=0.0`` would also refuse a first version that does not beat the naive forecast; the demo leaves
    it out so that its forecast exists whatever data the generator makes.)
    """
    known = daily_demand.dropna(subset=["qty", "lag_7"])
    cut = known["day"].max() - pd.Timedelta(days=HOLDOUT_DAYS)
    train, holdout = known[known["day"] <= cut], known[known["day"] > cut]
    if len(train) > TRAINING_ROWS:
        train = train.sample(TRAINING_ROWS, random_state=0)
    params = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31, "loss": "poisson"}
    model = HistGradientBoostingRegressor(**params, random_state=0)
    with threadpool_limits(limits=1):  # kiban runs other assets beside it; OpenMP threads would only contend
        model.fit(train[FEATURES], train["qty"])
    predicted = pd.Series(model.predict(holdout[FEATURES]).clip(0), index=holdout.index)
    error, naive = mae(holdout["qty"], predicted), mae(holdout["qty"], holdout["mean_7"])
    metrics = {"skill": 1 - error / naive if naive else 0.0, "mae": error, "mae_naive": naive,
               "wape": float((predicted - holdout["qty"]).abs().sum() / max(holdout["qty"].sum(), 1))}
    return kiban.Trained(model, metrics, params, features=train[FEATURES])
