"""The model registry: every trained version of every model, in the state store.

A version records its parameters, hold-out metrics, the fingerprint of the data it was trained on, its
artefact's path and SHA-256, when it was trained, and its status — ``current`` (the one scoring uses, at most
one per model), ``pending`` (it passed the promotion gate; it becomes current when the training asset's row
naming it is published), ``rejected`` (it did not pass the promotion gate, or its publish was refused) or
``retired`` (a later version replaced it) — with the reason. Artefacts live under ``.kiban/models/`` (see
:mod:`kiban.ml.artefact`).

A promotion belongs to its publish: the training asset's published table (written, checked and swapped in
one DuckDB transaction) is what says which version is current. The registry and the warehouse are two
databases, so the registry follows the warehouse (``settle``): after each training build, and whenever a
scoring build reads the published table — a process killed between the two commits is caught up next time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kiban.errors import KibanError
from kiban.ml import artefact
from kiban.ml.promotion import Decision, decide
from kiban.status import ModelStatus
from kiban.store import Store, utcnow
from kiban.store.schema import model_versions


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    status: str
    reason: str | None
    metric: str
    direction: str
    metric_value: float | None
    metrics: dict[str, float]
    params: dict[str, Any]
    data_fingerprint: str
    code_fingerprint: str
    artefact: str
    sha256: str
    baseline: dict[str, Any]
    trained_at: datetime
    changed_at: datetime


def _version(row: Any) -> ModelVersion:
    m = row._mapping
    return ModelVersion(model=m["model"], version=m["version"], status=m["status"], reason=m["reason"],
                        metric=m["metric"], direction=m["direction"], metric_value=m["metric_value"],
                        metrics=json.loads(m["metrics"]), params=json.loads(m["params"]),
                        data_fingerprint=m["data_fingerprint"], code_fingerprint=m["code_fingerprint"],
                        artefact=m["artefact"], sha256=m["sha256"], baseline=json.loads(m["baseline"] or "{}"),
                        trained_at=m["trained_at"], changed_at=m["changed_at"])


@dataclass(frozen=True)
class NewVersion:
    """What a training produced, before the gate decides its status."""

    model: Any
    metric: str
    direction: str
    threshold: float | None
    metrics: dict[str, float]
    params: dict[str, Any]
    data_fingerprint: str
    code_fingerprint: str
    baseline: dict[str, Any]


class Registry:
    """The versions of the models of one project (``root``: the project folder, where artefacts live)."""

    def __init__(self, store: Store, project: str, root: Path) -> None:
        self.store, self.project, self.root = store, project, root

    def _select(self, model: str | None = None) -> sa.Select[Any]:
        query = sa.select(model_versions).where(model_versions.c.project == self.project)
        return query.where(model_versions.c.model == model) if model is not None else query

    def versions(self, model: str | None = None) -> list[ModelVersion]:
        """Every version (of ``model``, or of all models), oldest first."""
        query = self._select(model).order_by(model_versions.c.model, model_versions.c.version)
        with self.store.engine.connect() as conn:
            return [_version(r) for r in conn.execute(query)]

    def models(self) -> list[str]:
        with self.store.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(model_versions.c.model).distinct()
                                               .where(model_versions.c.project == self.project)
                                               .order_by(model_versions.c.model))]

    def version(self, model: str, version: int) -> ModelVersion | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(self._select(model).where(model_versions.c.version == version)).first()
        return _version(row) if row else None

    def current(self, model: str) -> ModelVersion | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(self._select(model).where(model_versions.c.status == ModelStatus.CURRENT)).first()
        return _version(row) if row else None

    def register(self, model: str, new: NewVersion) -> tuple[ModelVersion, Decision]:
        """Save the artefact, let the gate decide, and record the version in ONE transaction: ``pending`` when
        the gate promotes it (``settle`` makes it current once its publish commits), else ``rejected``."""
        now = utcnow()
        with self.store._tx() as conn:
            number = (conn.execute(sa.select(sa.func.max(model_versions.c.version))
                                   .where(model_versions.c.project == self.project,
                                          model_versions.c.model == model)).scalar() or 0) + 1
            current = conn.execute(self._select(model).where(model_versions.c.status == ModelStatus.CURRENT)).first()
            value = new.metrics.get(new.metric)
            decision = decide(new.metric, new.direction, value, new.threshold,
                              current.version if current else None, current.metric_value if current else None)
            path, sha = artefact.save(new.model, self.root, model, number)
            conn.execute(model_versions.insert().values(
                project=self.project, model=model, version=number,
                status=ModelStatus.PENDING if decision.promote else ModelStatus.REJECTED, reason=decision.reason,
                metric=new.metric,
                direction=new.direction, metric_value=value, metrics=json.dumps(new.metrics),
                params=json.dumps(new.params, default=str), data_fingerprint=new.data_fingerprint,
                code_fingerprint=new.code_fingerprint, artefact=path, sha256=sha,
                baseline=json.dumps(new.baseline) if new.baseline else None,
                trained_at=now, changed_at=now))
        stored = self.version(model, number)
        assert stored is not None
        return stored, decision

    def settle(self, model: str, published: int | None) -> None:
        """Make the registry say what the warehouse says: ``published`` is the version the training asset's
        published table names current (None: nothing published). A pending version that is it becomes current
        (the previous current retired); any other pending version was never published: rejected."""
        now = utcnow()
        with self.store._tx() as conn:
            pending = [r._mapping for r in conn.execute(self._select(model).where(
                model_versions.c.status == ModelStatus.PENDING))]
            if not pending:
                return
            where = (model_versions.c.project == self.project, model_versions.c.model == model)
            for row in pending:
                number = row["version"]
                if number == published:
                    conn.execute(model_versions.update().where(*where, model_versions.c.status == ModelStatus.CURRENT)
                                 .values(status=ModelStatus.RETIRED, reason=f"replaced by v{number}: {row['reason']}",
                                         changed_at=now))
                    conn.execute(model_versions.update().where(*where, model_versions.c.version == number)
                                 .values(status=ModelStatus.CURRENT, changed_at=now))
                else:
                    stays = f"v{published} stays current" if published is not None else "no version is current"
                    conn.execute(model_versions.update().where(*where, model_versions.c.version == number).values(
                        status=ModelStatus.REJECTED, changed_at=now,
                        reason=f"not published (its build or a blocking check failed; {stays}); the gate had "
                               f"said: {row['reason']}"))

    def load(self, model: str, version: int | None = None) -> tuple[ModelVersion, Any]:
        """The current (or the given) version of ``model`` and its fitted model, under the trust rule."""
        row = self.current(model) if version is None else self.version(model, version)
        if row is None:
            what = f"no version {version}" if version is not None else "no current version"
            raise KibanError(f"{model} has {what} in the registry",
                             f"train it with `kiban run {model}`; a version that fails the promotion gate is "
                             f"rejected: `kiban models show {model}` says why")
        return row, artefact.load(self.root, row.artefact, row.sha256, f"{model} v{row.version}")


def open_registry(root: Path) -> Registry:
    """The registry of the project at ``root`` (its state store, from kiban.yml)."""
    from kiban.project.config import ProjectConfig
    from kiban.project.loader import PROJECT_FILE, resolve_url
    from kiban.project.yamlfile import load_yaml, validate

    config = validate(load_yaml(root / PROJECT_FILE), ProjectConfig)
    return Registry(Store(resolve_url(config.state, root)), config.name, root)


__all__ = ["ModelVersion", "NewVersion", "Registry", "open_registry"]
