"""The Redis checkpoint store (``redis://``): checkpoints in plain Redis 7, no modules needed.

Each operation is written once as a generator that yields the Redis calls it needs and gets
their replies back (`memfold.backends.redis.calls.Call`); a sync and an async driver run it.
``get`` is one round trip (a Lua script rebuilds the reply from the checkpoint's rows, delta
chains included); ``put_writes`` is one; ``put`` is two (read the parent's rows, plan the new
rows with `memfold.checkpoint_deltas`, then apply them in one script that checks nothing moved in
between, retrying if something did). Leases are checked inside that same script, so two writers
never both pass. The key layout is in `memfold.backends.redis.checkpoint_keys`. The store also
keeps each thread's effect journal, one round trip per operation
(`memfold.backends.redis.journal`).

Examples:
    >>> import uuid
    >>> from memfold.checkpoints import Blob
    >>> store = RedisCheckpointStore("redis://127.0.0.1:6379/0",
    ...                              key_prefix=f"doctest-{uuid.uuid4().hex}:")
    >>> store.setup()
    3
    >>> store.put("t", "c1", Blob("json", b"{}"), versions={"x": 1},
    ...           values={"x": Blob("json", b"7")})
    >>> store.get("t").values["x"]
    Blob(tag='json', data=b'7')
    >>> store.delete_thread("t")
    1
    >>> _ = store.client.delete(*store.client.scan_iter(f"{store.key_prefix}*"))  # clean up
    >>> store.close()
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count
from typing import Any, Final, TypeAlias, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import redis.asyncio

from memfold import checkpoint_ops as ops
from memfold.backends.redis import checkpoint_scripts as scripts
from memfold.backends.redis.calls import Call
from memfold.backends.redis.checkpoint_keys import (
    CHECKPOINT_LAYOUT_STEPS,
    CheckpointKeys,
    checkpoint_keys,
    decode_header,
    decode_record,
    decode_write,
    encode_header,
    encode_payload,
    encode_record,
    encode_write,
    from_micros,
    member,
    micros,
    row_field,
    run_base,
    split_member,
    tenant_indexes,
    tenant_threads,
    tenants_key,
    write_field,
)
from memfold.backends.redis.elements import ElementCodec
from memfold.backends.redis.erasure import erase_checkpoints, find_checkpoint_threads
from memfold.backends.redis.journal import journal_call, journal_threads
from memfold.backends.redis.keys import check_prefix, escape, unescape
from memfold.backends.redis.layout import RedisLayout
from memfold.backends.redis.scripts import Script
from memfold.backends.redis.store import DEFAULT_PREFIX, RedisThreadStore
from memfold.backends.redis.tombstones import lift, named
from memfold.checkpoint_deltas import (
    BlobKey,
    ChainMemo,
    DeltaPolicy,
    StoredBlob,
    channel_key,
    pack_items,
    plan_put,
    reachable,
    rebuild,
    unpack_items,
    version_key,
)
from memfold.checkpoint_history import AncestorWalk, spare_history
from memfold.checkpoint_model import (
    Blob,
    ChannelHistory,
    Checkpoint,
    Lease,
    RetentionPolicy,
    SequenceBlob,
    StorageStats,
    SweepResult,
)
from memfold.checkpoints import BaseCheckpointStore, claim_lease, lease_origin, matches_filter
from memfold.errors import Conflict, InvalidInput, NotFound
from memfold.journal import JOURNAL_OPS, ListJournalThreads
from memfold.ops import Op
from memfold.schema_steps import SchemaSteps
from memfold.stores import Capabilities
from memfold.tombstones import EraseSubject, FindThreads, LiftTombstones

__all__ = [
    "ClaimWhole",
    "EndWrite",
    "IsWhole",
    "MarkWhole",
    "RedisCheckpointStore",
    "StartWrite",
    "WritesInFlight",
]

T = TypeVar("T")

Flow: TypeAlias = Generator[Call[Any], Any, T]
"""An operation as the Redis calls it makes: each yielded call's reply is sent back in."""

MAX_ATTEMPTS: Final = 20
"""How often a write re-reads and re-plans when the thread changed under it."""

_KEYS = {name: i + 1 for i, name in enumerate("hiarmkbpxwuj")}
"""The 1-based index in ``KEYS`` of each of a thread's keys (see `CheckpointKeys.all`)."""
_SIZES, _FIRSTS, _DIRTY = 15, 16, 18
"""The 1-based index in ``KEYS`` of the tenant's retention indexes a sweep scores exactly."""
_PAGE: Final = 200
"""Threads indexed per call by the layout 3 backfill."""


@dataclass(frozen=True, slots=True)
class ClaimWhole(Op[None]):
    """Drop this store's copy of a thread and start copying it in, as warm-up ``token`` (a
    tiered store's): `MarkWhole` with the same token then marks the copy complete, unless a
    deletion or another warm-up came in between. The marks of writes in flight (`StartWrite`)
    younger than ``keep_ms`` milliseconds stay."""

    tenant: str
    thread_id: str
    token: str
    keep_ms: int = 0


@dataclass(frozen=True, slots=True)
class StartWrite(Op[None]):
    """Mark write ``token`` of a thread in flight (a tiered store's, from before its durable
    write until its write here is done): until `EndWrite`, `IsWhole` finds the thread not
    whole, so a writer that dies in between leaves no stale copy served as whole."""

    tenant: str
    thread_id: str
    token: str


