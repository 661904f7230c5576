"""Key rotation: re-encrypt what a store holds under its keyring's active key, a page at a time.

Each store kind rotates through its own operations, so every backend rotates the same way:

- threads: each thread of the tenant is read a page at a time, newest first, and the messages
  not under the active key (or not encrypted at all) are rewritten in place (ids, order, times
  and metadata kept; the rewrites leave the thread's update time and TTL, so a run that stopped
  part way changes them no more than one that finished), as is the compaction summary kept in
  thread metadata;
- long-term memories: the live records under a namespace prefix are read a page at a time and
  rewritten with their times, vectors and TTLs kept (expired records are swept first);
- on SQLite, both are rewritten with ``secure_delete`` on and each run ends by rewriting the
  full-text index (FTS5 keeps a rewritten row's old words in its segments until they merge),
  so the file keeps no words of what was plain;
- checkpoints: each thread namespace is rewritten parent first, each checkpoint under its own
  id with its own time, so list values stay stored as deltas under the new key; pending writes
  are replaced, a sweep then removes the rows only the old key could read (on every run, so a
  resumed run finishes the sweep an interrupted one never reached), and the rotation
  counts as a write for the thread's TTL; each thread's effect journal entries are re-encrypted
  in place (their times kept).

Rotation is idempotent and resumable: what is already under the active key is read but not
rewritten, so a run that stopped part way is finished by running it again. Reads keep working
throughout as long as the keyring holds both the old and the new key; afterwards the old key
can be dropped. With a store that holds plain (unencrypted) data, a rotation encrypts it.
Writes should wait: a record the application changes between a page's read and its write-back
(a message updated, a memory put) is overwritten with its old content.

The flows here are generators of store operations; `drive` and `adrive` run them with a
store's ``execute`` or ``aexecute``.

Examples:
    >>> from memfold import Message, open_store
    >>> from memfold.encryption import Keyring
    >>> store = open_store("memory://")
    >>> _ = store.append("t1", [Message(role="user", content="hello")])
    >>> store.keyring = Keyring.generate()
    >>> store.rotate_key()  # encrypts the plain message under the new key
    1
    >>> store.rotate_key()
    0
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import numpy as np

from memfold import checkpoint_ops, memory_ops, ops
from memfold.checkpoint_model import ChannelValue, Checkpoint, RetentionPolicy, Version
from memfold.encryption import (
    Keyring,
    checkpoint_key_ids,
    effect_key_id,
    holds_plain_content,
    metadata_key_ids,
    open_checkpoints,
    open_effect,
    record_key_ids,
    reseal_message,
    reseal_record,
    seal_blob,
    seal_effect,
    seal_metadata,
    seal_value,
    seal_write,
    sealed_key_ids,
)
from memfold.errors import InvalidInput
from memfold.model import ThreadInfo, utcnow
from memfold.recall.filters import parse_filter
from memfold.recall.vectors import Matrix

if TYPE_CHECKING:
    from memfold.checkpoints import BaseCheckpointStore
    from memfold.memories import BaseMemoryStore
    from memfold.stores import BaseThreadStore

__all__ = [
    "Flow",
    "Progress",
    "adrive",
    "check_rotation",
    "drive",
    "rotate_checkpoints",
    "rotate_memories",
    "rotate_threads",
]

T = TypeVar("T")

Flow: TypeAlias = Generator[ops.Op[Any], Any, T]
"""Operations to run, one at a time; each result is sent back in; the return value is the
flow's result."""

Progress: TypeAlias = Callable[[int, int], None]
"""Called after each page with how many records were seen so far and how many there are."""

LIST_PAGE = 1_000


def _check_flow(flow: object) -> None:
    if not isinstance(flow, Generator):
        raise InvalidInput(f"drive runs a generator of operations, got {type(flow).__name__}")


def drive(flow: Flow[T], execute: Callable[[ops.Op[Any]], Any]) -> T:
    """Run ``flow`` with a store's ``execute``."""
    _check_flow(flow)
    try:
        op = next(flow)
        while True:
            op = flow.send(execute(op))
    except StopIteration as done:
        result: T = done.value
        return result


async def adrive(flow: Flow[T], aexecute: Callable[[ops.Op[Any]], Awaitable[Any]]) -> T:
    """Run ``flow`` with a store's ``aexecute``."""
    _check_flow(flow)
    try:
        op = next(flow)
        while True:
            op = flow.send(await aexecute(op))
    except StopIteration as done:
        result: T = done.value
        return result


def check_rotation(
    keyring: Keyring | None, batch_size: object, progress: object
) -> tuple[Keyring, int]:
    """The keyring to rotate to and the page size, or `InvalidInput`."""
    if keyring is None:
        raise InvalidInput(
            "rotate_key needs a store opened with a keyring (keyring=Keyring(...) or "
            "?keyring=env): it re-encrypts under the keyring's active key"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not batch_size >= 1:
        raise InvalidInput(f"batch_size must be an int >= 1, got {batch_size!r}")
    if progress is not None and not callable(progress):
        raise InvalidInput("progress must be a callable(done, total) or None")
    return keyring, min(batch_size, 10_000)


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, max(done, total))


