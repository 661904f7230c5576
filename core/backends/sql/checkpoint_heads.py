"""What a SQL checkpoint store remembers of the threads it wrote last, so that a put continuing
from its own last checkpoint reads nothing back.

Every put writes a new random *stamp* into its thread's row (``cp_threads.stamp``), and so does
every operation that removes checkpoints or values of a thread (or it deletes the row). After
a put the store keeps the stamp it wrote and a `Head` of the namespace: the checkpoint it
stored (id, versions, refs) and the value rows that checkpoint reads, without their payload.

A later put whose parent is that checkpoint plans its rows from the head and writes them in
one step that holds only if the thread's row still carries the stamp (so nothing else wrote or
removed anything of the thread meanwhile), the writer still holds the lease, and neither the
checkpoint id nor a new row key is stored yet. Otherwise it writes nothing, and the put reads
what it needs under the thread's lock instead; if that shows the thread changed since the
remembered stamp, the thread's other namespaces are forgotten too.

A head may also keep the checkpoint's values as stored (its *payload*, up to `PAYLOAD_BUDGET`
bytes over all threads, the least recently written dropped first): a read of that checkpoint
whose query finds the thread's row still carrying the stamp takes its values from memory
instead of reading and rebuilding the value rows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from memfold.backends.sql.checkpoint_rows import has_row
from memfold.checkpoint_deltas import BlobKey, ListState, StoredBlob, channel_key
from memfold.checkpoint_model import Blob, ChannelValue, SequenceBlob, Version
from memfold.checkpoint_ops import PutCheckpoint
from memfold.stores import random_10

__all__ = ["Head", "Heads", "Payload", "head_after", "new_stamp", "payload_after"]

CAPACITY = 1024
"""Threads remembered per store (the least recently written forgotten first)."""

PAYLOAD_BUDGET = 64 * 1024 * 1024
"""Payload bytes kept in heads per store (the least recently written threads' dropped first)."""

Payload = Mapping[str, Blob | SequenceBlob]
"""A checkpoint's values as stored, by channel (a channel without a value is absent)."""


def new_stamp() -> int:
    """A fresh stamp: random (never repeated by a forked process, as a seeded generator
    would be), positive, and fitting a signed 64-bit column."""
    return (int.from_bytes(random_10()[:8]) >> 2) + 1


@dataclass(frozen=True, slots=True)
class Head:
    """A namespace's newest checkpoint as its writer stored it."""

    checkpoint_id: str
    versions: Mapping[str, Version]
    refs: Mapping[str, str]
    rows: Mapping[BlobKey, StoredBlob]
    """The rows the checkpoint reads, by key, without their payload."""
    payload: Payload | None = None
    """The checkpoint's values as stored (None: not kept)."""
    lists: Mapping[str, ListState] = field(default_factory=dict)
    """The digest states of the payload's list values, by channel (see
    `memfold.checkpoint_deltas.ListDigests`)."""

    @property
    def payload_size(self) -> int:
        """Payload bytes this head keeps."""
        return 0 if self.payload is None else sum(v.size for v in self.payload.values())

    def bases(
        self, new_values: tuple[tuple[str, Version, ChannelValue], ...]
    ) -> dict[BlobKey, StoredBlob] | None:
        """The rows a child's list values extend (None if one of them is not known)."""
        found: dict[BlobKey, StoredBlob] = {}
        for channel, _, value in new_values:
            if isinstance(value, SequenceBlob) and channel in self.versions:
                key = channel_key(channel, self.versions[channel], self.refs)
                if not has_row(key[2]):  # nothing to extend
                    continue
                row = self.rows.get(key)
                if row is None:
                    return None
                found[key] = row
        return found


def head_after(
    op: PutCheckpoint,
    refs: Mapping[str, str],
    known: Mapping[BlobKey, StoredBlob],
    parent: Head | None,
    made: Iterable[ListState],
) -> Head:
    """The head a put leaves: for each channel, the row its checkpoint reads if ``known``
    holds it (rows just planned, found, or read by the parent), payload dropped; and the
    checkpoint's values (see `payload_after`) with the digest states of its lists (``made``
    by the put, or the parent's).

    ``parent`` is the remembered head of the put's parent, if the thread is as remembered."""
    rows: dict[BlobKey, StoredBlob] = {}
    for channel, version in op.versions.items():
        key = channel_key(channel, version, refs)
        row = known.get(key)
        if row is not None:
            rows[key] = replace(row, data=b"", items=()) if row.items or row.data else row
    payload = payload_after(parent, op.versions, refs, op.new_values)
    lists: dict[str, ListState] = {}
    if payload is not None:
        states = {id(state.items): state for state in made}
        for channel, value in payload.items():
            if not isinstance(value, SequenceBlob):
                continue
            state = states.get(id(value.items))
            if state is None and parent is not None:
                state = parent.lists.get(channel)
            if state is not None and state.items is value.items:
                lists[channel] = state
    return Head(op.checkpoint_id, dict(op.versions), dict(refs), rows, payload, lists)


def payload_after(
    parent: Head | None,
    versions: Mapping[str, Version],
    refs: Mapping[str, str],
    new_values: tuple[tuple[str, Version, ChannelValue], ...],
) -> Payload | None:
    """The values of a checkpoint put with ``new_values`` (as stored) over ``parent``, the
    remembered head of its parent checkpoint: a channel without a new value reads the
    parent's row if its version and owner are the parent's. None if a channel's value is not
    known (no parent payload, or a channel that reads a row of neither)."""
    values: dict[str, Blob | SequenceBlob] = {}
    given = {channel: value for channel, _, value in new_values}
    for channel, version in versions.items():
        if channel in given:
            value = given[channel]
        elif (
            parent is not None
            and parent.payload is not None
            and channel in parent.versions
            and channel_key(channel, version, refs)
            == channel_key(channel, parent.versions[channel], parent.refs)
        ):
            value = parent.payload.get(channel)
        else:
            return None
        if value is not None:
            values[channel] = value
    return values


class Heads:
    """The stamps and namespace heads of recently written threads; safe to share between
    threads."""

    def __init__(self, capacity: int = CAPACITY, payload_budget: int = PAYLOAD_BUDGET) -> None:
        self._capacity = capacity
        self._budget = payload_budget
        self._threads: OrderedDict[tuple[str, str], tuple[int, dict[str, Head]]] = OrderedDict()
        self._payloads: OrderedDict[tuple[str, str], int] = OrderedDict()
        """Payload bytes kept per thread, least recently written first."""
        self._payload_bytes = 0
        self._lock = threading.Lock()

    def get(self, tenant: str, thread_id: str, namespace: str) -> tuple[int | None, Head | None]:
        """The thread's remembered stamp and the namespace's head (None: not known)."""
        with self._lock:
            found = self._threads.get((tenant, thread_id))
        if found is None:
            return None, None
        return found[0], found[1].get(namespace)

    def clear(self) -> None:
        """Forget every thread (the next put of each reads what it needs back)."""
        with self._lock:
            self._threads.clear()
            self._payloads.clear()
            self._payload_bytes = 0

    def remember(
        self, tenant: str, thread_id: str, namespace: str, stamp: int, head: Head, keep: bool
    ) -> None:
        """Record a put that wrote ``stamp`` and left ``head``; ``keep``: the thread was as
        remembered before it, so its other namespaces' heads still hold."""
        key = (tenant, thread_id)
        with self._lock:
            found = self._threads.pop(key, None)
            heads = dict(found[1]) if keep and found is not None else {}
            heads[namespace] = head
            self._threads[key] = (stamp, heads)
            self._payload_bytes -= self._payloads.pop(key, 0)
            size = sum(h.payload_size for h in heads.values())
            if size:
                self._payloads[key] = size
                self._payload_bytes += size
            while len(self._threads) > self._capacity:
                dropped, _ = self._threads.popitem(last=False)
                self._payload_bytes -= self._payloads.pop(dropped, 0)
            while self._payload_bytes > self._budget and self._payloads:
                dropped, size = self._payloads.popitem(last=False)
                self._payload_bytes -= size
                kept_stamp, kept = self._threads[dropped]
                bare = {ns: replace(h, payload=None, lists={}) for ns, h in kept.items()}
                self._threads[dropped] = (kept_stamp, bare)
