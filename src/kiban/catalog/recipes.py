"""SQL recipes: saved, named, parameterised queries in ``recipes/*.yml``.

A recipe's SQL names its parameters as DuckDB placeholders (``$store``); values are converted to the
declared type and *bound*, never pasted into the text, so no value can change what the query does.
A recipe runs through the console, so it is checked, read-only, time-limited, masked and recorded like
any query. ``promote`` turns a recipe that proved useful into a mart model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kiban.catalog.safety import check_query
from kiban.errors import KibanError, ProjectError, ProjectErrors, UsageError, did_you_mean

if TYPE_CHECKING:
    from kiban.catalog.console import QueryConsole, QueryResult
    from kiban.catalog.usage import Actor
    from kiban.project import Project

RECIPES_DIR = "recipes"
_INT = re.compile(r"^[+-]?\d{1,19}$")
_FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
MAX_TEXT = 1000


class ParamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["int", "float", "date", "text", "choice"] = "text"
    description: str = ""
    default: Any = None
    choices: tuple[str, ...] = ()
    # "asset.column" whose distinct values the console offers as a picker (a text or int parameter)
    values_from: str | None = Field(default=None, pattern=r"^(lake|warehouse|mart)\.\w+\.\w+$")

    @model_validator(mode="after")
    def _choices(self) -> ParamConfig:
        if self.values_from is not None and self.type not in ("text", "int"):
            raise ValueError("`values_from` applies to text and int parameters")
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice parameter lists its `choices`")
        if self.type != "choice" and self.choices:
            raise ValueError("`choices` only apply to `type: choice`")
        if self.default is not None:
            coerce("default", self, self.default)
        return self


class RecipeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()
    sql: str = Field(min_length=1)
    params: dict[str, ParamConfig] = Field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    config: RecipeConfig

    @property
    def sql(self) -> str:
        return self.config.sql


class ParameterError(KibanError):
    exit_code = 2


def coerce(name: str, param: ParamConfig, raw: Any) -> Any:
    """``raw`` (text from a command line or a form, or a YAML value) as the parameter's type."""
    text = raw.strip() if isinstance(raw, str) else raw
    kind = param.type
    try:
        if kind == "int":
            if isinstance(text, bool) or not (isinstance(text, int) or (isinstance(text, str) and _INT.match(text))):
                raise ValueError
            number = int(text)
            if not -(2**63) <= number < 2**63:
                raise ValueError
            return number
        if kind == "float":
            if isinstance(text, bool) or not (isinstance(text, int | float) or
                                              (isinstance(text, str) and _FLOAT.match(text))):
                raise ValueError
            return float(text)
        if kind == "date":
            return text if isinstance(text, date) else date.fromisoformat(str(text))
        if kind == "choice":
            if str(text) not in param.choices:
                raise ParameterError(f"parameter {name}: '{text}' is not one of {', '.join(param.choices)}",
                                     did_you_mean(str(text), param.choices))
            return str(text)
        value = str(raw)
        if "\x00" in value:
            raise ParameterError(f"parameter {name}: the text contains a NUL character")
        if len(value) > MAX_TEXT:
            raise ParameterError(f"parameter {name}: the text is longer than {MAX_TEXT} characters")
        return value
    except (ValueError, TypeError):
        example = {"int": "42", "float": "3.5", "date": "2026-12-01"}[kind]
        article = "an" if kind == "int" else "a"
        raise ParameterError(f"parameter {name}: '{raw}' is not {article} {kind}",
                             f"for example {name}={example}") from None


