"""Training assets, the model registry, the promotion gate, scoring, and the trust rule for artefacts."""

from __future__ import annotations

import json

import joblib
import pytest
import sqlalchemy as sa

from kiban.ml.artefact import UntrustedArtefact, sha256_of
from kiban.ml.promotion import decide
from kiban.ml.registry import open_registry
from kiban.ml.training import data_fingerprint
from tests.helpers.ml import make_ml_project, query, run, set_algo, versions

MODEL = "warehouse.demand_model"


def test_train_register_promote_score_end_to_end(make_project):
    root = make_ml_project(make_project)
    result = run(root)
    assert result.status == "success", {k: o.error for k, o in result.outcomes.items()}
    [v1] = versions(root)
    assert (v1.version, v1.status) == (1, "current")
    assert v1.reason == f"no current version to beat: mape {v1.metric_value:.4g}"
    assert 0 < v1.metrics["mape"] < 0.2
    assert v1.params == {"algo": "linear"}
    assert set(v1.baseline) == {"store_id", "weekend", "lag7"}
    assert len(v1.data_fingerprint) == 64
    assert len(v1.code_fingerprint) == 64
    artefact = root / ".kiban/models" / v1.artefact
    assert artefact == root / ".kiban/models/warehouse.demand_model/1.joblib"
    assert sha256_of(artefact) == v1.sha256
    # the training asset publishes the row of the version it trained
    assert query(root, "select version, status, current_version from warehouse.demand_model") == [(1, "current", 1)]
    # the scoring asset used it: its predictions are the model's
    registry = open_registry(root)
    try:
        _, model = registry.load(MODEL)
    finally:
        registry.store.close()
    rows = query(root, "select store_id, weekend, lag7, forecast from mart.demand_forecast")
    assert len(rows) == 565
    predicted = model.predict(__import__("pandas").DataFrame([r[:3] for r in rows],
                                                              columns=["store_id", "weekend", "lag7"]))
    assert max(abs(p - r[3]) for p, r in zip(predicted, rows, strict=True)) < 1e-9


def test_an_unchanged_training_does_not_retrain_and_a_changed_one_does(make_project):
    root = make_ml_project(make_project)
    run(root)
    again = run(root)
    assert again.status == "nothing"
    assert MODEL in again.plan.fresh
    assert len(versions(root)) == 1
    path = root / "models/warehouse/demand_model.py"
    path.write_text(path.read_text().replace("cut = df", "# a comment changes the code\n    cut = df"))
    changed = run(root)
    assert MODEL in changed.plan.build
    assert "mart.demand_forecast" in changed.plan.build
    assert [v.version for v in versions(root)] == [1, 2]


def test_a_worse_model_is_rejected_and_the_current_one_stays(make_project):
    root = make_ml_project(make_project)
    run(root)
    before = query(root, "select * from mart.demand_forecast order by all")
    set_algo(root, "dummy")  # predicts the mean: a far worse MAPE
    result = run(root)
    assert result.status == "success"
    v1, v2 = versions(root)
    assert (v1.status, v2.status) == ("current", "rejected")
    assert v2.metric_value > v1.metric_value
    assert v2.reason == (f"mape {v2.metric_value:.4g} is not better than current v1's {v1.metric_value:.4g} "
                         "(lower is better)")
    assert query(root, "select version, status, current_version from warehouse.demand_model") == [(2, "rejected", 1)]
    assert query(root, "select * from mart.demand_forecast order by all") == before  # still scored with v1
    set_algo(root, "linear")  # the same code as v1 again: a new version, no better, so rejected too
    run(root)
    assert [v.status for v in versions(root)] == ["current", "rejected", "rejected"]


def test_a_better_model_replaces_the_current_one_which_is_retired(make_project):
    root = make_ml_project(make_project)
    set_algo(root, "dummy")
    run(root)
    set_algo(root, "linear")
    run(root)
    v1, v2 = versions(root)
    assert (v1.status, v2.status) == ("retired", "current")
    assert v1.reason.startswith("replaced by v2: mape")


def test_a_threshold_is_required_even_of_the_first_version(make_project):
    root = make_ml_project(make_project, threshold=0.001)
    result = run(root)
    [v1] = versions(root)
    assert v1.status == "rejected"
    assert "does not meet the threshold (at most 0.001)" in v1.reason
    assert result.outcomes[MODEL].status == "success"
    error = result.outcomes["mart.demand_forecast"].error
    assert "warehouse.demand_model has no current version in the registry" in error


def test_a_tampered_artefact_is_refused(make_project):
    root = make_ml_project(make_project)
    run(root)
    before = query(root, "select * from mart.demand_forecast order by all")
    artefact = root / ".kiban/models/warehouse.demand_model/1.joblib"
    artefact.write_bytes(artefact.read_bytes() + b"\0")
    (root / "models/mart/demand_forecast.py").write_text(
        (root / "models/mart/demand_forecast.py").read_text() + "\n# rescore\n")
    result = run(root)
    error = result.outcomes["mart.demand_forecast"].error
    assert result.status == "failed"
    assert "refusing to load warehouse.demand_model v1" in error
    assert "the file was changed or replaced" in error
    assert query(root, "select * from mart.demand_forecast order by all") == before  # the old predictions stay


