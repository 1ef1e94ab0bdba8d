"""``forms/NAME.yml``: a form people fill in (on a phone, in the console) or upload a sheet for.

```yaml
title: Daily waste count
description: What was thrown away today, per store and item.
lands_in: forms.waste            # a table of a `type: files` source whose path is a folder of *.parquet
who: [analyst, yamada]           # roles (that role and up) or user names; default: analyst
fields:
  - {name: store_id, type: integer, required: true, min: 1, max: 999, label: Store}
  - {name: day, type: date, required: true}
  - {name: item, type: text, required: true, allowed: [bread, milk, vegetables, other]}
  - {name: quantity, type: integer, required: true, min: 0, max: 10000}
  - {name: note, type: text, max_length: 200}
```

The source table it lands in is an ordinary one (``sources/forms.yml``: ``type: files``,
``path: landing/forms/waste/*.parquet``), so every entry becomes a load with its manifest, exactly-once and
quarantine like any other; each row carries who entered it (``_entered_by``), when (``_entered_at``) and the
submission it came with (``_submission``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kiban.errors import ProjectError, ProjectErrors, UsageError, did_you_mean

if TYPE_CHECKING:
    from kiban.project import Project

FORMS_DIR = "forms"
ROLES = ("viewer", "analyst", "operator", "admin")  # the console's roles, lowest first (kiban.web.accounts)
ENTRY_COLUMNS = ("_entered_by", "_entered_at", "_submission", "_row")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FieldType = Literal["text", "integer", "number", "date", "datetime", "boolean"]


class FieldSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: FieldType = "text"
    label: str | None = None
    help: str | None = None
    required: bool = False
    allowed: tuple[str | int | float, ...] | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = Field(default=None, ge=1)
    pattern: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value) or value.startswith("_"):
            raise ValueError(f"field name '{value}' must be letters, digits and _ (not starting with _)")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern is not a regular expression: {exc}") from None
        return value

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()


class FormConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = None
    description: str = ""
    lands_in: str
    who: tuple[str, ...] = ("analyst",)
    fields: tuple[FieldSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> FormConfig:
        seen: set[str] = set()
        for field in self.fields:
            if field.name.lower() in seen:
                raise ValueError(f"the field {field.name} is declared twice")
            seen.add(field.name.lower())
        if self.lands_in.count(".") != 1:
            raise ValueError(f"lands_in: '{self.lands_in}' must be SOURCE.TABLE (a table of sources/SOURCE.yml)")
        return self


@dataclass(frozen=True)
class Form:
    name: str
    path: Path
    config: FormConfig
    source: str
    table: str
    folder: Path  # where entries are written: the source table's landing folder

    @property
    def title(self) -> str:
        return self.config.title or self.name.replace("_", " ").capitalize()

    @property
    def asset(self) -> str:
        return f"lake.{self.source}_{self.table}"

    def may_enter(self, user: str, role: str) -> bool:
        """Whether a console user may enter: named, or holding one of the roles named (or a higher one)."""
        if user in self.config.who:
            return True
        ranks = [ROLES.index(r) for r in self.config.who if r in ROLES]
        return role in ROLES and bool(ranks) and ROLES.index(role) >= min(ranks)


def load_forms(project: Project) -> dict[str, Form]:
    """Every ``forms/*.yml``, checked against the project's sources; errors name the file and line."""
    from kiban.project.yamlfile import read_config, yaml_files

    folder = project.root / FORMS_DIR
    if not folder.is_dir():
        return {}
    found: dict[str, Form] = {}
    errors: list[ProjectError] = []
    for path in yaml_files(folder):
        read = read_config(path, FormConfig, errors)
        if read is None:
            continue
        doc, config = read
        where = doc.location(("lands_in",))
        source_name, _, table_name = config.lands_in.partition(".")
        source = project.sources.get(source_name)
        if source is None or table_name not in source.tables:
            known = [f"{s}.{t}" for s, spec in project.sources.items() for t in spec.tables]
            errors.append(ProjectError(f"lands_in: no source table {config.lands_in}", where,
                                       did_you_mean(config.lands_in, known)
                                       or "declare it in sources/SOURCE.yml (type: files, path: …/*.parquet)"))
            continue
        pattern = source.tables[table_name].options.get("path")
        if source.type != "files" or not isinstance(pattern, str) or not pattern.endswith("/*.parquet") \
                or any(c in pattern[:-len("/*.parquet")] for c in "*?["):
            errors.append(ProjectError(
                f"lands_in: {config.lands_in} must be a `type: files` table whose path is one folder of Parquet "
                f"files (FOLDER/*.parquet); it is {source.type} with path {pattern!r}", where))
            continue
        landing = Path(pattern[:-len("/*.parquet")])
        found[path.stem] = Form(path.stem, path, config, source_name, table_name,
                                landing if landing.is_absolute() else project.root / landing)
    if errors:
        raise errors[0] if len(errors) == 1 else ProjectErrors(errors)
    return found


def get_form(project: Project, name: str) -> Form:
    forms = load_forms(project)
    if name not in forms:
        raise UsageError(f"no form named '{name}'", did_you_mean(name, forms) or f"forms live in {FORMS_DIR}/NAME.yml")
    return forms[name]
