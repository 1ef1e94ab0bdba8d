"""Model artefacts on disk, and the trust rule for loading them.

A fitted model is saved with joblib (pickle underneath), and unpickling runs code. So kiban loads an artefact
only when both hold:

1. the file lies inside the project's registry folder (``.kiban/models/``), after resolving symbolic links;
2. its SHA-256 equals the one recorded in the state store when kiban itself wrote it.

A file copied in from elsewhere, edited, or swapped after training is refused before a byte of it is
unpickled. The registry folder and the state store are as trusted as the project's own code.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

from kiban.errors import KibanError

SUFFIX = ".joblib"
REGISTRY_FOLDER = Path(".kiban") / "models"


class UntrustedArtefact(KibanError):
    """An artefact that may not be loaded: outside the registry folder, missing, or not what was recorded."""


def registry_folder(root: Path) -> Path:
    return (root / REGISTRY_FOLDER).resolve()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(model: Any, root: Path, model_key: str, version: int) -> tuple[str, str]:
    """Write ``model`` to ``.kiban/models/<model>/<version>.joblib`` atomically; (path relative to the registry
    folder, sha256)."""
    import joblib

    folder = registry_folder(root) / model_key
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{version}{SUFFIX}"
    tmp = folder / f".{version}{SUFFIX}.tmp-{os.getpid()}"
    try:
        joblib.dump(model, tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return f"{model_key}/{version}{SUFFIX}", sha256_of(final)


def load(root: Path, relative: str, expected_sha256: str, what: str) -> Any:
    """Load a recorded artefact, refusing anything outside the registry folder or not matching its sha256."""
    folder = registry_folder(root)
    path = (folder / relative).resolve()
    hint = f"retrain it: `kiban run --full-refresh {what.split(' ')[0]}`"
    if not path.is_relative_to(folder):
        raise UntrustedArtefact(f"refusing to load {what}: {path} is outside the registry folder {folder}", hint)
    if not path.is_file():
        raise UntrustedArtefact(f"the artefact of {what} is missing ({path})", hint)
    data = path.read_bytes()  # hashed and unpickled from the same bytes: no swap in between
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise UntrustedArtefact(f"refusing to load {what}: {path} has sha256 {actual[:12]}…, but the registry "
                                f"recorded {expected_sha256[:12]}… when kiban wrote it (the file was changed or "
                                "replaced)", hint)
    import joblib

    return joblib.load(io.BytesIO(data))


__all__ = ["REGISTRY_FOLDER", "UntrustedArtefact", "load", "registry_folder", "save", "sha256_of"]
