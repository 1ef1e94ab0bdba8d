"""Importing a dbt project as a kiban project (``kiban import dbt``).

Jinja is rendered once, at import, by a real Jinja2 engine with a dbt-compatible context; the
imported project is plain DuckDB SQL from then on. One concept per module:

- :mod:`kiban.dbt.project`: reading the dbt project (dbt_project.yml, nodes, property files, configs)
- :mod:`kiban.dbt.relation`: relations, columns and query results as dbt macros see them
- :mod:`kiban.dbt.builtins`: dbt-core's cross-database macros, written for DuckDB
- :mod:`kiban.dbt.context`: the Jinja environment, the macros and the context a model is rendered with
- :mod:`kiban.dbt.layers`: which kiban layer and name each dbt node becomes
- :mod:`kiban.dbt.incremental`: dbt incremental models → kiban incremental models
- :mod:`kiban.dbt.seeds`: seeds → typed lake tables
- :mod:`kiban.dbt.checks`: tests → checks
- :mod:`kiban.dbt.importer`: the import from start to end
- :mod:`kiban.dbt.writer`: writing the new project, never half of it
- :mod:`kiban.dbt.report`: what was converted, approximated and not converted
- :mod:`kiban.dbt.verify`: kiban's tables compared with dbt-duckdb's
- (:mod:`kiban.project.pasted` gives the error for ``{{ … }}`` pasted into a kiban model)

Nothing here is imported by ``kiban`` at start-up.
"""
