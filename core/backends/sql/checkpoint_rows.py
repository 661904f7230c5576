"""How checkpoint data travels to and from the SQL tables: times as microseconds since the
epoch, versions as their `memfold.checkpoint_deltas.version_key` text, value rows as statement
parameters and back, and payloads (value rows' data, pending writes' values, checkpoint bodies)
compressed when that saves a fifth or more (``codec`` says so; NULL: stored as given): raw
deflate whose window starts with a preset dictionary of the strings every payload repeats
(``d1``, see `memfold.backends.checkpoint_dictionary`: a short name, since every compressed row
repeats it); earlier releases stored the same as ``deflate-d1``, plain raw deflate
(``deflate``) and zlib (``zlib``), which reads still take.

Checkpoint and task ids are stored as bytes (see `id_bytes`): a canonical UUID (lowercase,
hyphenated, as LangGraph makes them) as its 16 bytes, any other id as its UTF-8 followed by a
NUL, two when that would make 16 bytes, so no other id is ever read back as a UUID (ids hold no
NUL of their own: `memfold.stores.check_id` refuses them). Byte order is text order among ids
of one form, so ordering by the column (newest first, ``before=``) is as before; a thread that
mixes both forms has them ordered by those bytes, not by text.

A channel with a version but no value has no row: its checkpoint's refs name `NO_VALUE` as the
owner, a key no row ever has; nor does one whose value is empty bytes (LangGraph's branch
channels): the refs name `EMPTY_VALUE` and its tag instead (see `inline_value`).
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from memfold.backends.checkpoint_dictionary import DICTIONARY
from memfold.checkpoint_deltas import StoredBlob, pack_items, unpack_items, version_key
from memfold.checkpoint_model import Blob, Version
from memfold.errors import BackendUnavailable, NotFound

__all__ = [
    "EMPTY_VALUE",
    "NO_VALUE",
    "PARSED_BUDGET",
    "VALUE_COLUMNS",
    "ParsedRows",
    "compress",
    "decompress",
    "from_us",
    "has_row",
    "id_bytes",
    "id_text",
    "inline_value",
    "parse_value",
    "row_params",
    "to_us",
    "version_of",
]

NO_VALUE = "\x00"
"""The owner refs name for a channel without a value (ids never hold NUL)."""

EMPTY_VALUE = NO_VALUE
"""What the owner refs name for a channel whose value is empty bytes starts with (its tag, never
empty, follows: `NO_VALUE` alone names no value)."""

_CODEC = "d1"
_LEVEL = 6
_WBITS = {
    _CODEC: -zlib.MAX_WBITS,
    "deflate-d1": -zlib.MAX_WBITS,
    "deflate": -zlib.MAX_WBITS,
    "zlib": zlib.MAX_WBITS,
}
"""zlib's window bits per codec: raw deflate (with the preset dictionary, under its name now and
its earlier one, and without), and the zlib format earlier releases stored."""
_PRESET = frozenset({_CODEC, "deflate-d1"})
"""The codecs whose window starts with the preset dictionary."""
_COMPRESS_FROM = 64
"""Payloads shorter than this many bytes are stored as given."""

PARSED_BUDGET = 32 * 1024 * 1024
"""Bytes of value rows a store keeps parsed (see `ParsedRows`)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

VALUE_COLUMNS = [
    "thread_id",
    "namespace",
    "channel",
    "version",
    "owner",
    "kind",
    "digest",
    "tag",
    "data",
    "length",
    "depth",
    "base_version",
    "base_owner",
    "snapshot_version",
    "snapshot_owner",
    "snapshot_length",
    "codec",
]
"""The value columns a read selects, in the order `parse_value` takes them."""


def compress(data: bytes) -> tuple[bytes, str | None]:
    """``data`` as stored, and its codec: raw deflate (level 6, no zlib header or checksum,
    the preset dictionary in the window) if that saves a fifth or more."""
    if len(data) < _COMPRESS_FROM:
        return data, None
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=DICTIONARY)
    packed = packer.compress(data) + packer.flush()
    if len(packed) * 5 > len(data) * 4:
        return data, None
    return packed, _CODEC


def _inflate(data: bytes, codec: str) -> bytes:
    try:
        if codec not in _PRESET:
            return zlib.decompress(data, _WBITS[codec])
        inflater = zlib.decompressobj(_WBITS[codec], zdict=DICTIONARY)
        out = inflater.decompress(data)
    except zlib.error as exc:
        raise _damaged(codec, exc) from exc
    if not inflater.eof:
        raise _damaged(codec, "incomplete or truncated stream")
    return out


def _damaged(codec: str, detail: object) -> BackendUnavailable:
    return BackendUnavailable(
        f"a stored checkpoint payload says it is {codec!r} but does not inflate ({detail}): "
        "the row is damaged: restore it from a backup, or delete the thread"
    )


def decompress(data: bytes, codec: str | None, seen: dict[bytes, bytes] | None = None) -> bytes:
    """The inverse of `compress`; ``seen`` (one per read) keeps what it decompressed, so a
    payload that comes back twice (a value row sharing a pending write's) is inflated once."""
    if codec is None:
        return data
    if codec in _WBITS:
        if seen is None:
            return _inflate(data, codec)
        found = seen.get(data)
        if found is None:
            found = seen[data] = _inflate(data, codec)
        return found
    raise NotFound(f"a stored checkpoint payload has codec {codec!r}, unknown to this memfold")


