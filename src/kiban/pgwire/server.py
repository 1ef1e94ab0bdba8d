"""The PostgreSQL-protocol server: console users sign in, every read is the console's masked read.

One thread per connection (``socketserver``); TLS when the client asks for it and a certificate is configured
(``--require-tls`` refuses clients that do not). Sign-in asks for the password as the protocol's clear-text
message (``AuthenticationCleartextPassword``: use TLS off loopback): a console user's
password (throttled exactly like the web sign-in) or one of their API tokens. Nothing can be written: writes,
DDL and COPY are refused with SQLSTATE 25006. Data queries run through :class:`kiban.catalog.reading.Reader`
(kind ``bi``): checked, proven to read only masked views, PII masked unless the user's role has clearance,
bounded in time, memory and threads, admitted like console queries, and recorded in the query history. Each
data query runs in a worker process bounded by the OS like a console query (``RLIMIT_AS``), so one that wants
too much memory fails alone and the endpoint keeps serving every other connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import socketserver
import ssl
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kiban.catalog import sandbox
from kiban.catalog.admission import Admission
from kiban.catalog.console import (
    DEFAULT_ADDRESS_SPACE,
    DEFAULT_MAX_PER_USER,
    DEFAULT_MAX_RUNNING,
    ConsoleBusy,
    QueryStopped,
)
from kiban.catalog.reading import Reader, shared_reader
from kiban.catalog.safety import QueryRefused
from kiban.catalog.usage import Actor
from kiban.catalog.warehouse import published_columns
from kiban.errors import KibanError, UsageError
from kiban.pgwire import messages as m
from kiban.pgwire.catalog import SERVER_VERSION, Route, answer, route
from kiban.store import Store
from kiban.web.accounts import Accounts, ThrottledError, User
from kiban.web.catalog_views import PII_ROLE

if TYPE_CHECKING:
    import pyarrow as pa

    from kiban.project import Project

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0  # each query runs in a worker process bounded by the OS, like a console query
HANDSHAKE_SECONDS = 10.0
WRITE_BYTES = 1 << 20  # queued messages are written once they reach this size (or the client is to speak)
MEMORY_LIMIT = "1GB"
THREADS = 1
_PARAM = re.compile(r"\$(\d+)")


class ProtocolError(Exception):
    """The client sent something this server does not speak: the connection ends."""


@dataclass
class Prepared:
    sql: str
    oids: list[int]
    route: Route


@dataclass
class Portal:
    prepared: Prepared
    params: list[Any]
    formats: list[int]
    table: pa.Table | None = None  # run at Describe (a client wants the columns first) or at Execute
    sent: int = 0
    tag: str = ""  # the run's command tag (FETCH n for a cursor's rows)


@dataclass
class Cursor:
    table: pa.Table  # the whole result, run when the cursor is declared (a read of the published snapshot)
    sent: int = 0


MAX_CURSORS = 64  # per connection: a client that never closes its cursors does not hold every result


@dataclass
class Connection:
    """One client: its user, settings, prepared statements and portals."""

    server: PgServer
    sock: socket.socket
    ip: str
    user: User | None = None
    settings: dict[str, str] = field(default_factory=dict)
    statements: dict[str, Prepared] = field(default_factory=dict)
    portals: dict[str, Portal] = field(default_factory=dict)
    catalog: Any = None  # the published relations' columns, for catalog questions
    catalog_version: float = -1.0
    cursors: dict[str, Cursor] = field(default_factory=dict)  # DECLAREd cursors (psqlODBC's Use Declare/Fetch)
    failed: bool = False  # an error in the extended protocol: skip to Sync
    encrypted: bool = False  # the connection is TLS
    outbox: list[bytes] = field(default_factory=list)  # messages not yet written (see send)
    queued: int = 0

    # -- the wire -------------------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Queued: what the server says goes out in few large writes — when the client is to speak next (a
        read), or every :data:`WRITE_BYTES` (rows come in blocks of ``m.ROWS_PER_WRITE``)."""
        self.outbox.append(data)
        self.queued += len(data)
        if self.queued >= WRITE_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.outbox:
            data = b"".join(self.outbox) if len(self.outbox) > 1 else self.outbox[0]
            self.outbox, self.queued = [], 0
            self.sock.sendall(data)

    def read_exact(self, size: int) -> bytes:
        self.flush()
        chunks, left = [], size
        while left:
            chunk = self.sock.recv(min(left, 1 << 16))
            if not chunk:
                raise ConnectionError("the client went away")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def read_message(self) -> tuple[bytes, bytes]:
        kind = self.read_exact(1)
        (length,) = struct.unpack("!i", self.read_exact(4))
        if length < 4 or length > 1 << 28:
            raise ProtocolError("a message of an impossible length")
        return kind, self.read_exact(length - 4)

    # -- start-up and sign-in -----------------------------------------------------------------------------
    def start(self) -> bool:
        while True:
            (length,) = struct.unpack("!i", self.read_exact(4))
            if length < 8 or length > 10_000:
                raise ProtocolError("a start-up packet of an impossible length")
            body = self.read_exact(length - 4)
            (code,) = struct.unpack("!i", body[:4])
            if code == m.SSL_REQUEST and self.server.tls is not None and not self.encrypted:
                self.send(b"S")
                self.sock = self._wrap(self.server.tls)
                continue
            if code in (m.SSL_REQUEST, m.GSS_REQUEST):
                self.send(b"N")  # no TLS configured (or asked twice): serve on loopback, or give --tls-cert
                continue
            if code == m.CANCEL_REQUEST:
                return False
            if code != m.PROTOCOL_3:
                self.send(m.error("0A000", "only protocol version 3 is supported", severity="FATAL"))
                return False
            break
        if self.server.require_tls and not self.encrypted:
            self.send(m.error("28000", "this endpoint takes TLS connections only: connect with sslmode=require",
                              severity="FATAL"))
            return False
        values = body[4:].split(b"\0")
        params = {values[i].decode(): values[i + 1].decode() for i in range(0, len(values) - 1, 2) if values[i]}
        name = params.get("user", "")
        self.send(m.authentication(3))  # clear-text password
        kind, data = self.read_message()
        if kind != b"p":
            raise ProtocolError("expected a password")
        password = data.rstrip(b"\0").decode("utf-8", "replace")
        user = self.server.sign_in(name, password, self.ip)
        if isinstance(user, str):
            self.send(m.error("28P01", user, severity="FATAL"))
            return False
        self.user = user
        tz = self.server.project.config.timezone or "UTC"
        self.settings = {"server_version": SERVER_VERSION, "server_encoding": "UTF8", "client_encoding": "UTF8",
                         "datestyle": "ISO, MDY", "timezone": tz, "integer_datetimes": "on",
                         "standard_conforming_strings": "on", "is_superuser": "off",
                         "session_authorization": user.name, "application_name": params.get("application_name", ""),
                         "transaction_isolation": "read committed", "default_transaction_read_only": "on",
                         "transaction_read_only": "on", "search_path": "mart, warehouse, lake",
                         "max_identifier_length": "63", "intervalstyle": "postgres",
                         "database": params.get("database") or name}
        shown = ("server_version", "server_encoding", "client_encoding", "datestyle", "timezone", "integer_datetimes",
                 "standard_conforming_strings", "is_superuser", "session_authorization", "application_name",
                 "default_transaction_read_only", "intervalstyle")
        names = {"datestyle": "DateStyle", "timezone": "TimeZone", "intervalstyle": "IntervalStyle"}
        self.send(m.authentication(0) + m.pairs((names.get(k, k), self.settings[k]) for k in shown)
                  + m.message(b"K", struct.pack("!ii", os.getpid() & 0x7FFFFFFF, secrets.randbits(31)))
                  + m.ready())
        return True

    def _wrap(self, context: ssl.SSLContext) -> socket.socket:
        """The TLS handshake, bounded in time (a client that stops half-way does not hold a thread)."""
        self.flush()  # the "S" goes out in clear
        self.sock.settimeout(HANDSHAKE_SECONDS)
        try:
            wrapped = context.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            raise ProtocolError(f"the TLS handshake failed: {exc}") from None
        wrapped.settimeout(None)
        self.encrypted = True
        return wrapped

    @property
    def actor(self) -> Actor:
        assert self.user is not None
        return Actor(self.user.name, None, self.user.can(PII_ROLE))

    # -- the loop -----------------------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            kind, data = self.read_message()
            if kind == b"X":
                return
            if kind == b"Q":
                self.simple(data.rstrip(b"\0").decode("utf-8", "replace"))
            elif kind == b"S":
                self.failed = False
                self.send(m.ready())
            elif kind == b"H":
                continue
            elif self.failed:
                continue  # after an error, the extended protocol skips everything up to Sync
            else:
                try:
                    self.extended(kind, data)
                except (KibanError, ValueError, ProtocolError, UnicodeError, struct.error, IndexError) as exc:
                    self.failed = True
                    self.send(self.error(exc))

    # -- simple query -------------------------------------------------------------------------------------
    def simple(self, text: str) -> None:
        try:
            statements = split(text)
            if not statements:
                self.send(m.message(b"I"))
            for sql in statements:
                prepared = Prepared(sql, [], route(sql))
                table, tag = self.run(prepared, [])
                if table is not None:
                    self.send(m.row_description(table.schema))
                    for chunk in m.data_rows(table):
                        self.send(chunk)
                self.send(m.complete(tag))
        except (KibanError, ValueError, UnicodeError) as exc:
            self.send(self.error(exc))
        self.send(m.ready())

    # -- extended query -----------------------------------------------------------------------------------
    def extended(self, kind: bytes, data: bytes) -> None:
        if kind == b"P":
            (name, sql), offset = m.parse_strings(data, 2)
            (count,) = struct.unpack_from("!h", data, offset)
            oids = list(struct.unpack_from(f"!{count}i", data, offset + 2))
            self.statements[name] = Prepared(sql, oids, route(sql))
            self.send(m.message(b"1"))
        elif kind == b"B":
            self.bind(data)
            self.send(m.message(b"2"))
        elif kind == b"D":
            which, name = data[:1], data[1:].rstrip(b"\0").decode()
            if which == b"S":
                prepared = self.statements[name]
                count = max([int(n) for n in _PARAM.findall(prepared.sql)] + [len(prepared.oids)])
                oids = [(prepared.oids[i] if i < len(prepared.oids) and prepared.oids[i] else m.TEXT)
                        for i in range(count)]
                self.send(m.parameter_description(oids))
                table, _ = self.run(prepared, [None] * count, describe=True)
                self.send(m.row_description(table.schema) if table is not None else m.message(b"n"))
            else:
                portal = self.portals[name]
                if portal.table is None and portal.prepared.route.kind in ("data", "catalog", "fetch"):
                    portal.table, portal.tag = self.run(portal.prepared, portal.params)
                self.send(m.row_description(portal.table.schema, portal.formats) if portal.table is not None
                          else m.message(b"n"))
        elif kind == b"E":
            (name,), offset = m.parse_strings(data, 1)
            (limit,) = struct.unpack_from("!i", data, offset)
            self.execute(self.portals[name], limit)
        elif kind == b"C":
            which, name = data[:1], data[1:].rstrip(b"\0").decode()
            (self.statements if which == b"S" else self.portals).pop(name, None)
            self.send(m.message(b"3"))
        else:
            raise ProtocolError(f"the message {kind!r} is not supported")

    def bind(self, data: bytes) -> None:
        (portal, statement), offset = m.parse_strings(data, 2)
        prepared = self.statements[statement]
        (count,) = struct.unpack_from("!h", data, offset)
        formats = list(struct.unpack_from(f"!{count}h", data, offset + 2))
        offset += 2 + 2 * count
        (count,) = struct.unpack_from("!h", data, offset)
        offset += 2
        params = []
        for i in range(count):
            (size,) = struct.unpack_from("!i", data, offset)
            offset += 4
            raw = None if size < 0 else data[offset:offset + size]
            offset += max(size, 0)
            fmt = formats[0] if len(formats) == 1 else (formats[i] if formats else 0)
            oid = prepared.oids[i] if i < len(prepared.oids) else 0
            params.append(m.decode_parameter(raw, fmt, oid))
        (count,) = struct.unpack_from("!h", data, offset)
        results = list(struct.unpack_from(f"!{count}h", data, offset + 2))
        self.portals[portal] = Portal(prepared, params, results)

    def execute(self, portal: Portal, limit: int) -> None:
        if portal.table is None:
            portal.table, portal.tag = self.run(portal.prepared, portal.params)
        table, tag = portal.table, portal.tag
        if table is None:
            self.send(m.complete(tag) if tag else m.message(b"I"))
            return
        left = table.num_rows - portal.sent
        count = left if limit <= 0 else min(limit, left)
        for chunk in m.data_rows(table.slice(portal.sent, count), portal.formats):
            self.send(chunk)
        portal.sent += count
        if portal.sent < table.num_rows:
            self.send(m.message(b"s"))  # PortalSuspended: the client asks for more
        else:
            self.send(m.complete(tag if tag.startswith("FETCH") else f"SELECT {table.num_rows}"))

    # -- one statement ------------------------------------------------------------------------------------
    def run(self, prepared: Prepared, params: Sequence[Any], describe: bool = False) -> tuple[pa.Table | None, str]:
        """Run one statement: its rows (None for a command) and its command tag."""
        import pyarrow as pa

        target = prepared.route
        if target.kind == "empty":
            return None, ""
        if target.kind == "transaction":
            return None, target.name
        if target.kind == "harmless":
            return None, target.name
        if target.kind == "set":
            if target.name:
                self.settings[target.name] = target.value
            return None, "SET"
        if target.kind == "show":
            value = self.settings.get(target.name, "")
            return pa.table({target.name: [value]}), "SHOW"
        if target.kind in ("declare", "fetch", "close"):
            return self.cursor(target, params, describe)
        if target.kind == "refused":
            raise ReadOnly(f"kiban's PostgreSQL endpoint only reads: {target.name} is refused")
        sql = target.sql.strip().rstrip(";")
        if describe:
            sql = f"select * from ({sql}) as __kiban_describe limit 0"
        if target.kind == "catalog":
            return self.catalog_query(sql, params), "SELECT"
        table = self.server.read(sql, self.actor, list(params))
        return table, f"SELECT {table.num_rows}"

    def cursor(self, target: Route, params: Sequence[Any], describe: bool) -> tuple[pa.Table | None, str]:
        """DECLARE runs the query (the whole result is kept, as a WITH HOLD cursor's is), FETCH hands out the
        next rows, CLOSE forgets it."""
        if target.kind == "close":
            if target.name:
                self.cursors.pop(target.name, None)
            else:
                self.cursors.clear()
            return None, "CLOSE CURSOR"
        if target.kind == "fetch":
            cursor = self.cursors.get(target.name)
            if cursor is None:
                raise UsageError(f'cursor "{target.name}" does not exist')
            if describe:
                return cursor.table.slice(0, 0), "FETCH 0"
            count = cursor.table.num_rows - cursor.sent if target.value == "all" else int(target.value)
            rows = cursor.table.slice(cursor.sent, count)
            cursor.sent += rows.num_rows
            return rows, f"FETCH {rows.num_rows}"
        if describe:
            return None, "DECLARE CURSOR"
        if len(self.cursors) >= MAX_CURSORS and target.name not in self.cursors:
            raise UsageError(f"too many open cursors (at most {MAX_CURSORS}): close one first")
        table, _ = self.run(Prepared(target.sql, [], Route(target.value, sql=target.sql)), params)
        assert table is not None
        self.cursors[target.name] = Cursor(table)
        return None, "DECLARE CURSOR"

    def catalog_query(self, sql: str, params: Sequence[Any]) -> pa.Table:
        """A catalog question, answered in a confined worker from empty tables with the published names and
        types (:func:`kiban.pgwire.catalog.answer`)."""
        version = self.server.reader().version_key()
        if self.catalog is None or version != self.catalog_version:
            self.catalog = published_columns(self.server.project)
            self.catalog_version = version
        call = sandbox.Call(answer, (self.catalog, dict(self.settings), sql, list(params)),
                            timeout=self.server.timeout_seconds, address_space=self.server.memory[1],
                            priority="same")  # small questions a person waits for: at the server's priority
        return sandbox.run_call(call)

    def error(self, exc: BaseException) -> bytes:
        if isinstance(exc, ReadOnly):
            return m.error("25006", exc.message, exc.hint)
        if isinstance(exc, QueryRefused):
            return m.error("42501", exc.message, exc.hint)
        if isinstance(exc, QueryStopped):
            return m.error("57014", exc.message, exc.hint)
        if isinstance(exc, ConsoleBusy):
            return m.error("53300", exc.message, exc.hint)
        if isinstance(exc, KibanError):
            return m.error("42000", exc.message, exc.hint)
        return m.error("08P01" if isinstance(exc, ProtocolError) else "22000", str(exc) or type(exc).__name__)

    def close(self) -> None:
        self.catalog = None
        self.cursors.clear()


