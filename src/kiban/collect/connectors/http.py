"""HTTP APIs that answer JSON: pages of records → Arrow batches (docs/connectors/http.md).

Example ``sources/partner.yml``::
    type: http
    base_url: https://api.partner.example/v1
    auth: {header: Authorization, value: "Bearer env:PARTNER_TOKEN"}
    rate_limit: 5                 # requests per second
    tables:
      orders:
        path: /orders
        records: data.items       # where the records are in each page
        pagination: {type: cursor, param: cursor, next: meta.next_cursor}
        mode: incremental
        cursor: updated_at
        since_param: updated_since

Secrets (``env:NAME`` in ``auth``, ``headers``, ``params`` or ``base_url``) are read from the environment when a
load starts and are replaced by ``***`` in every message this module makes; so are literal values of headers and
parameters with a secret-looking name (``access_token``, ``client_secret``, ``X-API-Key`` …), and anything that
looks like ``key=value`` or ``"key": "value"`` for such a name in what a server answers.

Nested values: a record's scalar values keep their JSON type (bool, integer, float, text); objects and
arrays are kept as JSON text (``nested: json``, the default), or objects are flattened one level into
``parent_child`` columns (``nested: flatten``) with deeper values as JSON text.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urljoin

from pydantic import BaseModel, ConfigDict, Field

from kiban.collect.connector import BadRow, ReadContext, SourceError
from kiban.collect.secrets import SECRET_KEY, scrub

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa

_ENV = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
RAW_LIMIT = 10_000  # characters of a bad page kept in the quarantine


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Auth(_Strict):
    """A header sent with every request; ``value`` names its secret as ``env:NAME`` (``Bearer env:TOKEN``)."""

    header: str = "Authorization"
    value: str


class NoPages(_Strict):
    type: Literal["none"]


class PageNumber(_Strict):
    """``?page=1``, ``?page=2`` … until a page has no records (or fewer than ``size``)."""

    type: Literal["page"]
    param: str = "page"
    start: int = 1
    size_param: str | None = None  # e.g. per_page
    size: int | None = Field(default=None, ge=1)


class OffsetLimit(_Strict):
    """``?offset=0&limit=100``, ``?offset=100&limit=100`` … until a page has fewer than ``limit`` records."""

    type: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(default=100, ge=1)


class NextCursor(_Strict):
    """The next page's token is in the page (``next``: a JSON path); sent back as ``param`` until it is empty."""

    type: Literal["cursor"]
    param: str = "cursor"
    next: str


class LinkHeader(_Strict):
    """RFC 8288: follow the ``Link: <url>; rel="next"`` header until there is none."""

    type: Literal["link"]


Pagination = Annotated[NoPages | PageNumber | OffsetLimit | NextCursor | LinkHeader, Field(discriminator="type")]


class Options(_Strict):
    base_url: str | None = None  # the source's; else the source's `url:`
    path: str = ""
    params: dict[str, str | int | float | bool] = {}
    headers: dict[str, str] = {}
    auth: Auth | None = None
    records: str | None = None  # JSON path of the records in a page ("data.items"); none: the page is a list
    pagination: Pagination = NoPages(type="none")
    since_param: str | None = None  # incremental: the request parameter that gets the last cursor value
    since_format: str | None = None  # strftime pattern for a time cursor; default ISO 8601
    nested: Literal["json", "flatten"] = "json"
    timeout: float = Field(default=30.0, gt=0)
    retries: int = Field(default=5, ge=0)
    backoff: float = Field(default=1.0, ge=0)  # first wait in seconds, doubled each retry (with jitter)
    max_wait: float = Field(default=120.0, ge=0)  # longest wait between attempts, Retry-After included
    rate_limit: float | None = Field(default=None, gt=0)  # requests per second
    max_pages: int = Field(default=10_000, ge=1)


def check(ctx: ReadContext, options: Options) -> None:
    """Options that cannot work, before any request."""
    if not (options.base_url or ctx.url) and not options.path.startswith(("http://", "https://")):
        raise ctx.error("no base_url: set `base_url:` on the source (or a full URL as the table's `path:`)")
    if options.since_param and ctx.table.mode != "incremental":
        raise ctx.error("`since_param:` only means something with mode: incremental")
    if ctx.table.mode == "incremental" and not options.since_param:
        ctx.note(f"{ctx.source_name}.{ctx.table_name}: incremental without `since_param:` reads every page on "
                 "each load (the loader keeps only rows past the cursor)")


