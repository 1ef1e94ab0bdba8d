"""What a check declaration may say: the shapes of ``checks:`` in a sidecar, validated with Pydantic.

A check is written the way people write them in dbt or Soda, one list item each::

    columns:
      - name: status
        checks:
          - not_null
          - accepted_values: [completed, cancelled, returned]
          - pattern: email
            severity: warn            # options sit beside the kind
    checks:                           # table checks
      - unique: [order_id, line_no]
      - row_count: {min: 1}
      - freshness: {column: ordered_at, max_age: 1 business_day}

``normalise`` turns each item into ``{"kind": ..., **arguments, **options}`` so that Pydantic can
validate it against the model of its kind; error paths then still match the YAML (``checks.0.range.min``),
which lets messages name file:line. This module knows no SQL and no engine: user SQL (``expression``,
``sql``) is parsed when a suite is built (``kiban.checks.suite``), column names are checked against the
built relation when the checks run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from kiban.errors import closest
from kiban.status import Severity

KINDS = ("not_null", "unique", "accepted_values", "relationships", "range", "pattern", "row_count",
         "expression", "sql", "freshness", "volume", "contract", "drift", "accuracy")
MODEL_KINDS = ("drift", "accuracy")  # checks of ML models: judged by kiban.ml.checks, not compiled into the scan
OPTIONS = ("name", "severity", "fail_above", "samples")
TABLE_ONLY = ("row_count", "sql", "volume", "contract", "drift", "accuracy")  # about the whole table, not a column
NEEDS_COLUMN = ("not_null", "accepted_values", "relationships", "range", "pattern", "freshness")
# what a kind's scalar or list shorthand means: `accepted_values: [a, b]` is `{values: [a, b]}`
SHORTHAND = {"unique": "columns", "accepted_values": "values", "relationships": "to", "pattern": "pattern",
             "expression": "sql", "sql": "sql", "freshness": "max_age", "not_null": "column"}

# Ready-made patterns (RE2 syntax, matched against the whole value).
PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "jp_postal_code": r"[0-9]{3}-?[0-9]{4}",  # 〒100-0001 written as 100-0001 or 1000001
    # Japanese numbers: 10 or 11 digits from 0 (03-1234-5678, 090-1234-5678, 0312345678) or +81 without the 0
    "phone_jp": r"0[0-9]{9,10}|0[0-9]{1,4}-[0-9]{1,4}-[0-9]{3,4}|\+81-?[0-9]{1,4}-?[0-9]{1,4}-?[0-9]{3,4}",
}
# Constructs Python's `re` accepts but DuckDB's RE2 does not: reject them when the project loads.
_RE2_UNSUPPORTED = (("(?=", "lookahead"), ("(?!", "negative lookahead"), ("(?<=", "lookbehind"),
                    ("(?<!", "negative lookbehind"), ("(?>", "atomic group"), ("(?(", "conditional group"),
                    ("(?P=", "named backreference"))
_BACKREF = re.compile(r"(?<!\\)\\[1-9]")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(minutes?|mins?|m|hours?|h|days?|d|business_days?)\s*$")
_AGE_UNITS = {"minute": "minutes", "minutes": "minutes", "min": "minutes", "mins": "minutes", "m": "minutes",
              "hour": "hours", "hours": "hours", "h": "hours", "day": "days", "days": "days", "d": "days",
              "business_day": "business_days", "business_days": "business_days"}
# A column type for a contract: a plain DuckDB type name, optionally with (precision[, scale]) and [].
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*( [A-Za-z][A-Za-z0-9_]*)*(\(\s*\d+\s*(,\s*\d+\s*)?\))?(\[\])*$")
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

Scalar = str | int | float | bool
Bound = int | float | datetime | date


def parse_max_age(text: str) -> tuple[float, str]:
    """``"1 business_day"`` → (1, "business_days"); ``"36h"`` → (36, "hours"). Raises ValueError."""
    match = _AGE.match(str(text))
    if not match:
        raise ValueError(f"'{text}' is not an age (examples: 90 minutes, 36h, 2 days, 1 business_day)")
    amount, unit = float(match.group(1)), _AGE_UNITS[match.group(2)]
    if unit == "business_days" and amount != int(amount):
        raise ValueError(f"'{text}': business days are counted in whole days")
    return amount, unit


def check_regex(pattern: str) -> str:
    """Reject a regular expression that neither Python nor DuckDB's RE2 would accept."""
    for token, what in _RE2_UNSUPPORTED:
        if token in pattern:
            raise ValueError(f"the pattern uses a {what} ({token}…), which DuckDB's regular expressions (RE2) "
                             "do not support")
    if _BACKREF.search(pattern):
        raise ValueError("the pattern uses a backreference (\\1…), which DuckDB's regular expressions (RE2) "
                         "do not support")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression '{pattern}': {exc}") from None
    return pattern


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True, frozen=True)

    name: str | None = Field(default=None, pattern=_NAME, max_length=120)
    severity: Severity = Severity.ERROR


