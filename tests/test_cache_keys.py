"""The parse caches are tied to SQLGlot's release (the SQL cache file by its version, the lineage cache by its
keys): after an upgrade nothing the old release said is served (its normalised SQL feeds fingerprints), and on one
release a warm cache is still hit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import kiban.catalog.cache as lineage_cache
import kiban.graph.sqlrefs as sqlrefs
from kiban.cachefile import library_version

SQL = "select a, b from lake.t where a > 1"


def test_the_version_is_read_without_importing_the_library() -> None:
    assert library_version("sqlglot")[0].isdigit()
    assert library_version("no-such-library-here") == "?"


def test_a_warm_cache_is_hit_on_the_same_release(tmp_path: Path) -> None:
    first = sqlrefs.SqlCache(tmp_path / "sql.json")
    parsed = first.parse(SQL, tmp_path / "m.sql")
    first.save()
    again = sqlrefs.SqlCache(tmp_path / "sql.json")
    assert again.parse(SQL, tmp_path / "m.sql") == parsed
    assert not again.dirty


def test_another_release_of_sqlglot_misses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert f"sqlglot={library_version('sqlglot')}" in sqlrefs.parser_versions()  # an entry says who parsed it
    first = sqlrefs.SqlCache(tmp_path / "sql.json")
    first.parse(SQL, tmp_path / "m.sql")
    first.save()
    monkeypatch.setattr(sqlrefs, "parser_versions", lambda: "duckdb=1.5.5,sqlglot=999.0.0")  # as after an upgrade
    upgraded = sqlrefs.SqlCache(tmp_path / "sql.json")
    upgraded.parse(SQL, tmp_path / "m.sql")
    assert upgraded.dirty  # parsed again, not served from the old release's entry


def test_the_lineage_cache_keys_on_the_release_too(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = {"lake.t": ["a", "b"]}
    before = lineage_cache.LineageCache._key(SQL, schema)
    monkeypatch.setattr(lineage_cache, "library_version", lambda name: "999.0.0")
    assert lineage_cache.LineageCache._key(SQL, schema) != before


def test_a_warm_cache_still_does_not_import_sqlglot(tmp_path: Path) -> None:
    """Reading SQLGlot's release for the cache's version must not import SQLGlot itself."""
    (tmp_path / "m.sql").write_text(SQL)
    code = ("import sys\nfrom pathlib import Path\nimport kiban.graph.sqlrefs as s\n"
            f"c = s.SqlCache(Path({str(tmp_path / 'sql.json')!r}))\n"
            f"c.parse({SQL!r}, Path('m.sql'))\nc.save()\n"
            "for k in [k for k in sys.modules if k.startswith(('kiban', 'sqlglot'))]: del sys.modules[k]\n"
            "import kiban.graph.sqlrefs as s\n"
            f"c = s.SqlCache(Path({str(tmp_path / 'sql.json')!r}))\nc.parse({SQL!r}, Path('m.sql'))\n"
            "print(c.dirty, 'sqlglot' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr[-1000:]
