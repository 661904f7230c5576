"""Where a checkpoint thread lives in Redis, and how its rows are encoded: pure, no I/O.

For key prefix ``P``, tenant ``T`` and thread ``H`` (escaped, see `memfold.backends.redis.keys`)
a thread has a fixed set of keys, ``P{T}:c:H:`` followed by (in `CheckpointKeys.all` order)::

    h  hash: v (bumped by every change to checkpoints or values), u (last write, µs),
             t (the thread's own TTL, ms), w / l (lease holder / lease end, µs)
    i  sorted set, all scores 0: one member per checkpoint, ``namespace NUL checkpoint_id``,
       so a namespace's checkpoints are a lexical range in id order
    a  sorted set: the same members scored by creation time (µs), for max-age sweeps
    r  hash: member -> record (parent, creation time, body, versions, refs)
    m  hash: member -> metadata JSON
    k  hash: member -> the value rows the checkpoint reads (its roots), `pack_items`-framed
    b  hash: row field -> the row's payload (a value, or a list's items)
    p  hash: row field -> the row's header (kind, digest, lengths, ...); its first item is
       the field of the row a delta extends, so a Lua script walks a chain without decoding
    x  sorted set, all scores 0: write fields ``member NUL task_id NUL idx``
    w  hash: write field -> the write (task path, channel, value)
    u  set: the run ids of the thread's checkpoints (escaped)
    j  hash: the effect journal, ``namespace:tool_call_id`` (both escaped) -> ``recorded µs:
       tag:bytes`` (see `memfold.backends.redis.journal`)

plus, per tenant, ``P{T}:c:threads`` (sorted set of threads by last write),
``P{T}:c:run:R`` (set of the threads holding run ``R``), ``P{T}:erased`` (the tenant's
tombstones, `memfold.backends.redis.tombstones`), the indexes retention sweeps search
(`TenantIndexes`: threads by their largest namespace's checkpoint count, by the creation time
of their oldest checkpoint that is not its namespace's newest, by their own TTL, and the
threads a re-put may have left unread rows in), and ``Pc:tenants`` (every tenant).
A row field is ``namespace NUL channel NUL version_key NUL owner``. Ids cannot hold NUL, so
fields never collide and a checkpoint's writes are the lexical range after ``member NUL``.

Examples:
    >>> keys = checkpoint_keys("memfold:", "acme", "t:1")
    >>> keys.info, keys.member
    ('memfold:{acme}:c:t%3A1:h', 't%3A1')
    >>> member("", "c1"), row_field("child", ("messages", "3", ""))
    (b'\\x00c1', b'child\\x00messages\\x003\\x00')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final, cast

from memfold.backends.redis.elements import ElementCodec
from memfold.backends.redis.keys import escape, tombstone_key
from memfold.checkpoint_deltas import (
    BlobKey,
    StoredBlob,
    pack_items,
    unpack_items,
    version_key,
)
from memfold.checkpoint_model import Blob, PendingWrite, Version
from memfold.errors import BackendUnavailable
from memfold.schema_steps import Step

__all__ = [
    "CHECKPOINT_LAYOUT_STEPS",
    "CheckpointKeys",
    "Record",
    "TenantIndexes",
    "checkpoint_keys",
    "decode_header",
    "decode_record",
    "decode_write",
    "encode_header",
    "encode_payload",
    "encode_record",
    "encode_write",
    "from_micros",
    "member",
    "micros",
    "row_field",
    "run_base",
    "split_member",
    "tenant_indexes",
    "tenant_threads",
    "tenants_key",
    "write_field",
]

CHECKPOINT_LAYOUT_STEPS: Final = (
    Step(1, "per thread an info hash, checkpoint, value, write and journal keys; indexes"),
    Step(2, "tombstones: a hash per tenant whose erased threads refuse writes"),
    Step(3, "threads indexed by namespace size, oldest removable checkpoint, own TTL, dirt"),
)
"""The steps of the checkpoint key layout above (`memfold.backends.redis.layout`); ``setup()``
records the last, after filling step 3's indexes in for threads written before."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def micros(when: datetime) -> int:
    """``when`` as whole microseconds since the epoch."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: bytes | int | str) -> datetime:
    """The inverse of `micros`."""
    return _EPOCH + timedelta(microseconds=int(value))


@dataclass(frozen=True, slots=True)
class CheckpointKeys:
    """The keys of one checkpoint thread, its member name, and its tenant's index."""

    info: str
    ids: str
    ages: str
    records: str
    metadata: str
    roots: str
    payloads: str
    headers: str
    write_index: str
    writes: str
    runs: str
    journal: str
    threads: str
    stones: str
    sizes: str
    firsts: str
    ttls: str
    dirty: str
    member: str

    @property
    def own(self) -> tuple[str, ...]:
        """The thread's own keys."""
        return (
            self.info, self.ids, self.ages, self.records, self.metadata, self.roots,
            self.payloads, self.headers, self.write_index, self.writes, self.runs, self.journal,
        )  # fmt: skip

    @property
    def all(self) -> tuple[str, ...]:
        """The thread's own keys, the tenant index, the tenant's tombstones, then its retention
        indexes (`TenantIndexes`): the ``KEYS`` every script takes."""
        return (*self.own, self.threads, self.stones, self.sizes, self.firsts, self.ttls,
                self.dirty)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TenantIndexes:
    """A tenant's checkpoint thread indexes, and the start of its threads' keys.

    ``threads`` scores each thread by its last write (µs), ``sizes`` by the checkpoint count of
    its largest namespace (at least), ``firsts`` by the creation time (µs) of its oldest
    checkpoint that is not the newest of its namespace (at most), ``ttls`` by its own TTL
    (ms); ``dirty`` holds the threads where a re-put may have left rows no checkpoint reads.
    Writes keep ``sizes`` and ``firsts`` on the safe side; a sweep sets them exactly.
    """

    threads: str
    sizes: str
    firsts: str
    ttls: str
    dirty: str
    base: str

    @property
    def all(self) -> tuple[str, str, str, str, str]:
        """The indexes, in the order the tenant-wide scripts take them."""
        return self.threads, self.sizes, self.firsts, self.ttls, self.dirty