def rotate_threads(
    store: BaseThreadStore, tenant: str, batch_size: int, progress: Progress | None
) -> Flow[int]:
    """Rewrite the tenant's messages that are not under the active key; returns how many."""
    keyring, size = check_rotation(store.keyring, batch_size, progress)
    from memfold.stores import check_id, encode_json

    check_id(tenant, "tenant")

    infos: list[ThreadInfo] = []
    while True:
        page = yield ops.ListThreads(tenant, LIST_PAGE, len(infos))
        infos.extend(page)
        if len(page) < LIST_PAGE:
            break
    total = sum(t.message_count for t in infos)
    wanted = {keyring.active}
    done = rewritten = 0
    for info in {t.thread_id: t for t in infos}.values():
        thread_id = info.thread_id
        before: str | None = None
        while True:
            messages = yield ops.LoadThread(tenant, thread_id, size, before)
            stale = [
                m for m in messages if sealed_key_ids((m,)) != wanted or holds_plain_content(m)
            ]
            if stale:  # rewritten in place, the thread's times kept (a rotation is no write)
                sealed = tuple(reseal_message(keyring, m) for m in stale)
                bodies = tuple(
                    encode_json(m.to_dict(stored=True), f"message {m.id!r}") for m in sealed
                )
                yield ops.UpdateMessages(tenant, thread_id, sealed, bodies, keep_times=True)
            done += len(messages)
            rewritten += len(stale)
            _report(progress, done, total)
            if len(messages) < size:
                break
            before = messages[0].id
        if metadata_key_ids(info.metadata) - wanted:  # the compaction summary in metadata
            # Read again: the metadata and times as they are now, not as listed (a write made
            # meanwhile stays; only one between this read and the restore would be undone).
            info = yield ops.GetThread(tenant, thread_id)
            if metadata_key_ids(info.metadata) - wanted:
                metadata = seal_metadata(keyring, info.metadata)
                encoded = encode_json(metadata, "thread metadata")
                yield ops.RestoreThread(
                    tenant, thread_id, metadata, encoded, info.created_at, info.updated_at
                )
    # Plain messages' words out of a search index, also when an earlier run stopped before this.
    yield ops.ScrubSearchIndex(tenant)
    return rewritten


def rotate_memories(
    store: BaseMemoryStore, prefix: str, batch_size: int, progress: Progress | None
) -> Flow[int]:
    """Rewrite the live records under a namespace key prefix that are not under the active
    key; returns how many."""
    keyring, size = check_rotation(store.keyring, batch_size, progress)
    from memfold.memories import prefix_range
    from memfold.stores import encode_json

    prefix_range(prefix)  # refuses anything but a namespace key
    everything = parse_filter(None)
    yield memory_ops.SweepMemories(utcnow())
    total = yield memory_ops.CountMemories(prefix, everything, utcnow())
    wanted = {keyring.active}
    done = rewritten = 0
    while True:
        now = utcnow()
        page = yield memory_ops.ListMemories(prefix, everything, size, done, now, True)
        stale = [r for r in page if r.text or r.value]
        stale = [r for r in stale if record_key_ids(r) != wanted]
        if stale:
            sealed = tuple(reseal_record(keyring, r) for r in stale)
            vectors = tuple(_stored_vector(r.embedding) for r in sealed)
            yield memory_ops.PutMemories(
                tuple(replace(r, embedding=None) for r in sealed),
                tuple(encode_json(r.value, f"the value of memory {r.id!r}") for r in sealed),
                tuple(() for _ in sealed),
                vectors,
                now,
                keep_times=True,
            )
        done += len(page)
        rewritten += len(stale)
        _report(progress, done, total)
        if len(page) < size:
            # Plain records' words out of a search index (also after an earlier run stopped).
            yield memory_ops.SweepMemories(utcnow(), prefix=prefix, scrub=True)
            return rewritten


def _stored_vector(embedding: tuple[float, ...] | None) -> Matrix | None:
    """A vector as read back, as the unit float32 array it was stored as (not normalised
    again, so it is written back bit for bit)."""
    return None if embedding is None else np.asarray(embedding, dtype=np.float32)


def _parent_first(checkpoints: list[tuple[str, str | None]]) -> list[str]:
    """Checkpoint ids, each after its parent when the parent is among them (else by id)."""
    present = {cid for cid, _ in checkpoints}
    children: dict[str | None, list[str]] = {}
    for cid, parent in sorted(checkpoints):
        children.setdefault(parent if parent in present else None, []).append(cid)
    order: list[str] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        cid = stack.pop()
        order.append(cid)
        stack.extend(reversed(children.get(cid, [])))
    return order


