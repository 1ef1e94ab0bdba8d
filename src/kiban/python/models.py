"""The run's runner of Python models, handed to each engine build (``kiban.engines.base.PythonModels``).

The engine publishes a Python model's table; what makes the table — importing the model's file, reading its
inputs, a training's registry — is here, above the engines. It carries what the run already knows, so nothing
is found again mid-build: the project's folder (the model registry lives in it) and each model's inputs as the
graph resolved them (``Graph.python_inputs``: parameter → the relation it reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiban.project import Asset


@dataclass(frozen=True)
class PythonModelRunner:
    root: Path  # the project's folder
    inputs: Mapping[str, Mapping[str, str]]  # Python model → parameter → the relation it reads (the graph's)

    def produce(self, cursor: Any, asset: Asset, fingerprint: str) -> Any:
        # pyarrow and the model's own libraries load only when a Python model is built
        from kiban.python.build import produce

        return produce(cursor, asset, fingerprint, self.inputs.get(asset.key, {}), self.root)

    def settle(self, cursor: Any, asset: Asset) -> None:
        """A training asset's registry follows its publish: promoted when it committed, rejected when not."""
        if asset.python is not None and asset.python.kind == "train":
            from kiban.ml.training import settle  # scikit-learn's joblib and pyarrow, for trainings only

            settle(self.root, asset.key, cursor)


__all__ = ["PythonModelRunner"]
