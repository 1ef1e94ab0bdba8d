"""Demand per store and product, and the model that forecasts it for the next day.

Two Python assets in one file (kiban reads them without importing it; see docs/ml.md):

* ``warehouse.daily_demand`` — units sold per store, product and day over the last weeks, zero on days
  without a sale, plus one row per pair for tomorrow; each row carries the features known the evening before.
  Only the pairs that sell every day or so are forecast (``MIN_UNITS``): a product a store sells twice a month
  is restocked by its reorder point, not by a daily forecast — and there is nothing to learn from its zeros.
* ``warehouse.demand_model`` — a gradient-boosted regressor trained on those rows. The last two weeks are the
  hold-out: a new version becomes current only if its skill there (how much it beats the naive forecast) is
  higher than the current version's, and at least 0.02 (the gate's threshold).
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
HOLDOUT_DAYS = 14  # the newest days: the hold-out the promotion gate compares versions on (two weeks: steadier)
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


def mse(actual: pd.Series, forecast: pd.Series) -> float:
    """Mean squared error: a forecast of the expected units minimises it (a forecast of zero does not)."""
    return float(((forecast - actual) ** 2).mean())


@kiban.train(metric="skill", direction="max", threshold=0.02)
def demand_model(daily_demand: pd.DataFrame) -> kiban.Trained:
    """Next-day units per store and product.

    ``skill`` is 1 - MSE / MSE of the naive forecast (last week's average) on the hold-out weeks: the share of
    the naive forecast's squared error the model removes. A version is promoted only if its skill beats the
    current version's and is at least 0.02 (``threshold``, the first version too). Squared error, not
    absolute: most pairs sell 0 or 1 unit a day, and the forecast with the least absolute error would be 0
    everywhere, useless for stocking.

    Deterministic: the same rows give the same model and the same metrics (a fixed sample, a fixed seed for
    the booster's validation split, one thread).
    """
    known = daily_demand.dropna(subset=["qty", "lag_7"])
    cut = known["day"].max() - pd.Timedelta(days=HOLDOUT_DAYS)
    train, holdout = known[known["day"] <= cut], known[known["day"] > cut]
    if len(train) > TRAINING_ROWS:
        train = train.sample(TRAINING_ROWS, random_state=0)
    # small trees, at least 50 rows a leaf: the small shops (scale 0.01, a few stores) have little to learn from
    params = {"max_iter": 100, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 50,
              "loss": "poisson"}
    model = HistGradientBoostingRegressor(**params, random_state=0)
    with threadpool_limits(limits=1):  # kiban runs other assets beside it; OpenMP threads would only contend
        model.fit(train[FEATURES], train["qty"])
    predicted = pd.Series(model.predict(holdout[FEATURES]).clip(0), index=holdout.index)
    error, naive = mse(holdout["qty"], predicted), mse(holdout["qty"], holdout["mean_7"])
    units = max(float(holdout["qty"].sum()), 1.0)
    metrics = {"skill": 1 - error / naive if naive else 0.0, "mse": error, "mse_naive": naive,
               "mae": float((predicted - holdout["qty"]).abs().mean()),
               "wape": float((predicted - holdout["qty"]).abs().sum() / units)}
    return kiban.Trained(model, metrics, params, features=train[FEATURES])
