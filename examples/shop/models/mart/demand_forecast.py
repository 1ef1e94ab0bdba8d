"""Tomorrow's demand per store and product, from the current version of warehouse.demand_model.

The last week is scored too (the model's out-of-sample hold-out, yesterday included): the sidecar's accuracy
check compares those forecasts with what was really sold, and its drift check compares the features with the
training data. ``data_through`` is the last day of sales the forecast was made from: the use case
``demand_forecast`` needs it to be yesterday (a forecast made from stale sales is not ready, however new).
"""

from __future__ import annotations

import pandas as pd

import kiban

BACKTEST_DAYS = 7


@kiban.score(model="warehouse.demand_model")
def demand_forecast(model, warehouse_daily_demand: pd.DataFrame) -> pd.DataFrame:
    df = warehouse_daily_demand
    tomorrow = df["day"].max()
    rows = df[df["day"] > tomorrow - pd.Timedelta(days=BACKTEST_DAYS + 1)].copy()
    rows["forecast_qty"] = model.predict(rows[list(model.feature_names_in_)]).clip(0).round(2)
    rows["kind"] = (rows["day"] == tomorrow).map({True: "next_day", False: "backtest"})
    rows["data_through"] = tomorrow - pd.Timedelta(days=1)
    return rows[["day", "store_id", "product_id", "kind", "forecast_qty", "data_through",
                 "lag_1", "lag_7", "mean_7", "mean_28"]]
