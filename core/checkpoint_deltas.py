"""How channel values are laid out in storage: one row per (channel, version), and list values as
appended suffixes over periodic snapshots.

Every backend stores `StoredBlob` rows keyed by ``(thread, namespace, channel, version, owner)``
and runs the pure functions here, so the layout is the same everywhere:

- A plain value (a `Blob`) or "no value" is one ``value`` or ``empty`` row per version. A
  checkpoint that leaves a channel unchanged stores nothing for it and refers to the older row.
- A list value (a `SequenceBlob`) whose items start with all the items of the parent
  checkpoint's version is a ``delta`` row holding only the appended items, pointing at that
  base row; otherwise it is a ``snapshot`` row holding every item. Items are compared by a
  digest of the prefix, so a backend needs only the base row's ``length`` and ``digest``.
- Every delta row names the snapshot its chain starts from (``snapshot_version``/``owner``), so
  an SQL backend fetches a whole chain with one indexed query and `rebuild` joins it.
- ``owner`` is ``""`` except after a fork: when a host reuses a version number for different
  content (LangGraph's integer versions do so when a run forks from an older checkpoint), the
  row is stored under the new checkpoint's id and the checkpoint records that in its ``refs``.

Examples:
    >>> from memfold.checkpoint_model import SequenceBlob
    >>> policy = DeltaPolicy()
    >>> first = plan_blob("messages", 1, SequenceBlob("msgpack", (b"a", b"b")), None, policy)
    >>> second = plan_blob("messages", 2, SequenceBlob("msgpack", (b"a", b"b", b"c")), first,
    ...                    policy)
    >>> first.kind, second.kind, second.items
    ('snapshot', 'delta', (b'c',))
    >>> rows = {r.key: r for r in (first, second)}
    >>> rebuild(second, rows.get)
    SequenceBlob(tag='msgpack', items=(b'a', b'b', b'c'))
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import accumulate, pairwise
from typing import Any, Final, Literal, TypeAlias

from memfold.checkpoint_model import Blob, ChannelValue, SequenceBlob, Version
from memfold.errors import Conflict, InvalidInput, NotFound

__all__ = [
    "ITEMS_TAG",
    "BlobKey",
    "ChainMemo",
    "DeltaPolicy",
    "Digester",
    "ListDigests",
    "ListState",
    "StoredBlob",
    "channel_key",
    "pack_items",
    "pack_sequence",
    "plan_blob",
    "plan_put",
    "reachable",
    "rebuild",
    "unpack_items",
    "unpack_sequence",
    "version_key",
]

BlobKey: TypeAlias = tuple[str, str, str]
"""``(channel, version_key(version), owner)``: a row's key inside one thread namespace."""

BlobKind: TypeAlias = Literal["value", "empty", "snapshot", "delta"]

ChainMemo: TypeAlias = dict[BlobKey, tuple[list[bytes], int]]
"""What `rebuild` keeps of the list rows it joined: each row's items are the first ``n`` of a
list that rows after it on the same path extend in place (a fork copies the prefix it needs)."""

_EMPTY_DIGEST: Final = hashlib.blake2b(b"e", digest_size=16).digest()


def version_key(version: Version) -> str:
    """A version as text that keeps its type: ``1``, ``1.0`` and ``"1"`` all differ.

    Examples:
        >>> version_key(3), version_key(3.0), version_key("3")
        ('3', '3.0', '"3"')
    """
    if type(version) is int:
        return str(version)
    if isinstance(version, bool) or not isinstance(version, str | int | float):
        raise InvalidInput(f"a channel version must be a str, int or float, got {version!r}")
    return json.dumps(version)


def channel_key(channel: str, version: Version, refs: Mapping[str, str]) -> BlobKey:
    """The key of the row a checkpoint reads for ``channel`` at ``version``."""
    return (channel, version_key(version), refs.get(channel, ""))