_UUID = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def id_bytes(value: str) -> bytes:
    """A checkpoint or task id as stored: a canonical UUID's 16 bytes, else the id's UTF-8
    and a NUL (two if one would make 16 bytes)."""
    if len(value) == 36 and _UUID.fullmatch(value):
        return bytes.fromhex(value.replace("-", ""))
    data = value.encode()
    return data + (b"\x00\x00" if len(data) == 15 else b"\x00")


def id_text(stored: bytes) -> str:
    """The inverse of `id_bytes`."""
    if len(stored) == 16:
        h = stored.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return bytes(stored).rstrip(b"\x00").decode()


def has_row(owner: str) -> bool:
    """Whether an owner refs name is a row's (not `NO_VALUE` nor an `EMPTY_VALUE`)."""
    return not owner.startswith(NO_VALUE)


def inline_value(owner: str) -> Blob | None:
    """The value of empty bytes an owner refs name holds (None: not an `EMPTY_VALUE`)."""
    if owner == NO_VALUE or not owner.startswith(EMPTY_VALUE):
        return None
    return Blob(owner[len(EMPTY_VALUE) :], b"")


def to_us(moment: datetime) -> int:
    """``moment`` as whole microseconds since the epoch."""
    return (moment - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """The inverse of `to_us`."""
    return _EPOCH + timedelta(microseconds=int(us))


def _optional(key: str | None) -> Version | None:
    return None if key is None else version_of(key)


def version_of(key: str) -> Version:
    """The inverse of `version_key` (integers, the common case, without the JSON parser)."""
    if key.isdigit():
        return int(key)
    value: Version = json.loads(key)
    return value


def row_params(row: StoredBlob) -> dict[str, Any]:
    """The column values of a value row (its thread namespace key aside)."""
    data, codec = compress(row.data if row.kind in ("value", "empty") else pack_items(row.items))
    return {
        "channel": row.channel,
        "version": version_key(row.version),
        "owner": row.owner,
        "kind": row.kind,
        "digest": row.digest,
        "tag": row.tag,
        "data": data,
        "size": row.size,
        "length": row.length,
        "depth": row.depth,
        "base_version": None if row.base_version is None else version_key(row.base_version),
        "base_owner": row.base_owner,
        "snapshot_version": (
            None if row.snapshot_version is None else version_key(row.snapshot_version)
        ),
        "snapshot_owner": row.snapshot_owner,
        "snapshot_length": row.snapshot_length,
        "codec": codec,
    }


def parse_value(row: Any, seen: dict[bytes, bytes] | None = None) -> tuple[str, str, StoredBlob]:
    """``(thread_id, namespace, row)`` from the `VALUE_COLUMNS` of a value row (``seen``: see
    `decompress`)."""
    (
        thread_id,
        namespace,
        channel,
        version,
        owner,
        kind,
        digest,
        tag,
        data,
        length,
        depth,
        base_version,
        base_owner,
        snapshot_version,
        snapshot_owner,
        snapshot_length,
        codec,
    ) = row
    if data is None:
        raise NotFound(
            f"channel {channel!r} version {version!r} shares the payload of a pending write "
            "that is gone: the store dropped a row a checkpoint still needs"
        )
    data = decompress(bytes(data), codec, seen)
    listed = kind in ("snapshot", "delta")
    stored = StoredBlob(
        channel,
        version_of(version),
        kind,
        bytes(digest),
        tag,
        b"" if listed else data,
        unpack_items(data) if listed else (),
        owner,
        length,
        depth,
        _optional(base_version),
        base_owner,
        _optional(snapshot_version),
        snapshot_owner,
        snapshot_length,
    )
    return thread_id, namespace, stored


class ParsedRows:
    """Value rows as `parse_value` gives them, kept by the row as read (every column, the
    payload included, so a kept row is exactly what parsing it again would give) up to
    ``budget`` bytes, the least recently read dropped first: reads that meet the rows of a
    delta chain again (the checkpoints of a thread, a listing read twice) skip inflating and
    splitting them. Safe to share between threads."""

    def __init__(self, budget: int = PARSED_BUDGET) -> None:
        self._budget = budget
        self._rows: OrderedDict[tuple[Any, ...], tuple[tuple[str, str, StoredBlob], int]] = (
            OrderedDict()
        )
        self._bytes = 0
        self._lock = threading.Lock()

    def parse(
        self, row: Any, seen: dict[bytes, bytes] | None = None
    ) -> tuple[str, str, StoredBlob]:
        """`parse_value` of ``row``, or what it gave for an equal row before."""
        key = tuple(row)
        with self._lock:
            found = self._rows.get(key)
            if found is not None:
                self._rows.move_to_end(key)
                return found[0]
        parsed = parse_value(row, seen)
        size = len(row[8]) + parsed[2].size
        if size <= self._budget:
            with self._lock:
                if self._rows.setdefault(key, (parsed, size))[0] is parsed:
                    self._bytes += size
                while self._bytes > self._budget:
                    self._bytes -= self._rows.popitem(last=False)[1][1]
        return parsed

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        """Forget every row (an erasure leaves no copy of what it erased in memory)."""
        with self._lock:
            self._rows.clear()
            self._bytes = 0
