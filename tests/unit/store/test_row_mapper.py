"""The one row mapper: each row dataclass selects its table's columns in field order, and back."""

from __future__ import annotations

import dataclasses

from sqlalchemy import create_engine, insert

from job_rows import job_row
from openft.store import schema as s
from openft.store import statements as q
from openft.store.keys import KEYS
from openft.store.permissions import PERMISSIONS
from openft.store.uploads import PARTS, UPLOADS
from openft.store.webhooks import DELIVERIES, ENDPOINTS

MAPPERS = (q.FILES, q.JOBS, q.EVENTS, q.CHECKPOINTS, KEYS, PERMISSIONS, UPLOADS, PARTS, ENDPOINTS, DELIVERIES)


def test_every_mapper_selects_its_fields_in_order() -> None:
    for mapper in MAPPERS:
        fields = [f.name for f in dataclasses.fields(mapper.row_class)]  # type: ignore[arg-type]
        assert [c.name for c in mapper.columns] == fields, mapper.row_class.__name__
        assert all(c.table is mapper.table for c in mapper.columns)


def test_a_row_round_trips_through_its_mapper() -> None:
    engine = create_engine("sqlite://")
    s.metadata.create_all(engine, tables=[s.jobs])
    row = job_row("ftjob-1", "queued", metadata={"k": "v"}, heartbeat_at=1.5)
    with engine.begin() as conn:
        conn.execute(insert(s.jobs).values(**q.JOBS.values(row)))
        read = q.JOBS.maybe(conn.execute(q.JOB, {"job_id": "ftjob-1"}).first())
        assert q.JOBS.maybe(conn.execute(q.JOB, {"job_id": "ftjob-none"}).first()) is None
    assert read == row