@dataclass(frozen=True, slots=True)
class EndWrite(Op[None]):
    """End the mark of `StartWrite` ``token`` (nothing if a deletion or warm-up dropped it)."""

    tenant: str
    thread_id: str
    token: str


@dataclass(frozen=True, slots=True)
class WritesInFlight(Op[bool]):
    """Whether a write of the thread marked by `StartWrite` less than ``within_ms`` ago is in
    flight (an older mark is taken for a writer that died)."""

    tenant: str
    thread_id: str
    within_ms: int


@dataclass(frozen=True, slots=True)
class MarkWhole(Op[bool]):
    """Record that this store holds all of a thread (a tiered store's copy is complete), if
    the warm-up ``token`` claimed it last; the mark goes with the thread's keys (expiry,
    deletion). Returns whether it marked the thread."""

    tenant: str
    thread_id: str
    token: str


@dataclass(frozen=True, slots=True)
class IsWhole(Op[str | None]):
    """The token of the warm-up that marked the thread whole (None: not marked, a deletion or
    expiry has dropped the mark since, or a write is in flight)."""

    tenant: str
    thread_id: str


def _reply(value: Any) -> Any:
    return value


def _none(_: Any) -> None:
    return None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _seconds(value: bytes | None) -> float | None:
    """A thread's own TTL, stored in milliseconds, in seconds."""
    return None if value is None else int(value) / 1000


def _script(script: Script, keys: Iterable[str], *args: str | bytes | int) -> Call[Any]:
    keys = tuple(keys)
    return Call(("EVALSHA", script.sha, len(keys), *keys, *args), _reply, script)


def _command(*command: str | bytes | int) -> Call[Any]:
    return Call(command, _reply)


def _key_of(field: bytes) -> BlobKey:
    _ns, channel, version, owner = field.decode().split("\0")
    return channel, version, owner


def _holds_row(
    namespace: str, versions: dict[str, Any], refs: dict[str, str], held: set[bytes]
) -> Callable[[str], bool]:
    """Whether a checkpoint holds a channel's value: the row of the channel's version is one of
    ``held`` (the rows it reads that hold a value)."""
    return lambda ch: (
        ch in versions and row_field(namespace, channel_key(ch, versions[ch], refs)) in held
    )


def _pairs(flat: list[Any]) -> Iterable[tuple[Any, Any]]:
    return zip(flat[::2], flat[1::2], strict=True)


class _Dump:
    """A thread as `scripts.DUMP` returned it, decoded as far as retention needs."""

    def __init__(self, reply: list[Any]) -> None:
        self.version: bytes = reply[0]
        self.info = dict(_pairs(reply[1]))
        created = list(_pairs(reply[2]))
        self.created = {m: int(float(score)) for m, score in created}
        self.members = sorted(self.created, key=lambda m: split_member(m))
        self.metadata: dict[bytes, bytes] = dict(_pairs(reply[3]))
        self.roots: dict[bytes, bytes] = dict(_pairs(reply[4]))
        self.headers: dict[bytes, bytes] = dict(_pairs(reply[5]))
        self.write_fields: list[bytes] = reply[6]
        self.full = reply[7:]

    def by_namespace(self) -> dict[str, list[bytes]]:
        """Members grouped by namespace, each list in ascending id order."""
        spaces: dict[str, list[bytes]] = {}
        for m in self.members:
            spaces.setdefault(split_member(m)[0], []).append(m)
        return spaces

    def dead_rows(self, kept: Iterable[bytes]) -> list[bytes]:
        """The row fields no checkpoint in ``kept`` reads, directly or through a chain."""
        rows: dict[str, dict[BlobKey, StoredBlob]] = {}
        for field, header in self.headers.items():
            namespace = field.split(b"\0", 1)[0].decode()
            rows.setdefault(namespace, {})[_key_of(field)] = decode_header(field, header)
        roots: dict[str, list[BlobKey]] = {}
        for m in kept:
            namespace = split_member(m)[0]
            packed = self.roots.get(m)
            if packed:
                roots.setdefault(namespace, []).extend(map(_key_of, unpack_items(packed)))
        live = {
            row_field(ns, key)
            for ns, space in rows.items()
            for key in reachable(roots.get(ns, ()), space.get)
        }
        return [field for field in self.headers if field not in live]

    def lineage(
        self, records: list[bytes | None]
    ) -> dict[bytes, tuple[bytes | None, dict[str, Any]]]:
        """Each member's parent member and (when it names delta channels) metadata, for
        `spare_history`, from the members' ``records`` in order (the parent is a record's
        first item)."""
        lineage: dict[bytes, tuple[bytes | None, dict[str, Any]]] = {}
        for m, record in zip(self.members, records, strict=True):
            parent = unpack_items(record)[0].decode() if record else ""
            metadata = self.metadata.get(m, b"")
            lineage[m] = (
                member(split_member(m)[0], parent) if parent else None,
                json.loads(metadata) if b"delta_" in metadata else {},
            )
        return lineage

    def writes_of(self, doomed: set[bytes]) -> int:
        """How many pending writes the ``doomed`` checkpoints hold."""
        return sum(1 for f in self.write_fields if f.rsplit(b"\0", 2)[0] in doomed)


