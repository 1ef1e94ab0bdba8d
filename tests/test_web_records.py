"""The API's views of stored records extend the records' dataclasses (kiban.web.models ``extends``): a field added
to a record is in the API at once; what the API hides or adds is said here, so a change to either is seen."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import TypeAdapter

from kiban.catalog.requests import DataRequest
from kiban.catalog.usage import QueryRecord
from kiban.incidents.log import Incident
from kiban.store import AttemptRecord
from kiban.web import catalog_models as cm
from kiban.web import models as m
from kiban.web.accounts import AuditEntry

# view, the record it extends, the record's fields the API hides, the fields the view adds
VIEWS = [
    (m.AttemptOut, AttemptRecord, {"fingerprint", "watermark"}, set()),
    (m.IncidentOut, Incident, set(), {"events", "fix"}),
    (m.AuditOut, AuditEntry, set(), set()),
    (cm.HistoryEntry, QueryRecord, set(), set()),
    (cm.RequestOut, DataRequest, set(), {"moves", "events", "lead_time_days"}),
]


@pytest.mark.parametrize(("view", "record", "hidden", "added"), VIEWS, ids=[v[0].__name__ for v in VIEWS])
def test_a_view_is_its_record_less_what_it_hides_plus_what_it_adds(view, record, hidden, added):
    assert issubclass(view, record)
    shown = set(TypeAdapter(view).json_schema(mode="serialization")["properties"])
    assert shown == {f.name for f in dataclasses.fields(record)} - hidden | added


def test_from_record_makes_stored_times_aware_and_keeps_the_rest():
    from datetime import UTC, datetime

    entry = AuditEntry(datetime(2026, 12, 1, 9, 30), "ann", "user.add", "bob", "127.0.0.1", "ok", None)
    out = m.from_record(m.AuditOut, entry)
    assert out.at == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert TypeAdapter(m.AuditOut).dump_python(out, mode="json") == {
        "at": "2026-12-01T09:30:00Z", "actor": "ann", "action": "user.add", "target": "bob", "ip": "127.0.0.1",
        "outcome": "ok", "detail": None}