@lru_cache(maxsize=1024)
def tenant_indexes(prefix: str, tenant: str) -> TenantIndexes:
    """The checkpoint indexes of ``tenant``."""
    base = f"{prefix}{{{escape(tenant)}}}:c:"
    return TenantIndexes(
        f"{base}threads", f"{base}sizes", f"{base}firsts", f"{base}ttls", f"{base}dirty", base
    )


def tenant_threads(prefix: str, tenant: str) -> str:
    """The sorted set of ``tenant``'s checkpoint threads."""
    return f"{prefix}{{{escape(tenant)}}}:c:threads"


def run_base(prefix: str, tenant: str) -> str:
    """The start of ``tenant``'s run-index keys (the escaped run id follows)."""
    return f"{prefix}{{{escape(tenant)}}}:c:run:"


def tenants_key(prefix: str) -> str:
    """The set of every tenant with checkpoints (for sweeps over all tenants)."""
    return f"{prefix}c:tenants"


@lru_cache(maxsize=4096)
def checkpoint_keys(prefix: str, tenant: str, thread_id: str) -> CheckpointKeys:
    """The keys of checkpoint thread ``thread_id`` of ``tenant`` (cached)."""
    name = escape(thread_id)
    base = f"{prefix}{{{escape(tenant)}}}:c:{name}:"
    h, i, a, r, m, k, b, p, x, w, u, j = (base + part for part in "hiarmkbpxwuj")
    t = tenant_indexes(prefix, tenant)
    stones = tombstone_key(prefix, tenant)
    return CheckpointKeys(
        h, i, a, r, m, k, b, p, x, w, u, j, t.threads, stones, t.sizes, t.firsts, t.ttls,
        t.dirty, name,
    )  # fmt: skip


def member(namespace: str, checkpoint_id: str) -> bytes:
    """A checkpoint's member in the ids set: ``namespace NUL checkpoint_id``."""
    return f"{namespace}\0{checkpoint_id}".encode()


def split_member(value: bytes) -> tuple[str, str]:
    """``(namespace, checkpoint_id)`` of a member."""
    namespace, _, checkpoint_id = value.decode().partition("\0")
    return namespace, checkpoint_id


def row_field(namespace: str, key: BlobKey) -> bytes:
    """The field of value row ``key`` of a namespace."""
    return "\0".join((namespace, *key)).encode()


def write_field(checkpoint: bytes, write: PendingWrite) -> bytes:
    """The field of a pending write of the checkpoint whose member is ``checkpoint``."""
    return b"%s\0%s\0%d" % (checkpoint, write.task_id.encode(), write.idx)


def _damaged(what: str, exc: Exception) -> BackendUnavailable:
    return BackendUnavailable(
        f"a stored checkpoint {what} is not in memfold's Redis layout (written by a newer "
        f"memfold, or by something else under this key_prefix?): {exc}"
    )


