"""``kiban pg``: the published marts over the PostgreSQL protocol, for BI tools, ODBC and ``psql``.

- :mod:`kiban.pgwire.messages`  the v3 protocol's messages and how values travel as text (or binary)
- :mod:`kiban.pgwire.catalog`   which statement goes where: a catalog question, a data query, SET/SHOW, a write
- :mod:`kiban.pgwire.server`    connections: sign-in with console users, simple and extended query, errors
"""