def placeholders(sql: str) -> list[str]:
    """The named placeholders (``$name``) of ``sql``, in order, each once."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except (sqlglot.ParseError, sqlglot.errors.TokenError):
        return []
    names: list[str] = []
    for node in tree.find_all(exp.Placeholder):
        name = str(node.this or "")
        if name and name not in names:
            names.append(name)
    return names


def load_recipes(project: Project) -> dict[str, Recipe]:
    """Every ``recipes/*.yml``; errors name the file and line."""
    from kiban.project.yamlfile import read_config, yaml_files

    folder = project.root / RECIPES_DIR
    if not folder.is_dir():
        return {}
    found: dict[str, Recipe] = {}
    errors: list[ProjectError] = []
    for path in yaml_files(folder):
        read = read_config(path, RecipeConfig, errors)
        if read is None:
            continue
        doc, config = read
        used = placeholders(config.sql)
        for name in used:
            if name not in config.params:
                errors.append(ProjectError(f"the SQL uses ${name}, but `params:` does not declare it",
                                           doc.location(("sql",)), did_you_mean(name, config.params)
                                           or f"add params: {{{name}: {{type: text}}}}"))
        for name in config.params:
            if name not in used:
                errors.append(ProjectError(f"parameter {name} is declared but the SQL never uses ${name}",
                                           doc.location(("params", name))))
        found[path.stem] = Recipe(path.stem, path, config)
    if errors:
        raise errors[0] if len(errors) == 1 else ProjectErrors(errors)
    return found


def get_recipe(project: Project, name: str) -> Recipe:
    recipes = load_recipes(project)
    if name not in recipes:
        raise UsageError(f"no recipe named '{name}'", did_you_mean(name, recipes)
                         or f"recipes live in {RECIPES_DIR}/NAME.yml")
    return recipes[name]


def bind(recipe: Recipe, values: dict[str, Any]) -> dict[str, Any]:
    """Every parameter's typed value: given, else its default; unknown and missing ones are errors."""
    params = recipe.config.params
    for name in values:
        if name not in params:
            raise ParameterError(f"recipe {recipe.name} has no parameter '{name}'",
                                 did_you_mean(name, params) or f"its parameters: {', '.join(params) or 'none'}")
    bound: dict[str, Any] = {}
    for name, param in params.items():
        if name in values:
            bound[name] = coerce(name, param, values[name])
        elif param.default is not None:
            bound[name] = coerce(name, param, param.default)
        else:
            raise ParameterError(f"recipe {recipe.name} needs a value for {name} ({param.type})",
                                 f"pass -p {name}=VALUE")
    return bound


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["store=3", "day=2026-12-01"]`` → a dict (the CLI's ``-p key=value``)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"'{pair}' is not key=value", "for example -p store=3")
        out[key.strip()] = value
    return out


def run_recipe(console: QueryConsole, recipe: Recipe, values: dict[str, Any], actor: Actor,
               **options: Any) -> QueryResult:
    """Run a recipe through the console with its parameters bound (recorded as kind ``recipe``)."""
    return console.run(recipe.sql, actor, params=bind(recipe, values), kind="recipe", name=recipe.name, **options)


def promote(project: Project, recipe: Recipe, values: dict[str, Any], name: str | None = None) -> list[Path]:
    """Scaffold ``models/mart/NAME.sql`` (parameters fixed to their values) and its sidecar ``NAME.yml``."""
    import sqlglot
    from sqlglot import exp

    target = (name or recipe.name).lower()
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", target):
        raise UsageError(f"'{target}' cannot name a model", "use letters, digits and _")
    sql_path = project.root / "models" / "mart" / f"{target}.sql"
    yml_path = sql_path.with_suffix(".yml")
    for path in (sql_path, yml_path):
        if path.exists():
            raise UsageError(f"{path.relative_to(project.root)} already exists", "pass --name for another name")
    bound = bind(recipe, values)
    for key, value in bound.items():  # a model file is read as text: a CR (or another control) would not survive
        if isinstance(value, str) and any(not c.isprintable() and c not in "\n\t" for c in value):
            raise ParameterError(f"parameter {key}: a value written into a model may not contain control "
                                 "characters (other than newline and tab)")
    from kiban.graph import build_graph

    marts = [a for a in check_query(recipe.sql, build_graph(project).assets).assets if a.startswith("mart.")]
    if marts:
        raise UsageError(f"recipe {recipe.name} reads {', '.join(marts)}; a mart model reads only the lake and "
                         "the warehouse", "make the recipe read the warehouse tables the mart is built from")

    def fix(node: Any) -> Any:
        if isinstance(node, exp.Placeholder) and str(node.this) in bound:
            value = bound[str(node.this)]
            if isinstance(value, date):
                return exp.cast(exp.Literal.string(value.isoformat()), "date")
            return exp.convert(value)
        return node

    tree = sqlglot.parse_one(recipe.sql, read="duckdb").transform(fix)
    body = tree.sql(dialect="duckdb", pretty=True)
    _proven_single_select(body, tree)
    fixed = ", ".join(f"{k}={v}" for k, v in bound.items())
    # the values a person typed go into the sidecar as YAML data (quoted by the dumper), never into the SQL
    # file's text outside its bound-and-quoted literals: not even into a comment
    header = f"-- promoted from {RECIPES_DIR}/{_one_line(recipe.path.name)}"
    if bound:
        header += f" (parameters fixed: {', '.join(bound)}; values in {yml_path.name})"
    sql_path.parent.mkdir(parents=True, exist_ok=True)
    sql_path.write_text(f"{header}\n{body}\n", encoding="utf-8")
    import yaml

    description = recipe.config.description or f"Promoted from recipe {recipe.name}."
    if fixed:
        description += f" Parameters fixed at promotion: {fixed}."
    sidecar: dict[str, Any] = {"description": description}
    if recipe.config.owner:
        sidecar["owner"] = recipe.config.owner
    if recipe.config.tags:
        sidecar["tags"] = list(recipe.config.tags)
    yml_path.write_text(yaml.safe_dump(sidecar, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return [sql_path, yml_path]


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _proven_single_select(body: str, tree: Any) -> None:
    """The generated model is exactly one SELECT, and reads back as the tree it was made from (a value can
    only have become a literal); DuckDB's parser counts the statements."""
    import duckdb
    import sqlglot

    con = duckdb.connect()
    try:
        kinds = [str(st.type).rsplit(".", 1)[-1] for st in con.extract_statements(body)]
    finally:
        con.close()
    if kinds != ["SELECT"] or sqlglot.parse_one(body, read="duckdb") != tree:
        raise UsageError("the promoted model would not be the recipe's query with its values as literals",
                         "report this: a parameter value could not be written safely")


__all__ = ["ParamConfig", "Recipe", "RecipeConfig", "bind", "coerce", "load_recipes", "promote",
           "run_recipe"]
