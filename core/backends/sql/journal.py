"""The effect journal on SQL: its table, beside the checkpoint tables, and its plans.

``<prefix>cp_journal`` holds one row per completed tool call, keyed by ``(tenant, thread_id,
namespace, tool_call_id)``, with the checkpoint its step ran from (``origin``, "" if not known;
added by checkpoint schema step 13); listing a thread reads a prefix of that key. A record is one
insert-if-absent (``ON CONFLICT DO NOTHING``) and, only when the key was taken, one read of
the stored row, in one transaction. Deleting a checkpoint thread deletes its rows too, and
copying one copies them (see `memfold.backends.sql.checkpoint_plans`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Dialect,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable

from memfold.backends.sql.plans import Plan
from memfold.checkpoint_model import Blob
from memfold.errors import InvalidInput
from memfold.journal import (
    JOURNAL_READS,
    DeleteEffects,
    GetEffect,
    JournalEntry,
    ListEffects,
    ListJournalThreads,
    RecordEffect,
    ReplaceEffect,
)
from memfold.ops import Op

__all__ = ["JournalPlans", "build_journal_table", "journal_ddl"]

_ID = 512
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def build_journal_table(metadata: MetaData, prefix: str) -> Table:
    """Declare ``<prefix>cp_journal`` in ``metadata`` (and its schema)."""
    return Table(
        f"{prefix}cp_journal",
        metadata,
        Column("tenant", String(_ID), nullable=False),
        Column("thread_id", String(_ID), nullable=False),
        Column("namespace", String(_ID), nullable=False),
        Column("tool_call_id", String(_ID), nullable=False),
        Column("tag", String(_ID), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("recorded_us", BigInteger, nullable=False),
        Column("origin", String(_ID), nullable=False, server_default=""),
        PrimaryKeyConstraint("tenant", "thread_id", "namespace", "tool_call_id"),
    )


def journal_ddl(table: Table, dialect: Dialect) -> list[str]:
    """The DDL of the journal's schema step."""
    return [str(CreateTable(table, if_not_exists=True).compile(dialect=dialect))]


class JournalPlans:
    """Plans for the journal operations on one table and one SQL dialect (statements built
    once)."""

    def __init__(self, table: Table, dialect: Dialect) -> None:
        j = table
        ins = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        thread = and_(j.c.tenant == bindparam("tenant"), j.c.thread_id == bindparam("thread_id"))
        key = and_(
            thread,
            j.c.namespace == bindparam("namespace"),
            j.c.tool_call_id == bindparam("tool_call_id"),
        )
        self._record = (
            ins(j).values({c.name: bindparam(c.name) for c in j.columns}).on_conflict_do_nothing()
        )
        self._replace = (
            update(j).where(key).values(tag=bindparam("new_tag"), data=bindparam("new_data"))
        )
        self._get = select(j.c.tag, j.c.data, j.c.recorded_us, j.c.origin).where(key)
        columns = (j.c.namespace, j.c.tool_call_id, j.c.tag, j.c.data, j.c.recorded_us, j.c.origin)
        order = (j.c.recorded_us, j.c.namespace, j.c.tool_call_id)
        listed = select(*columns).order_by(*order)
        namespace = j.c.namespace == bindparam("namespace")
        call = j.c.tool_call_id == bindparam("tool_call_id")
        self._lists = {
            (False, False): listed.where(thread),
            (True, False): listed.where(thread, namespace),
            (False, True): listed.where(thread, call),
            (True, True): listed.where(key),
        }
        self._threads = (
            select(j.c.thread_id)
            .where(j.c.tenant == bindparam("tenant"))
            .group_by(j.c.thread_id)
            .order_by(j.c.thread_id)
        )
        self._delete = delete(j).where(thread)
        names = [c.name for c in j.columns]
        copied = [
            bindparam("target", type_=j.c.thread_id.type) if n == "thread_id" else j.c[n]
            for n in names
        ]
        self._copy = insert(j).from_select(names, select(*copied).where(thread))

    def writes(self, op: Op[Any]) -> bool:
        """Whether ``op`` changes data."""
        return not isinstance(op, JOURNAL_READS)

    def plan(self, op: Op[Any]) -> Plan:
        """The plan that runs journal operation ``op``."""
        match op:
            case RecordEffect():
                return self._record_plan(op)
            case ReplaceEffect():
                return self._replace_plan(op)
            case GetEffect():
                return self._get_plan(op)
            case ListEffects():
                return self._list_plan(op)
            case ListJournalThreads(tenant):
                return self._threads_plan(tenant)
            case DeleteEffects():
                return self._delete_plan(op)
        raise InvalidInput(f"the SQL journal cannot run {type(op).__name__}")

    def _threads_plan(self, tenant: str) -> Plan:
        found = yield self._threads, {"tenant": tenant}
        return [row[0] for row in found.rows]

    def delete_thread(self, tenant: str, thread_id: str) -> Plan:
        """Delete a thread's rows; returns how many there were."""
        done = yield self._delete, {"tenant": tenant, "thread_id": thread_id}
        return done.rowcount

    def copy_thread(self, tenant: str, source: str, target: str) -> Plan:
        """Make ``target``'s journal a copy of ``source``'s (replacing what it held)."""
        yield from self.delete_thread(tenant, target)
        yield self._copy, {"tenant": tenant, "thread_id": source, "target": target}

    def _record_plan(self, op: RecordEffect) -> Plan:
        key = _key(op)
        done = yield (
            self._record,
            {
                **key,
                "tag": op.value.tag,
                "data": op.value.data,
                "recorded_us": (op.recorded_at - _EPOCH) // _US,
                "origin": op.origin,
            },
        )
        if done.rowcount == 1:
            return op.entry()
        found = yield self._get, key
        return _entry(op.thread_id, op.namespace, op.tool_call_id, *found.rows[0])

    def _replace_plan(self, op: ReplaceEffect) -> Plan:
        params = {**_key(op), "new_tag": op.value.tag, "new_data": op.value.data}
        done = yield self._replace, params
        return done.rowcount == 1

    def _get_plan(self, op: GetEffect) -> Plan:
        found = yield self._get, _key(op)
        if not found.rows:
            return None
        return _entry(op.thread_id, op.namespace, op.tool_call_id, *found.rows[0])

    def _list_plan(self, op: ListEffects) -> Plan:
        params = {
            "tenant": op.tenant,
            "thread_id": op.thread_id,
            "namespace": op.namespace,
            "tool_call_id": op.tool_call_id,
        }
        statement = self._lists[(op.namespace is not None, op.tool_call_id is not None)]
        found = yield statement, {k: v for k, v in params.items() if v is not None}
        return [_entry(op.thread_id, *row) for row in found.rows]

    def _delete_plan(self, op: DeleteEffects) -> Plan:
        return (yield from self.delete_thread(op.tenant, op.thread_id))


def _entry(
    thread_id: str,
    namespace: str,
    tool_call_id: str,
    tag: str,
    data: bytes,
    recorded_us: int,
    origin: str,
) -> JournalEntry:
    """The entry of a stored row."""
    recorded_at = _EPOCH + timedelta(microseconds=int(recorded_us))
    return JournalEntry(
        thread_id, namespace, tool_call_id, Blob(tag, bytes(data)), recorded_at, origin
    )


def _key(op: RecordEffect | ReplaceEffect | GetEffect) -> dict[str, str]:
    """The parameters naming one recorded call."""
    return {
        "tenant": op.tenant,
        "thread_id": op.thread_id,
        "namespace": op.namespace,
        "tool_call_id": op.tool_call_id,
    }
