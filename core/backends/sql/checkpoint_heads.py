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
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace

from memfold.backends.sql.checkpoint_rows import NO_VALUE
from memfold.checkpoint_deltas import BlobKey, StoredBlob, channel_key
from memfold.checkpoint_model import ChannelValue, SequenceBlob, Version

__all__ = ["Head", "Heads", "head_after", "new_stamp"]

CAPACITY = 1024
"""Threads remembered per store (the least recently written forgotten first)."""


def new_stamp() -> int:
    """A fresh stamp: random (never repeated by a forked process, as a seeded generator
    would be), positive, and fitting a signed 64-bit column."""
    return secrets.randbits(62) + 1


@dataclass(frozen=True, slots=True)
class Head:
    """A namespace's newest checkpoint as its writer stored it."""

    checkpoint_id: str
    versions: Mapping[str, Version]
    refs: Mapping[str, str]
    rows: Mapping[BlobKey, StoredBlob]
    """The rows the checkpoint reads, by key, without their payload."""

    def bases(
        self, new_values: tuple[tuple[str, Version, ChannelValue], ...]
    ) -> dict[BlobKey, StoredBlob] | None:
        """The rows a child's list values extend (None if one of them is not known)."""
        found: dict[BlobKey, StoredBlob] = {}
        for channel, _, value in new_values:
            if isinstance(value, SequenceBlob) and channel in self.versions:
                key = channel_key(channel, self.versions[channel], self.refs)
                if key[2] == NO_VALUE:  # nothing to extend
                    continue
                row = self.rows.get(key)
                if row is None:
                    return None
                found[key] = row
        return found


def head_after(
    checkpoint_id: str,
    versions: Mapping[str, Version],
    refs: Mapping[str, str],
    known: Mapping[BlobKey, StoredBlob],
) -> Head:
    """The head a put leaves: for each channel, the row its checkpoint reads if ``known``
    holds it (rows just planned, found, or read by the parent), payload dropped."""
    rows: dict[BlobKey, StoredBlob] = {}
    for channel, version in versions.items():
        key = channel_key(channel, version, refs)
        row = known.get(key)
        if row is not None:
            rows[key] = replace(row, data=b"", items=()) if row.items or row.data else row
    return Head(checkpoint_id, dict(versions), dict(refs), rows)


class Heads:
    """The stamps and namespace heads of recently written threads; safe to share between
    threads."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._threads: OrderedDict[tuple[str, str], tuple[int, dict[str, Head]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tenant: str, thread_id: str, namespace: str) -> tuple[int | None, Head | None]:
        """The thread's remembered stamp and the namespace's head (None: not known)."""
        with self._lock:
            found = self._threads.get((tenant, thread_id))
        if found is None:
            return None, None
        return found[0], found[1].get(namespace)

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
            while len(self._threads) > self._capacity:
                self._threads.popitem(last=False)