class _RowCheck(_Check):
    """A check that counts failing rows: it takes a threshold and keeps samples of the rows that fail."""

    fail_above: int | str = 0  # N rows, or "P%" of the rows
    samples: int = Field(default=5, ge=0, le=100, description="failing rows kept when the check fails")

    @field_validator("fail_above")
    @classmethod
    def _threshold(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError("fail_above is a number of rows (0 or more) or a percentage such as 5%")
            return value
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
        if not match or float(match.group(1)) > 100:
            raise ValueError(f"fail_above '{value}' is neither a number of rows nor a percentage such as 5%")
        return value

    def allowed(self, rows: int) -> int:
        """How many failing rows are tolerated among ``rows``."""
        if isinstance(self.fail_above, int):
            return self.fail_above
        return math.floor(float(self.fail_above.strip().rstrip("%")) / 100 * rows)


class NotNull(_RowCheck):
    kind: Literal["not_null"] = "not_null"
    column: str | None = None


class Unique(_RowCheck):
    kind: Literal["unique"] = "unique"
    columns: tuple[str, ...] = ()

    @field_validator("columns", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value


class AcceptedValues(_RowCheck):
    kind: Literal["accepted_values"] = "accepted_values"
    column: str | None = None
    values: tuple[Scalar, ...] = Field(min_length=1)


class Relationships(_RowCheck):
    kind: Literal["relationships"] = "relationships"
    column: str | None = None
    to: str = Field(description="the asset the values must exist in: layer.name, or layer.name.column")
    field: str | None = None  # its column; default: the same name as the checked column

    @field_validator("to")
    @classmethod
    def _asset(cls, value: str) -> str:
        parts = value.split(".")
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise ValueError(f"'{value}' is not an asset (layer.name) or an asset's column (layer.name.column)")
        return value

    @property
    def target(self) -> str:
        """The referenced asset as written (``layer.name``, or a bare name)."""
        parts = self.to.split(".")
        return ".".join(parts[:2]) if len(parts) == 3 else self.to

    @property
    def target_column(self) -> str | None:
        parts = self.to.split(".")
        return parts[2] if len(parts) == 3 else self.field


class Range(_RowCheck):
    kind: Literal["range"] = "range"
    column: str | None = None
    min: Bound | None = None
    max: Bound | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("range needs min, max or both")
        if any(isinstance(b, float) and not math.isfinite(b) for b in (self.min, self.max)):
            raise ValueError("range: leave a bound out instead of writing an infinite one")
        if self.min is not None and self.max is not None:
            try:
                wrong = self.min > self.max  # type: ignore[operator]
            except TypeError:
                raise ValueError("range: min and max must be of the same kind (numbers, dates or times)") from None
            if wrong:
                raise ValueError(f"range: min {self.min} is above max {self.max}")
        return self


class Pattern(_RowCheck):
    kind: Literal["pattern"] = "pattern"
    column: str | None = None
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _valid(cls, value: str) -> str:
        if value in PATTERNS:
            return value
        if re.fullmatch(r"[a-z_]+", value):  # a bare word is meant as one of the ready-made patterns
            near = closest(value, PATTERNS)
            hint = f"did you mean '{near}'?" if near else f"ready-made patterns: {', '.join(PATTERNS)}"
            raise ValueError(f"unknown pattern '{value}' ({hint}); a pattern of lower-case letters only "
                             "is read as the name of a ready-made one")
        return check_regex(value)

    @property
    def regex(self) -> str:
        return PATTERNS.get(self.pattern, self.pattern)


class RowCount(_Check):
    kind: Literal["row_count"] = "row_count"
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCount:
        if self.min is None and self.max is None:
            raise ValueError("row_count needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"row_count: min {self.min} is above max {self.max}")
        return self


class Expression(_RowCheck):
    kind: Literal["expression"] = "expression"
    column: str | None = None  # only where it is listed; the condition may use any column
    sql: str = Field(min_length=1, description="a SQL condition every row must satisfy")


class Sql(_RowCheck):
    kind: Literal["sql"] = "sql"
    sql: str = Field(min_length=1, description="a query that returns the failing rows")


class Freshness(_Check):
    kind: Literal["freshness"] = "freshness"
    column: str | None = None
    max_age: str
    calendar: str | None = None  # for business days; default: the project's calendar

    @field_validator("max_age", mode="before")
    @classmethod
    def _age(cls, value: object) -> object:
        parse_max_age(str(value))
        return str(value)

    @property
    def age(self) -> tuple[float, str]:
        return parse_max_age(self.max_age)


class Volume(_Check):
    kind: Literal["volume"] = "volume"
    sum: str | None = None  # also judge the sum of this column
    window: int = Field(default=28, ge=7, le=400, description="previous days the usual level is taken from")
    min_history: int = Field(default=21, ge=7, le=400, description="days of history needed before judging")
    threshold: float = Field(default=3.5, gt=0, description="robust z-score beyond which a value is an anomaly")
    direction: Literal["both", "drop", "rise"] = "both"


class Contract(_Check):
    kind: Literal["contract"] = "contract"
    strict: bool = False  # also fail on columns the sidecar does not declare


class Drift(_Check):
    """Feature drift of the checked table against a model's training data (PSI and Kolmogorov–Smirnov)."""

    kind: Literal["drift"] = "drift"
    model: str = Field(min_length=1, description="the training asset whose current version's training data "
                       "is the reference, e.g. warehouse.demand_model")
    columns: tuple[str, ...] = ()  # default: every feature kept at training time that the table has
    psi: float = Field(default=0.25, gt=0, description="largest population stability index tolerated")
    ks: float | None = Field(default=None, gt=0, le=1, description="largest KS distance tolerated")


class Accuracy(_Check):
    """How far predictions in the checked table were from the actuals, once they arrived."""

    kind: Literal["accuracy"] = "accuracy"
    actuals: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$",
                         description="the asset holding the actual values: layer.name")
    on: tuple[str, ...] = Field(min_length=1, description="columns that match a prediction to its actual")
    predicted: str
    actual: str
    metric: Literal["mape", "wape", "mae", "rmse"] = "mape"  # wape: sum of errors / sum of actuals
    max: float = Field(gt=0, description="the largest error tolerated (mape, wape: 0.2 is 20 %)")

    @field_validator("on", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value


CheckSpec = (NotNull | Unique | AcceptedValues | Relationships | Range | Pattern | RowCount | Expression | Sql
             | Freshness | Volume | Contract | Drift | Accuracy)
_MODELS: dict[str, type[BaseModel]] = {
    m.model_fields["kind"].default: m for m in (NotNull, Unique, AcceptedValues, Relationships, Range, Pattern,
                                                 RowCount, Expression, Sql, Freshness, Volume, Contract, Drift,
                                                 Accuracy)}


def normalise(raw: Any, column_level: bool) -> Any:
    """One list item as written (``not_null``, ``{range: {min: 0}, severity: warn}``) → ``{"kind": ...}``."""
    if isinstance(raw, BaseModel):
        return raw
    if isinstance(raw, str):
        kind, args, options = raw, None, {}
    elif isinstance(raw, dict):
        kinds = [k for k in raw if k in KINDS]
        if len(kinds) > 1:
            raise ValueError(f"one check per list item: {' and '.join(kinds)} are two checks; "
                             "write each as its own list item")
        settings = set(_MODELS[kinds[0]].model_fields) - {"kind"} if kinds else set()
        strange = [k for k in raw if k not in KINDS and k not in OPTIONS and k not in settings]
        if strange:
            word = str(strange[0])
            if kinds:
                near = closest(word, [*OPTIONS, *settings])
                raise ValueError(f"unknown setting '{word}' for a {kinds[0]} check"
                                 + (f"; did you mean '{near}'?" if near else
                                    f" (it takes: {', '.join(sorted(settings | set(OPTIONS)))})"))
            raise ValueError(_unknown_kind(word))
        if not kinds:
            raise ValueError(f"a check needs a kind ({', '.join(KINDS)})")
        kind = kinds[0]
        # options, and settings written beside the kind (`- volume:` / `  sum: amount`), join the settings
        args, options = raw[kind], {k: v for k, v in raw.items() if k != kind}
    else:
        raise ValueError("a check is a kind such as not_null, or a mapping such as {accepted_values: [a, b]}")
    if kind not in KINDS:
        raise ValueError(_unknown_kind(kind))
    if column_level and kind in TABLE_ONLY:
        raise ValueError(f"{kind} is about the whole table: list it under the model's `checks:`, "
                         "not under a column")
    if args is None or args is True:
        fields: dict[str, Any] = {}
    elif isinstance(args, dict):
        fields = dict(args)
    elif kind in SHORTHAND and not (column_level and kind == "not_null"):
        fields = {SHORTHAND[kind]: args}
    else:
        raise ValueError(f"{kind} takes a mapping of its settings, e.g. {_EXAMPLES.get(kind, '{...}')}")
    clash = set(fields) & set(options)
    if clash:
        raise ValueError(f"'{sorted(clash)[0]}' is given twice for this {kind} check")
    fields.update(options)
    if not column_level and kind in NEEDS_COLUMN and not fields.get("column"):
        raise ValueError(f"a table-level {kind} check needs `column:` (or list it under that column's `checks:`)")
    if not column_level and kind == "unique" and not fields.get("columns"):
        raise ValueError("a table-level unique check names its columns: unique: [a, b]")
    return {"kind": kind, **fields}


_EXAMPLES = {"range": "{min: 0, max: 100}", "row_count": "{min: 1}", "volume": "{sum: amount}",
             "contract": "{strict: true}", "drift": "{model: warehouse.demand_model, psi: 0.25}",
             "accuracy": "{actuals: warehouse.daily_demand, on: [day], predicted: forecast, actual: qty, max: 0.3}"}


def _unknown_kind(word: str) -> str:
    near = closest(word, KINDS)
    return f"unknown check '{word}'" + (f"; did you mean '{near}'?" if near else f" (kinds: {', '.join(KINDS)})")


_Tagged = Annotated[CheckSpec, Field(discriminator="kind")]
ColumnCheck = Annotated[_Tagged, BeforeValidator(lambda v: normalise(v, column_level=True))]
TableCheck = Annotated[_Tagged, BeforeValidator(lambda v: normalise(v, column_level=False))]


def check_type(value: str | None) -> str | None:
    """A contract's column type: a plain DuckDB type name (validated here, resolved by DuckDB when checked)."""
    if value is None:
        return None
    if not _TYPE.match(value.strip()):
        raise ValueError(f"'{value}' is not a column type (examples: INTEGER, VARCHAR, DECIMAL(12,2), "
                         "TIMESTAMP WITH TIME ZONE)")
    return value.strip()


def columns_of(spec: CheckSpec) -> tuple[str, ...]:
    """The column(s) a check is about (empty for table checks and conditions without a home column)."""
    if isinstance(spec, Unique):
        return spec.columns
    column = getattr(spec, "column", None)
    return (column,) if column else ()


def row_level(spec: CheckSpec) -> bool:
    """Whether the check counts failing rows (and so takes ``fail_above`` and keeps samples)."""
    return isinstance(spec, _RowCheck)


def default_name(spec: CheckSpec) -> str:
    """The name a check gets when it is not given one: ``not_null_customer_id``, ``unique_order_id_line_no``."""
    columns = columns_of(spec)
    return "_".join((spec.kind, *columns)) if columns and spec.kind not in TABLE_ONLY else spec.kind




@dataclass(frozen=True)
class Declared:
    """A check as declared in one sidecar: its settings, its name, and the YAML path of its list item."""

    spec: CheckSpec
    name: str
    path: tuple[str | int, ...]


def declared(columns: Sequence[Any], checks: Sequence[CheckSpec]
             ) -> tuple[list[Declared], list[tuple[tuple[str | int, ...], str]]]:
    """The checks of a sidecar (column checks first, in file order) with their names, and naming problems.

    A check without ``name:`` is called after its kind and column(s); when two would share a name the later
    ones get ``_2``, ``_3``. Two checks *given* the same name are a problem: (YAML path, message).
    """
    items: list[tuple[CheckSpec, tuple[str | int, ...]]] = []
    for i, column in enumerate(columns):
        items += [(spec, ("columns", i, "checks", j)) for j, spec in enumerate(column.checks)]
    items += [(spec, ("checks", j)) for j, spec in enumerate(checks)]
    problems: list[tuple[tuple[str | int, ...], str]] = []
    given: dict[str, tuple[str | int, ...]] = {}
    for spec, path in items:
        if spec.name is None:
            continue
        if spec.name in given:
            problems.append((path, f"two checks are named {spec.name}; check names must differ within a sidecar"))
        given.setdefault(spec.name, path)
    taken = set(given)
    out: list[Declared] = []
    for spec, path in items:
        name = spec.name
        if name is None:
            base = name = default_name(spec)
            n = 1
            while name in taken:
                n += 1
                name = f"{base}_{n}"
            taken.add(name)
        out.append(Declared(spec, name, path))
    return out, problems


__all__ = ["KINDS", "PATTERNS", "CheckSpec", "ColumnCheck", "Declared", "TableCheck", "check_type", "columns_of",
           "declared", "default_name", "normalise", "parse_max_age", "row_level"]
