"""Each operation as a *plan*: a generator that yields ``(statement, params)`` and is sent back
each statement's result. The plans hold all the SQL logic and do no I/O, so the sync and the
async driver in :mod:`memfold.backends.sql.store` are a few lines each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any, TypeAlias

from sqlalchemy import Executable, Row, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from memfold import ops
from memfold.backends.sql.schema import Tables
from memfold.errors import InvalidInput, NotFound
from memfold.fulltext import fts5_query
from memfold.model import Message, MessageHit, ThreadInfo

__all__ = ["Plan", "ThreadPlans"]

Statement: TypeAlias = tuple[Executable, Any]
Plan: TypeAlias = Generator[Statement, Any, Any]

# Search is not a read on SQLite: it first brings the full-text index up to date.
_READS = (ops.LoadThread, ops.CountMessages, ops.GetThread, ops.ListThreads)


def _time(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _search_text(message: Message) -> str:
    return message.text.replace("\x00", " ")


class ThreadPlans:
    """Plans for the thread operations on one set of tables and one SQL dialect."""

    def __init__(self, tables: Tables, dialect: str) -> None:
        self.tables = tables
        self.dialect = dialect
        t, m = tables.threads, tables.messages
        upsert = (sqlite if dialect == "sqlite" else postgresql).insert
        touch = upsert(t).values(
            tenant=bindparam("tenant"),
            thread_id=bindparam("thread_id"),
            created_at=bindparam("now"),
            updated_at=bindparam("now"),
            message_count=bindparam("added"),
            metadata=bindparam("metadata"),
        )
        self._touch = touch.on_conflict_do_update(
            index_elements=[t.c.tenant, t.c.thread_id],
            set_={
                "updated_at": touch.excluded.updated_at,
                "message_count": t.c.message_count + touch.excluded.message_count,
            },
        )
        self._set_metadata = touch.on_conflict_do_update(
            index_elements=[t.c.tenant, t.c.thread_id],
            set_={"updated_at": touch.excluded.updated_at, "metadata": touch.excluded.metadata},
        )
        self._insert_messages = insert(m)
        self._thread_row = select(t).where(
            t.c.tenant == bindparam("tenant"), t.c.thread_id == bindparam("thread_id")
        )
        self._in_thread = (m.c.tenant == bindparam("tenant")) & (
            m.c.thread_id == bindparam("thread_id")
        )

    def writes(self, op: ops.Op[Any]) -> bool:
        """Whether ``op`` changes data (and so needs a write transaction)."""
        return not isinstance(op, _READS)

    def plan(self, op: ops.Op[Any]) -> Plan:
        """The plan that runs ``op``."""
        match op:
            case ops.AppendMessages():
                return self._append(op)
            case ops.LoadThread():
                return self._load(op)
            case ops.CountMessages(tenant, thread_id):
                return self._count(tenant, thread_id)
            case ops.GetThread(tenant, thread_id):
                return self._get(tenant, thread_id)
            case ops.ListThreads():
                return self._list(op)
            case ops.SetThreadMetadata():
                return self._metadata(op)
            case ops.ClearThread(tenant, thread_id):
                return self._clear(tenant, thread_id)
            case ops.DeleteThread(tenant, thread_id):
                return self._delete(tenant, thread_id)
            case ops.ClearTenant(tenant):
                return self._clear_tenant(tenant)
            case ops.SearchMessages():
                return self._search(op)
        raise InvalidInput(f"the SQL backend cannot run {type(op).__name__}")

    def _info(self, row: Row[Any]) -> ThreadInfo:
        return ThreadInfo(
            thread_id=row.thread_id,
            tenant=row.tenant,
            created_at=_time(row.created_at),
            updated_at=_time(row.updated_at),
            message_count=row.message_count,
            metadata=json.loads(row.metadata),
        )

    def _append(self, op: ops.AppendMessages) -> Plan:
        key = {"tenant": op.tenant, "thread_id": op.thread_id}
        yield self._touch, {**key, "now": time.time(), "added": len(op.messages), "metadata": "{}"}
        rows = [
            {**key, "message_id": m.id, "body": body, "search_text": _search_text(m)}
            for m, body in zip(op.messages, op.bodies, strict=True)
        ]
        yield self._insert_messages, rows

    def _load(self, op: ops.LoadThread) -> Plan:
        m = self.tables.messages
        key = {"tenant": op.tenant, "thread_id": op.thread_id}
        query = select(m.c.body).where(self._in_thread)
        if op.before is not None:
            found = yield (
                select(m.c.seq).where(self._in_thread, m.c.message_id == bindparam("before")),
                {**key, "before": op.before},
            )
            seq = found.scalar()
            if seq is None:
                raise NotFound(f"no message {op.before!r} in thread {op.thread_id!r}")
            query = query.where(m.c.seq < seq)
        if op.last is None:
            result = yield query.order_by(m.c.seq), key
            bodies = result.scalars().all()
        else:
            result = yield query.order_by(m.c.seq.desc()).limit(op.last), key
            bodies = result.scalars().all()[::-1]
        return [Message.from_json(b) for b in bodies]

    def _count(self, tenant: str, thread_id: str) -> Plan:
        t = self.tables.threads
        result = yield (
            select(t.c.message_count).where(
                t.c.tenant == bindparam("tenant"), t.c.thread_id == bindparam("thread_id")
            ),
            {"tenant": tenant, "thread_id": thread_id},
        )
        return result.scalar() or 0

    def _get(self, tenant: str, thread_id: str) -> Plan:
        result = yield self._thread_row, {"tenant": tenant, "thread_id": thread_id}
        row = result.first()
        if row is None:
            raise NotFound(f"no thread {thread_id!r} for tenant {tenant!r}")
        return self._info(row)

    def _list(self, op: ops.ListThreads) -> Plan:
        t = self.tables.threads
        result = yield (
            select(t)
            .where(t.c.tenant == bindparam("tenant"))
            .order_by(t.c.updated_at.desc(), t.c.thread_id)
            .limit(op.limit)
            .offset(op.offset),
            {"tenant": op.tenant},
        )
        return [self._info(row) for row in result]

    def _metadata(self, op: ops.SetThreadMetadata) -> Plan:
        key = {"tenant": op.tenant, "thread_id": op.thread_id}
        yield self._set_metadata, {**key, "now": time.time(), "added": 0, "metadata": op.encoded}
        return (yield from self._get(op.tenant, op.thread_id))

    def _clear(self, tenant: str, thread_id: str) -> Plan:
        t, m = self.tables.threads, self.tables.messages
        key = {"tenant": tenant, "thread_id": thread_id}
        result = yield delete(m).where(self._in_thread), key
        yield (
            update(t)
            .where(t.c.tenant == tenant, t.c.thread_id == thread_id)
            .values(message_count=0, updated_at=time.time()),
            None,
        )
        return int(result.rowcount)

    def _delete(self, tenant: str, thread_id: str) -> Plan:
        t, m = self.tables.threads, self.tables.messages
        key = {"tenant": tenant, "thread_id": thread_id}
        yield delete(m).where(self._in_thread), key
        result = yield (
            delete(t).where(
                t.c.tenant == bindparam("tenant"), t.c.thread_id == bindparam("thread_id")
            ),
            key,
        )
        return result.rowcount > 0

    def _clear_tenant(self, tenant: str) -> Plan:
        t, m = self.tables.threads, self.tables.messages
        yield delete(m).where(m.c.tenant == bindparam("tenant")), {"tenant": tenant}
        result = yield delete(t).where(t.c.tenant == bindparam("tenant")), {"tenant": tenant}
        return int(result.rowcount)

    def _search(self, op: ops.SearchMessages) -> Plan:
        if self.dialect != "sqlite":
            raise InvalidInput(f"full-text search is not built for {self.dialect} yet")
        match = fts5_query(op.query)
        if not match:
            return []
        fts, m, state = self.tables.messages_fts, self.tables.messages.name, self.tables.fts_state
        yield (
            text(
                f"INSERT INTO {fts}(rowid, search_text) SELECT seq, search_text FROM {m} "
                f"WHERE seq > (SELECT indexed_upto FROM {state})"
            ),
            None,
        )
        yield (
            text(
                f"UPDATE {state} SET indexed_upto = (SELECT max(seq) FROM {m}) "
                f"WHERE indexed_upto < (SELECT max(seq) FROM {m})"
            ),
            None,
        )
        scope = "" if op.thread_id is None else " AND m.thread_id = :thread_id"
        result = yield (
            text(
                f"SELECT m.thread_id, m.body, bm25({fts}) AS rank FROM {fts} "
                f"JOIN {m} AS m ON m.seq = {fts}.rowid "
                f"WHERE {fts} MATCH :match AND m.tenant = :tenant{scope} "
                "ORDER BY rank LIMIT :limit"
            ),
            {"match": match, "tenant": op.tenant, "thread_id": op.thread_id, "limit": op.limit},
        )
        return [MessageHit(row[0], Message.from_json(row[1]), -float(row[2])) for row in result]
