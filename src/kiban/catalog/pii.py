"""Personal data: which columns hold it, how the tag travels down column lineage, and suggestions.

A column is PII when its YAML tags it ``pii``, or when it is computed from a PII column, unless it is
tagged ``anonymised`` (a hash, a bucket, an aggregate someone vouched for): the tag stops there.
Suggestions come from column names (``email``, ``tel``, ``birth_date`` …) and from sample values
(e-mail addresses, phone numbers in Japanese and international formats, 12-digit numbers whose check
digit makes them look like a My Number, card numbers that pass Luhn).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog.lineage import STAR, UNKNOWN, ColumnGraph, ColumnRef
from kiban.catalog.warehouse import open_readonly

if TYPE_CHECKING:
    from kiban.project import Project

PII_TAG = "pii"
ANONYMISED_TAGS = frozenset({"anonymised", "anonymized"})

NAME_TOKENS = {
    "email": "e-mail address", "mail": "e-mail address", "phone": "phone number", "tel": "phone number",
    "telephone": "phone number", "mobile": "phone number", "fax": "fax number", "address": "postal address",
    "addr": "postal address", "birthday": "date of birth", "birthdate": "date of birth", "dob": "date of birth",
    "ssn": "national id", "passport": "passport number", "mynumber": "My Number", "kana": "personal name (kana)",
    "ip": "IP address", "zip": "postal code", "postcode": "postal code",
}
NAME_PHRASES = {
    "first_name": "personal name", "last_name": "personal name", "full_name": "personal name",
    "family_name": "personal name", "given_name": "personal name", "customer_name": "personal name",
    "my_number": "My Number", "kojin_bango": "My Number", "card_number": "card number", "birth_date": "date of birth",
    "date_of_birth": "date of birth", "postal_code": "postal code",
}
EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$")
PHONE_PATTERNS = (
    re.compile(r"^0[789]0-?\d{4}-?\d{4}$"),  # Japanese mobile: 090-1234-5678
    re.compile(r"^0\d{1,4}-\d{1,4}-\d{3,4}$"),  # Japanese landline with hyphens: 03-1234-5678, 0120-123-456
    re.compile(r"^\(0\d{1,4}\)\s?\d{1,4}-\d{4}$"),  # (03) 1234-5678
    re.compile(r"^0\d{9,10}$"),  # Japanese number without hyphens: 0312345678, 09012345678
    re.compile(r"^\+81[\s-]?\d{1,4}[\s-]?\d{1,4}[\s-]?\d{4}$"),  # +81 3-1234-5678
    re.compile(r"^\+\d{1,3}[\s\-.]?\(?\d{1,4}\)?([\s\-.]?\d{2,4}){2,4}$"),  # international
)
MATCH_SHARE = 0.6  # share of non-empty sample values that must match a content pattern


@dataclass(frozen=True)
class Suggestion:
    asset: str
    column: str
    reason: str


def is_my_number(text: str) -> bool:
    """A 12-digit individual number whose last digit is its check digit (the official weights)."""
    digits = text.replace("-", "").replace(" ", "")
    if len(digits) != 12 or not digits.isdigit():
        return False
    body = [int(d) for d in digits[:11]][::-1]  # P1 is the digit next to the check digit
    total = sum(p * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(body, start=1))
    rest = total % 11
    return int(digits[11]) == (0 if rest <= 1 else 11 - rest)


def is_card_number(text: str) -> bool:
    digits = text.replace("-", "").replace(" ", "")
    if not (13 <= len(digits) <= 19 and digits.isdigit()):
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def value_kind(value: Any) -> str | None:
    """What kind of personal data one value looks like, or None."""
    if not isinstance(value, str):
        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if EMAIL.match(text):
        return "e-mail address"
    if is_my_number(text):
        return "My Number"
    if any(p.match(text) for p in PHONE_PATTERNS):
        return "phone number"
    if is_card_number(text):
        return "card number"
    return None


def name_kind(column: str) -> str | None:
    lower = column.lower()
    for phrase, kind in NAME_PHRASES.items():
        if phrase in lower:
            return kind
    for token in re.split(r"[^a-z0-9]+|(?<=[a-z])(?=[0-9])", lower):
        if token in NAME_TOKENS:
            return NAME_TOKENS[token]
    return None


def tagged(project: Project, tags: Iterable[str]) -> set[ColumnRef]:
    """Columns whose YAML carries one of ``tags``."""
    wanted = set(tags)
    return {(key, c.name.lower()) for key, asset in project.assets.items() for c in asset.config.columns
            if wanted & set(c.tags)}


def pii_columns(project: Project, columns: ColumnGraph) -> dict[ColumnRef, ColumnRef | None]:
    """Every PII column → the declared PII column it comes from (None when it is declared itself).

    The tag follows column lineage downstream and stops at columns tagged ``anonymised``.
    """
    stop = tagged(project, ANONYMISED_TAGS)
    return spread(columns, {ref: None for ref in tagged(project, {PII_TAG}) if ref not in stop}, stop)


def spread(columns: ColumnGraph, roots: Mapping[ColumnRef, ColumnRef | None],
           stop: set[ColumnRef]) -> dict[ColumnRef, ColumnRef | None]:
    """``roots`` and every column computed from one of them downstream (a reader of a column, or of its
    relation's whole row), each → the root it comes from (None for a root itself); stopping at ``stop``."""
    found: dict[ColumnRef, ColumnRef | None] = dict(roots)
    stack = [(ref, ref if origin is None else origin) for ref, origin in found.items()]
    while stack:
        ref, origin = stack.pop()
        readers = columns.readers.get(ref, set()) | columns.readers.get((ref[0], STAR), set())
        for reader in readers:
            if reader in found or reader in stop:
                continue
            found[reader] = origin
            stack.append((reader, origin))
    return found


MaskKind = str  # "redact" or "hash" (see project.config.PiiConfig)


@dataclass
class MaskPlan:
    """Which columns of each queryable relation the console masks, and how (fail closed).

    A column is masked when it is PII by lineage, or when its relation reads (at any distance) a relation
    with PII and the column's own lineage is unknown (a Python model, SQL that lineage could not follow, a
    column published before the model changed) — and so is every column computed from such a column further
    down (``suspect``): a column of unknown lineage is treated like PII all the way down, not only where it is
    made. ``lake.x_latest``/``lake.x_history`` follow ``lake.x``."""

    project: Project
    graph: Any  # kiban.graph.Graph
    columns: ColumnGraph
    pii: Mapping[ColumnRef, ColumnRef | None]
    # models whose code on disk changed since their table was built (kiban.catalog.definitions.stale_models): their
    # lineage describes other data than what is published, so none of their columns is trusted
    stale: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.aliases = self.project.lake_views()
        self.declared: dict[ColumnRef, MaskKind] = {
            (key, c.name.lower()): (c.pii.mask if c.pii is not None else "redact")
            for key, asset in self.project.assets.items() for c in asset.config.columns if PII_TAG in c.tags}
        self.anonymised = tagged(self.project, ANONYMISED_TAGS)
        bearing = {a for a, _ in self.pii}
        self.tainted: set[str] = set()  # relations that read PII somewhere upstream
        # models that read a lake table's files directly (read_parquet('lake/customers/*.parquet')): what lineage
        # cannot see into, so every column of such a model is of unknown lineage
        self.through_files = {key: tables for key in getattr(self.graph, "files", {})
                              if (tables := files_read(self.project, self.graph, key))}
        for key in getattr(self.graph, "order", ()):
            deps = [*self.graph.deps.get(key, ()), *self.through_files.get(key, ())]
            if any(d in bearing or d in self.tainted for d in deps):
                self.tainted.add(key)
        self.distrusted = self.stale if self.declared else frozenset()  # a project without PII guards nothing
        self.suspect = self._unknown_lineage()

    def _unknown_lineage(self) -> set[ColumnRef]:
        """The columns of unknown lineage in relations that read PII, and every column computed from them."""
        roots: dict[ColumnRef, ColumnRef | None] = {}
        stale = self.distrusted
        opaque = stale | (self.tainted & set(self.through_files))
        for key in self.tainted | stale:
            names = self.columns.columns.get(key, ())
            if key in opaque or not names or STAR in names:  # no (true) lineage: whatever is read of it downstream
                roots[(key, STAR)] = None
                roots.update({ref: None for ref in self.columns.readers if ref[0] == key})
            for name in names:
                refs = self.columns.sources.get((key, name))
                if key in opaque or refs is None or UNKNOWN in refs:
                    roots[(key, name)] = None
        # a stale table's columns are not what its YAML says now either: an `anonymised` tag there does not hold
        roots = {ref: None for ref in roots if ref not in self.pii and (ref[0] in stale or ref not in self.anonymised)}
        return set(spread(self.columns, roots, self.anonymised))

    def base(self, relation: str) -> str:
        return self.aliases.get(relation, relation)

    def masks(self, relation: str, names: Iterable[str]) -> dict[str, MaskKind]:
        """Column name (as published) → mask kind, for the columns of ``relation`` that must be masked."""

        key = self.base(relation)
        whole = (key, STAR) in self.pii  # a whole-row reference to PII: every column, redacted
        out: dict[str, MaskKind] = {}
        for name in names:
            ref = (key, name.lower())
            if ref in self.anonymised and key not in self.distrusted:
                continue
            if ref in self.pii:
                out[name] = self.declared.get(self.pii[ref] or ref, "redact")
            elif whole or ref in self.suspect or (key, STAR) in self.suspect:
                out[name] = "redact"
            elif key in self.tainted:
                refs = self.columns.sources.get(ref)
                if refs is None or UNKNOWN in refs:
                    out[name] = "redact"
        return out


_GLOB = re.compile(r"[*?\[{]")


def files_read(project: Project, graph: Any, key: str) -> set[str]:
    """The lake tables whose files a model reads directly, by the names and globs its SQL gives DuckDB's file
    functions (``graph.files``; relative to the project's folder). A name computed at run time (``?``) may be any
    of them."""
    lakes = {k: Path(a.path).resolve() for k, a in project.assets.items() if a.layer == "lake"}
    found: set[str] = set()
    for name in getattr(graph, "files", {}).get(key, ()):
        if name == "?":
            return set(lakes)
        path = Path(name)
        parts = (path if path.is_absolute() else Path(project.root) / path).parts
        fixed = Path(*parts[:next((i for i, p in enumerate(parts) if _GLOB.search(p)), len(parts))])
        with contextlib.suppress(OSError, ValueError):
            fixed = fixed.resolve()
        found.update(k for k, folder in lakes.items() if fixed.is_relative_to(folder) or folder.is_relative_to(fixed))
    return found


def suggest(project: Project, columns: ColumnGraph, samples: Mapping[str, Mapping[str, list[Any]]],
            known: Mapping[ColumnRef, object] | None = None) -> list[Suggestion]:
    """Columns that look personal (by name or by ``samples`` of their values) and are not tagged yet."""
    known = known if known is not None else pii_columns(project, columns)
    anonymised = tagged(project, ANONYMISED_TAGS)
    out: list[Suggestion] = []
    for asset, names in columns.columns.items():
        for column in names:
            ref = (asset, column)
            if column == STAR or ref in known or ref in anonymised:
                continue
            values = [v for v in samples.get(asset, {}).get(column, []) if v not in (None, "")]
            kinds = [value_kind(v) for v in values]
            reason = None
            for kind in {k for k in kinds if k}:
                share = kinds.count(kind) / len(values)
                if share >= MATCH_SHARE:
                    reason = f"{share:.0%} of sampled values look like a {kind}"
                    break
            named = name_kind(column)
            if reason is None and named:
                reason = f"the name suggests a {named}"
            if reason:
                out.append(Suggestion(asset, column, reason))
    return out


def sample_values(project: Project, published: Mapping[str, list[tuple[str, str]]],
                  rows: int = 500) -> dict[str, dict[str, list[Any]]]:
    """Up to ``rows`` values of each text or integer column of every published table (the first rows)."""
    found: dict[str, dict[str, list[Any]]] = {}
    with open_readonly(project) as con:
        for key, columns in published.items():
            wanted = [c for c, t in columns if t.upper() in ("VARCHAR", "BIGINT", "HUGEINT", "UBIGINT")]
            if not wanted:
                continue
            schema, table = key.split(".", 1)
            select = ", ".join('"' + c.replace('"', '""') + '"' for c in wanted)
            data = con.execute(f'select {select} from "{schema}"."{table}" limit {int(rows)}').fetchall()
            found[key] = {c.lower(): [r[i] for r in data] for i, c in enumerate(wanted)}
    return found