class RedisCheckpointStore(BaseCheckpointStore):
    """Checkpoints in plain Redis 7 (no modules), every write one atomic Lua script.

    Args:
        url: ``redis://[:password@]host:6379/0`` (or ``rediss://``, ``unix://``); its query may
            hold redis-py connection options such as ``socket_timeout``.
        client: a sync ``redis.Redis`` to use instead of one made from ``url``.
        async_client: a ``redis.asyncio.Redis`` to use instead of one made from ``url``.
        key_prefix: the start of every key, so several stores can share one database.
        compress_min_bytes: zstd-compress values, pending writes and bodies of at least this many
            bytes (None: never), with the preset dictionary of checkpoint payloads
            (`memfold.backends.checkpoint_dictionary`), so that short ones shrink too.
        delta_policy: when list values are stored whole (see `DeltaPolicy`).
        retention: what `sweep` removes by default; its ``ttl_seconds`` also makes Redis expire
            a thread's keys that long after its last write (a thread's own TTL, set with
            ``set_thread_ttl``, wins).
    """

    name = "redis"
    reads_channel_history = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        key_prefix: str = DEFAULT_PREFIX,
        compress_min_bytes: int | None = 64,
        delta_policy: DeltaPolicy | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        # The thread store's client handling: URL, per-loop async clients, script loading.
        self._redis = RedisThreadStore(
            url,
            client=client,
            async_client=async_client,
            key_prefix=check_prefix(key_prefix),
            compress_min_bytes=compress_min_bytes,
        )
        self.key_prefix = key_prefix
        self.codec = ElementCodec(compress_min_bytes=compress_min_bytes, preset_dictionary=True)
        self._layout = RedisLayout(
            self._redis, "checkpoints", f"{key_prefix}c:layout", CHECKPOINT_LAYOUT_STEPS,
            scripts.ALL, backfill=self._backfill,
        )  # fmt: skip
        super().__init__(
            Capabilities(
                persistent=True, shared=True, transactions=True, ttl=True, effect_journal=True
            ),
            delta_policy=delta_policy,
            retention=retention,
        )
        ttl = self.retention.ttl_seconds
        self._default_ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        self._tenants: set[str] = set()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisCheckpointStore:
        """A store for ``url``, taking ``key_prefix`` and ``compress_min_bytes`` from its query
        (keyword ``options`` win); other query options go to redis-py."""
        parts = urlsplit(url)
        ours: dict[str, Any] = {}
        theirs: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "key_prefix":
                ours[key] = value
            elif key == "compress_min_bytes":
                try:
                    ours[key] = int(value)
                except ValueError as exc:
                    raise InvalidInput(f"compress_min_bytes={value!r} is not an int") from exc
            else:
                theirs.append((key, value))
        return cls(parts._replace(query=urlencode(theirs)).geturl(), **{**ours, **options})

    @property
    def client(self) -> redis.Redis:
        """The sync client."""
        return self._redis.client

    @property
    def tombstone_place(self) -> Hashable:
        """The tombstone hashes of this server and key prefix (shared by its store kinds)."""
        return self._redis.tombstone_place

    # Drivers.

    def execute(self, op: Op[T]) -> T:
        """Run one operation."""
        with named(op):
            result: T = self._redis.drive(self._flow(op))
        return result

    async def aexecute(self, op: Op[T]) -> T:
        """Run one operation on the async client."""
        with named(op):
            result: T = await self._redis.adrive(self._flow(op))
        return result

    def _flow(self, op: Op[Any]) -> Flow[Any]:
        if isinstance(op, JOURNAL_OPS):
            if isinstance(op, ListJournalThreads):
                return journal_threads(self.key_prefix, op.tenant)
            keys = self._keys(op.tenant, op.thread_id)
            return self._one(journal_call(op, keys, self._default_ttl_ms), _reply)
        match op:
            case ops.PutCheckpoint():
                return self._put(op)
            case ops.PutCheckpointWrites():
                return self._put_writes(op)
            case ops.GetCheckpoint(tenant, thread_id, namespace, checkpoint_id):
                return self._get(tenant, thread_id, namespace, checkpoint_id)
            case ops.ListCheckpoints():
                return self._list(op)
            case ops.ReadChannelHistory():
                return self._history(op)
            case ops.DeleteCheckpointThread(tenant, thread_id):
                return self._delete_count(tenant, thread_id)
            case ops.DeleteCheckpointRuns(tenant, run_ids):
                return self._delete_runs(tenant, set(run_ids))
            case ops.CopyCheckpointThread(tenant, source, target, now):
                return self._copy(tenant, source, target, now)
            case ops.PruneCheckpointThreads(tenant, thread_ids, keep_latest):
                return self._prune(tenant, thread_ids, keep_latest)
            case ops.GetCheckpointThreadTTL(tenant, thread_id):
                return self._one(
                    _command("HGET", self._keys(tenant, thread_id).info, "t"), _seconds
                )
            case ops.SetCheckpointThreadTTL(tenant, thread_id, ttl_seconds):
                return self._set_ttl(tenant, thread_id, ttl_seconds)
            case ops.ReleaseThread(tenant, thread_id, writer):
                keys = self._keys(tenant, thread_id)
                return self._one(_script(scripts.RELEASE, keys.all, writer), bool)
            case ops.SweepCheckpoints(tenant, policy, now, dry_run):
                return self._sweep(tenant, policy, now, dry_run)
            case ops.CheckpointStats(tenant, thread_id):
                return self._stats(tenant, thread_id)
            case ClaimWhole(tenant, thread_id, token, keep_ms):
                keys, base = self._keys(tenant, thread_id), run_base(self.key_prefix, tenant)
                claim = (keys.member, base, token, keep_ms)
                return self._one(_script(scripts.CLAIM_WHOLE, keys.all, *claim), _none)
            case MarkWhole(tenant, thread_id, token):
                keys = self._keys(tenant, thread_id)
                return self._one(_script(scripts.MARK_WHOLE, keys.all, token), bool)
            case StartWrite(tenant, thread_id, token):
                keys = self._keys(tenant, thread_id)
                return self._one(_script(scripts.START_WRITE, [keys.info], token), _none)
            case EndWrite(tenant, thread_id, token):
                keys = self._keys(tenant, thread_id)
                return self._one(_command("HDEL", keys.info, f"f:{token}"), _none)
            case IsWhole(tenant, thread_id):
                keys = self._keys(tenant, thread_id)
                found = _script(scripts.IS_WHOLE, [keys.info], 0)
                return self._one(found, lambda reply: _text(reply[0]))
            case WritesInFlight(tenant, thread_id, within_ms):
                keys = self._keys(tenant, thread_id)
                found = _script(scripts.IS_WHOLE, [keys.info], within_ms)
                return self._one(found, lambda reply: bool(reply[1]))
            case FindThreads():
                return find_checkpoint_threads(self.key_prefix, op)
            case EraseSubject():
                return erase_checkpoints(self.key_prefix, op)
            case LiftTombstones():
                return lift(self.key_prefix, op)
        raise InvalidInput(f"the redis checkpoint store cannot run {type(op).__name__}")

    @staticmethod
    def _one(call: Call[Any], decode: Callable[[Any], T]) -> Flow[T]:
        result: T = decode((yield call))
        return result

    def _keys(self, tenant: str, thread_id: str) -> CheckpointKeys:
        return checkpoint_keys(self.key_prefix, tenant, thread_id)

    # Writes.

    def _register(self, tenant: str) -> Flow[None]:
        if tenant not in self._tenants:
            yield _command("SADD", tenants_key(self.key_prefix), escape(tenant))
            self._tenants.add(tenant)

    def _apply(
        self,
        keys: CheckpointKeys,
        expected: bytes,
        now: datetime | None,
        mutations: list[str | bytes | int],
        *,
        lease: Lease | None = None,
        head: bytes = b"",
        bump: bool = True,
        writes: bool = False,
        extra_keys: tuple[str, ...] = (),
    ) -> Call[Any]:
        until = b""
        if lease is not None and now is not None:
            until = b"%d" % micros(now + timedelta(seconds=lease.seconds))
        mode = int(lease is not None and lease.handover) + 2 * writes
        return _script(
            scripts.APPLY, (*keys.all, *extra_keys), expected, b"" if now is None else micros(now),
            self._default_ttl_ms, "" if lease is None else lease.writer, until,
            mode, head, keys.member, int(bump), *mutations,
        )  # fmt: skip

    @staticmethod
    def _refused(thread_id: str, reply: list[Any], lease: Lease | None, now: datetime) -> None:
        """Raise for an `scripts.APPLY` reply that is not ``ok`` (``stale`` returns)."""
        if reply[0] == b"lease" and lease is not None:
            holder, until = reply[1].decode(), from_micros(reply[2])
            claim_lease(thread_id, holder, until, lease, now, continues_head=False)
            raise Conflict(f"thread {thread_id!r} is leased to {holder!r}")

    def _put(self, op: ops.PutCheckpoint) -> Flow[None]:
        yield from self._register(op.tenant)
        keys, ns = self._keys(op.tenant, op.thread_id), op.namespace
        me = member(ns, op.checkpoint_id)
        parent = b"" if op.parent_id is None else member(ns, op.parent_id)
        origin = lease_origin(op)  # a nested run's first checkpoint: see Lease
        candidates: dict[bytes, None] = {}
        for channel, version, _value in op.new_values:
            for owner in ("", op.checkpoint_id):
                candidates[row_field(ns, (channel, version_key(version), owner))] = None
        run = op.metadata.get("run_id")
        extra = (
            ()
            if not isinstance(run, str)
            else (run_base(self.key_prefix, op.tenant) + escape(run),)
        )
        for _attempt in range(MAX_ATTEMPTS):
            expected, parent_record, bases, found = yield _script(
                scripts.PUT_READ, keys.all, parent, *candidates
            )
            known: dict[BlobKey, StoredBlob] = {}
            for field, header in _pairs(bases):
                known[_key_of(field)] = decode_header(field, header)
            for field, header in zip(candidates, found, strict=True):
                if header:
                    known[_key_of(field)] = decode_header(field, header)
            parent_state = None
            if parent_record:
                record = decode_record(self.codec, parent_record)
                parent_state = (record.versions, record.refs)
            rows, refs = plan_put(
                op.checkpoint_id, op.versions, op.new_values, parent_state, known.get,
                self.delta_policy,
            )  # fmt: skip
            mutations: list[str | bytes | int] = []
            for row in rows:
                field = row_field(ns, row.key)
                mutations += ("H", _KEYS["p"], field, encode_header(ns, row))
                mutations += ("H", _KEYS["b"], field, encode_payload(self.codec, row))
            roots = pack_items(tuple(
                row_field(ns, channel_key(ch, v, refs)) for ch, v in op.versions.items()
            ))  # fmt: skip
            record_bytes = encode_record(
                self.codec, op.parent_id, op.created_at, op.body, op.versions_json, refs
            )
            mutations += ("H", _KEYS["r"], me, record_bytes, "H", _KEYS["m"], me, op.metadata_json)
            mutations += ("H", _KEYS["k"], me, roots, "Z", _KEYS["i"], 0, me)
            mutations += ("Z", _KEYS["a"], micros(op.created_at), me)
            if extra:
                mutations += ("S", _KEYS["u"], escape(cast(str, run)))
                mutations += ("S", len(keys.all) + 1, keys.member)
            reply = yield self._apply(
                keys, expected, op.created_at, mutations, lease=op.lease,
                head=parent if origin is None else member(*origin),
                extra_keys=extra,
            )  # fmt: skip
            if reply[0] == b"ok":
                return
            self._refused(op.thread_id, reply, op.lease, op.created_at)
        raise Conflict(
            f"thread {op.thread_id!r} kept changing while checkpoint {op.checkpoint_id!r} was "
            f"being stored ({MAX_ATTEMPTS} attempts): run one writer per thread"
        )

    def _put_writes(self, op: ops.PutCheckpointWrites) -> Flow[None]:
        yield from self._register(op.tenant)
        keys = self._keys(op.tenant, op.thread_id)
        me = member(op.namespace, op.checkpoint_id)
        mutations: list[str | bytes | int] = []
        for write in op.writes:
            field = write_field(me, write)
            kind = "N" if write.idx >= 0 and not op.replace else "H"
            mutations += (kind, _KEYS["w"], field, encode_write(self.codec, write))
            mutations += ("Z", _KEYS["x"], 0, field)
        reply = yield self._apply(
            keys, b"", op.written_at, mutations, lease=op.lease, head=me, bump=False, writes=True
        )
        if reply[0] != b"ok":
            self._refused(op.thread_id, reply, op.lease, op.written_at)

    # Reads.

    def _checkpoints(self, thread_id: str, reply: list[Any]) -> list[Checkpoint]:
        """The checkpoints of a `scripts.READ` reply, in its order."""
        rows: dict[bytes, StoredBlob] = {}
        flat = reply[0]
        for i in range(0, len(flat), 3):
            rows[flat[i]] = decode_header(flat[i], flat[i + 1], self.codec, flat[i + 2])
        found = []
        memos: dict[str, ChainMemo] = {}
        for m, record_bytes, metadata, writes in reply[1:]:
            namespace, checkpoint_id = split_member(m)
            record = decode_record(self.codec, record_bytes)
            memo = memos.setdefault(namespace, {})

            def lookup(key: BlobKey, ns: str = namespace) -> StoredBlob | None:
                return rows.get(row_field(ns, key))

            values: dict[str, Blob | SequenceBlob] = {}
            for channel, version in record.versions.items():
                row = lookup(channel_key(channel, version, record.refs))
                if row is not None and (value := rebuild(row, lookup, memo)) is not None:
                    values[channel] = value
            pending = [decode_write(self.codec, f, v) for f, v in _pairs(writes)]
            pending.sort(key=lambda w: (w.task_path, w.task_id, w.idx))
            found.append(
                Checkpoint(
                    thread_id,
                    namespace,
                    checkpoint_id,
                    record.parent_id,
                    record.created_at,
                    json.loads(metadata),
                    record.body,
                    record.versions,
                    values,
                    tuple(pending),
                )
            )
        return found

    def _get(
        self, tenant: str, thread_id: str, namespace: str, checkpoint_id: str | None
    ) -> Flow[Checkpoint | None]:
        keys = self._keys(tenant, thread_id)
        if checkpoint_id is None:
            call = _script(scripts.READ, keys.all, "newest", namespace)
        else:
            call = _script(scripts.READ, keys.all, "members", member(namespace, checkpoint_id))
        found = self._checkpoints(thread_id, (yield call))
        return found[0] if found else None

    def _history(self, op: ops.ReadChannelHistory) -> Flow[dict[str, ChannelHistory] | None]:
        """`ReadChannelHistory`: the ancestry a page at a time (`scripts.WALK`, pages of
        `ops.HISTORY_PAGES`) through an `AncestorWalk`, then each seed's checkpoint read as
        `get` reads it. None when the parents loop or a seed's value does not rebuild (the
        paged walk reports or skips them)."""
        keys, ns = self._keys(op.tenant, op.thread_id), op.namespace
        start = op.checkpoint_id
        if start is None:
            newest = yield _command(
                "ZREVRANGEBYLEX", keys.ids, b"(" + ns.encode() + b"\x01", b"[" + member(ns, ""),
                "LIMIT", 0, 1,
            )  # fmt: skip
            start = split_member(newest[0])[1] if newest else None
        if start is None:
            return {ch: ChannelHistory() for ch in op.channels}
        walk = AncestorWalk(op.thread_id, op.channels, start)
        for page in count():
            limit = ops.HISTORY_PAGES[min(page, len(ops.HISTORY_PAGES) - 1)]
            walked = yield _script(scripts.WALK, keys.all, ns, start, limit)
            parent = walked[0][1] if page == 0 and walked else b""
            for m, up, versions_json, refs_json, rows, pairs in walked[1 if page == 0 else 0 :]:
                versions, refs = json.loads(versions_json), json.loads(refs_json)
                own = [decode_write(self.codec, f, v) for f, v in _pairs(pairs)]
                own.sort(key=lambda w: (w.task_path, w.task_id, w.idx))
                try:
                    walk.visit(split_member(m)[1], own, _holds_row(ns, versions, refs, set(rows)))
                except NotFound:
                    return None  # parents that loop: the paged walk reports it
                if walk.done:
                    break
                parent = up
            if walk.done or not parent or len(walked) <= limit:
                break  # every channel's value found, or no ancestor left to read
            start = parent.decode()
        read: dict[str, Checkpoint | None] = {}
        for seed in set(walk.seeds.values()):
            read[seed] = yield from self._get(op.tenant, op.thread_id, ns, seed)
        return walk.result_from(read)

    def _list(self, op: ops.ListCheckpoints) -> Flow[list[Checkpoint]]:
        if op.thread_id is not None:
            return (yield from self._list_thread(op, op.thread_id))
        threads = yield _command("ZRANGE", tenant_threads(self.key_prefix, op.tenant), 0, -1)
        found: list[Checkpoint] = []
        for name in threads:
            found += yield from self._list_thread(op, unescape(name))
        found.sort(key=lambda c: c.checkpoint_id, reverse=True)
        return found if op.limit is None else found[: op.limit]

    def _list_thread(self, op: ops.ListCheckpoints, thread_id: str) -> Flow[list[Checkpoint]]:
        keys = self._keys(op.tenant, thread_id)
        if op.limit == 0:
            return []
        if op.namespace is not None and op.checkpoint_id is None and not op.filter:
            limit = -1 if op.limit is None else op.limit
            reply = yield _script(
                scripts.READ, keys.all, "range", op.namespace, op.before or "", limit
            )
            return self._checkpoints(thread_id, reply)
        members: list[bytes] = []
        for m in (yield _command("ZRANGE", keys.ids, 0, -1)):
            namespace, checkpoint_id = split_member(m)
            if (
                (op.namespace is None or namespace == op.namespace)
                and (op.checkpoint_id is None or checkpoint_id == op.checkpoint_id)
                and (op.before is None or checkpoint_id < op.before)
            ):
                members.append(m)
        members.sort(key=lambda m: split_member(m)[1], reverse=True)
        if op.filter and members:
            metadata = yield _command("HMGET", keys.metadata, *members)
            members = [
                m
                for m, meta in zip(members, metadata, strict=True)
                if meta is not None and matches_filter(json.loads(meta), op.filter)
            ]
        if op.limit is not None:
            members = members[: op.limit]
        if not members:
            return []
        reply = yield _script(scripts.READ, keys.all, "members", *members)
        return self._checkpoints(thread_id, reply)

    # Deletion and retention.

    def _delete(self, tenant: str, thread_id: str) -> Flow[list[int]]:
        keys = self._keys(tenant, thread_id)
        base = run_base(self.key_prefix, tenant)
        removed: list[int] = yield _script(scripts.DELETE, keys.all, keys.member, base)
        return removed

    def _delete_count(self, tenant: str, thread_id: str) -> Flow[int]:
        return (yield from self._delete(tenant, thread_id))[0]

    def _drop(
        self,
        tenant: str,
        thread_id: str,
        choose: Callable[[_Dump], set[bytes]],
        *,
        collect: bool = False,
        dry_run: bool = False,
        index: bool = False,
        spare: bool = False,
    ) -> Flow[SweepResult]:
        """Remove the checkpoints ``choose`` picks from a thread's dump, with their writes and
        every row nothing else reads (all of the thread if no checkpoint is left).

        With ``collect``, rows nothing reads are dropped even when no checkpoint is; with
        ``index``, the thread's retention index scores are set exactly in the same step (and
        with ``collect`` its dirty mark cleared); with ``spare``, the history the checkpoints
        left rebuild delta channels from is kept (`spare_history`); with ``dry_run``, only
        counted.
        """
        keys = self._keys(tenant, thread_id)
        for _attempt in range(MAX_ATTEMPTS):
            dump = _Dump((yield _script(scripts.DUMP, keys.all, 0)))
            doomed = choose(dump) & set(dump.members)
            if doomed and spare and any(b"delta_" in m for m in dump.metadata.values()):
                records = yield _command("HMGET", keys.records, *dump.members)
                doomed = spare_history(doomed, dump.lineage(records))
            if not doomed and not collect and not index:
                return SweepResult()
            kept = [m for m in dump.members if m not in doomed]
            if not kept and dump.members:
                if dry_run:
                    return _whole(dump)
                counts = yield from self._delete(tenant, thread_id)
                return SweepResult(0, counts[0], counts[1], counts[2])
            dead = dump.dead_rows(kept) if doomed or collect else []
            if dry_run:
                return SweepResult(0, len(doomed), len(dead), dump.writes_of(doomed))
            if not doomed and not dead and not index:
                return SweepResult()
            mutations: list[str | bytes | int] = []
            for m in doomed:
                mutations += ("C", m)
            for field in dead:
                mutations += ("D", _KEYS["p"], field, "D", _KEYS["b"], field)
            if index:
                mutations += _exact(dump, kept, keys.member, clean=collect)
            reply = yield self._apply(
                keys, dump.version, None, mutations, bump=bool(doomed or dead)
            )
            if reply[0] == b"ok":
                return SweepResult(0, len(doomed), len(dead), dump.writes_of(doomed))
        raise Conflict(f"thread {thread_id!r} kept changing while being pruned: try again")

    def _delete_runs(self, tenant: str, run_ids: set[str]) -> Flow[int]:
        if not run_ids:
            return 0
        base = run_base(self.key_prefix, tenant)
        threads = yield _command("SUNION", *(base + escape(r) for r in sorted(run_ids)))

        def runs(dump: _Dump) -> set[bytes]:
            return {
                m
                for m, meta in dump.metadata.items()
                if isinstance(run := json.loads(meta).get("run_id"), str) and run in run_ids
            }

        removed = 0
        for name in sorted(threads):
            result = yield from self._drop(tenant, unescape(name), runs)
            removed += result.checkpoints
        return removed

    def _copy(self, tenant: str, source: str, target: str, now: datetime) -> Flow[int]:
        if source == target:
            return 0
        src, dst = self._keys(tenant, source), self._keys(tenant, target)
        copied: int = yield _script(
            scripts.COPY, (*src.all, *dst.own), dst.member, micros(now),
            run_base(self.key_prefix, tenant), self._default_ttl_ms, src.member,
        )  # fmt: skip
        if copied < 0:
            raise Conflict(
                f"thread {target!r} already has checkpoints: copy into a new thread id, or "
                "delete_thread the target first"
            )
        return copied

    def _prune(self, tenant: str, thread_ids: tuple[str, ...], keep_latest: bool) -> Flow[int]:
        removed = 0
        for thread_id in thread_ids:
            if not keep_latest:
                removed += (yield from self._delete(tenant, thread_id))[0]
                continue

            def older(dump: _Dump) -> set[bytes]:
                return {m for ms in dump.by_namespace().values() for m in ms[:-1]}

            result = yield from self._drop(tenant, thread_id, older, spare=True)
            removed += result.checkpoints
        return removed

    def _set_ttl(self, tenant: str, thread_id: str, ttl_seconds: float | None) -> Flow[bool]:
        keys = self._keys(tenant, thread_id)
        ttl = "" if ttl_seconds is None else max(1, round(ttl_seconds * 1000))
        return bool(
            (yield _script(scripts.SET_TTL, keys.all, ttl, self._default_ttl_ms, keys.member))
        )

    def _sweep(
        self, tenant: str | None, policy: RetentionPolicy, now: datetime, dry_run: bool
    ) -> Flow[ops.CheckpointSweep]:
        """Find what to remove through each tenant's indexes (`TenantIndexes`): whole threads
        past their own TTL or idle past the policy's, then the threads whose largest namespace
        holds more than ``keep_last``, whose oldest removable checkpoint is older than
        ``max_age_seconds``, or that a re-put left dirty."""
        if tenant is None:
            tenants = [
                unescape(t) for t in (yield _command("SMEMBERS", tenants_key(self.key_prefix)))
            ]
        else:
            tenants = [tenant]
        total = SweepResult()
        deleted: list[tuple[str, str]] = []
        stamp = micros(now)
        cutoff = None
        if policy.max_age_seconds is not None:
            cutoff = stamp - round(policy.max_age_seconds * 1_000_000)

        def doomed(dump: _Dump) -> set[bytes]:
            picked: set[bytes] = set()
            for members in dump.by_namespace().values():
                if policy.keep_last is not None:
                    picked.update(members[: -policy.keep_last])
                if cutoff is not None:
                    picked.update(m for m in members[:-1] if dump.created[m] < cutoff)
            return picked

        for name in sorted(tenants):
            t = tenant_indexes(self.key_prefix, name)
            idle: set[bytes] = set()
            owned = yield _command("ZRANGE", t.ttls, 0, -1)
            if owned:
                ttls = yield _command("ZMSCORE", t.ttls, *owned)
                updated = yield _command("ZMSCORE", t.threads, *owned)
                idle.update(
                    m for m, ttl, u in zip(owned, ttls, updated, strict=True)
                    if ttl is not None and u is not None and float(u) + float(ttl) * 1000 <= stamp
                )  # fmt: skip
            if policy.ttl_seconds is not None:
                since = stamp - round(policy.ttl_seconds * 1_000_000)
                idle.update((yield _command("ZRANGEBYSCORE", t.threads, "-inf", since)))
            gone: set[bytes] = set()
            for thread in sorted(idle):
                expired = yield from self._expire(name, unescape(thread), policy, stamp, dry_run)
                if expired is not None:
                    total += expired
                    gone.add(thread)
                    deleted.append((name, unescape(thread)))
            candidates: set[bytes] = set((yield _command("ZRANGE", t.dirty, 0, -1)))
            if policy.keep_last is not None:
                over = ("ZRANGEBYSCORE", t.sizes, f"({policy.keep_last}", "+inf")
                candidates.update((yield _command(*over)))
            if cutoff is not None:
                candidates.update((yield _command("ZRANGEBYSCORE", t.firsts, "-inf", f"({cutoff}")))
            for thread in sorted(candidates - gone):
                total += yield from self._drop(
                    name, unescape(thread), doomed,
                    collect=True, dry_run=dry_run, index=True, spare=True,
                )  # fmt: skip
        return ops.CheckpointSweep(total, tuple(deleted))

    def _expire(
        self, tenant: str, thread_id: str, policy: RetentionPolicy, stamp: int, dry_run: bool
    ) -> Flow[SweepResult | None]:
        """Delete a thread picked as idle if it is past its own TTL, or, without one, the
        policy's (a thread Redis has expired already just leaves the indexes); None: it
        stays."""
        keys = self._keys(tenant, thread_id)
        updated, own = yield _command("HMGET", keys.info, "u", "t")
        if updated is None:
            if not dry_run:
                yield from self._delete(tenant, thread_id)
            return SweepResult()
        ttl = policy.ttl_seconds if own is None else int(own) / 1000
        if ttl is None or int(updated) + ttl * 1_000_000 > stamp:
            return None
        if dry_run:
            return SweepResult(1) + _whole(_Dump((yield _script(scripts.DUMP, keys.all, 0))))
        counts = yield from self._delete(tenant, thread_id)
        return SweepResult(1, counts[0], counts[1], counts[2])

    def _backfill(self) -> Flow[int]:
        """Fill the retention indexes in for the threads written before layout 3 (its
        upgrade; idempotent); returns how many threads were indexed."""
        indexed = 0
        for name in (yield _command("SMEMBERS", tenants_key(self.key_prefix))):
            t = tenant_indexes(self.key_prefix, unescape(name))
            start = 0
            while True:
                found = yield _script(scripts.BACKFILL, t.all, t.base, start, _PAGE)
                indexed, start = indexed + found, start + _PAGE
                if found < _PAGE:
                    break
        return indexed

    def _stats(self, tenant: str, thread_id: str | None) -> Flow[StorageStats]:
        if thread_id is None:
            names = yield _command("ZRANGE", tenant_threads(self.key_prefix, tenant), 0, -1)
            threads = [unescape(n) for n in names]
        else:
            threads = [thread_id]
        stats = StorageStats()
        for name in threads:
            dump = _Dump((yield _script(scripts.DUMP, self._keys(tenant, name).all, 1)))
            if not dump.info:
                continue
            payloads, records, writes = (dict(_pairs(part)) for part in dump.full)
            checkpoint_bytes = 0
            for m, raw in records.items():
                record = decode_record(self.codec, raw)
                checkpoint_bytes += len(record.body.data) + len(record.versions_json)
                checkpoint_bytes += len(dump.metadata.get(m, b""))
            value_bytes = sum(
                decode_header(f, h, self.codec, payloads.get(f, b"j")).size
                for f, h in dump.headers.items()
            )
            write_bytes = sum(
                len(decode_write(self.codec, f, v).value.data) for f, v in writes.items()
            )
            stats = StorageStats(
                stats.threads + 1,
                stats.checkpoints + len(dump.members),
                stats.blobs + len(dump.headers),
                stats.writes + len(writes),
                stats.checkpoint_bytes + checkpoint_bytes,
                stats.value_bytes + value_bytes,
                stats.write_bytes + write_bytes,
            )
        return stats

    # Setup and lifecycle.

    def schema_steps(self) -> list[SchemaSteps]:
        """The checkpoint key layout's steps."""
        return [self._layout]

    def close(self) -> None:
        """Close the clients this store made (clients you passed in stay open)."""
        self._redis.close()

    async def aclose(self) -> None:
        """Close the clients this store made, the async one of this event loop included."""
        await self._redis.aclose()


def _exact(dump: _Dump, kept: list[bytes], thread: str, *, clean: bool) -> list[str | bytes | int]:
    """The mutations that score a thread in its tenant's retention indexes by the checkpoints
    it keeps (and, if ``clean``, drop its dirty mark)."""
    spaces: dict[str, list[bytes]] = {}
    for m in kept:
        spaces.setdefault(split_member(m)[0], []).append(m)
    largest = max((len(ms) for ms in spaces.values()), default=0)
    removable = [dump.created[m] for ms in spaces.values() for m in ms[:-1]]
    mutations: list[str | bytes | int] = []
    mutations += ("Z", _SIZES, largest, thread) if largest else ("R", _SIZES, thread)
    if removable:
        mutations += ("Z", _FIRSTS, min(removable), thread)
    else:
        mutations += ("R", _FIRSTS, thread)
    if clean:
        mutations += ("R", _DIRTY, thread)
    return mutations


def _whole(dump: _Dump) -> SweepResult:
    """What deleting the whole thread of ``dump`` removes."""
    return SweepResult(0, len(dump.members), len(dump.headers), len(dump.write_fields))
