"""Writing the new project: all of it or nothing.

Everything is written into a hidden folder beside NEW_FOLDER, which is renamed into place in one
step at the end. An exception removes the hidden folder; a kill leaves only the hidden folder
(``.NAME.importing-PID``), never a NEW_FOLDER, and the next import removes leftovers whose process
is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from kiban.errors import UsageError
from kiban.store.store import HOST, pid_alive


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
# typed words (kiban.status: a check's severity, …) are written as the plain words they are
_Dumper.add_multi_representer(StrEnum, lambda dumper, value: _str(dumper, str(value)))


def dump_yaml(data: Any, header: str = "") -> str:
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    return header + text


def check_target(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} already exists; the import writes a new project",
                         "choose a new folder (or remove this one)")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent} does not exist", "create the parent folder first")


def _remove_leftovers(target: Path) -> None:
    for leftover in target.parent.glob(f".{target.name}.importing-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and pid_alive(int(pid), HOST) is False:
            shutil.rmtree(leftover, ignore_errors=True)


def scratch_for(target: Path) -> Path:
    """The hidden folder this process writes ``target`` into before renaming it into place."""
    return target.parent / f".{target.name}.importing-{os.getpid()}"


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """Yield a scratch folder to write the project into; rename it to ``target`` when the block ends
    without an exception, remove it otherwise."""
    check_target(target)
    _remove_leftovers(target)
    scratch = scratch_for(target)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        yield scratch
        check_target(target)
        if target.exists():
            target.rmdir()  # an empty folder the user made: replaced by the project
        os.rename(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def write_text(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