def read(ctx: ReadContext, options: Options) -> Iterator[pa.RecordBatch]:
    import httpx

    secrets: list[str] = []
    headers = {name: _expand(ctx, value, f"headers.{name}", secrets) for name, value in options.headers.items()}
    if options.auth is not None:
        headers[options.auth.header] = _expand(ctx, options.auth.value, "auth.value", secrets)
    base = _expand(ctx, options.base_url or ctx.url or "", "base_url", secrets)
    url = options.path if options.path.startswith(("http://", "https://")) else _join(base, options.path)
    params: dict[str, Any] = {name: _expand(ctx, value, f"params.{name}", secrets) if isinstance(value, str) else value
                              for name, value in options.params.items()}
    # values written in the config under a secret-looking name are secrets too, env: or not

    secrets.extend(str(v) for k, v in [*params.items(), *headers.items()]
                   if SECRET_KEY.search(k) and isinstance(v, str) and len(v) >= 4)
    if ctx.since is not None and options.since_param:
        params[options.since_param] = _since_text(ctx.since, options.since_format)

    columns = _Columns(ctx, options.nested)
    client = httpx.Client(headers=headers, timeout=httpx.Timeout(options.timeout), follow_redirects=True)
    fetcher = _Fetcher(ctx, options, client, secrets)
    try:
        yield from _pages(ctx, options, fetcher, url, params, columns)
    finally:
        client.close()


# -- pages ---------------------------------------------------------------------------------------------------


def _pages(ctx: ReadContext, options: Options, fetcher: _Fetcher, url: str, params: dict[str, Any],
           columns: _Columns) -> Iterator[pa.RecordBatch]:
    pagination = options.pagination
    page_no = 0
    next_url: str | None = url
    seen_tokens: set[str] = set()
    if isinstance(pagination, PageNumber):
        params[pagination.param] = pagination.start
        if pagination.size_param and pagination.size:
            params[pagination.size_param] = pagination.size
    elif isinstance(pagination, OffsetLimit):
        params[pagination.offset_param] = 0
        params[pagination.limit_param] = pagination.limit
    cursor_checked = False
    previous_body: str | None = None
    while next_url is not None:
        if ctx.cancel.is_set():
            raise ctx.error("cancelled")
        page_no += 1
        if page_no > options.max_pages:
            raise ctx.error(f"more than max_pages={options.max_pages} pages: the API keeps sending a next page",
                            "raise `max_pages:` if the table really is that large, or check the pagination keys")
        response = fetcher.get(next_url, params if next_url == url or not isinstance(pagination, LinkHeader)
                               else None)
        body = response.text
        page, reason = _parse(body, page_no)
        parsed = reason is None
        records: list[Any] | None = None
        if reason is None:
            records = _records(ctx, options, page, page_no)
            if records and body == previous_body and isinstance(pagination, PageNumber | OffsetLimit):
                param = pagination.param if isinstance(pagination, PageNumber) else pagination.offset_param
                raise ctx.error(f"page {page_no} is the same as page {page_no - 1}: the API seems to ignore "
                                f"`{param}`", "check the pagination's parameter names in the API's documentation")
            previous_body = body
        else:
            ctx.quarantine([BadRow(location=f"page {page_no}", raw=body[:RAW_LIMIT], reason=reason)])
        if records:
            if (ctx.table.mode == "incremental" and ctx.table.cursor and not cursor_checked):
                cursor_checked = True
                _check_cursor(ctx, options, records)
            for number, record in enumerate(records, start=1):
                columns.add(record, page_no, number)
                if columns.full():
                    yield columns.batch()

        # the next page
        if isinstance(pagination, NoPages):
            next_url = None
        elif isinstance(pagination, PageNumber):
            if parsed and (not records or (pagination.size is not None and len(records) < pagination.size)):
                next_url = None
            else:
                params[pagination.param] += 1
        elif isinstance(pagination, OffsetLimit):
            if parsed and (records is None or len(records) < pagination.limit):
                next_url = None
            else:
                params[pagination.offset_param] += pagination.limit
        elif isinstance(pagination, NextCursor):
            if not parsed:
                raise ctx.error(f"page {page_no} is not JSON, and the next page's cursor is in it: cannot go on "
                                "(the page was quarantined)")
            token = _lookup(page, pagination.next)
            if token in (None, "", False):
                next_url = None
            else:
                token = str(token)
                if token in seen_tokens:
                    raise ctx.error(f"page {page_no} sends the cursor '{token}' again: the API would loop forever")
                seen_tokens.add(token)
                params[pagination.param] = token
        else:  # Link header
            seen_tokens.add(str(response.url))
            link = response.links.get("next")
            target = urljoin(str(response.url), link["url"]) if link and link.get("url") else None
            if target is not None and target in seen_tokens:
                raise ctx.error(f"page {page_no} links to a page already read: the API would loop forever")
            if target is not None:
                seen_tokens.add(target)
            next_url = target
    if columns.rows:
        yield columns.batch()
    columns.note_changes()