class ReadOnly(KibanError):
    """A statement that would change something."""


def split(text: str) -> list[str]:
    """The statements of a simple query, by DuckDB's parser (a ``;`` in a string is not a separator); text
    DuckDB cannot split (a PostgreSQL-only statement) is kept whole."""
    import duckdb

    if not text.strip().strip(";").strip():
        return []
    with contextlib.suppress(duckdb.Error):
        con = duckdb.connect()
        try:
            found = [s.query for s in con.extract_statements(text)]
        finally:
            con.close()
        if found:
            return found
    return statements(text)


def statements(text: str) -> list[str]:
    """``text`` split at each ``;`` that SQLGlot's PostgreSQL tokenizer sees outside strings (dollar-quoted ones
    included), quoted identifiers and comments — for what DuckDB cannot parse: psqlODBC's
    ``BEGIN;declare … cursor for …;fetch 100 in …``. Text the tokenizer cannot read is kept whole."""
    from sqlglot.dialects.postgres import Postgres
    from sqlglot.errors import TokenError
    from sqlglot.tokens import TokenType

    try:
        tokens = Postgres().tokenize(text)
    except TokenError:
        return [text.strip()] if text.strip() else []
    out, start = [], 0
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            out.append(text[start:token.start])
            start = token.end + 1
    out.append(text[start:])
    return [s for s in (part.strip() for part in out) if s]