@dataclass(frozen=True, slots=True)
class DeltaPolicy:
    """When a list value is written whole instead of as its appended items.

    A list that does not start with the previous version's items is always a snapshot. One that
    does is a delta until its chain holds ``snapshot_every - 1`` deltas; from then on the next
    version is a snapshot once the list has grown by ``min_growth`` times the last snapshot's
    length. With the default ``min_growth=3.0`` snapshots land at lengths at least four times
    apart, so all snapshots together hold between a third of the list's items (just before the
    next snapshot) and four thirds of them (just after one), about 0.7 on average over lengths
    spread evenly on a log scale, and the bytes stored per step follow the new items, not the
    history. ``min_growth=0`` snapshots strictly every
    ``snapshot_every`` versions; ``DeltaPolicy(1, 0.0)`` stores the whole list every time (the
    layout of LangGraph's own savers).
    """

    snapshot_every: int = 16
    min_growth: float = 3.0

    def __post_init__(self) -> None:
        every: object = self.snapshot_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InvalidInput(f"snapshot_every must be an int >= 1, got {every!r}")
        growth: object = self.min_growth
        if isinstance(growth, bool) or not isinstance(growth, int | float) or not growth >= 0:
            raise InvalidInput(f"min_growth must be a number >= 0, got {growth!r}")

    def wants_snapshot(self, base: StoredBlob, new_length: int) -> bool:
        """Whether a value extending ``base`` to ``new_length`` items should be a snapshot.

        Raises:
            InvalidInput: ``base`` is not a `StoredBlob` or ``new_length`` not an int.
        """
        if not isinstance(base, StoredBlob):
            raise InvalidInput(f"base must be a StoredBlob, got {type(base).__name__}")
        if isinstance(new_length, bool) or not isinstance(new_length, int):
            raise InvalidInput(f"new_length must be an int, got {new_length!r}")
        if base.depth + 1 < self.snapshot_every:
            return False
        grown = new_length - base.snapshot_length
        return grown >= self.min_growth * base.snapshot_length


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """One stored channel value row.

    ``data`` holds a ``value`` row's bytes; ``items`` a snapshot's items or a delta's appended
    items. ``length`` is the item count of the whole list, ``depth`` the number of deltas since
    the snapshot, and ``digest`` identifies the whole content (for a list: all its items).
    """

    channel: str
    version: Version
    kind: BlobKind
    digest: bytes
    tag: str = ""
    data: bytes = b""
    items: tuple[bytes, ...] = ()
    owner: str = ""
    length: int = 0
    depth: int = 0
    base_version: Version | None = None
    base_owner: str = ""
    snapshot_version: Version | None = None
    snapshot_owner: str = ""
    snapshot_length: int = 0

    @property
    def key(self) -> BlobKey:
        """This row's key inside its thread namespace."""
        return (self.channel, version_key(self.version), self.owner)

    @property
    def base_key(self) -> BlobKey | None:
        """The key of the row a delta extends (None for any other row)."""
        if self.kind != "delta" or self.base_version is None:
            return None
        return (self.channel, version_key(self.base_version), self.base_owner)

    @property
    def snapshot_key(self) -> BlobKey | None:
        """The key of the snapshot a list row's chain starts from (itself for a snapshot): an
        SQL backend fetches a whole chain as the rows sharing it."""
        if self.snapshot_version is None:
            return None
        return (self.channel, version_key(self.snapshot_version), self.snapshot_owner)

    @property
    def size(self) -> int:
        """Payload bytes held by this row."""
        return len(self.data) + sum(map(len, self.items))