def _parse(body: str, page_no: int) -> tuple[Any, str | None]:
    """The page's JSON, or why it is not JSON."""
    if not body.strip():
        return None, f"page {page_no} is empty, not JSON"
    try:
        return json.loads(body), None
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return None, f"page {page_no} is not JSON ({message}{where})"


def _records(ctx: ReadContext, options: Options, page: Any, page_no: int) -> list[Any]:
    """The list of records of one page, or a clear error saying where they could be."""
    if options.records:
        node = page
        walked: list[str] = []
        for key in options.records.split("."):
            if not isinstance(node, dict) or key not in node:
                here = ".".join(walked) or "the page"
                keys = ", ".join(sorted(node)) if isinstance(node, dict) else f"a JSON {_kind(node)}"
                raise ctx.error(f"records path '{options.records}' is not in page {page_no}: "
                                f"{here} has no '{key}' (it has: {keys or 'no keys'})",
                                "set `records:` to the dotted path of the list of records")
            node = node[key]
            walked.append(key)
        if node is None:
            return []
        if not isinstance(node, list):
            raise ctx.error(f"records path '{options.records}' in page {page_no} is a JSON {_kind(node)}, not a list")
        return node
    if isinstance(page, list):
        return page
    if isinstance(page, dict):
        lists = [key for key, value in page.items() if isinstance(value, list)]
        keys = ", ".join(sorted(page)) or "no keys"
        hint = f"records: {lists[0]}" if lists else "records: <dotted path of the list of records>"
        raise ctx.error(f"page {page_no} is a JSON object, not a list of records (it has: {keys})",
                        f"say where the records are, e.g. `{hint}`")
    raise ctx.error(f"page {page_no} is a JSON {_kind(page)}, not a list of records")


def _check_cursor(ctx: ReadContext, options: Options, records: list[Any]) -> None:
    cursor = ctx.table.cursor
    first = next((r for r in records if isinstance(r, dict)), None)
    if first is None or cursor is None:
        return
    flat = _flatten(first) if options.nested == "flatten" else first
    if cursor not in flat:
        raise ctx.error(f"cursor column '{cursor}' is not in the records (they have: {', '.join(sorted(flat))})",
                        "`cursor:` names a field of each record, e.g. updated_at")


# -- requests: retries, backoff, Retry-After, rate limit -----------------------------------------------------


@dataclass
class _Fetcher:
    ctx: ReadContext
    options: Options
    client: httpx.Client
    secrets: list[str]
    last_request: float = field(default=0.0)

    def get(self, url: str, params: dict[str, Any] | None) -> httpx.Response:
        import httpx

        options, ctx = self.options, self.ctx
        attempts = options.retries + 1
        for attempt in range(1, attempts + 1):
            self._pace()
            wait: float | None = None
            try:
                response = self.client.get(url, params=params)
            except httpx.TimeoutException:
                problem = f"no answer within timeout={options.timeout:g} s from {self._where(url)}"
            except httpx.TransportError as exc:
                problem = f"cannot reach {self._where(url)}: {self._clean(str(exc) or type(exc).__name__)}"
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status not in RETRY_STATUSES:
                    raise self._refused(response, url)
                wait = retry_after(response.headers.get("retry-after"))
                problem = (f"rate-limited (HTTP 429) by {self._where(url)}" if status == 429
                           else f"HTTP {status} from {self._where(url)}")
            if attempt == attempts:
                raise ctx.error(f"{problem}, {attempts} attempt(s)",
                                "the server may be down or overloaded; `retries:` and `backoff:` set the patience")
            if wait is None:
                wait = options.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            if ctx.cancel.wait(min(wait, options.max_wait)):
                raise ctx.error("cancelled")
        raise AssertionError("unreachable")  # pragma: no cover

    def _pace(self) -> None:
        """At most ``rate_limit`` requests per second."""
        if self.options.rate_limit:
            gap = 1.0 / self.options.rate_limit - (time.monotonic() - self.last_request)
            if gap > 0:
                self.ctx.cancel.wait(gap)
        self.last_request = time.monotonic()

    def _refused(self, response: httpx.Response, url: str) -> SourceError:
        status, where = response.status_code, self._where(url)
        if status in (401, 403):
            names = sorted({m.group(1) for text in self._secret_sources() for m in _ENV.finditer(text)})
            hint = (f"check the value of {', '.join(names)} in the environment" if names
                    else "this API needs credentials: add `auth: {header: Authorization, value: \"Bearer env:TOKEN\"}`")
            return self.ctx.error(f"credentials refused (HTTP {status}) by {where}", hint)
        if status == 404:
            return self.ctx.error(f"path not found (HTTP 404): GET {where}",
                                  "check the table's `path:` and the source's `base_url:`")
        snippet = self._clean(response.text[:300].strip())
        return self.ctx.error(f"HTTP {status} from {where}" + (f": {snippet}" if snippet else ""))

    def _secret_sources(self) -> list[str]:
        options = self.options
        texts = [*options.headers.values(), *(v for v in options.params.values() if isinstance(v, str)),
                 options.base_url or ""]
        if options.auth is not None:
            texts.append(options.auth.value)
        return texts

    def _where(self, url: str) -> str:
        return self._clean(url.split("?", 1)[0])

    def _clean(self, text: str) -> str:
        return self.ctx.redact(scrub(text, self.secrets))


def retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date (None: absent or bad)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


# -- records → Arrow -----------------------------------------------------------------------------------------

_DECLARED = {
    "varchar": "string", "text": "string", "string": "string",
    "bigint": "int", "integer": "int", "int": "int", "smallint": "int", "tinyint": "int", "hugeint": "int",
    "double": "float", "float": "float", "real": "float",
    "boolean": "bool", "bool": "bool",
}
_RANK = {"null": 0, "bool": 1, "int": 2, "float": 3, "string": 4}


class _Columns:
    """Records gathered into one batch, with each column's kind kept stable over the whole load.

    A column's kind is the widest JSON kind seen so far (bool < integer < float < text; booleans mixed with
    numbers become text, and so do objects and arrays, as JSON). Declared columns (``columns:`` with a
    ``type``) are always present; a declared type kiban has no JSON kind for (decimal, date, timestamp …)
    travels as text and the loader casts it. Kinds are found per batch and column (one pass over a column's
    values), not per value: the records of a batch are kept as the dicts ``json`` made.
    """

    def __init__(self, ctx: ReadContext, nested: str) -> None:
        self.limit = ctx.batch_rows
        self.nested = nested
        self.kinds: dict[str, str] = {}
        self.declared: dict[str, str] = {}
        for column in ctx.table.columns:
            base = (column.type or "").split("(")[0].strip().lower()
            self.kinds[column.name] = _DECLARED.get(base, "string") if column.type else "null"
            if column.type:
                self.declared[column.name] = column.type
        self.order: dict[str, None] = dict.fromkeys(self.kinds)  # columns in the order they were first seen
        self.records: list[dict[str, Any]] = []
        self.ctx = ctx
        # the records' shape changing within a load, noted (like a header that differs between files):
        self.first_page: int | None = None
        self.late: dict[str, str] = {}  # a field first seen after the first page → where
        self.emitted: dict[str, str] = {}  # a column's kind in the batches already passed on
        self.retyped: dict[str, tuple[str, str]] = {}

    @property
    def rows(self) -> int:
        return len(self.records)

    def add(self, record: Any, page_no: int, number: int) -> None:
        if not isinstance(record, dict):
            raw = json.dumps(record, ensure_ascii=False)[:RAW_LIMIT]
            self.ctx.quarantine([BadRow(location=f"page {page_no} record {number}", raw=raw,
                                        reason=f"a record must be a JSON object, this is a JSON {_kind(record)}")])
            return
        flat = _flatten(record) if self.nested == "flatten" else record
        for name, declared in self.declared.items():
            value = flat.get(name)
            if value is not None and _convert(value, self.kinds[name]) is None:
                raw = json.dumps(record, ensure_ascii=False)[:RAW_LIMIT]
                self.ctx.quarantine([BadRow(location=f"page {page_no} record {number}", raw=raw, column=name,
                                            reason=f"column {name}: {json.dumps(value, ensure_ascii=False)} is not "
                                                   f"a {declared}")])
                return
        if self.first_page is None:
            self.first_page = page_no
        elif page_no > self.first_page:
            for name in flat:
                if name not in self.order and name not in self.late:
                    self.late[name] = f"page {page_no} record {number}"
        self.order.update(dict.fromkeys(flat))
        self.records.append(flat)

    def full(self) -> bool:
        return len(self.records) >= self.limit

    def batch(self) -> pa.RecordBatch:
        import pyarrow as pa

        types = {"null": pa.null(), "bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "string": pa.string()}
        arrays = []
        for name in self.order:
            values = [record.get(name) for record in self.records]
            kind = self.kinds.get(name, "null")
            found = set(map(type, values)) - {type(None)}
            if name not in self.declared:
                kind = _wider(kind, _kind_of(found))
            try:
                array = pa.array(_prepared(values, found, kind), type=types[kind])
            except (OverflowError, pa.ArrowException):  # an integer beyond 64 bits: keep every digit as text
                kind = "string"
                array = pa.array(_prepared(values, found, kind), type=types[kind])
            self.kinds[name] = kind
            before = self.emitted.get(name)
            if kind != "null" and before not in (None, kind) and name not in self.retyped:
                self.retyped[name] = (before, kind)
            if kind != "null":
                self.emitted[name] = kind
            arrays.append(array)
        self.records = []
        return pa.RecordBatch.from_arrays(arrays, names=list(self.order))


    def note_changes(self) -> None:
        """Notes on the records' shape changing within the load: fields that appear only after the first page
        (null in the records before), and fields whose values changed kind between batches (merged as the
        wider kind)."""
        if self.late:
            shown = ", ".join(f"{name} (from {where})" for name, where in list(self.late.items())[:5])
            more = f" and {len(self.late) - 5} more" if len(self.late) > 5 else ""
            self.ctx.note(f"the records' fields changed within this load: new {shown}{more}; null in the records "
                          "before them")
        for name, (old, new) in list(self.retyped.items())[:5]:
            self.ctx.note(f"field {name} held {_KIND_NAMES[old]} values, then {_KIND_NAMES[new]} ones: landed as "
                          f"{_KIND_NAMES[new]} (declare it under `columns:` to have other values quarantined)")


_KIND_NAMES = {"bool": "boolean", "int": "integer", "float": "number", "string": "text", "null": "null"}


def _kind_of(found: set[type]) -> str:
    """The kind of a column holding values of these Python types (as ``json`` makes them)."""
    if not found:
        return "null"
    if found == {bool}:
        return "bool"
    if found == {int}:
        return "int"
    if found <= {int, float}:
        return "float"
    return "string"  # text, objects, arrays, or booleans mixed with anything else


def _prepared(values: list[Any], found: set[type], kind: str) -> list[Any]:
    """``values`` fit for an Arrow array of ``kind``: converted only where a value is not of that kind."""
    if kind == "string" and not found <= {str}:
        return [v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]
    if (kind == "int" and not found <= {int}) or (kind == "float" and not found <= {int, float}) or \
            (kind == "bool" and not found <= {bool}):
        return [_convert(v, kind) for v in values]  # a declared column: validated when the record was added
    return values


def _wider(a: str, b: str) -> str:
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if "bool" in (a, b):  # a boolean mixed with numbers or text: keep every value readable
        return "string"
    return a if _RANK[a] >= _RANK[b] else b


def _convert(value: Any, kind: str) -> Any:
    if value is None or kind == "null":
        return None
    if kind == "string":
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False)  # true / 12 / 1.5 as JSON writes them
    if kind == "float":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else _as_float(value)
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else _as_int(value)
    if kind == "bool":
        return value if isinstance(value, bool) else None
    return value


