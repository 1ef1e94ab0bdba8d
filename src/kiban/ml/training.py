"""A training asset's build: register what the function trained, and publish the version's row.

The training function returns :class:`kiban.Trained`. kiban fingerprints the training data, keeps the
features' distributions (for drift checks), saves the artefact, and lets the promotion gate decide — all
recorded in the registry. The asset's published table is one row describing the version trained in this
build (its number, status and reason, metrics), so a scoring asset downstream is rebuilt after each training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kiban.api import Trained
from kiban.errors import KibanError
from kiban.ml.drift import baseline
from kiban.ml.registry import NewVersion, open_registry
from kiban.project import Asset
from kiban.python.frames import as_arrow
from kiban.quoting import relation
from kiban.status import ModelStatus

log = logging.getLogger(__name__)


def data_fingerprint(tables: list[pa.Table]) -> str:
    """sha256 of the training inputs' contents: their schema and values, whatever their memory layout.

    Hashed are the schema and Arrow IPC bytes of a canonical copy: the chunks combined (a parallel scan cuts
    the same rows into other batches from one read to the next), and a column with nulls as its validity plus
    its values with the nulls filled (the bytes under a null are undefined: the same table read twice may
    carry different garbage there)."""
    digest = hashlib.sha256()
    for table in tables:
        digest.update(table.schema.serialize())
        names: list[str] = []
        arrays: list[pa.Array] = []
        for name, column in zip(table.column_names, table.columns, strict=True):
            for suffix, array in _canonical(column):
                names.append(name + suffix)
                arrays.append(array)
        canonical = pa.Table.from_arrays(arrays, names=names)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, canonical.schema) as writer:
            writer.write_table(canonical)
        digest.update(sink.getvalue())
    return digest.hexdigest()


def _canonical(column: pa.ChunkedArray) -> list[tuple[str, pa.Array]]:
    array = column.combine_chunks()
    if array.null_count == 0:
        return [("", array)]
    valid = ("\0valid", pc.is_valid(array))
    for zero in (0, "", b"", False):
        try:
            return [("", pc.fill_null(array, pa.scalar(zero).cast(array.type))), valid]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue
    return [("", pa.array(array.to_pylist(), type=array.type)), valid]  # nested: nulls written by the builder


def feature_columns(features: Any) -> dict[str, list[Any]]:
    """The training features as columns of values (from Arrow, pandas, polars or a 2-D numpy array)."""
    if features is None:
        return {}
    table = as_arrow(features)
    if table is not None:
        return {name: table.column(name).to_pylist() for name in table.column_names}
    if type(features).__module__.split(".")[0] == "numpy" and getattr(features, "ndim", 0) == 2:
        return {f"x{i}": features[:, i].tolist() for i in range(features.shape[1])}
    raise KibanError(f"Trained(features=…) is a {type(features).__name__}; give a table or a DataFrame")


def published_version(cursor: Any, key: str) -> int | None:
    """The version the published table of the training asset ``key`` names current (None: none published).
    Read through the caller's cursor: inside a build it is the committed version, whatever the registry says."""
    try:
        row = cursor.execute(f"select current_version from {relation(key)}").fetchone()
    except Exception:  # not built yet (or an older table without the column): nothing is published
        log.debug("%s: no published training table to read the current version from", key, exc_info=True)
        return None
    return int(row[0]) if row and row[0] is not None else None


def settle(root: Path, key: str, cursor: Any) -> int | None:
    """Bring the registry in line with the published training table (see ``Registry.settle``); the version."""
    published = published_version(cursor, key)
    registry = open_registry(root)
    try:
        registry.settle(key, published)
    finally:
        registry.store.close()
    return published


def register(asset: Asset, value: Any, fingerprint: str, inputs: list[pa.Table], root: Path,
             published: int | None = None) -> pa.Table:
    """Record the trained version (gate included) and return the one-row table the asset publishes: the new
    version is current in it when the gate promoted it — and becomes current in the registry only once this
    table is published (``settle``); ``published`` is the version current now."""
    spec = asset.python
    assert spec is not None
    if not isinstance(value, Trained):
        raise KibanError(f"{asset.key}: a training function returns kiban.Trained(model, metrics, params), "
                         f"not {type(value).__name__}", f"see {spec.path}:{spec.line}")
    metric = str(spec.options["metric"])
    metrics = {str(k): float(v) for k, v in dict(value.metrics).items()}
    if metric not in metrics:
        raise KibanError(f"{asset.key}: the training reported the metrics {sorted(metrics) or 'none'}, but "
                         f"@train(metric='{metric}') decides promotion", f"see {spec.path}:{spec.line}")
    threshold = spec.options.get("threshold")
    registry = open_registry(root)
    try:
        registry.settle(asset.key, published)  # an earlier training's publish, if a process died after it
        version, decision = registry.register(asset.key, NewVersion(
            model=value.model, metric=metric, direction=str(spec.options.get("direction", "min")),
            threshold=float(threshold) if threshold is not None else None, metrics=metrics,
            params=dict(value.params), data_fingerprint=data_fingerprint(inputs), code_fingerprint=fingerprint,
            baseline=baseline(feature_columns(value.features))))
    finally:
        registry.store.close()
    current = version.version if version.status == ModelStatus.PENDING else published
    value_of = metrics[metric]
    return pa.table({
        "version": [version.version],
        "status": ["current" if version.status == ModelStatus.PENDING else version.status],  # as published
        "reason": [decision.reason],
        "metric": [metric],
        "metric_value": [value_of if math.isfinite(value_of) else None],
        "metrics": [json.dumps(metrics)],
        "current_version": [current],
        "trained_at": [version.trained_at],
        "sha256": [version.sha256],
    })


__all__ = ["data_fingerprint", "feature_columns", "published_version", "register", "settle"]
