"""Each operation as a *plan*: a generator that yields ``(statement, params)`` and is sent back
each statement's result. The plans hold all the SQL logic and do no I/O, so the sync and the
async driver in `memfold.backends.sql.store` are a few lines each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from sqlalchemy import (
    ClauseElement,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from memfold import ops
from memfold.backends.bodies import micros, stored_message, stored_time
from memfold.backends.sql import words
from memfold.backends.sql.schema import UNKNOWN_FIRST_US, Tables
from memfold.backends.sql.tombstones import (
    TombstonePlans,
    nothing,
    scrubbed,
    user_params,
    user_where,
)
from memfold.errors import InvalidInput, NotFound
from memfold.fulltext import fts5_query
from memfold.model import Message, MessageHit, ThreadInfo
from memfold.stores import not_following
from memfold.tombstones import EraseSubject, ErasureCounts, FindThreads, LiftTombstones

__all__ = ["Plan", "ThreadPlans"]

Statement: TypeAlias = tuple[ClauseElement, Any]
"""A statement and its parameters: a dict, a list of dicts (run once per dict), or None."""
Plan: TypeAlias = Generator[Statement, "Rows", Any]

_READS = (
    ops.LoadThread,
    ops.CountMessages,
    ops.GetThread,
    ops.GetThreadTTL,
    ops.ListThreads,
    FindThreads,
)
# Search is not a read on SQLite: it first brings the full-text index up to date.
_PURE_READS = (*_READS, ops.SearchMessages)


@dataclass(slots=True)  # not frozen: one is made per statement run, and frozen ones are slower
class Rows:
    """What a statement gave back: its rows as tuples, and how many rows it changed."""

    rows: Sequence[Any]
    rowcount: int

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self.rows[0][0] if self.rows else None


_decode = json.JSONDecoder().raw_decode
"""Parses JSON the store wrote itself (no surrounding whitespace to skip)."""


def _time(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _raw_text(message: Message, body: str) -> str | None:
    """SQLite's FTS5 tokenizes the text itself, read from the body when it is plain text
    (None); NUL would end it early, so such text is stored apart."""
    content = message.content
    if isinstance(content, str) and "\x00" not in content:
        return None
    return message.text.replace("\x00", " ")


def _words(message: Message, body: str) -> str | None:
    """PostgreSQL reads the words of plain ASCII text from the body (None); others are stored,
    as are those of a body holding an escaped NUL anywhere (in metadata, say), which
    PostgreSQL's JSON cannot turn into text."""
    content = message.content
    if isinstance(content, str) and words.derivable(content) and "\\u0000" not in body:
        return None
    return words.document(message.text)


def _message(message_id: str, body: str, created_us: int | None) -> Message:
    """The message stored as ``body`` (since schema step 2, its JSON without the id, and
    without a UTC time, which ``created_us`` holds)."""
    return stored_message(_decode(body)[0], message_id, created_us)


def _info(row: tuple[Any, ...]) -> ThreadInfo:
    tenant, thread_id, created_at, updated_at, count, metadata = row
    return ThreadInfo(
        thread_id, tenant, _time(created_at), _time(updated_at), count, json.loads(metadata)
    )


