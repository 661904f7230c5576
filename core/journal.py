"""The effect journal: each completed tool call, recorded once, so a resumed run replays it.

An agent run that crashes or is interrupted after a tool ran, but before the step's checkpoint
was written, re-runs the whole step when it resumes; without a journal the tool's side effect
(a refund, an email) happens twice. A tool wrapped with the journal (see
`memfold.integrations.langchain.journaled` and `memfold.integrations.llama_index.journaled`)
looks its call up first, by ``(tenant, thread_id, namespace, tool_call_id)``: a recorded call
returns its recorded result without running; otherwise the tool runs and its result is
recorded before it is returned.

`record` is atomic and insert-if-absent: the first result recorded for a key wins, and every
later `record` of that key returns the first one (so two racing workers return the same result).

The journal lives in the checkpoint store: one URL opens both (`open_journal`, or
`EffectJournal(saver.store)` for a LangGraph saver's store), and deleting a thread's checkpoints
(``delete_thread``, ``prune(strategy="delete")``, a TTL sweep) deletes its journal too. Results
are JSON, or a host serializer's typed bytes as a `Blob` (never pickle). A store opened with a
keyring encrypts each result before it reaches the backend (`memfold.encryption.seal_effect`)
and decrypts it on read; the key fields stay readable, and results recorded without a keyring
read as they are.

Examples:
    >>> from memfold.journal import open_journal
    >>> journal = open_journal("memory://")
    >>> journal.get("t1", "call-1") is None
    True
    >>> journal.record("t1", "call-1", {"refund": 42}).result
    {'refund': 42}
    >>> journal.record("t1", "call-1", {"refund": 99}).result  # the first result stays
    {'refund': 42}
    >>> [e.tool_call_id for e in journal.list_entries("t1")]
    ['call-1']
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from memfold.checkpoint_model import Blob, Checkpoint
from memfold.checkpoints import (
    BaseCheckpointStore,
    CheckpointStore,
    open_checkpoint_store,
    parent_namespace,
)
from memfold.encryption import open_effect, seal_effect
from memfold.errors import InvalidInput, UnsupportedOperation
from memfold.flows import Call, Flow, arun, run
from memfold.limits import Limits
from memfold.model import JSON, utcnow
from memfold.ops import Op
from memfold.stores import BaseStore, check_id, check_time, encode_json
from memfold.urls import check_url

__all__ = [
    "JOURNAL_OPS",
    "JOURNAL_READS",
    "JSON_TAG",
    "DeleteEffects",
    "EffectJournal",
    "GetEffect",
    "JournalEntry",
    "ListEffects",
    "ListJournalThreads",
    "RecordEffect",
    "ReplaceEffect",
    "aopen_journal",
    "open_journal",
    "sort_key",
]

T = TypeVar("T")

JSON_TAG: Final = "json"
"""The tag of a result recorded as JSON (UTF-8 text)."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One completed tool call: its key, its result as typed bytes, when it was recorded, and
    the checkpoint its step ran from (``origin``, "" if not known; see `EffectJournal.recall`)."""

    thread_id: str
    namespace: str
    tool_call_id: str
    value: Blob
    recorded_at: datetime
    origin: str = ""

    @property
    def result(self) -> JSON | Blob:
        """The result: decoded if it was recorded as JSON, else the `Blob` itself."""
        if self.value.tag == JSON_TAG:
            decoded: JSON = json.loads(self.value.data)
            return decoded
        return self.value


def _check_key(
    tenant: object, thread_id: object, namespace: object = None, tool_call_id: object = None
) -> None:
    """`InvalidInput` unless an operation's key fields are usable (None: not in its key)."""
    check_id(tenant, "tenant")
    check_id(thread_id, "thread id")
    if namespace is not None:
        _check_namespace(namespace)
    if tool_call_id is not None:
        check_id(tool_call_id, "tool call id")


