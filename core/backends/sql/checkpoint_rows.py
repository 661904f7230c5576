"""How checkpoint data travels to and from the SQL tables: times as microseconds since the
epoch, versions as their `memfold.checkpoint_deltas.version_key` text, value rows as statement
parameters and back, and payloads (value rows' data, pending writes' values) compressed with
zlib when that saves a fifth or more (``codec`` says so; NULL: stored as given).

A channel with a version but no value has no row: its checkpoint's refs name `NO_VALUE` as the
owner, a key no row ever has.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

from memfold.checkpoint_deltas import StoredBlob, pack_items, unpack_items, version_key
from memfold.checkpoint_model import Version
from memfold.errors import NotFound

__all__ = [
    "NO_VALUE",
    "VALUE_COLUMNS",
    "compress",
    "decompress",
    "from_us",
    "parse_value",
    "row_params",
    "to_us",
    "version_of",
]

NO_VALUE = "\x00"
"""The owner refs name for a channel without a value (ids never hold NUL)."""

_ZLIB = "zlib"
_COMPRESS_FROM = 200
"""Payloads shorter than this many bytes are stored as given."""

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
    """``data`` as stored, and its codec: zlib (level 1, fast) if that saves a fifth or more."""
    if len(data) < _COMPRESS_FROM:
        return data, None
    packed = zlib.compress(data, 1)
    if len(packed) * 5 > len(data) * 4:
        return data, None
    return packed, _ZLIB


def decompress(data: bytes, codec: str | None, seen: dict[bytes, bytes] | None = None) -> bytes:
    """The inverse of `compress`; ``seen`` (one per read) keeps what it decompressed, so a
    payload that comes back twice (a value row sharing a pending write's) is inflated once."""
    if codec is None:
        return data
    if codec == _ZLIB:
        if seen is None:
            return zlib.decompress(data)
        found = seen.get(data)
        if found is None:
            found = seen[data] = zlib.decompress(data)
        return found
    raise NotFound(f"a stored checkpoint payload has codec {codec!r}, unknown to this memfold")


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
