"""The pending writes to some channels along a checkpoint's ancestors, as one `memfold.flows`
flow: what LangGraph's delta channels replay to rebuild their value.

A delta channel stores a value only now and then; in between, its value is the last stored one
(the *seed*) with the writes of every later step applied in order. `channel_history` walks the
parent chain of a checkpoint (not the listing order, so a fork sees only its own branch) and
stops for each channel at the nearest ancestor that stores a value for it: in one read per page
of ancestors where the store can (every memfold store), else a page of the namespace's
checkpoints at a time, never one read per ancestor. `AncestorWalk` holds the rules of that walk
for both.

Retention must keep that history: `history_depth` reads from a checkpoint's metadata how many
ancestors rebuilding it needs, and `spare_history` takes those ancestors out of what a sweep or
a prune would remove.

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

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

from memfold.checkpoint_model import ChannelHistory
from memfold.checkpoints import (
    Blob,
    Checkpoint,
    CheckpointStore,
    PendingWrite,
    SequenceBlob,
    check_channels,
)
from memfold.errors import NotFound
from memfold.flows import Call, Flow

__all__ = ["ChannelHistory", "channel_history", "history_depth", "spare_history"]

K = TypeVar("K", bound=Hashable)

_FIRST_PAGE = 16
_LAST_PAGE = 1024


class AncestorWalk:
    """The histories of some channels gathered from a checkpoint's ancestors, handed over one
    at a time from the parent back (`visit`), for `channel_history` and the backends that read
    a history in one operation (`memfold.checkpoint_ops.ReadChannelHistory`)."""

    def __init__(self, thread_id: str, channels: Sequence[str], start: str) -> None:
        self.thread_id = thread_id
        self.channels = tuple(channels)
        self.remaining = set(channels)
        self.writes: dict[str, list[PendingWrite]] = {ch: [] for ch in channels}
        self.seeds: dict[str, str] = {}
        """Each channel whose walk ended: the ancestor that holds its value."""
        self._visited = {start}

    @property
    def done(self) -> bool:
        """Whether every channel's walk has ended at an ancestor holding its value."""
        return not self.remaining

    def visit(
        self, checkpoint_id: str, writes: Iterable[PendingWrite], holds: Callable[[str], bool]
    ) -> list[str]:
        """Take the next ancestor: its writes in stored order, and whether it ``holds`` a
        channel's value; returns the channels whose walk ends here (their value is here).

        Raises:
            NotFound: the ancestor was walked already (the parents loop).
        """
        if checkpoint_id in self._visited:
            raise NotFound(
                f"thread {self.thread_id!r}: checkpoint {checkpoint_id!r} is its own ancestor"
            )
        self._visited.add(checkpoint_id)
        for write in reversed(list(writes)):
            if write.channel in self.remaining:
                self.writes[write.channel].append(write)
        ended = [ch for ch in self.channels if ch in self.remaining and holds(ch)]
        for channel in ended:
            self.seeds[channel] = checkpoint_id
            self.remaining.discard(channel)
        return ended

    def result_from(
        self, read: Mapping[str, Checkpoint | None]
    ) -> dict[str, ChannelHistory] | None:
        """`result` with each seed taken from its ancestor as read (``read``, by id, for every
        id in `seeds`); None if one does not hold the value after all (a walk that looks
        further is needed)."""
        values: dict[str, Blob | SequenceBlob] = {}
        for channel, checkpoint_id in self.seeds.items():
            stored = read.get(checkpoint_id)
            if stored is None or channel not in stored.values:
                return None
            values[channel] = stored.values[channel]
        return self.result(values)

    def result(self, values: Mapping[str, Blob | SequenceBlob]) -> dict[str, ChannelHistory]:
        """Each channel's writes, oldest first, with ``values`` (by channel) as seeds."""
        return {
            ch: ChannelHistory(tuple(reversed(self.writes[ch])), values.get(ch))
            for ch in self.channels
        }


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

    A store that reads the history in one operation does so (every memfold store: see
    `memfold.checkpoints.BaseCheckpointStore.read_channel_history`). Elsewhere, only the
    store's ``get`` and ``list_checkpoints`` are used: ancestors are read a page at a time,
    newest first, in pages that grow fourfold (the newest checkpoint comes with its first
    page), so a walk costs a few reads however long it is; an ancestor that the pages do not
    hold (a thread whose ids do not grow) is read alone.

    Raises:
        InvalidInput: ``channels`` is not a list of strings (or what the store refuses).
        NotFound: the parents loop back to a checkpoint already walked (damaged data).
    """
    wanted = list(check_channels(channels))
    if not wanted:
        return {}
    where = {"namespace": namespace, "tenant": tenant}
    if callable(getattr(store, "read_channel_history", None)):  # one read, where it can
        read: dict[str, ChannelHistory] | None = yield Call(
            store,
            "read_channel_history",
            (thread_id, wanted),
            {**where, "checkpoint_id": checkpoint_id},
        )
        if read is not None:
            return read
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
    if target is None:
        return {ch: ChannelHistory() for ch in wanted}
    walk = AncestorWalk(thread_id, wanted, target.checkpoint_id)
    seeds: dict[str, Blob | SequenceBlob] = {}
    cursor = target.parent_id
    while cursor is not None and not walk.done:
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
        for channel in walk.visit(cursor, found.writes, found.values.__contains__):
            seeds[channel] = found.values[channel]
        cursor = found.parent_id
    return walk.result(seeds)


def history_depth(metadata: Mapping[str, Any]) -> float:
    """How many nearest ancestors rebuilding a checkpoint with this ``metadata`` reads: the
    most supersteps any of LangGraph's delta channels has gone since it last stored its value
    (``counters_since_delta_snapshot``: channel -> ``[updates, supersteps]``), 0 without delta
    channels, and all of them (infinity) when the metadata gives no count it can read
    (LangGraph.js's ``delta_writes_versioned``, or a damaged counter).

    Examples:
        >>> history_depth({"counters_since_delta_snapshot": {"messages": [2, 3]}})
        3
        >>> history_depth({"step": 4}), history_depth({"delta_writes_versioned": True})
        (0, inf)
    """
    counters = metadata.get("counters_since_delta_snapshot")
    if counters is None:
        return math.inf if "delta_writes_versioned" in metadata else 0
    try:
        return max((max(int(c[1]), 0) for c in counters.values()), default=0)
    except (AttributeError, TypeError, ValueError, OverflowError, IndexError, KeyError):
        return math.inf


def spare_history(
    doomed: AbstractSet[K], lineage: Mapping[K, tuple[K | None, Mapping[str, Any]]]
) -> set[K]:
    """``doomed`` less the ancestors that the checkpoints it leaves rebuild their delta channels
    from. ``lineage`` maps each checkpoint of a namespace to its parent and metadata: a kept
    checkpoint keeps its `history_depth` nearest ancestors, and each ancestor kept so keeps its
    own (a parent missing from ``lineage`` ends the walk).

    Examples:
        >>> line = {"c1": (None, {}), "c2": ("c1", {}), "c3": ("c2", {})}
        >>> counted = {"counters_since_delta_snapshot": {"messages": [1, 1]}}
        >>> sorted(spare_history({"c1", "c2"}, {**line, "c3": ("c2", counted)}))
        ['c1']
    """
    need: dict[K, float] = {}
    todo = [
        (checkpoint, depth)
        for checkpoint, (_, metadata) in lineage.items()
        if checkpoint not in doomed and (depth := history_depth(metadata)) > 0
    ]
    while todo:
        child, left = todo.pop()
        parent = lineage[child][0]
        if parent is None or parent not in lineage:
            continue
        left = max(left - 1, history_depth(lineage[parent][1]))
        if need.get(parent, -1) >= left:  # walked already, at least as far (parents may loop)
            continue
        need[parent] = left
        if left > 0:
            todo.append((parent, left))
    return set(doomed) - need.keys()