def _check_origin(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"origin must be a str, got {type(value).__name__}")
    return check_id(value, "origin") if value else value


# Operations as data: a store that declares the ``effect_journal`` capability runs them.


@dataclass(frozen=True, slots=True)
class RecordEffect(Op[JournalEntry]):
    """Record a call's result unless its key is recorded; returns the entry stored (the first)."""

    tenant: str
    thread_id: str
    namespace: str
    tool_call_id: str
    value: Blob
    recorded_at: datetime
    origin: str = ""

    def __post_init__(self) -> None:
        _check_key(self.tenant, self.thread_id, self.namespace, self.tool_call_id)
        if not isinstance(self.value, Blob):
            raise InvalidInput(f"a recorded value is a Blob, got {type(self.value).__name__}")
        check_time(self.recorded_at, "recorded_at")
        _check_origin(self.origin)

    def entry(self) -> JournalEntry:
        """The entry this operation stores if its key is new."""
        return JournalEntry(
            self.thread_id,
            self.namespace,
            self.tool_call_id,
            self.value,
            self.recorded_at,
            self.origin,
        )


@dataclass(frozen=True, slots=True)
class ReplaceEffect(Op[bool]):
    """Replace the stored result of a recorded call, keeping its time (key rotation); records
    nothing if the call is not recorded. Returns whether it was."""

    tenant: str
    thread_id: str
    namespace: str
    tool_call_id: str
    value: Blob

    def __post_init__(self) -> None:
        _check_key(self.tenant, self.thread_id, self.namespace, self.tool_call_id)
        if not isinstance(self.value, Blob):
            raise InvalidInput(f"a recorded value is a Blob, got {type(self.value).__name__}")


@dataclass(frozen=True, slots=True)
class GetEffect(Op[JournalEntry | None]):
    """The recorded entry of one call, or None."""

    tenant: str
    thread_id: str
    namespace: str
    tool_call_id: str

    def __post_init__(self) -> None:
        _check_key(self.tenant, self.thread_id, self.namespace, self.tool_call_id)


@dataclass(frozen=True, slots=True)
class ListEffects(Op[list[JournalEntry]]):
    """A thread's entries (of one namespace, unless ``namespace`` is None; of one call, unless
    ``tool_call_id`` is None), oldest first."""

    tenant: str
    thread_id: str
    namespace: str | None
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        _check_key(self.tenant, self.thread_id, self.namespace, self.tool_call_id)


@dataclass(frozen=True, slots=True)
class ListJournalThreads(Op[list[str]]):
    """The ids of a tenant's threads that have a journal, sorted (a thread may have a journal
    and no checkpoint: tools journaled outside a LangGraph run)."""

    tenant: str

    def __post_init__(self) -> None:
        check_id(self.tenant, "tenant")


@dataclass(frozen=True, slots=True)
class DeleteEffects(Op[int]):
    """Remove a thread's whole journal; returns how many entries were removed."""

    tenant: str
    thread_id: str

    def __post_init__(self) -> None:
        _check_key(self.tenant, self.thread_id)


JOURNAL_OPS: Final = (
    RecordEffect,
    ReplaceEffect,
    GetEffect,
    ListEffects,
    ListJournalThreads,
    DeleteEffects,
)
"""Every journal operation, for a backend's dispatch."""
JOURNAL_READS: Final = (GetEffect, ListEffects, ListJournalThreads)
"""The journal operations that change nothing."""


def sort_key(entry: JournalEntry) -> tuple[datetime, str, str]:
    """The order of `EffectJournal.list_entries`: recording time, then namespace and call id."""
    if not isinstance(entry, JournalEntry):
        raise InvalidInput(f"sort_key takes a JournalEntry, got {type(entry).__name__}")
    return entry.recorded_at, entry.namespace, entry.tool_call_id


def _check_namespace(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"namespace must be a str, got {type(value).__name__}")
    return check_id(value, "namespace") if value else value