class Payload:
    """A pickle that runs code when it is loaded: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_replaced_artefact_never_runs_its_code(make_project, tmp_path):
    root = make_ml_project(make_project)
    run(root)
    marker = tmp_path / "the payload ran"
    artefact = root / ".kiban/models/warehouse.demand_model/1.joblib"
    joblib.dump(Payload(marker), artefact)  # an attacker swaps the model for a pickle of their own
    rescore = root / "models/mart/demand_forecast.py"
    rescore.write_text(rescore.read_text() + "\n# rescore\n")
    result = run(root)
    assert "refusing to load warehouse.demand_model v1" in result.outcomes["mart.demand_forecast"].error
    assert not marker.exists()  # refused before a byte of it was unpickled
    joblib.load(artefact)  # what loading it unchecked would have done
    assert marker.exists()


def test_an_artefact_outside_the_registry_folder_is_refused(make_project, tmp_path):
    root = make_ml_project(make_project)
    run(root)
    [v1] = versions(root)
    outside = tmp_path / "evil.joblib"
    outside.write_bytes((root / ".kiban/models" / v1.artefact).read_bytes())
    registry = open_registry(root)
    try:
        with registry.store.engine.begin() as conn:  # a store row pointing out of the folder, with a matching hash
            conn.execute(sa.text("update model_versions set artefact = :a"), {"a": "../../../evil.joblib"})
        with pytest.raises(UntrustedArtefact, match="outside the registry folder"):
            registry.load(MODEL)
    finally:
        registry.store.close()


def test_the_registry_keeps_what_was_trained_and_why(make_project, cli):
    root = make_ml_project(make_project)
    run(root)
    set_algo(root, "dummy")
    run(root)
    listed = cli("--project", root, "models", "list")
    assert listed.returncode == 0, listed.stderr
    assert "warehouse.demand_model" in listed.stdout
    assert "v1" in listed.stdout
    shown = cli("--project", root, "models", "show", "demand_model")
    assert shown.returncode == 0, shown.stderr
    assert "rejected" in shown.stdout
    assert "is not better than current v1" in shown.stdout
    assert "store_id, weekend, lag7" in shown.stdout
    compared = cli("--project", root, "models", "compare", "demand_model")
    assert compared.returncode == 0, compared.stderr
    assert "v1 vs v2" in compared.stdout
    assert "(worse)" in compared.stdout
    assert "param algo" in compared.stdout
    unknown = cli("--project", root, "models", "show", "demand_modle")
    assert unknown.returncode != 0
    assert "did you mean" in unknown.stderr
    with open_registry(root).store.engine.connect() as conn:
        params = conn.execute(sa.text("select params from model_versions order by version")).scalars().all()
    assert [json.loads(p)["algo"] for p in params] == ["linear", "dummy"]


def test_the_training_datas_fingerprint_is_its_values_not_their_memory_layout():
    import numpy as np
    import pyarrow as pa

    whole = pa.table({"day": list(range(1000)), "qty": [i % 7 for i in range(1000)]})
    chunked = pa.Table.from_batches(whole.to_batches(max_chunksize=128))
    assert chunked.column("qty").num_chunks > 1
    assert data_fingerprint([chunked]) == data_fingerprint([whole])
    assert data_fingerprint([whole.slice(1)]) != data_fingerprint([whole])
    # [1, null, 3] twice, with different bytes under the null (a second read of a table may do that)
    validity = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little").tobytes())
    lag = [pa.Array.from_buffers(pa.int64(), 3, [validity, pa.py_buffer(np.array([1, junk, 3]).tobytes())])
           for junk in (0, 12345)]
    assert lag[0].to_pylist() == lag[1].to_pylist() == [1, None, 3]
    assert data_fingerprint([pa.table({"lag": lag[0]})]) == data_fingerprint([pa.table({"lag": lag[1]})])
    assert data_fingerprint([pa.table({"lag": lag[0]})]) != data_fingerprint([pa.table({"lag": [1, 0, 3]})])


@pytest.mark.parametrize(("direction", "value", "threshold", "current", "promote"), [
    ("min", 0.2, None, None, True),
    ("min", 0.2, None, 0.3, True),
    ("min", 0.3, None, 0.3, False),  # a tie does not replace the current version
    ("min", 0.4, None, 0.3, False),
    ("max", 0.9, None, 0.8, True),
    ("max", 0.7, None, 0.8, False),
    ("max", 0.7, 0.75, None, False),
    ("min", 0.1, 0.05, None, False),
    ("min", float("nan"), None, None, False),
])
def test_the_promotion_gate(direction, value, threshold, current, promote):
    decision = decide("m", direction, value, threshold, 1 if current is not None else None, current)
    assert decision.promote is promote
    assert decision.reason
