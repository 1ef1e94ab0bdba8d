"""Data-quality checks: declared in sidecars, fused into one scan per table, gating every publish.

Modules, one concept each:

* ``spec``      the declarations: what ``checks:`` in a sidecar may say (Pydantic; no SQL, no engine)
* ``suite``     the checks of one asset, named, located in their file, their SQL validated
* ``compiler``  a suite + the relation's columns → ONE SQL statement that measures every check
* ``freshness``, ``volume``, ``contract``   the judgements that need more than a count
* ``evaluate``  run a suite on a relation through a session → results (with failing-row samples)
* ``history``   results in the state store; the volume check's history; what ``kiban show`` prints
* ``gate``      the audit hook of ``kiban run``: a blocking failure keeps the old version published
* ``on_demand`` ``kiban check``: the same checks on published tables and lake tables

This package imports nothing heavy on import: ``kiban.project`` uses ``spec`` while loading a project.
"""
