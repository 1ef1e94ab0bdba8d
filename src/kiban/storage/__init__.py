"""Storage several machines share: the lake's loads and the published warehouse/mart tables as Delta tables on
object storage (S3 protocol) or on a local disk, read by snapshot (docs/storage.md).

- :mod:`kiban.storage.spec` — the ``storage:`` block of ``kiban.yml`` (where, and the credentials as ``env:``);
- :mod:`kiban.storage.delta` — the Delta tables: one commit per load, a retraction is a new snapshot, a
  snapshot's files by version;
- :mod:`kiban.storage.cache` — a snapshot's immutable data files copied once to a local folder, so DuckDB reads
  them as Parquet (no DuckDB extension needed);
- :mod:`kiban.storage.publish` — a published warehouse/mart table written as one Delta commit.

``deltalake`` (the ``storage`` extra) is imported lazily: a project without ``storage:`` never pays for it.
"""