class ThreadPlans:
    """Plans for the thread operations on one set of tables and one SQL dialect.

    Every statement is built once, here, with bound parameters, so a driver can compile each
    once and reuse the SQL text (see `prepared`).

    Every write that changes a thread locks its thread row first (an upsert, an update or
    ``SELECT ... FOR UPDATE``), then its message rows. Under PostgreSQL's READ COMMITTED the
    statements after the lock see every write that committed before it, so counts never drift,
    and the one lock order means no deadlocks. SQLite serializes writers anyway.
    """

    def __init__(self, tables: Tables, dialect: str) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise InvalidInput(f"the SQL backend runs on sqlite and postgresql, not {dialect}")
        self.tables = tables
        self.dialect = dialect
        self._search_text = _raw_text if dialect == "sqlite" else _words
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
        appended = touch.values(first_us=bindparam("first_us"))
        self._touch = appended.on_conflict_do_update(
            index_elements=[t.c.tenant, t.c.thread_id],
            set_={
                "updated_at": appended.excluded.updated_at,
                "message_count": t.c.message_count + appended.excluded.message_count,
                "first_us": func.coalesce(t.c.first_us, appended.excluded.first_us),
            },
        )
        self._set_metadata = touch.on_conflict_do_update(
            index_elements=[t.c.tenant, t.c.thread_id],
            set_={"updated_at": touch.excluded.updated_at, "metadata": touch.excluded.metadata},
        )
        restore = upsert(t).values(
            tenant=bindparam("tenant"),
            thread_id=bindparam("thread_id"),
            created_at=bindparam("created"),
            updated_at=bindparam("updated"),
            message_count=0,
            metadata=bindparam("metadata"),
        )
        self._restore = restore.on_conflict_do_update(
            index_elements=[t.c.tenant, t.c.thread_id],
            set_={
                "created_at": restore.excluded.created_at,
                "updated_at": restore.excluded.updated_at,
                "metadata": restore.excluded.metadata,
            },
        )
        key_of = (
            select(t.c.id)
            .where(t.c.tenant == bindparam("tenant"), t.c.thread_id == bindparam("thread_id"))
            .scalar_subquery()
        )
        self._insert_message = (
            insert(m)
            .values(
                thread=key_of,
                tenant=bindparam("tenant"),
                message_id=bindparam("message_id"),
                body=bindparam("body"),
                created_us=bindparam("created_us"),
                search_text=bindparam("search_text"),
            )
            .inline()  # no RETURNING of the new seq: nothing reads it
        )
        # One message is one statement: on PostgreSQL the upsert feeds the insert in a WITH;
        # on SQLite an insert into a view whose trigger does both (schema step 2).
        self._append_one: ClauseElement
        if dialect == "postgresql":
            touched = self._touch.returning(t.c.id, t.c.tenant).cte("touched")
            self._append_one = insert(m).from_select(
                ["thread", "tenant", "message_id", "body", "created_us", "search_text"],
                select(
                    touched.c.id,
                    touched.c.tenant,
                    bindparam("message_id", type_=m.c.message_id.type),
                    bindparam("body", type_=m.c.body.type),
                    bindparam("created_us", type_=m.c.created_us.type),
                    bindparam("search_text", type_=m.c.search_text.type),
                ),
            )
        else:
            self._append_one = text(
                f"INSERT INTO {tables.append_view} (tenant, thread_id, now, first_us, "
                "message_id, body, created_us, search_text) VALUES (:tenant, :thread_id, :now, "
                ":first_us, :message_id, :body, :created_us, :search_text)"
            )
        is_thread = (t.c.tenant == bindparam("k_tenant")) & (t.c.thread_id == bindparam("k_thread"))
        thread_key = (
            select(t.c.id)
            .where(t.c.tenant == bindparam("k_tenant"), t.c.thread_id == bindparam("k_thread"))
            .scalar_subquery()
        )
        in_thread = m.c.thread == thread_key
        info = (t.c.tenant, t.c.thread_id, t.c.created_at, t.c.updated_at, t.c.message_count,
                t.c.metadata)  # fmt: skip
        self._thread_row = select(*info).where(is_thread)
        self._count = select(t.c.message_count).where(is_thread)
        self._lock_thread = self._count.with_for_update()  # plain SELECT on SQLite
        self._list = (
            select(*info)
            .where(t.c.tenant == bindparam("k_tenant"))
            .order_by(t.c.updated_at.desc(), t.c.thread_id)
            .limit(bindparam("limit"))
            .offset(bindparam("offset"))
        )
        self._seq_of = select(m.c.seq).where(in_thread, m.c.message_id == bindparam("before"))
        is_message = in_thread & (m.c.message_id == bindparam("k_message"))
        self._message = select(m.c.seq, m.c.message_id, m.c.body, m.c.created_us).where(is_message)
        self._delete_message = delete(m).where(is_message)
        self._rewrite_message = (
            update(m)
            .where(is_message)
            .values(
                body=bindparam("new_body"),
                created_us=bindparam("new_created_us"),
                search_text=bindparam("new_text"),
            )
        )
        # The first message's time; no later than ``earliest`` (the time of an updated message,
        # which this statement, locking the thread row, runs before).
        first = (
            select(func.coalesce(m.c.created_us, UNKNOWN_FIRST_US))
            .where(m.c.thread == t.c.id)
            .order_by(m.c.seq)
            .limit(1)
            .scalar_subquery()
        )
        earliest = bindparam("earliest", type_=m.c.created_us.type)
        self._shrink = (
            update(t)
            .where(is_thread)
            .values(
                message_count=t.c.message_count - bindparam("removed"),
                updated_at=bindparam("now"),
                first_us=case((first > earliest, earliest), else_=first),
            )
        )
        bodies = select(m.c.message_id, m.c.body, m.c.created_us).where(in_thread)
        before = bodies.where(m.c.seq < self._seq_of.scalar_subquery())
        self._load: dict[tuple[bool, bool], ClauseElement] = {
            (False, False): bodies.order_by(m.c.seq),
            (False, True): before.order_by(m.c.seq),
            (True, False): bodies.order_by(m.c.seq.desc()).limit(bindparam("last")),
            (True, True): before.order_by(m.c.seq.desc()).limit(bindparam("last")),
        }
        if dialect == "postgresql":  # see migrations._last_messages
            newest = text(
                f"SELECT message_id, body, created_us FROM {tables.last_messages}"
                "(:k_tenant, :k_thread, :before, :last)"
            )
            self._load[True, False] = self._load[True, True] = newest
        self._clear = delete(m).where(in_thread)
        self._reset = (
            update(t)
            .where(is_thread)
            .values(message_count=0, updated_at=bindparam("now"), first_us=None)
        )
        self._delete = delete(t).where(is_thread)
        self._clear_tenant_messages = delete(m).where(
            m.c.thread.in_(select(t.c.id).where(t.c.tenant == bindparam("k_tenant")))
        )
        self._clear_tenant_threads = delete(t).where(t.c.tenant == bindparam("k_tenant"))
        self._lock_tenant = (
            select(t.c.message_count).where(t.c.tenant == bindparam("k_tenant")).with_for_update()
        )
        self._of_user = (
            select(t.c.thread_id)
            .where(t.c.tenant == bindparam("k_tenant"), user_where(t.c.metadata, dialect))
            .order_by(t.c.thread_id)
        )
        self._tombstones = TombstonePlans(tables.tombstones, dialect)
        if dialect == "sqlite":
            self._sqlite_search(tables)
        else:
            self._postgres_search(tables)
        from memfold.backends.sql.thread_sweep import ThreadSweepPlans

        self._retention = ThreadSweepPlans(tables)

    def _sqlite_search(self, tables: Tables) -> None:
        fts, state, m = tables.messages_fts, tables.fts_state, tables.messages
        t = tables.threads
        self._fts_catch_up = text(
            f"INSERT INTO {fts}(rowid, search_text) SELECT seq, "
            "coalesce(search_text, json_extract(body, '$.content')) "
            f"FROM {m.name} WHERE seq > (SELECT indexed_upto FROM {state})"
        )
        self._fts_mark = text(
            f"UPDATE {state} SET indexed_upto = (SELECT max(seq) FROM {m.name}) "
            f"WHERE indexed_upto < (SELECT max(seq) FROM {m.name})"
        )
        self._fts_search: dict[bool, ClauseElement] = {
            scoped: text(
                f"SELECT t.thread_id, m.message_id, m.body, m.created_us, bm25({fts}) AS rank "
                f"FROM {fts} "
                f"JOIN {m.name} AS m ON m.seq = {fts}.rowid "
                f"JOIN {t.name} AS t ON t.id = m.thread "
                f"WHERE {fts} MATCH :match AND t.tenant = :k_tenant"
                + (" AND t.thread_id = :k_thread" if scoped else "")
                + " ORDER BY rank LIMIT :limit"
            )
            for scoped in (False, True)
        }

    def _postgres_search(self, tables: Tables) -> None:
        m, t = tables.messages, tables.threads
        vector = words.message_vector(m.c.search_text, m.c.body)
        # Every hit holds every query word once (the row stores distinct words), so the
        # fewer other words a message has, the better it matches (as on the memory backend).
        length = func.length(vector)
        found = (
            select(t.c.thread_id, m.c.message_id, m.c.body, m.c.created_us, length)
            .select_from(m.join(t, t.c.id == m.c.thread))
            .where(vector.bool_op("@@")(cast(bindparam("match"), postgresql.TSQUERY)))
            .order_by(length, m.c.seq)
            .limit(bindparam("limit"))
        )
        self._fts_search = {
            False: found.where(t.c.tenant == bindparam("k_tenant")),
            True: found.where(
                t.c.tenant == bindparam("k_tenant"), t.c.thread_id == bindparam("k_thread")
            ),
        }

    @property
    def prepared(self) -> list[ClauseElement]:
        """Every statement the plans yield, for a driver to compile once."""
        return [v for v in vars(self).values() if isinstance(v, ClauseElement)] + [
            *self._load.values(),
            *self._fts_search.values(),
            *self._tombstones.prepared,
            *self._retention.prepared,
        ]

    def writes(self, op: ops.Op[Any]) -> bool:
        """Whether ``op`` changes data (and so needs a write transaction)."""
        return not isinstance(op, _READS if self.dialect == "sqlite" else _PURE_READS)

    def single_statement(self, op: ops.Op[Any]) -> bool:
        """Whether ``op``'s plan is one statement, atomic without a transaction around it."""
        return isinstance(op, ops.AppendMessages) and len(op.messages) == 1 and op.follows is None

    def plan(self, op: ops.Op[Any]) -> Plan:
        """The plan that runs ``op``."""
        match op:
            case ops.AppendMessages():
                return self._append(op)
            case ops.ReplaceThread(tenant, thread_id, messages, bodies):
                return self._replace(ops.AppendMessages(tenant, thread_id, messages, bodies))
            case ops.UpdateMessages():
                if op.keep_times and self.dialect == "sqlite":  # a rotation: old bytes go
                    return scrubbed(self._update(op), None)
                return self._update(op)
            case ops.ScrubSearchIndex():
                if self.dialect == "sqlite":
                    return scrubbed(nothing(), self.tables.messages_fts)
                return nothing()
            case ops.DeleteMessages():
                return self._delete_messages(op)
            case ops.LoadThread():
                return self._load_plan(op)
            case ops.CountMessages(tenant, thread_id):
                return self._count_plan(tenant, thread_id)
            case ops.GetThread(tenant, thread_id):
                return self._get(tenant, thread_id)
            case ops.ListThreads():
                return self._list_plan(op)
            case ops.SetThreadMetadata():
                return self._metadata(op)
            case ops.RestoreThread():
                return self._restore_plan(op)
            case ops.ClearThread(tenant, thread_id):
                return self._clear_plan(tenant, thread_id)
            case ops.DeleteThread(tenant, thread_id):
                return self._delete_plan(tenant, thread_id)
            case ops.ClearTenant(tenant):
                return self._clear_tenant_plan(tenant)
            case ops.SearchMessages():
                return self._search(op)
            case FindThreads(tenant, user_id):
                return self._find(tenant, user_id)
            case EraseSubject():
                return self._erase(op)
            case LiftTombstones():
                return self._tombstones.lift(op)
            case ops.GetThreadTTL():
                return self._retention.get_ttl(op)
            case ops.SetThreadTTL():
                return self._retention.set_ttl(op)
            case ops.SweepThreads():
                return self._retention.sweep(op)
        raise InvalidInput(f"the SQL backend cannot run {type(op).__name__}")

    def _append(self, op: ops.AppendMessages) -> Plan:
        if len(op.messages) == 1 and op.follows is None:  # the hot path: one statement
            m = op.messages[0]
            created_us = stored_time(m)
            yield (
                self._append_one,
                {
                    "tenant": op.tenant,
                    "thread_id": op.thread_id,
                    "now": time.time(),
                    "added": 1,
                    "metadata": "{}",
                    "message_id": m.id,
                    "body": op.bodies[0],
                    "created_us": created_us,
                    "search_text": self._search_text(m, op.bodies[0]),
                    "first_us": micros(m.created_at) if created_us is None else created_us,
                },
            )
            return
        key = {"tenant": op.tenant, "thread_id": op.thread_id}
        touch = {**key, "now": time.time(), "added": len(op.messages), "metadata": "{}"}
        touch["first_us"] = micros(op.messages[0].created_at) if op.messages else None
        rows = []
        for m, body in zip(op.messages, op.bodies, strict=True):
            rows.append(
                {
                    **key,
                    "message_id": m.id,
                    "body": body,
                    "created_us": stored_time(m),
                    "search_text": self._search_text(m, body),
                }
            )
        yield self._touch, touch  # locks the thread row
        if op.follows is not None:
            last = yield from self._load_plan(ops.LoadThread(op.tenant, op.thread_id, last=1))
            if (last[0].id if last else "") != op.follows:
                raise not_following(op.thread_id, op.follows, last[0].id if last else None)
        yield self._insert_message, rows[0] if len(rows) == 1 else rows

    def _replace(self, op: ops.AppendMessages) -> Plan:
        # Create and lock the thread row first, so a concurrent append waits for the swap.
        key = {"tenant": op.tenant, "thread_id": op.thread_id}
        touch = {**key, "now": time.time(), "added": 0, "metadata": "{}", "first_us": None}
        yield self._touch, touch
        yield from self._clear_plan(op.tenant, op.thread_id)
        if op.messages:
            yield from self._append(op)

    def _update(self, op: ops.UpdateMessages) -> Plan:
        key = {"k_tenant": op.tenant, "k_thread": op.thread_id}
        rows = []
        for m, body in zip(op.messages, op.bodies, strict=True):
            rows.append(
                {
                    **key,
                    "k_message": m.id,
                    "new_body": body,
                    "new_created_us": stored_time(m),
                    "new_text": self._search_text(m, body),
                }
            )
        times = [micros(m.created_at) for m in op.messages]
        earliest = min((us for us in times if us is not None), default=None)
        params = {**key, "removed": 0, "now": time.time(), "earliest": earliest}
        if op.keep_times:
            yield self._lock_thread, key
        else:
            yield self._shrink, params  # locks the thread row
        changed = (yield self._rewrite_message, rows).rowcount
        if changed != len(rows):
            raise NotFound(
                f"update_messages named messages not in thread {op.thread_id!r}: nothing changed"
            )

    def _delete_messages(self, op: ops.DeleteMessages) -> Plan:
        key = {"k_tenant": op.tenant, "k_thread": op.thread_id}
        removed: list[tuple[int, str, str, int | None]] = []
        if op.message_ids:
            yield self._lock_thread, key
        for message_id in op.message_ids:
            rows = (yield self._message, {**key, "k_message": message_id}).rows
            # Count only what this transaction deleted: a concurrent delete may win the row.
            if rows and (yield self._delete_message, {**key, "k_message": message_id}).rowcount:
                removed.append(rows[0])
        if removed:
            params = {**key, "removed": len(removed), "now": time.time(), "earliest": None}
            yield self._shrink, params
        return [_message(*row[1:]) for row in sorted(removed, key=lambda row: row[0])]

    def _load_plan(self, op: ops.LoadThread) -> Plan:
        key: dict[str, Any] = {"k_tenant": op.tenant, "k_thread": op.thread_id}
        if op.before is not None or self.dialect == "postgresql":
            key["before"] = op.before
        if op.last is not None:
            key["last"] = op.last
        rows = (yield self._load[op.last is not None, op.before is not None], key).rows
        # Nothing before ``before``: it is the first message, or not in the thread at all.
        if not rows and op.before is not None and not (yield self._seq_of, key).rows:
            raise NotFound(f"no message {op.before!r} in thread {op.thread_id!r}")
        if op.last is not None:
            rows = rows[::-1]
        return [_message(message_id, body, created) for message_id, body, created in rows]

    def _count_plan(self, tenant: str, thread_id: str) -> Plan:
        rows = yield self._count, {"k_tenant": tenant, "k_thread": thread_id}
        return rows.scalar() or 0

    def _get(self, tenant: str, thread_id: str) -> Plan:
        rows = (yield self._thread_row, {"k_tenant": tenant, "k_thread": thread_id}).rows
        if not rows:
            raise NotFound(f"no thread {thread_id!r} for tenant {tenant!r}")
        return _info(rows[0])

    def _list_plan(self, op: ops.ListThreads) -> Plan:
        params = {"k_tenant": op.tenant, "limit": op.limit, "offset": op.offset}
        return [_info(row) for row in (yield self._list, params).rows]

    def _metadata(self, op: ops.SetThreadMetadata) -> Plan:
        key = {"tenant": op.tenant, "thread_id": op.thread_id}
        yield self._set_metadata, {**key, "now": time.time(), "added": 0, "metadata": op.encoded}
        return (yield from self._get(op.tenant, op.thread_id))

    def _restore_plan(self, op: ops.RestoreThread) -> Plan:
        params = {
            "tenant": op.tenant,
            "thread_id": op.thread_id,
            "created": op.created_at.timestamp(),
            "updated": op.updated_at.timestamp(),
            "metadata": op.encoded,
        }
        yield self._restore, params
        return (yield from self._get(op.tenant, op.thread_id))

    def _clear_plan(self, tenant: str, thread_id: str) -> Plan:
        key = {"k_tenant": tenant, "k_thread": thread_id}
        yield self._reset, {**key, "now": time.time()}
        return (yield self._clear, key).rowcount

    def _delete_plan(self, tenant: str, thread_id: str) -> Plan:
        # Messages first: they find their thread by its row.
        key = {"k_tenant": tenant, "k_thread": thread_id}
        yield self._lock_thread, key
        yield self._clear, key
        return (yield self._delete, key).rowcount > 0

    def _clear_tenant_plan(self, tenant: str) -> Plan:
        yield self._clear_tenant_messages, {"k_tenant": tenant}
        return (yield self._clear_tenant_threads, {"k_tenant": tenant}).rowcount

    def _find(self, tenant: str, user_id: str) -> Plan:
        rows = (yield self._of_user, {"k_tenant": tenant, **user_params(user_id)}).rows
        return [row[0] for row in rows]

    def _erase(self, op: EraseSubject) -> Plan:
        # Tombstones first (on PostgreSQL under the tenant's erasure lock, which the write
        # triggers wait for), then the threads' rows, counted as they go.
        if not op.dry_run:
            yield from self._tombstones.place(op.tenant, op.tombstones)
        tenant = {"k_tenant": op.tenant}
        if op.whole_tenant:
            counts = [row[0] for row in (yield self._lock_tenant, tenant).rows]
            doomed = [tenant] if counts else []
        else:
            counts, doomed = [], []
            for thread_id in op.thread_ids:
                key = {**tenant, "k_thread": thread_id}
                found = (yield self._lock_thread, key).rows
                if found:
                    counts.append(found[0][0])
                    doomed.append(key)
        if doomed and not op.dry_run:
            deletes = self._delete_rows(doomed, op.whole_tenant)
            if self.dialect == "sqlite":
                deletes = scrubbed(deletes, self.tables.messages_fts)
            yield from deletes
        return ErasureCounts(threads=len(counts), messages=sum(counts))

    def _delete_rows(self, keys: list[dict[str, str]], whole_tenant: bool) -> Plan:
        """Delete threads with their messages (each key names one, or the whole tenant)."""
        for key in keys:
            if whole_tenant:
                yield self._clear_tenant_messages, key
                yield self._clear_tenant_threads, key
            else:
                yield self._clear, key
                yield self._delete, key

    def _search(self, op: ops.SearchMessages) -> Plan:
        params: dict[str, Any] = {"k_tenant": op.tenant, "limit": op.limit}
        if op.thread_id is not None:
            params["k_thread"] = op.thread_id
        if self.dialect == "sqlite":
            params["match"] = fts5_query(op.query)
            if not params["match"]:
                return []
            yield self._fts_catch_up, None
            yield self._fts_mark, None
            rows = (yield self._fts_search[op.thread_id is not None], params).rows
            return [
                MessageHit(tid, _message(mid, body, created), -float(rank))
                for tid, mid, body, created, rank in rows
            ]
        terms = words.terms(op.query)
        if not terms:
            return []
        params["match"] = words.query(terms)
        rows = (yield self._fts_search[op.thread_id is not None], params).rows
        return [
            MessageHit(tid, _message(mid, body, created), len(terms) / (1 + length) ** 0.5)
            for tid, mid, body, created, length in rows
        ]
