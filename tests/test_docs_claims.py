"""The docs say only what is true: every claim that something is "not supported", "not yet" done, "coming" in
"a later release" or "does nothing" is listed here with why it still holds, and every `kiban COMMAND` the docs
show exists in the CLI.

A new claim of that kind fails this test until it is checked and listed; a listed claim that left the docs
fails it too (the list must not outlive what it vouches for). On main, project-format.md said "Only DuckDB is
supported in this release" and that the service-level keys did nothing; getting-started.md reserved
`usecases/` for "a later release"; operations.md said backfills did not yet yield to deadline work.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([*ROOT.glob("docs/**/*.md"), ROOT / "README.md"])
CLAIM = re.compile(r"not supported|unsupported|later release|future release|not yet|coming soon|coming with|"
                   r"does nothing|do nothing|only duckdb is|is planned", re.IGNORECASE)

# (file, words around the claim) → why it is true today
CLAIMS: dict[tuple[str, str], str] = {
    ("docs/coming-from-dbt.md", "so a second run of an unchanged project does nothing"):
        "the fingerprint is unchanged (tests/test_dbt_import.py, test_second_run_of_imported_project_is_fresh)",
    ("docs/service-levels.md", "(and was retried or repaired later, or not yet)"):
        "a verdict's wording, not a missing feature: failed steps are repaired later or not (tests/test_nights.py)",
    ("docs/operations.md", "A run with no new input does nothing"):
        "an incremental model with no new input is fresh (tests/test_incremental.py)",
    ("docs/project-format.md", "A run with no new input does nothing, as for any model"):
        "the same: the fingerprint is unchanged (tests/test_fresh_truth.py)",
    ("docs/scale-out.md", "landing in the repeated hour of a DST change keeps its UTC offset"):
        "Spark's column: its dialect has no kiban.shift (only PostgreSQL's does, tests/test_engine_generated.py)",
    ("docs/scale-out.md", "`x / -0.0` is `-inf` for a positive `x`"):
        "Spark's column: its division is SQLGlot's (only PostgreSQL's reads the zero's sign, test_engine_generated.py)",
    ("docs/scale-out.md", "whatever SQLGlot itself reports as unsupported"):
        "the dialect layer refuses what SQLGlot cannot translate (tests/test_engine_dialect.py)",
}


def claims_in_docs() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in CLAIM.finditer(text):
            line = text[text.rfind("\n", 0, match.start()) + 1:text.find("\n", match.end())]
            found[(str(path.relative_to(ROOT)), match.group(0))] = line.strip()
    return found


def test_every_claim_of_what_kiban_does_not_do_is_listed_with_why_it_holds() -> None:
    found = claims_in_docs()
    unlisted = [f"{file}: {line}" for (file, _), line in found.items()
                if not any(f == file and words in line for (f, words) in CLAIMS)]
    assert not unlisted, "check these claims against the product, then list them in CLAIMS:\n" + "\n".join(unlisted)


@pytest.mark.parametrize(("file", "words"), sorted(CLAIMS))
def test_each_listed_claim_is_still_in_the_docs(file: str, words: str) -> None:
    assert words in (ROOT / file).read_text(encoding="utf-8"), f"{file} no longer says it: remove it from CLAIMS"


def test_the_engines_the_docs_name_are_the_engines_kiban_opens() -> None:
    from kiban.engines import open_engine
    from kiban.errors import ConfigError

    text = (ROOT / "docs/project-format.md").read_text(encoding="utf-8")
    for scheme in ("duckdb:///", "postgresql://", "spark:///", "sc://"):
        assert f"`{scheme}" in text, scheme
    with pytest.raises(ConfigError) as err:  # anything else is refused with the list the docs give
        open_engine("mysql://x")
    assert all(s in str(err.value) for s in ("duckdb:///", "postgresql://", "spark:", "sc://"))


def cli_commands() -> set[str]:
    import typer

    import kiban.cli as cli

    for module in pkgutil.iter_modules(cli.__path__):
        importlib.import_module(f"kiban.cli.{module.name}")  # importing a module registers its commands
    group = typer.main.get_command(cli.app)
    return set(getattr(group, "commands", {}))


def test_every_command_the_docs_show_exists() -> None:
    commands = cli_commands()
    shown: dict[str, str] = {}
    for path in DOCS:
        for command in re.findall(r"(?:`|^\$ )kiban ([a-z][a-z-]*)", path.read_text(encoding="utf-8"), re.M):
            shown.setdefault(command, str(path.relative_to(ROOT)))
    missing = {c: f for c, f in shown.items() if c not in commands}
    assert not missing, f"the docs show commands the CLI does not have: {missing}"