def _nodes(namespace: str) -> list[str]:
    """The node names of a namespace, its task ids (after each ``:``) left out."""
    return [level.partition(":")[0] for level in namespace.split("|")]


def _same_step(entry: JournalEntry, namespace: str, origin: str) -> bool:
    """Whether ``entry`` may be an earlier attempt of the step that runs ``namespace`` from
    checkpoint ``origin``: recorded with an origin of its own, another one, by the same nodes."""
    return (
        bool(entry.origin)
        and entry.origin != origin
        and _nodes(entry.namespace) == _nodes(namespace)
    )


def _enclosing(checkpoint: Checkpoint) -> list[tuple[str, str]]:
    """The checkpoints ``(namespace, id)`` of the enclosing runs that a nested run's
    ``checkpoint`` was made in: LangGraph's ``parents`` metadata (its ``checkpoint_map``). A
    crash can lose one of them (the step of the enclosing graph that runs the subgraph) while the
    subgraph's own checkpoints are stored; the resumed run then starts the subgraph again under
    a new namespace, so its calls are attempts of the lost one, not a fork."""
    parents = checkpoint.metadata.get("parents")
    if not isinstance(parents, dict):
        return []
    return [
        (namespace, checkpoint_id)
        for namespace, checkpoint_id in parents.items()
        if isinstance(checkpoint_id, str) and checkpoint_id and namespace != checkpoint.namespace
    ]


def _check_running(running: object) -> frozenset[str]:
    if isinstance(running, str) or not isinstance(running, Sequence | frozenset | set):
        raise InvalidInput(f"running is a sequence of checkpoint ids, got {running!r}")
    return frozenset(check_id(c, "running checkpoint id") for c in running)


def _value(result: JSON | Blob, limits: Limits) -> Blob:
    if isinstance(result, Blob):
        if not isinstance(result.tag, str) or not result.tag:
            raise InvalidInput("a recorded Blob needs a non-empty str tag")
        if not isinstance(result.data, bytes):
            raise InvalidInput(
                f"a recorded Blob needs bytes data, got {type(result.data).__name__}"
            )
        return result
    encoded = encode_json(result, "the tool result", limits, "max_blob_bytes")
    return Blob(JSON_TAG, encoded.encode())