def _version(text: bytes) -> Version | None:
    if not text:
        return None
    value: Version = json.loads(text)
    return value


def _key(version: Version | None) -> bytes:
    return b"" if version is None else version_key(version).encode()


@dataclass(frozen=True, slots=True)
class Record:
    """A stored checkpoint's own fields (its values and writes live in other keys)."""

    parent_id: str | None
    created_at: datetime
    body: Blob
    versions: dict[str, Version]
    versions_json: str
    refs: dict[str, str]


def encode_record(
    codec: ElementCodec,
    parent_id: str | None,
    created_at: datetime,
    body: Blob,
    versions_json: str,
    refs: dict[str, str],
) -> bytes:
    """A checkpoint record's bytes."""
    return pack_items((
        (parent_id or "").encode(), b"%d" % micros(created_at), body.tag.encode(),
        codec.pack(body.data), versions_json.encode(), json.dumps(refs).encode(),
    ))  # fmt: skip


def decode_record(codec: ElementCodec, data: bytes) -> Record:
    """The inverse of `encode_record`."""
    try:
        parent, created, tag, body, versions, refs = unpack_items(data)
        versions_json = versions.decode()
        return Record(
            parent.decode() or None,
            from_micros(created),
            Blob(tag.decode(), codec.unpack(body)),
            json.loads(versions_json),
            versions_json,
            json.loads(refs),
        )
    except (ValueError, TypeError) as exc:
        raise _damaged("record", exc) from exc


def encode_header(namespace: str, row: StoredBlob) -> bytes:
    """A value row's header; its first item is the field of the row it extends (or empty)."""
    base = row.base_key
    return pack_items((
        b"" if base is None else row_field(namespace, base),
        row.kind.encode(), row.digest, row.tag.encode(), _key(row.version), row.owner.encode(),
        b"%d" % row.length, b"%d" % row.depth, _key(row.base_version), row.base_owner.encode(),
        _key(row.snapshot_version), row.snapshot_owner.encode(), b"%d" % row.snapshot_length,
    ))  # fmt: skip


def encode_payload(codec: ElementCodec, row: StoredBlob) -> bytes:
    """A value row's payload: its value's bytes, or its items framed."""
    return codec.pack(pack_items(row.items) if row.kind in ("snapshot", "delta") else row.data)


def decode_header(
    field: bytes, header: bytes, codec: ElementCodec | None = None, payload: bytes = b""
) -> StoredBlob:
    """The row stored under ``field``; with a ``codec``, its ``payload`` is decoded too (else
    the row carries no data or items: enough to plan a put or collect garbage)."""
    try:
        channel = field.split(b"\0")[1].decode()
        (
            _base, kind, digest, tag, version, owner, length, depth, base_version, base_owner,
            snapshot_version, snapshot_owner, snapshot_length,
        ) = unpack_items(header)  # fmt: skip
        data, items = b"", cast("tuple[bytes, ...]", ())
        if codec is not None:
            raw = codec.unpack(payload)
            if kind in (b"snapshot", b"delta"):
                items = unpack_items(raw)
            else:
                data = raw
        return StoredBlob(
            channel, json.loads(version), kind.decode(), digest, tag.decode(),  # type: ignore[arg-type]
            data, items, owner.decode(), int(length), int(depth), _version(base_version),
            base_owner.decode(), _version(snapshot_version), snapshot_owner.decode(),
            int(snapshot_length),
        )  # fmt: skip
    except (ValueError, TypeError, IndexError) as exc:
        raise _damaged("value row", exc) from exc


def encode_write(codec: ElementCodec, write: PendingWrite) -> bytes:
    """A pending write's bytes (its task id and idx are in its field)."""
    return pack_items((
        write.task_path.encode(), write.channel.encode(), write.value.tag.encode(),
        codec.pack(write.value.data),
    ))  # fmt: skip


def decode_write(codec: ElementCodec, field: bytes, data: bytes) -> PendingWrite:
    """The inverse of `encode_write`, given the write's field."""
    try:
        _ns, _cid, task_id, idx = field.split(b"\0")
        path, channel, tag, value = unpack_items(data)
        return PendingWrite(
            task_id.decode(),
            int(idx),
            channel.decode(),
            Blob(tag.decode(), codec.unpack(value)),
            path.decode(),
        )
    except (ValueError, TypeError) as exc:
        raise _damaged("write", exc) from exc