def _as_int(value: Any) -> int | None:
    """A declared integer column's value given as text or a whole float; None when it isn't one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(str(value))
    except ValueError:
        return None


def _as_float(value: Any) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            for child, inner in value.items():
                flat[f"{key}_{child}"] = inner
        else:
            flat[key] = value
    return flat


# -- small pieces --------------------------------------------------------------------------------------------


def _expand(ctx: ReadContext, text: str, key: str, secrets: list[str]) -> str:
    """``text`` with every ``env:NAME`` replaced by the variable's value (remembered as a secret)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            raise SourceError(ctx.source_name, ctx.table_name,
                              f"environment variable {name} is not set ({key} refers to env:{name})")
        secrets.append(found)
        return found

    return _ENV.sub(value, text)


def _join(base: str, path: str) -> str:
    if not path:
        return base
    return base.rstrip("/") + "/" + path.lstrip("/")


def _since_text(since: Any, fmt: str | None) -> str:
    if isinstance(since, dt.datetime):
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        since = since.astimezone(dt.UTC)
        return since.strftime(fmt) if fmt else since.isoformat().replace("+00:00", "Z")
    if isinstance(since, dt.date):
        return since.strftime(fmt) if fmt else since.isoformat()
    return str(since)


def _lookup(page: Any, path: str) -> Any:
    node = page
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
