"""Checks of models: feature drift against the training data, and accuracy once actuals arrive."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import write_parquet

from kiban.errors import ProjectError
from kiban.ml.drift import baseline, ks, psi
from kiban.project import load_project
from tests.helpers.ml import SHIFTED, make_ml_project, query, run

DRIFT = "checks:\n  - drift: {model: demand_model, psi: 0.25, ks: 0.3}\n    severity: SEVERITY\n"
ACCURACY = ("checks:\n  - accuracy: {actuals: warehouse.demand_features, on: [store_id, day], predicted: forecast, "
            "actual: qty, metric: mape, max: MAX}\n    severity: warn\n")


def results(root, check):
    engine = sa.create_engine(f"sqlite:///{root}/.kiban/state.db")
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("select status, severity, detail, observed from check_results "
                                        "where check_name = :c order by id"), {"c": check}).fetchall()
    finally:
        engine.dispose()


def shift_the_sales(root):
    write_parquet(root / "lake/sales/part-0.parquet", SHIFTED)


def test_a_shifted_feature_distribution_is_flagged(make_project):
    root = make_ml_project(make_project, sidecar=DRIFT.replace("SEVERITY", "warn"))
    assert run(root).status == "success"
    [first] = results(root, "drift")
    assert first.status == "pass"
    assert "against warehouse.demand_model v1" in first.detail
    shift_the_sales(root)
    scored = run(root, "warehouse.demand_features", "mart.demand_forecast")  # scored daily, not retrained
    assert scored.status == "success"  # a warning does not block
    latest = results(root, "drift")[-1]
    assert latest.status == "fail"
    assert latest.severity == "warn"
    assert "lag7: PSI" in latest.detail
    assert "(drifted)" in latest.detail
    assert "store_id: PSI 0.000" in latest.detail  # the stores did not change
    assert '"version": 1' in latest.observed


@pytest.mark.parametrize(("limits", "judged"), [
    ("psi: 0.25", "PSI ≤ 0.25)"),  # KS is not judged unless given
    ("psi: 1000, ks: 0.3", "PSI ≤ 1000, KS ≤ 0.3)"),  # PSI could never fail: KS alone flags it
])
def test_psi_and_ks_each_flag_the_shift_on_their_own(make_project, limits, judged):
    sidecar = f"checks:\n  - drift: {{model: demand_model, columns: [lag7], {limits}}}\n    severity: warn\n"
    root = make_ml_project(make_project, sidecar=sidecar)
    run(root)
    shift_the_sales(root)
    run(root, "warehouse.demand_features", "mart.demand_forecast")
    latest = results(root, "drift")[-1]
    assert latest.status == "fail", latest.detail
    assert judged in latest.detail, latest.detail
    measured = json.loads(latest.observed)["columns"]["lag7"]
    assert measured["psi"] > 0.25
    assert measured["ks"] > 0.3


def test_drift_of_severity_error_keeps_the_old_predictions(make_project):
    root = make_ml_project(make_project, sidecar=DRIFT.replace("SEVERITY", "error"))
    run(root)
    before = query(root, "select * from mart.demand_forecast order by all")
    shift_the_sales(root)
    result = run(root, "warehouse.demand_features", "mart.demand_forecast")
    assert result.status == "failed"
    assert "blocking check failed" in result.outcomes["mart.demand_forecast"].error
    assert query(root, "select * from mart.demand_forecast order by all") == before


def test_accuracy_once_the_actuals_are_there(make_project):
    root = make_ml_project(make_project, sidecar=ACCURACY.replace("MAX", "0.5"))
    run(root)
    [passed] = results(root, "accuracy")
    assert passed.status == "pass"
    assert passed.detail.startswith("MAPE ")
    assert "over 565 predictions" in passed.detail
    (root / "models/mart/demand_forecast.yml").write_text(ACCURACY.replace("MAX", "0.0001"))
    checked = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "kiban", "--project", str(root), "check", "mart.demand_forecast"],
        capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr  # a warning
    failed = results(root, "accuracy")[-1]
    assert failed.status == "fail"
    assert "(max 0.0%)" in failed.detail


def test_accuracy_without_actuals_yet_passes_and_says_so(make_project):
    sidecar = ACCURACY.replace("warehouse.demand_features", "warehouse.actuals").replace("MAX", "0.1")
    root = make_ml_project(make_project, sidecar=sidecar)
    (root / "models/warehouse/actuals.sql").write_text(
        "select store_id, day, qty from warehouse.demand_features where day > date '2030-01-01'")
    assert run(root).status == "success"
    [result] = results(root, "accuracy")
    assert result.status == "pass"
    assert result.detail == "no actuals yet in warehouse.actuals for these predictions"


def test_a_wrong_column_in_an_accuracy_check_names_the_sidecar(make_project):
    root = make_ml_project(make_project, sidecar=ACCURACY.replace("actual: qty", "actual: quantity")
                           .replace("MAX", "0.5"))
    result = run(root)
    error = result.outcomes["mart.demand_forecast"].error
    assert "demand_forecast.yml:2" in error
    assert "cannot compare with warehouse.demand_features" in error


def test_model_check_declarations_are_validated_when_the_project_loads(make_project):
    root = make_ml_project(make_project, sidecar="checks:\n  - drift: {model: m, psi: -1}\n")
    with pytest.raises(ProjectError, match=r"demand_forecast.yml:2"):
        load_project(root)


def test_psi_and_ks_tell_a_shift_from_noise():
    rng = np.random.default_rng(7)
    reference = baseline({"x": rng.normal(10, 2, 5000), "d": rng.integers(0, 3, 5000)})
    same, moved = rng.normal(10, 2, 3000), rng.normal(12, 2, 3000)
    assert psi(reference["x"], same) < 0.02
    assert ks(reference["x"], same) < 0.05
    assert psi(reference["x"], moved) > 0.25
    assert ks(reference["x"], moved) > 0.3
    # a discrete feature: the same categories in the same shares do not drift; a shift by one does
    assert ks(reference["d"], rng.integers(0, 3, 3000)) < 0.05
    assert ks(reference["d"], rng.integers(1, 4, 3000)) > 0.3
    assert baseline({"text": ["a", "b"]}) == {}  # non-numeric features keep no distribution