class EffectJournal:
    """The journal API, sync and async, over a store that runs the journal operations (a
    checkpoint store on ``memory://``, ``sqlite:///``, ``postgresql://``, ``redis://`` or
    ``tiered+redis://``).

    Args:
        store: the store to keep the journal in (usually the checkpoint store of the run).

    Raises:
        UnsupportedOperation: the store does not declare the ``effect_journal`` capability.
    """

    def __init__(self, store: BaseStore | CheckpointStore) -> None:
        if not isinstance(store, BaseStore):
            raise InvalidInput(f"EffectJournal needs a memfold store, got {type(store).__name__}")
        store.capabilities.require("effect_journal", store.name)
        self.store = store

    # Building operations: pure, shared by the sync and async twins.

    def _record_op(
        self,
        thread_id: str,
        tool_call_id: str,
        result: JSON | Blob,
        namespace: str,
        tenant: str | None,
        origin: str = "",
    ) -> RecordEffect:
        value = _value(result, self.store.limits)
        keyring = self.store.keyring
        return RecordEffect(
            self.store.resolve_tenant(tenant),
            check_id(thread_id, "thread id"),
            _check_namespace(namespace),
            check_id(tool_call_id, "tool call id"),
            value if keyring is None else seal_effect(keyring, value),
            utcnow(),
            _check_origin(origin),
        )

    def _restore_op(self, entry: JournalEntry, tenant: str | None) -> RecordEffect:
        if not isinstance(entry, JournalEntry):
            raise InvalidInput(f"restore takes a JournalEntry, got {type(entry).__name__}")
        op = self._record_op(
            entry.thread_id, entry.tool_call_id, entry.value, entry.namespace, tenant, entry.origin
        )
        return replace(op, recorded_at=check_time(entry.recorded_at, "recorded_at"))

    def _get_op(
        self, thread_id: str, tool_call_id: str, namespace: str, tenant: str | None
    ) -> GetEffect:
        return GetEffect(
            self.store.resolve_tenant(tenant),
            check_id(thread_id, "thread id"),
            _check_namespace(namespace),
            check_id(tool_call_id, "tool call id"),
        )

    def _list_op(self, thread_id: str, namespace: str | None, tenant: str | None) -> ListEffects:
        return ListEffects(
            self.store.resolve_tenant(tenant),
            check_id(thread_id, "thread id"),
            None if namespace is None else _check_namespace(namespace),
        )

    def _delete_op(self, thread_id: str, tenant: str | None) -> DeleteEffects:
        return DeleteEffects(self.store.resolve_tenant(tenant), check_id(thread_id, "thread id"))

    def _opened(self, entry: JournalEntry) -> JournalEntry:
        """``entry`` with its result decrypted (a plain one as it is)."""
        what = f"journal entry {entry.tool_call_id!r} of thread {entry.thread_id!r}"
        value = open_effect(self.store.keyring, entry.value, what)
        return entry if value is entry.value else replace(entry, value=value)

    def _found(self, entry: JournalEntry | None) -> JournalEntry | None:
        return None if entry is None else self._opened(entry)

    def _recall(
        self,
        thread_id: str,
        tool_call_id: str,
        namespace: str,
        origin: str,
        running: Sequence[str],
        tenant: str | None,
    ) -> Flow[JournalEntry | None]:
        """`recall`, as a flow: one read of the call's entries, then checkpoint reads for an
        entry of another namespace only."""
        if not _check_origin(origin):
            found = yield Call(
                self.store, "execute", (self._get_op(thread_id, tool_call_id, namespace, tenant),)
            )
            return self._found(found)
        _check_namespace(namespace)
        ours = _check_running(running)
        op = ListEffects(
            self.store.resolve_tenant(tenant),
            check_id(thread_id, "thread id"),
            None,
            check_id(tool_call_id, "tool call id"),
        )
        entries: list[JournalEntry] = yield Call(self.store, "execute", (op,))
        for entry in entries:
            if entry.namespace == namespace:
                return self._opened(entry)
        for entry in entries:
            if (
                _same_step(entry, namespace, origin)
                and not (yield from self._stored(entry, tenant))
                and not (yield from self._went_on(entry, ours, tenant))
            ):
                replayed = self._opened(entry).value
                record = self._record_op(
                    thread_id, tool_call_id, replayed, namespace, tenant, origin
                )
                return self._opened((yield Call(self.store, "execute", (record,))))
        return None

    def _checkpoints_of(
        self, entry: JournalEntry, tenant: str | None, **where: str | int
    ) -> Flow[list[Checkpoint]]:
        if not isinstance(self.store, BaseCheckpointStore):
            raise UnsupportedOperation(f"{self.store.name} keeps no checkpoints to recall from")
        found: list[Checkpoint] = yield Call(
            self.store, "list_checkpoints", (entry.thread_id,), {**where, "tenant": tenant}
        )
        return found

    def _stored(self, entry: JournalEntry, tenant: str | None) -> Flow[bool]:
        """Whether the checkpoint ``entry``'s step ran from is stored, and so are those of the
        enclosing runs it was made in (see `_enclosing`)."""
        namespace = parent_namespace(entry.namespace)
        found = yield from self._checkpoints_of(
            entry, tenant, namespace=namespace, checkpoint_id=entry.origin, limit=1
        )
        if not found:
            return False
        for namespace, checkpoint_id in _enclosing(found[0]):
            enclosing = yield from self._checkpoints_of(
                entry, tenant, namespace=namespace, checkpoint_id=checkpoint_id, limit=1
            )
            if not enclosing:
                return False
        return True

    def _went_on(
        self, entry: JournalEntry, running: frozenset[str], tenant: str | None
    ) -> Flow[bool]:
        """Whether the root graph stored a checkpoint made after ``entry``'s origin (a greater
        id: LangGraph's ids grow with time) that is not one of ``running``. Ids, not the times
        the store wrote them at: ``durability="async"`` may write the checkpoints before the
        origin after the tool ran."""
        newest = yield from self._checkpoints_of(
            entry, tenant, namespace="", limit=len(running) + 1
        )
        return any(
            c.checkpoint_id > entry.origin and c.checkpoint_id not in running for c in newest
        )

    # Sync API.

    def get(
        self,
        thread_id: str,
        tool_call_id: str,
        *,
        namespace: str = "",
        tenant: str | None = None,
    ) -> JournalEntry | None:
        """The recorded entry of a call, or None if it was never recorded.

        Raises:
            EncryptionError: the result is encrypted and the store's keyring cannot decrypt it.
        """
        return self._found(
            self.store.execute(self._get_op(thread_id, tool_call_id, namespace, tenant))
        )

    def recall(
        self,
        thread_id: str,
        tool_call_id: str,
        *,
        namespace: str = "",
        origin: str = "",
        running: Sequence[str] = (),
        tenant: str | None = None,
    ) -> JournalEntry | None:
        """The entry of a call about to run, or None if it must run: its own entry (`get`),
        else, given the ``origin`` checkpoint its step runs from, the entry of the same call
        that an earlier attempt of the same step recorded and that is recorded under this key
        too before it is returned.

        An earlier attempt is an entry of the same call id whose namespace names the same
        nodes (``"tools:<task id>"``, the task ids aside) and whose own origin is no stored
        checkpoint: the process crashed before that checkpoint was stored (LangGraph's
        ``durability="async"`` stores it while the tools run), so the resumed run made the
        step again under new ids. An entry whose origin is stored (with the enclosing
        checkpoints it was made in) came from a fork (time travel, ``update_state``) and is not
        replayed. Nor is an entry whose origin is older than a checkpoint the root graph
        stored that is not one of ``running`` (the checkpoints the calling run works from,
        LangGraph's ``checkpoint_map``): its run went on, so it did not crash
        (``durability="exit"`` stores nothing but the run's last checkpoint, and a retention
        sweep may have removed the origin), and the call is a new one that reuses the call id.
        """
        return run(self._recall(thread_id, tool_call_id, namespace, origin, running, tenant))

    def record(
        self,
        thread_id: str,
        tool_call_id: str,
        result: JSON | Blob,
        *,
        namespace: str = "",
        origin: str = "",
        tenant: str | None = None,
    ) -> JournalEntry:
        """Record a completed call's result (JSON, or a `Blob` of a host serializer's bytes)
        unless the call is recorded already; returns the entry stored, which is the first one.
        ``origin`` is the id of the checkpoint the call's step ran from, in the namespace that
        ``namespace`` is a task of (see `recall`).

        Raises:
            InvalidInput: a bad id, or a result that is neither JSON nor a `Blob`.
            EncryptionError: the call's stored result is encrypted and the store's keyring
                cannot decrypt it.
        """
        op = self._record_op(thread_id, tool_call_id, result, namespace, tenant, origin)
        return self._opened(self.store.execute(op))

    def restore(self, entry: JournalEntry, *, tenant: str | None = None) -> JournalEntry:
        """Record ``entry`` as another store (or an export) held it, its ``recorded_at``
        included, unless its call is recorded already; returns the entry stored. For imports
        and migrations: a tool's own result is recorded with `record`."""
        return self._opened(self.store.execute(self._restore_op(entry, tenant)))

    def list_threads(self, *, tenant: str | None = None) -> list[str]:
        """The ids of the tenant's threads that have a journal, sorted."""
        return self.store.execute(ListJournalThreads(self.store.resolve_tenant(tenant)))

    def list_entries(
        self, thread_id: str, *, namespace: str | None = None, tenant: str | None = None
    ) -> list[JournalEntry]:
        """A thread's entries, oldest first (of every namespace unless one is given)."""
        found = self.store.execute(self._list_op(thread_id, namespace, tenant))
        return [self._opened(e) for e in found]

    def delete_thread(self, thread_id: str, *, tenant: str | None = None) -> int:
        """Remove a thread's journal; returns how many entries were removed. (Deleting the
        thread's checkpoints does this too.)"""
        return self.store.execute(self._delete_op(thread_id, tenant))

    # Async API: the same operations, awaited.

    async def aget(
        self,
        thread_id: str,
        tool_call_id: str,
        *,
        namespace: str = "",
        tenant: str | None = None,
    ) -> JournalEntry | None:
        """Async `get`."""
        return self._found(
            await self.store.aexecute(self._get_op(thread_id, tool_call_id, namespace, tenant))
        )

    async def arecall(
        self,
        thread_id: str,
        tool_call_id: str,
        *,
        namespace: str = "",
        origin: str = "",
        running: Sequence[str] = (),
        tenant: str | None = None,
    ) -> JournalEntry | None:
        """Async `recall`."""
        flow = self._recall(thread_id, tool_call_id, namespace, origin, running, tenant)
        return await arun(flow)

    async def arecord(
        self,
        thread_id: str,
        tool_call_id: str,
        result: JSON | Blob,
        *,
        namespace: str = "",
        origin: str = "",
        tenant: str | None = None,
    ) -> JournalEntry:
        """Async `record`."""
        op = self._record_op(thread_id, tool_call_id, result, namespace, tenant, origin)
        return self._opened(await self.store.aexecute(op))

    async def arestore(self, entry: JournalEntry, *, tenant: str | None = None) -> JournalEntry:
        """Async `restore`."""
        return self._opened(await self.store.aexecute(self._restore_op(entry, tenant)))

    async def alist_entries(
        self, thread_id: str, *, namespace: str | None = None, tenant: str | None = None
    ) -> list[JournalEntry]:
        """Async `list_entries`."""
        found = await self.store.aexecute(self._list_op(thread_id, namespace, tenant))
        return [self._opened(e) for e in found]

    async def alist_threads(self, *, tenant: str | None = None) -> list[str]:
        """Async `list_threads`."""
        return await self.store.aexecute(ListJournalThreads(self.store.resolve_tenant(tenant)))

    async def adelete_thread(self, thread_id: str, *, tenant: str | None = None) -> int:
        """Async `delete_thread`."""
        return await self.store.aexecute(self._delete_op(thread_id, tenant))

    # Lifecycle: the journal closes its store.

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    async def aclose(self) -> None:
        """Async `close`."""
        await self.store.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _build(url: str, options: Mapping[str, Any]) -> BaseStore:
    check_url(url, "a journal URL")
    return open_checkpoint_store(url, setup=False, **options)


def open_journal(url: str = "memory://", *, setup: bool = True, **options: Any) -> EffectJournal:
    """Open the journal at ``url``: the checkpoint store of that URL (``memory://``,
    ``sqlite:///path``, ``postgresql://...``, ``redis://...`` or ``tiered+redis://...``, with
    the options of `memfold.checkpoints.open_checkpoint_store`); unless ``setup=False``, create
    its schema."""
    store = _build(url, options)
    if setup:
        store.setup()
    return EffectJournal(store)


async def aopen_journal(
    url: str = "memory://", *, setup: bool = True, **options: Any
) -> EffectJournal:
    """Async `open_journal`: the schema is created without blocking the event loop."""
    store = _build(url, options)
    if setup:
        await store.asetup()
    return EffectJournal(store)
