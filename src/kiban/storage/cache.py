"""A snapshot's data files, copied once to this machine so DuckDB reads them as plain Parquet.

Delta data files are immutable and named uniquely (a UUID), so a copy is valid forever: a file is fetched the
first time a snapshot names it, to a temporary name, and renamed into place — two processes fetching the same file
both end with the same whole file. A local-disk table needs no copy: its files are read where they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kiban.storage.spec import StorageError

FETCH_THREADS = 8  # files fetched at once (network-bound)


def local_files(uris: Sequence[str], cache: Path, options: dict[str, str]) -> list[str]:
    """Local paths of ``uris``, in order: a local table's own files, or copies of an object store's."""
    remote = [u for u in uris if u.startswith("s3://")]
    if not remote:
        return [urlparse(u).path if u.startswith("file://") else u for u in uris]
    fs = filesystem(options)
    targets = {u: cache / urlparse(u).netloc / urlparse(u).path.lstrip("/") for u in remote}
    missing = [u for u in remote if not targets[u].exists()]
    if missing:
        with ThreadPoolExecutor(min(FETCH_THREADS, len(missing))) as pool:
            list(pool.map(lambda u: _fetch(fs, u, targets[u]), missing))
    return [str(targets[u]) if u in targets else u for u in uris]


def _fetch(fs: Any, uri: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with fs.open_input_stream(uri[len("s3://"):]) as source, open(partial, "wb") as out:
            while chunk := source.read(8 << 20):
                out.write(chunk)
        os.replace(partial, target)
    except OSError as exc:
        raise StorageError(f"cannot fetch {uri}: {exc}", "check storage: in kiban.yml and the bucket") from exc
    finally:
        partial.unlink(missing_ok=True)


def filesystem(options: dict[str, str]) -> Any:
    """PyArrow's S3 client configured from the same options delta-rs gets."""
    from pyarrow import fs

    endpoint = options.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, Any] = {"region": options.get("AWS_REGION") or "us-east-1"}
    if options.get("AWS_ACCESS_KEY_ID"):
        kwargs.update(access_key=options["AWS_ACCESS_KEY_ID"], secret_key=options.get("AWS_SECRET_ACCESS_KEY"))
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
    return fs.S3FileSystem(**kwargs)


def snapshot_uris(cache: Path, table_uri: str, version: int, listing: Callable[[], list[str]]) -> list[str]:
    """The data files of ``table_uri`` at ``version``, remembered in ``cache``: a version's files never change, so
    the Delta log is read once per version and machine (a run over many tables asks the store nothing)."""
    key = hashlib.sha256(table_uri.encode()).hexdigest()[:16]
    path = cache / "_snapshots" / key / f"{version}.json"
    if path.exists():
        with contextlib.suppress(ValueError, OSError):
            found = json.loads(path.read_text())
            if isinstance(found, list):
                return [str(u) for u in found]
    uris = listing()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    partial.write_text(json.dumps(uris))
    os.replace(partial, path)
    return uris