def _fold(data: Any, lengths: Any) -> bytes:
    return hashlib.blake2b(data.digest() + lengths.digest(), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class ListState:
    """A list value's items with the state of its digest after them, so that the digest of a
    list extending it costs only the appended items.

    The content and the item lengths are hashed as two streams (``data`` and ``sizes``).
    """

    tag: str
    items: tuple[bytes, ...]
    data: Any
    sizes: Any

    @classmethod
    def empty(cls, tag: str) -> ListState:
        """The state of an empty list of ``tag`` items."""
        head = b"s" + tag.encode("utf-8", "surrogatepass") + b"\x00"
        return cls(tag, (), hashlib.blake2b(head, digest_size=16), hashlib.blake2b(digest_size=16))

    @property
    def digest(self) -> bytes:
        """The digest of the whole list (what a row's ``digest`` holds)."""
        return _fold(self.data, self.sizes)

    def extend(self, items: tuple[bytes, ...]) -> ListState:
        """The state of ``items``, which must start with this state's items."""
        rest = items[len(self.items) :]
        data, sizes = self.data.copy(), self.sizes.copy()
        data.update(b"".join(rest))
        sizes.update(struct.pack(f"<{len(rest)}I", *map(len, rest)))
        return ListState(self.tag, items, data, sizes)


Digester: TypeAlias = Callable[[str, tuple[bytes, ...], int | None], tuple[bytes, bytes | None]]
"""``(tag, items, prefix_at) -> (digest of all items, digest of the first prefix_at or None)``."""


def _sequence_digests(
    tag: str, items: tuple[bytes, ...], prefix_at: int | None
) -> tuple[bytes, bytes | None]:
    """The digest of all ``items`` and (if asked) of the first ``prefix_at`` items."""
    state, prefix = _list_state(tag, items, prefix_at)
    return state.digest, prefix


def _list_state(
    tag: str, items: tuple[bytes, ...], prefix_at: int | None
) -> tuple[ListState, bytes | None]:
    start = ListState.empty(tag)
    if prefix_at is not None and 0 <= prefix_at <= len(items):
        head = start.extend(items[:prefix_at])
        return head.extend(items), head.digest
    return start.extend(items), None


class ListDigests:
    """A `Digester` that reuses known `ListState` objects: a list starting with the items of a known
    state of the asked prefix length (compared item by item, not assumed) is hashed from its
    new items only. The state of every list it digests is kept in ``made``.

    Examples:
        >>> digests = ListDigests()
        >>> first, _ = digests("t", (b"a", b"b"), None)
        >>> again = ListDigests(digests.made)
        >>> again("t", (b"a", b"b", b"c"), 2) == _sequence_digests("t", (b"a", b"b", b"c"), 2)
        True
    """

    def __init__(self, known: Iterable[ListState] = ()) -> None:
        self._known = {(state.tag, len(state.items)): state for state in known}
        self.made: list[ListState] = []

    def __call__(
        self, tag: str, items: tuple[bytes, ...], prefix_at: int | None
    ) -> tuple[bytes, bytes | None]:
        base = None if prefix_at is None else self._known.get((tag, prefix_at))
        prefix: bytes | None
        if base is not None and items[: len(base.items)] == base.items:
            state, prefix = base.extend(items), base.digest
        else:
            state, prefix = _list_state(tag, items, prefix_at)
        self.made.append(state)
        return state.digest, prefix


def _value_digest(blob: Blob) -> bytes:
    head = b"v" + blob.tag.encode("utf-8", "surrogatepass") + b"\x00"
    return hashlib.blake2b(head + blob.data, digest_size=16).digest()


def plan_blob(
    channel: str,
    version: Version,
    value: ChannelValue,
    base: StoredBlob | None,
    policy: DeltaPolicy,
    digests: Digester = _sequence_digests,
) -> StoredBlob:
    """The row to store for ``channel`` at ``version``, given the parent checkpoint's row.

    ``base`` is the row the parent checkpoint reads for this channel (None if there is none);
    ``digests`` hashes list values (see `ListDigests`).
    """
    if value is None:
        return StoredBlob(channel, version, "empty", _EMPTY_DIGEST)
    if isinstance(value, Blob):
        return StoredBlob(channel, version, "value", _value_digest(value), value.tag, value.data)
    if not value.items:
        raise InvalidInput("a SequenceBlob needs at least one item: store an empty list as a Blob")
    extends = (
        base is not None
        and base.kind in ("snapshot", "delta")
        and base.tag == value.tag
        and base.length <= len(value.items)
    )
    full, prefix = digests(
        value.tag, value.items, base.length if base is not None and extends else None
    )
    if (
        base is not None
        and extends
        and prefix == base.digest
        and not policy.wants_snapshot(base, len(value.items))
    ):
        return StoredBlob(
            channel, version, "delta", full, value.tag, b"", value.items[base.length :],
            length=len(value.items), depth=base.depth + 1,
            base_version=base.version, base_owner=base.owner,
            snapshot_version=base.snapshot_version, snapshot_owner=base.snapshot_owner,
            snapshot_length=base.snapshot_length,
        )  # fmt: skip
    return StoredBlob(
        channel, version, "snapshot", full, value.tag, b"", value.items,
        length=len(value.items), snapshot_version=version, snapshot_length=len(value.items),
    )  # fmt: skip


def plan_put(
    checkpoint_id: str,
    versions: Mapping[str, Version],
    new_values: Iterable[tuple[str, Version, ChannelValue]],
    parent: tuple[Mapping[str, Version], Mapping[str, str]] | None,
    lookup: Callable[[BlobKey], StoredBlob | None],
    policy: DeltaPolicy,
    digests: Digester = _sequence_digests,
) -> tuple[list[StoredBlob], dict[str, str]]:
    """The rows a checkpoint put must insert, and the checkpoint's ``refs``.

    ``parent`` is the parent checkpoint's ``(versions, refs)``; ``lookup`` reads a stored row;
    ``digests`` hashes list values.
    A row whose key is taken by the same content is not stored again; one whose key is taken
    by other content (a fork reusing a version number) is stored under ``checkpoint_id``.

    Raises:
        Conflict: this checkpoint id was already stored with other content for a channel.
    """
    parent_versions, parent_refs = parent if parent is not None else ({}, {})
    refs = {
        ch: owner
        for ch, owner in parent_refs.items()
        if ch in versions
        and ch in parent_versions
        and version_key(versions[ch]) == version_key(parent_versions[ch])
    }
    rows: list[StoredBlob] = []
    for channel, version, value in new_values:
        base = None
        if isinstance(value, SequenceBlob) and channel in parent_versions:
            base = lookup(channel_key(channel, parent_versions[channel], parent_refs))
        row = plan_blob(channel, version, value, base, policy, digests)
        existing = lookup(row.key)
        if existing is not None and existing.digest != row.digest:
            row = replace(row, owner=checkpoint_id)
            if row.kind == "snapshot":
                row = replace(row, snapshot_owner=checkpoint_id)
            existing = lookup(row.key)
            if existing is not None and existing.digest != row.digest:
                raise Conflict(
                    f"checkpoint {checkpoint_id!r} was already stored with other content for "
                    f"channel {channel!r}: give a changed checkpoint a new id"
                )
        if existing is None:
            rows.append(row)
        if channel in versions and version_key(versions[channel]) == version_key(version):
            if row.owner:
                refs[channel] = row.owner
            else:
                refs.pop(channel, None)
    return rows, refs


def rebuild(
    target: StoredBlob,
    lookup: Callable[[BlobKey], StoredBlob | None],
    memo: ChainMemo | None = None,
) -> Blob | SequenceBlob | None:
    """The value a row stands for: a delta is joined onto its chain back to the snapshot.

    ``memo`` (one per thread namespace, shared by the reads of one call) keeps every list row
    joined on the way, so checkpoints of one chain walk it only once. Joining costs time in
    proportion to the items, not to the rows times the items: a long chain is extended in
    place rather than copied at each row.

    Raises:
        NotFound: a row of the chain is missing (the store lost data it should have kept).
    """
    if target.kind == "value":
        return Blob(target.tag, target.data)
    if target.kind == "empty":
        return None
    memo = {} if memo is None else memo
    found = memo.get(target.key)
    if found is None:
        path = [target]
        while (key := path[-1].base_key) is not None and (found := memo.get(key)) is None:
            row = lookup(key)
            if row is None:
                raise NotFound(
                    f"channel {target.channel!r} version {target.version!r} is missing its "
                    f"base version {key[1]}: the store dropped a row a checkpoint still needs"
                )
            path.append(row)
        items: list[bytes] = []
        if found is not None:  # extend the memoized list in place only at its end
            shared, length = found
            items = shared if len(shared) == length else shared[:length]
        for row in reversed(path):
            items.extend(row.items)
            memo[row.key] = (items, len(items))
        found = items, len(items)
    shared, length = found
    if length != target.length:
        raise NotFound(
            f"channel {target.channel!r} version {target.version!r} rebuilt to {length} "
            f"items, not {target.length}: its chain is damaged"
        )
    return SequenceBlob(target.tag, tuple(shared[:length]))


def reachable(
    roots: Iterable[BlobKey], lookup: Callable[[BlobKey], StoredBlob | None]
) -> set[BlobKey]:
    """Every row key that ``roots`` (the rows live checkpoints read) need, chains included."""
    seen: set[BlobKey] = set()
    for key in roots:
        current: BlobKey | None = key
        while current is not None and current not in seen:
            row = lookup(current)
            if row is None:
                break
            seen.add(current)
            current = row.base_key
    return seen


_COUNT = struct.Struct("<I")


def pack_items(items: tuple[bytes, ...]) -> bytes:
    """Items as one ``bytes`` (a count, the lengths, then the items), for one database column.

    Examples:
        >>> unpack_items(pack_items((b"ab", b"", b"c")))
        (b'ab', b'', b'c')
    """
    count = len(items)
    return b"".join((_COUNT.pack(count), struct.pack(f"<{count}I", *map(len, items)), *items))


def unpack_items(packed: bytes) -> tuple[bytes, ...]:
    """The inverse of `pack_items`."""
    (count,) = _COUNT.unpack_from(packed, 0)
    ends = list(accumulate(struct.unpack_from(f"<{count}I", packed, 4), initial=4 + 4 * count))
    if ends[-1] != len(packed):
        raise InvalidInput("packed items are damaged: their lengths do not add up")
    return tuple(packed[start:end] for start, end in pairwise(ends))


ITEMS_TAG: Final = "memfold-items:"
"""The type tag prefix of a `Blob` holding a list as `pack_items` (see `pack_sequence`)."""


def pack_sequence(value: SequenceBlob) -> Blob:
    """A list as one `Blob` whose bytes are the list row a store would write for the same
    items (`pack_items`), so a pending write of a list that becomes a checkpoint's appended
    items can be stored once (see `memfold.backends.sql.checkpoint_writes`).

    Examples:
        >>> blob = pack_sequence(SequenceBlob("msgpack", (b"a", b"bc")))
        >>> blob.tag, unpack_sequence(blob)
        ('memfold-items:msgpack', SequenceBlob(tag='msgpack', items=(b'a', b'bc')))
        >>> unpack_sequence(Blob("msgpack", b"a")) is None
        True
    """
    return Blob(ITEMS_TAG + value.tag, pack_items(value.items))


def unpack_sequence(blob: Blob) -> SequenceBlob | None:
    """The list a `pack_sequence` blob holds (None for any other blob)."""
    if not blob.tag.startswith(ITEMS_TAG):
        return None
    return SequenceBlob(blob.tag[len(ITEMS_TAG) :], unpack_items(blob.data))
