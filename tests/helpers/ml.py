"""A small forecasting project shared by the tests of machine learning (tests/test_ml_*.py), and ``run``: `kiban run`
in this process with the checks' gate (shared with tests/test_python_assets.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kiban.checks.gate import gate_for
from kiban.ml.registry import ModelVersion, open_registry
from kiban.project import load_project
from kiban.run.runner import RunOptions, RunResult, run_project
from tests.helpers.warehouse import query

__all__ = ["SALES", "SHIFTED", "make_ml_project", "query", "run", "set_algo", "versions"]

# 5 stores × 120 days; demand depends on the store and the weekday, plus a little deterministic noise
SALES = ("select (i % 5) as store_id, date '2026-01-01' + (i // 5)::int as day, "
         "(10 + (i % 5) * 4 + (isodow(date '2026-01-01' + (i // 5)::int) >= 6)::int * 6 + (i * 37 % 11) % 4)::double "
         "as qty from range(600) t(i)")
SHIFTED = SALES.replace("(10 + (i % 5) * 4", "(60 + (i % 5) * 4")  # the same stores suddenly sell 50 more a day

FEATURES = '''
import kiban
import pandas as pd


@kiban.asset
def demand_features(lake_sales: pd.DataFrame) -> pd.DataFrame:
    df = lake_sales.sort_values(["store_id", "day"]).copy()
    df["weekend"] = (pd.to_datetime(df["day"]).dt.day_of_week >= 5).astype(int)
    df["lag7"] = df.groupby("store_id")["qty"].shift(7)
    return df.dropna().reset_index(drop=True)
'''

TRAIN = '''
import kiban
import pandas as pd
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression

ALGO = "linear"
FEATURES = ["store_id", "weekend", "lag7"]


@kiban.train(metric="mape", direction="min"THRESHOLD)
def demand_model(warehouse_demand_features: pd.DataFrame) -> kiban.Trained:
    df = warehouse_demand_features.sort_values("day")
    cut = df["day"].quantile(0.8)
    train, test = df[df["day"] <= cut], df[df["day"] > cut]
    model = LinearRegression() if ALGO == "linear" else DummyRegressor(strategy="mean")
    model.fit(train[FEATURES], train["qty"])
    mape = float(((model.predict(test[FEATURES]) - test["qty"]).abs() / test["qty"]).mean())
    return kiban.Trained(model, {"mape": mape}, {"algo": ALGO}, features=train[FEATURES])
'''

SCORE = '''
import kiban
import pandas as pd


@kiban.score(model="warehouse.demand_model")
def demand_forecast(model, warehouse_demand_features: pd.DataFrame) -> pd.DataFrame:
    df = warehouse_demand_features.copy()
    df["forecast"] = model.predict(df[["store_id", "weekend", "lag7"]])
    return df[["store_id", "day", "weekend", "lag7", "forecast"]]
'''


def make_ml_project(make_project: Callable[..., Path], threshold: float | None = None,
                    sidecar: str | None = None, root: str = "project") -> Path:
    files = {
        "models/warehouse/features.py": FEATURES,
        "models/warehouse/demand_model.py": TRAIN.replace(
            "THRESHOLD", f", threshold={threshold}" if threshold is not None else ""),
        "models/mart/demand_forecast.py": SCORE,
    }
    if sidecar:
        files["models/mart/demand_forecast.yml"] = sidecar
    return make_project(files, lake={"sales": SALES}, root=root)


def set_algo(root: Path, algo: str) -> None:
    path = root / "models/warehouse/demand_model.py"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('ALGO = "linear"', f'ALGO = "{algo}"').replace('ALGO = "dummy"', f'ALGO = "{algo}"'),
                    encoding="utf-8")


def versions(root: Path, model: str = "warehouse.demand_model") -> list[ModelVersion]:
    """Every version of ``model`` in the project's registry, oldest first."""
    registry = open_registry(root)
    try:
        return registry.versions(model)
    finally:
        registry.store.close()


def run(root: Path, *select: str) -> RunResult:
    """``kiban run`` in this process, with the checks' gate."""
    project = load_project(root)
    gate = gate_for(project)
    try:
        return run_project(project, RunOptions(select=select), audit=gate, after=gate.after if gate else None)
    finally:
        if gate:
            gate.close()
