"""Create and edit ``initiatives/NAME.yml`` from the console (or any front end), safely.

* Only the fields people decide in a meeting are edited here — question, hypothesis, owner, sponsor, status,
  decision, and the intervention's start and end dates. The KPI, the groups and the money stay in the file,
  written by whoever knows the data.
* The file is edited round-trip (ruamel.yaml): comments, key order and the untouched fields stay as written.
* The new text is validated exactly as ``kiban`` loads it (the same Pydantic model) *before* it is written; a
  status that needs a KPI and a start date is refused with the loader's own message.
* Writes are atomic (a temporary file in the same folder, fsync, rename) and serialised by a lock file; an edit
  made from a page that was opened before someone else's save is refused (the file's digest is checked), so two
  people cannot silently overwrite each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kiban.errors import KibanError
from kiban.project.initiative import InitiativeConfig

TEXT_FIELDS = ("question", "hypothesis", "owner", "sponsor", "decision")
DATE_FIELDS = ("start", "end")  # the intervention's
EDITABLE = (*TEXT_FIELDS, "status", *DATE_FIELDS)
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_TEXT = 5_000


class EditError(KibanError):
    """The edit is refused (invalid, or the file changed since it was opened): the message says why."""


def digest(path: Path) -> str:
    """The file's version as the page that edits it saw it ('' when it does not exist)."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def initiative_path(root: Path, name: str) -> Path:
    if not NAME.match(name):
        raise EditError(f"'{name[:80]}' is not a valid initiative name",
                        "lower-case letters, digits and _, starting with a letter (it becomes the file's name)")
    return root / "initiatives" / f"{name}.yml"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".edit.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _apply(doc: Any, changes: Mapping[str, str]) -> None:
    from ruamel.yaml.comments import CommentedMap

    for key, raw in changes.items():
        if key not in EDITABLE:
            raise EditError(f"'{key}' cannot be edited here", f"editable: {', '.join(EDITABLE)}")
        value = raw.strip()
        if len(value) > MAX_TEXT:
            raise EditError(f"{key} is longer than {MAX_TEXT} characters")
        if key in DATE_FIELDS:
            iv = doc.get("intervention")
            if not value:
                if isinstance(iv, dict):
                    iv.pop(key, None)
                    if not iv:
                        del doc["intervention"]
                continue
            try:
                day = date.fromisoformat(value)
            except ValueError:
                raise EditError(f"{key}: '{value[:40]}' is not a date (YYYY-MM-DD)") from None
            if not isinstance(iv, dict):
                iv = doc["intervention"] = CommentedMap()
            iv[key] = day
        elif value:
            doc[key] = value
        else:
            doc.pop(key, None)


def save_initiative(root: Path, name: str, changes: Mapping[str, str], seen: str | None) -> str:
    """Write the changes into ``initiatives/NAME.yml``; ``seen`` is the digest the editor saw (None: create a new
    file, refused if one exists). Returns the new digest."""
    from ruamel.yaml import YAML

    path = initiative_path(root, name)
    with _locked(path.parent):
        now = digest(path)
        if seen is None and now:
            raise EditError(f"an initiative '{name}' exists already", f"edit it at /initiatives/{name}/edit")
        if seen is not None and now != seen:
            raise EditError(f"initiatives/{name}.yml changed since you opened it (someone saved, or the file was "
                            "edited)", "reload the page, check the changes and edit again")
        rt = YAML()
        rt.preserve_quotes = True
        rt.width = 4096
        doc = rt.load(path.read_text(encoding="utf-8")) if now else None
        if doc is None:
            from ruamel.yaml.comments import CommentedMap

            doc = CommentedMap()
        if not isinstance(doc, dict):
            raise EditError(f"initiatives/{name}.yml is not a mapping", "fix the file by hand")
        _apply(doc, changes)
        out = io.StringIO()
        rt.dump(doc, out)
        text = out.getvalue()
        try:
            InitiativeConfig.model_validate(yaml.safe_load(text) or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise EditError(f"not saved: {where + ': ' if where else ''}{first['msg']}") from None
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