class _Handler(socketserver.BaseRequestHandler):
    server: PgServer

    def handle(self) -> None:
        conn = Connection(self.server, self.request, self.client_address[0])
        try:
            if conn.start():
                conn.serve()
            conn.flush()  # a refusal's last words
        except (ConnectionError, ProtocolError, OSError, struct.error) as exc:
            log.debug("pg: connection from %s ended: %s", self.client_address[0], exc)
        finally:
            conn.close()


class PgServer(socketserver.ThreadingTCPServer):
    """``kiban pg``: a threaded server over one project."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, project: Project, host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT,
                 tls: ssl.SSLContext | None = None, require_tls: bool = False,
                 memory: tuple[str, int | None] = (MEMORY_LIMIT, DEFAULT_ADDRESS_SPACE)) -> None:
        self.project = project
        self.memory = memory  # each query's DuckDB memory limit, and its worker's address space (bytes)
        self.tls = tls
        self.require_tls = require_tls
        self.timeout_seconds = timeout
        self.store = Store(project.state_url)
        self.accounts = Accounts(self.store)
        self._lock = threading.Lock()
        self.admission = Admission(project.state_dir / "console")
        super().__init__((host, port), _Handler)

    def reader(self) -> Reader:
        return shared_reader(self.project.root, "bi", threads=THREADS, memory_limit=self.memory[0],
                             address_space=self.memory[1])

    def sign_in(self, name: str, password: str, ip: str) -> User | str:
        """The user, or why not (the same words whatever was wrong, like the web sign-in)."""
        try:
            if password.startswith("kbn_"):
                user = self.accounts.token_user(password)
                if user is not None and user.name != name and name:
                    user = None
            else:
                user = self.accounts.authenticate(name, password, ip)
        except ThrottledError as exc:
            self.accounts.audit(name or None, "pg.sign_in", ip=ip, outcome="throttled")
            return str(exc)
        self.accounts.audit(name or None, "pg.sign_in", ip=ip, outcome="ok" if user else "refused")
        return user if user is not None else f'password authentication failed for user "{name}"'

    def read(self, sql: str, actor: Actor, params: list[Any]) -> pa.Table:
        # the console's slots, shared with every console and BI server on the project
        with self.admission.slot(actor.user, DEFAULT_MAX_RUNNING, DEFAULT_MAX_PER_USER):
            return self.reader().arrow(sql, actor, params or None, timeout=self.timeout_seconds).table


def tls_context(cert: str, key: str | None = None) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or newer) from a PEM certificate (chain) and its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS certificate {cert}: {exc}",
                         "give a PEM certificate with --tls-cert and its key with --tls-key") from None
    return context


def serve_pg(project: Project, host: str = "127.0.0.1", port: int = 5433, *,
             timeout: float = DEFAULT_TIMEOUT, tls: ssl.SSLContext | None = None,
             require_tls: bool = False, memory: tuple[str, int | None] = (MEMORY_LIMIT, DEFAULT_ADDRESS_SPACE)
             ) -> PgServer:
    """A bound server (call ``serve_forever()``; ``shutdown()`` from another thread stops it). With ``tls``, a
    client's SSLRequest is answered with TLS; with ``require_tls`` too, a client that does not ask is refused."""
    if require_tls and tls is None:
        raise UsageError("require_tls needs a TLS certificate", "give --tls-cert (and --tls-key)")
    return PgServer(project, host, port, timeout=timeout, tls=tls, require_tls=require_tls, memory=memory)