_Space = tuple[str, str]
"""A checkpoint thread namespace: ``(thread_id, namespace)``."""


def _checkpoint_spaces(
    tenant: str,
) -> Generator[ops.Op[Any], Any, dict[_Space, dict[str, tuple[str | None, dict[str, Version]]]]]:
    """Every checkpoint of the tenant: namespace -> checkpoint id -> (parent, versions)."""
    spaces: dict[_Space, dict[str, tuple[str | None, dict[str, Version]]]] = {}
    before: str | None = None
    while True:
        page: list[Checkpoint] = yield checkpoint_ops.ListCheckpoints(
            tenant, None, None, None, (), before, LIST_PAGE
        )
        full = len(page) == LIST_PAGE
        if full:  # the checkpoints sharing the last id (other threads) are fetched whole
            before = page[-1].checkpoint_id
            tied = yield checkpoint_ops.ListCheckpoints(tenant, None, None, before, (), None, None)
            page = [c for c in page if c.checkpoint_id != before] + tied
        for c in page:
            space = spaces.setdefault((c.thread_id, c.namespace), {})
            space[c.checkpoint_id] = (c.parent_id, dict(c.versions))
        if not full:
            return spaces


def _rotate_journal(keyring: Keyring, tenant: str, thread_id: str) -> Flow[None]:
    """Re-encrypt a thread's journal entries that are not under the active key, in place."""
    from memfold.journal import ListEffects, ReplaceEffect

    for entry in (yield ListEffects(tenant, thread_id, None)):
        if effect_key_id(entry.value) == keyring.active:
            continue
        what = f"journal entry {entry.tool_call_id!r} of thread {thread_id!r}"
        value = seal_effect(keyring, open_effect(keyring, entry.value, what))
        yield ReplaceEffect(tenant, thread_id, entry.namespace, entry.tool_call_id, value)


def rotate_checkpoints(
    store: BaseCheckpointStore, tenant: str, batch_size: int, progress: Progress | None
) -> Flow[int]:
    """Rewrite the tenant's checkpoints (bodies, values, pending writes) that are not all under
    the active key, and their threads' journal entries; returns how many checkpoints were
    rewritten."""
    keyring, _size = check_rotation(store.keyring, batch_size, progress)
    from memfold.stores import check_id, encode_json

    check_id(tenant, "tenant")

    spaces = yield from _checkpoint_spaces(tenant)
    total = sum(len(s) for s in spaces.values())
    wanted = {keyring.active}
    done = rewritten = 0
    for (thread_id, namespace), found in spaces.items():
        newest: str | None = None
        for cid in _parent_first([(cid, parent) for cid, (parent, _) in found.items()]):
            c: Checkpoint | None = yield checkpoint_ops.GetCheckpoint(
                tenant, thread_id, namespace, cid
            )
            done += 1
            if c is None or checkpoint_key_ids(c) == wanted:
                continue
            [plain] = open_checkpoints(keyring, [c])
            parent = found.get(c.parent_id or "")
            parent_versions = None if parent is None else parent[1]
            new_values: list[tuple[str, Version, ChannelValue]] = [
                (channel, version, seal_value(keyring, plain.values.get(channel)))
                for channel, version in plain.versions.items()
                if parent_versions is None or parent_versions.get(channel) != version
            ]
            yield checkpoint_ops.PutCheckpoint(
                tenant, thread_id, namespace, cid, c.parent_id, seal_blob(keyring, plain.body),
                dict(c.metadata), encode_json(dict(c.metadata), "checkpoint metadata"),
                dict(c.versions), encode_json(dict(c.versions), "channel versions"),
                tuple(new_values), c.created_at, None,
            )  # fmt: skip
            if plain.writes:
                writes = tuple(seal_write(keyring, w) for w in plain.writes)
                yield checkpoint_ops.PutCheckpointWrites(
                    tenant, thread_id, namespace, cid, writes, None, utcnow(), replace=True
                )
            rewritten += 1
            newest = max(cid, newest or cid)
            _report(progress, done, total)
        if newest is not None:  # a rotation is a write: the thread's TTL restarts now
            yield checkpoint_ops.PutCheckpointWrites(
                tenant, thread_id, namespace, newest, (), None, utcnow()
            )
        _report(progress, done, total)
    if store.capabilities.effect_journal:  # every journal, with checkpoints or without
        from memfold.journal import ListJournalThreads

        for thread_id in (yield ListJournalThreads(tenant)):
            yield from _rotate_journal(keyring, tenant, thread_id)
    # Drop the rows only the old key could read, even when nothing was rewritten: an earlier
    # run may have stopped after its last rewrite but before this sweep.
    yield checkpoint_ops.SweepCheckpoints(tenant, RetentionPolicy(), utcnow())
    return rewritten
