"""The pending writes to some channels along a checkpoint's ancestors, as one `memfold.flows`
flow: what LangGraph's delta channels replay to rebuild their value.

A delta channel stores a value only now and then; in between, its value is the last stored one
(the *seed*) with the writes of every later step applied in order. `channel_history` walks the
parent chain of a checkpoint (not the listing order, so a fork sees only its own branch), a
page of the namespace's checkpoints at a time instead of one read per ancestor, and stops for
each channel at the nearest ancestor that stores a value for it.

Examples:
    >>> from memfold.checkpoints import Blob, PendingWrite, open_checkpoint_store
    >>> from memfold.flows import run
    >>> store = open_checkpoint_store("memory://")
    >>> body = Blob("json", b"{}")
    >>> store.put("t", "c1", body, versions={"x": 1}, values={"x": Blob("json", b"[]")})
    >>> store.put_writes("t", "c1", [PendingWrite("task", 0, "x", Blob("json", b"1"))])
    >>> store.put("t", "c2", body, parent_id="c1", versions={"x": 2})
    >>> found = run(channel_history(store, "t", ["x"], checkpoint_id="c2"))
    >>> [w.value.data for w in found["x"].writes], found["x"].seed
    ([b'1'], Blob(tag='json', data=b'[]'))
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from memfold.checkpoints import Blob, Checkpoint, CheckpointStore, PendingWrite, SequenceBlob
from memfold.errors import InvalidInput, NotFound
from memfold.flows import Call, Flow

__all__ = ["ChannelHistory", "channel_history"]

_FIRST_PAGE = 16
_LAST_PAGE = 1024


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    """One channel's pending writes along the ancestors, oldest first (each checkpoint's in its
    stored order), and the value of the nearest ancestor that stores one (None: no ancestor
    does, so the channel starts empty)."""

    writes: tuple[PendingWrite, ...] = ()
    seed: Blob | SequenceBlob | None = None


def channel_history(
    store: CheckpointStore,
    thread_id: str,
    channels: Sequence[str],
    *,
    namespace: str = "",
    checkpoint_id: str | None = None,
    tenant: str | None = None,
) -> Flow[dict[str, ChannelHistory]]:
    """The history of each of ``channels`` before a checkpoint (the namespace's newest when
    ``checkpoint_id`` is None): the writes made from each ancestor, from the parent back to
    the nearest ancestor that stores the channel's value (included), and that value. A
    missing checkpoint, or a missing ancestor, ends the walk there.

    Only the store's ``get`` and ``list_checkpoints`` are used. Ancestors are read a page at a
    time, newest first, in pages that grow fourfold (the newest checkpoint comes with its first
    page), so a walk costs a few reads however long it is; an ancestor that the pages do not
    hold (a thread whose ids do not grow) is read alone.

    Raises:
        InvalidInput: ``channels`` is not a list of strings (or what the store refuses).
        NotFound: the parents loop back to a checkpoint already walked (damaged data).
    """
    if isinstance(channels, str | bytes) or not isinstance(channels, Sequence | AbstractSet):
        raise InvalidInput(f"channels must be a list of channel names, not {channels!r}")
    names = list(channels)
    if not all(isinstance(name, str) for name in names):
        raise InvalidInput(f"channel names must be strings, got {names!r}")
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    where = {"namespace": namespace, "tenant": tenant}
    paged: dict[str, Checkpoint] = {}
    size, exhausted = _FIRST_PAGE, False
    target: Checkpoint | None
    if checkpoint_id is None:  # the newest: its page of ancestors comes with it
        page: list[Checkpoint] = yield Call(
            store, "list_checkpoints", (thread_id,), {**where, "limit": size}
        )
        target = page[0] if page else None
        paged.update((c.checkpoint_id, c) for c in page[1:])
        before = page[-1].checkpoint_id if page else None
        exhausted = len(page) < size
        size = min(4 * size, _LAST_PAGE)
    else:
        target = yield Call(store, "get", (thread_id,), {**where, "checkpoint_id": checkpoint_id})
        before = None if target is None else target.checkpoint_id
    writes: dict[str, list[PendingWrite]] = {ch: [] for ch in wanted}
    seeds: dict[str, Blob | SequenceBlob] = {}
    remaining = set(wanted)
    cursor = None if target is None else target.parent_id
    visited = set() if target is None else {target.checkpoint_id}
    while cursor is not None and remaining:
        if cursor in visited:
            raise NotFound(f"thread {thread_id!r}: checkpoint {cursor!r} is its own ancestor")
        found = paged.pop(cursor, None)
        if found is None and not exhausted and before is not None and cursor < before:
            page = yield Call(
                store, "list_checkpoints", (thread_id,), {**where, "before": before, "limit": size}
            )
            paged.update((c.checkpoint_id, c) for c in page)
            exhausted = len(page) < size
            before = page[-1].checkpoint_id if page else before
            size = min(4 * size, _LAST_PAGE)
            continue
        if found is None:
            found = yield Call(store, "get", (thread_id,), {**where, "checkpoint_id": cursor})
            if found is None:
                break
        visited.add(cursor)
        for write in reversed(found.writes):
            if write.channel in remaining:
                writes[write.channel].append(write)
        for channel in [ch for ch in remaining if ch in found.values]:
            seeds[channel] = found.values[channel]
            remaining.discard(channel)
        cursor = found.parent_id
    return {ch: ChannelHistory(tuple(reversed(writes[ch])), seeds.get(ch)) for ch in wanted}
