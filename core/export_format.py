"""The memfold export format: versioned JSON lines holding every store kind.

An export is UTF-8 text with one JSON object per line (blank lines are ignored). Version 5,
written by this memfold, holds one tenant's records:

1. a ``header`` line: ``{"format": "memfold", "version": 5, "kinds": [...], "tenant": ...,
   "selection": {...}, "exported_at": ..., "memfold_version": ...}``; ``kinds`` lists what
   the file may hold (``threads``, ``checkpoints``, ``memories``) and ``selection`` the
   user and time filters it was written with;
2. ``threads``: per thread one ``thread`` line (`memfold.ThreadInfo.to_dict`, whose
   ``message_count`` is how many ``message`` lines follow, and ``ttl_seconds``: the thread's
   own TTL, `memfold.stores.BaseThreadStore.set_thread_ttl`, or null), then those ``message`` lines
   (``{"type": "message", "tenant", "thread_id", "message": Message.to_dict}``, oldest first,
   each with its ``id`` and ``created_at``);
3. ``checkpoints``: per checkpoint thread its ``checkpoint`` lines, oldest first (a parent
   before its children), then its ``journal`` lines (effect journal entries); the thread's
   first line (its first checkpoint line, or its first journal line when the file holds none
   of its checkpoints) also carries ``thread_ttl_seconds``: the checkpoint thread's own TTL,
   `memfold.checkpoints.BaseCheckpointStore.set_thread_ttl`, or null (no other line may);
4. ``memories``: per namespace its ``memory`` lines;
5. an ``end`` line: ``{"type": "end", "counts": {"threads": n, "messages": n, "checkpoints":
   n, "journal_entries": n, "memories": n}}``, so a truncated file is refused.

Lines other than the header carry ``"type"``. Times are ISO 8601 with a UTC offset; bytes are
base64 (standard alphabet, padded). The other lines hold:

```text
{"type": "checkpoint", "tenant", "thread_id", "namespace", "checkpoint_id", "parent_id",
 "created_at", "metadata": {...}, "versions": {channel: version},
 "body": {"tag", "data"}, "values": {channel: {"tag", "data"} or {"tag", "items": [...]}},
 "writes": [{"task_id", "idx", "channel", "task_path", "value": {"tag", "data"}}]}
{"type": "journal", "tenant", "thread_id", "namespace", "tool_call_id", "recorded_at",
 "origin", "value": {"tag", "data"}}
{"type": "memory", "namespace": [labels], "id", "text", "value": {...}, "embedding": base64
 of little-endian float32 or null, "embedding_model", "importance", "ttl_seconds",
 "created_at", "updated_at", "last_used_at", "expires_at"}
```

A channel value keeps the serializer's type tag beside its bytes (``items`` for a list stored
item by item, `memfold.checkpoint_model.SequenceBlob`); every checkpoint line holds all its
values, so a line stands alone. Key-value entries are memories. A thread's own TTL, of a
thread or of a checkpoint thread, still counts from its last write, whose time (a thread's
``updated_at``, its checkpoints' ``created_at``) an import keeps: its clock does not restart.
Leases are not exported (a restored thread has no writer).

Version 4 files (the same without the journal lines' ``origin``: their entries name no
checkpoint, `memfold.journal.JournalEntry`), version 3 files (also without
``thread_ttl_seconds``: their checkpoint threads import without a TTL of their own), version 2
files (also without the thread lines' ``ttl_seconds``:
neither threads nor checkpoint threads have one) and version 1 files (``"kind": "threads"``,
thread and message lines, no end line) still import. A file of a newer version is refused
rather than half-understood.

Examples:
    >>> from datetime import UTC, datetime
    >>> from memfold.memory_model import MemoryRecord
    >>> when = datetime(2026, 1, 1, tzinfo=UTC)
    >>> record = MemoryRecord(("acme", "ann"), "m1", "likes tea", {"k": 1}, importance=0.5,
    ...                       created_at=when, updated_at=when, last_used_at=when)
    >>> read_memory(2, memory_line(record)) == record
    True
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import IO, Any, Final

import numpy as np

from memfold.checkpoint_model import Blob, Checkpoint, PendingWrite, SequenceBlob
from memfold.errors import InvalidInput
from memfold.journal import JournalEntry
from memfold.memory_model import MemoryRecord
from memfold.model import JSON, Message, ThreadInfo
from memfold.retention import check_seconds
from memfold.stores import check_id, check_time, encode_json

__all__ = [
    "CHECKPOINT_TTL_VERSION",
    "FORMAT_VERSION",
    "KINDS",
    "THREAD_TTL_FIELD",
    "TTL_VERSION",
    "Counts",
    "Header",
    "Selection",
    "bad",
    "check_kinds",
    "checkpoint_line",
    "dumps",
    "end_line",
    "header_line",
    "journal_line",
    "memory_line",
    "message_line",
    "read_checkpoint",
    "read_checkpoint_thread_ttl",
    "read_end",
    "read_header",
    "read_journal",
    "read_lines",
    "read_memory",
    "read_message",
    "read_thread",
    "read_thread_ttl",
    "thread_line",
    "with_thread_ttl",
]

FORMAT_VERSION: Final = 5
"""The export format version this memfold writes; it reads this one and versions 1 to 4."""

TTL_VERSION: Final = 3
"""The first version whose thread lines carry the thread's own TTL."""

CHECKPOINT_TTL_VERSION: Final = 4
"""The first version whose checkpoint threads' first lines carry the thread's own TTL."""

THREAD_TTL_FIELD: Final = "thread_ttl_seconds"
"""The field of a checkpoint thread's first line that holds the thread's own TTL."""

KINDS: Final = ("threads", "checkpoints", "memories")
"""The store kinds an export may hold, in file order."""


def check_kinds(kinds: str | Collection[str]) -> tuple[str, ...]:
    """``kinds`` (a collection, or names separated by commas) as known kinds in file order.

    Examples:
        >>> check_kinds("memories,threads")
        ('threads', 'memories')
    """
    if not isinstance(kinds, str | Collection):
        raise InvalidInput(f"kinds must name some of {', '.join(KINDS)}, got {kinds!r}")
    names = kinds.split(",") if isinstance(kinds, str) else list(kinds)
    chosen = {name.strip() for name in names if isinstance(name, str)}
    unknown = sorted(chosen - set(KINDS)) + [repr(n) for n in names if not isinstance(n, str)]
    if unknown or not chosen:
        raise InvalidInput(f"kinds must name some of {', '.join(KINDS)}, got {kinds!r}")
    return tuple(k for k in KINDS if k in chosen)


@dataclass(frozen=True, slots=True)
class Counts:
    """How many records an export wrote or an import read, by kind (the ``end`` line's
    counts)."""

    threads: int = 0
    messages: int = 0
    checkpoints: int = 0
    journal_entries: int = 0
    memories: int = 0

    @classmethod
    def of(cls, tally: Mapping[str, int]) -> Counts:
        """Counts from a mapping of field names (missing ones are 0)."""
        return cls(**{f.name: tally.get(f.name, 0) for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class Selection:
    """Which records an export writes, or an import reads from a file.

    ``user`` keeps threads whose metadata ``user_id`` is it, checkpoint threads with a
    checkpoint whose metadata ``user_id`` is it (the whole thread then), and memories whose
    namespace's second label (after the tenant) is it. ``since`` (inclusive) and ``until``
    (exclusive) keep messages by ``created_at``, checkpoints by ``created_at``, journal entries
    by ``recorded_at`` and memories by ``updated_at``; a thread is kept when one of its
    messages is, or (for its metadata alone) when its ``updated_at`` is in the window.
    """

    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.user is not None:
            check_id(self.user, "user")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                check_time(value, name)
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidInput(f"since ({self.since}) must be before until ({self.until})")

    def covers(self, when: datetime | None) -> bool:
        """Whether a record stamped ``when`` is inside the time window."""
        if when is None:
            return self.since is None and self.until is None
        return (self.since is None or when >= self.since) and (
            self.until is None or when < self.until
        )

    def owns(self, metadata: Mapping[str, JSON]) -> bool:
        """Whether thread or checkpoint ``metadata`` names the selected user (any without one)."""
        return self.user is None or metadata.get("user_id") == self.user

    def owns_namespace(self, namespace: Sequence[str]) -> bool:
        """Whether a memory namespace belongs to the selected user (any without one)."""
        return self.user is None or (len(namespace) > 1 and namespace[1] == self.user)

    def to_dict(self) -> dict[str, JSON]:
        """The selection as the header records it."""
        return {
            "user": self.user,
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Header:
    """What a file's first line says."""

    version: int
    kinds: tuple[str, ...]
    tenant: str | None


# Writing.


def dumps(line: Mapping[str, JSON]) -> str:
    """One line of the file: compact JSON and a newline.

    Raises:
        InvalidInput: the line holds something JSON cannot (a set, bytes, NaN, a cycle).
    """
    try:
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"the line is not JSON: {exc}") from exc


def header_line(
    kinds: Sequence[str], tenant: str, selection: Selection, exported_at: datetime, version: str
) -> dict[str, JSON]:
    """The header of a file of this memfold's version (`FORMAT_VERSION`)."""
    return {
        "format": "memfold",
        "version": FORMAT_VERSION,
        "kinds": list(kinds),
        "tenant": tenant,
        "selection": selection.to_dict(),
        "exported_at": exported_at.isoformat(),
        "memfold_version": version,
    }


def thread_line(info: ThreadInfo, count: int, ttl_seconds: float | None = None) -> dict[str, JSON]:
    """A thread line announcing ``count`` message lines, with the thread's own TTL."""
    return {"type": "thread", **info.to_dict(), "message_count": count, "ttl_seconds": ttl_seconds}


def message_line(tenant: str, thread_id: str, message: Message) -> dict[str, JSON]:
    """A message line."""
    return {
        "type": "message",
        "thread_id": thread_id,
        "tenant": tenant,
        "message": message.to_dict(),
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _blob(value: Blob | SequenceBlob) -> dict[str, JSON]:
    if isinstance(value, SequenceBlob):
        return {"tag": value.tag, "items": [_b64(item) for item in value.items]}
    return {"tag": value.tag, "data": _b64(value.data)}


def checkpoint_line(tenant: str, c: Checkpoint) -> dict[str, JSON]:
    """A checkpoint line: the checkpoint with all its values and pending writes."""
    return {
        "type": "checkpoint",
        "tenant": tenant,
        "thread_id": c.thread_id,
        "namespace": c.namespace,
        "checkpoint_id": c.checkpoint_id,
        "parent_id": c.parent_id,
        "created_at": c.created_at.isoformat(),
        "metadata": dict(c.metadata),
        "versions": dict(c.versions),
        "body": _blob(c.body),
        "values": {channel: _blob(value) for channel, value in c.values.items()},
        "writes": [
            {
                "task_id": w.task_id,
                "idx": w.idx,
                "channel": w.channel,
                "task_path": w.task_path,
                "value": _blob(w.value),
            }
            for w in c.writes
        ],
    }


def journal_line(tenant: str, entry: JournalEntry) -> dict[str, JSON]:
    """A journal line."""
    return {
        "type": "journal",
        "tenant": tenant,
        "thread_id": entry.thread_id,
        "namespace": entry.namespace,
        "tool_call_id": entry.tool_call_id,
        "recorded_at": entry.recorded_at.isoformat(),
        "origin": entry.origin,
        "value": _blob(entry.value),
    }


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def memory_line(record: MemoryRecord) -> dict[str, JSON]:
    """A memory line (the embedding as base64 little-endian float32)."""
    embedding = None
    if record.embedding is not None:
        embedding = _b64(np.asarray(record.embedding, dtype="<f4").tobytes())
    return {
        "type": "memory",
        "namespace": list(record.namespace),
        "id": record.id,
        "text": record.text,
        "value": dict(record.value),
        "embedding": embedding,
        "embedding_model": record.embedding_model,
        "importance": record.importance,
        "ttl_seconds": record.ttl_seconds,
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "last_used_at": _iso(record.last_used_at),
        "expires_at": _iso(record.expires_at),
    }


def with_thread_ttl(line: Mapping[str, JSON], ttl_seconds: float | None) -> dict[str, JSON]:
    """A checkpoint thread's first line (a checkpoint or journal line) with the thread's own
    TTL, `memfold.checkpoints.BaseCheckpointStore.set_thread_ttl` (None: it has none)."""
    return {**line, THREAD_TTL_FIELD: ttl_seconds}


def end_line(counts: Counts) -> dict[str, JSON]:
    """The last line: how many records of each kind the file holds."""
    return {"type": "end", "counts": dict(asdict(counts))}


# Reading.


def bad(number: int, problem: str) -> InvalidInput:
    """The error for a malformed line."""
    return InvalidInput(f"line {number}: {problem}")


@contextmanager
def _at(number: int, what: str) -> Iterator[None]:
    """Report any problem met while reading ``what`` as `InvalidInput` naming the line."""
    try:
        yield
    except InvalidInput as exc:
        raise bad(number, str(exc)) from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise bad(number, f"not a valid {what} ({type(exc).__name__}: {exc})") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_lines(source: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The non-blank lines of ``source`` as JSON objects, with their 1-based line numbers."""
    number = 0
    lines = iter(source)
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise bad(number + 1, f"not UTF-8 text ({exc.reason})") from exc
        number += 1
        if not raw.strip():
            continue
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise bad(number, f"not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise bad(number, f"expected a JSON object, got {type(data).__name__}")
        yield number, data


def read_header(number: int, data: Mapping[str, Any]) -> Header:
    """The header's version, kinds and tenant, or `InvalidInput`."""
    if data.get("format") != "memfold":
        raise bad(number, 'expected the header {"format": "memfold", ...}: not a memfold export')
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise bad(number, f"the header's version must be an int, got {version!r}")
    if version > FORMAT_VERSION:
        raise bad(
            number,
            f"this file uses export format version {version}, but this memfold reads up to "
            f"version {FORMAT_VERSION}: upgrade memfold to import it",
        )
    if version < 1:
        raise bad(number, f"unknown export format version {version}")
    if version == 1:
        if data.get("kind") != "threads":
            raise bad(number, f"this export holds {data.get('kind')!r}, not 'threads'")
        return Header(1, ("threads",), None)
    kinds = data.get("kinds")
    if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
        raise bad(number, f"the header's kinds must be a list of {', '.join(KINDS)}, got {kinds!r}")
    with _at(number, "header"):
        tenant = check_id(data.get("tenant"), "the header's tenant")
    return Header(version, tuple(kinds), tenant)


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string, got {type(value).__name__}")
    return value


def _time(data: Mapping[str, Any], key: str, *, optional: bool = False) -> datetime | None:
    value = data[key] if not optional else data.get(key)
    if value is None and optional:
        return None
    return check_time(datetime.fromisoformat(_text(data, key)), key)


def _json_object(value: object, what: str) -> dict[str, JSON]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    encode_json(value, what)  # valid Unicode text throughout
    return value


def _bytes(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be base64 text, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{what} is not valid base64 ({exc})") from exc


def _typed(value: object, what: str) -> Blob:
    if not isinstance(value, dict) or not isinstance(value.get("tag"), str):
        raise InvalidInput(f"{what} must be an object with a str 'tag' and base64 'data'")
    return Blob(value["tag"], _bytes(value.get("data"), what))


def _value(value: object, what: str) -> Blob | SequenceBlob:
    if isinstance(value, dict) and "items" in value:
        items = value["items"]
        if not isinstance(value.get("tag"), str) or not isinstance(items, list):
            raise InvalidInput(f"{what} must have a str 'tag' and a list of base64 'items'")
        return SequenceBlob(value["tag"], tuple(_bytes(i, f"an item of {what}") for i in items))
    return _typed(value, what)


def read_thread(number: int, data: Mapping[str, Any]) -> ThreadInfo:
    """A thread line as `ThreadInfo` (``message_count``: the message lines that follow)."""
    with _at(number, "thread line"):
        info = ThreadInfo.from_dict(data)
        check_id(info.tenant, "tenant")
        check_id(info.thread_id, "thread id")
        check_time(info.created_at, "created_at")
        check_time(info.updated_at, "updated_at")
        count = info.message_count
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInput(f"message_count must be an int >= 0, got {count!r}")
        _json_object(info.metadata, "thread metadata")
    return info


def read_thread_ttl(number: int, data: Mapping[str, Any]) -> float | None:
    """A thread line's ``ttl_seconds``: the thread's own TTL, or None (also when absent)."""
    with _at(number, "thread line"):
        return check_seconds(data.get("ttl_seconds"), "ttl_seconds")


def read_message(number: int, data: Mapping[str, Any]) -> Message:
    """A message line's message, with its id and time checked."""
    body = data.get("message")
    if not isinstance(body, dict):
        raise bad(number, "a message line needs a 'message' object")
    try:
        message = Message.from_dict(body)
        for key in ("id", "created_at"):
            if getattr(message, key) is None:
                raise InvalidInput(f"an exported message needs {key!r}; this one has none")
        check_id(message.id, "message id")
        _ = message.text  # every text part must be a str
        encode_json(message.to_dict(), f"message {message.id!r}")
    except (InvalidInput, TypeError, ValueError, AttributeError) as exc:
        problem = str(exc) if isinstance(exc, InvalidInput) else f"{type(exc).__name__}: {exc}"
        raise bad(number, f"not a valid message: {problem}") from exc
    return message


def read_checkpoint(number: int, data: Mapping[str, Any]) -> tuple[str, Checkpoint]:
    """A checkpoint line's tenant and checkpoint (ids and values are checked by the store's
    own validation when imported)."""
    with _at(number, "checkpoint line"):
        versions = data["versions"]
        values = data["values"]
        writes = data["writes"]
        if not isinstance(versions, dict) or not isinstance(values, dict):
            raise InvalidInput("versions and values must be JSON objects")
        if not isinstance(writes, list):
            raise InvalidInput("writes must be a list")
        parent = data["parent_id"]
        checkpoint = Checkpoint(
            _text(data, "thread_id"),
            _text(data, "namespace"),
            _text(data, "checkpoint_id"),
            None if parent is None else _text(data, "parent_id"),
            _time(data, "created_at"),  # type: ignore[arg-type]  # required: never None
            _json_object(data["metadata"], "checkpoint metadata"),
            _typed(data["body"], "the body"),
            versions,
            {ch: _value(v, f"the value of channel {ch!r}") for ch, v in values.items()},
            tuple(
                PendingWrite(
                    w["task_id"],
                    w["idx"],
                    w["channel"],
                    _typed(w["value"], "a write's value"),
                    w["task_path"],
                )
                for w in writes
            ),
        )
        return _text(data, "tenant"), checkpoint


def read_checkpoint_thread_ttl(number: int, data: Mapping[str, Any]) -> float | None:
    """A checkpoint thread's first line's ``thread_ttl_seconds``: the thread's own TTL, or None
    (also when absent)."""
    with _at(number, "checkpoint thread's first line"):
        return check_seconds(data.get(THREAD_TTL_FIELD), THREAD_TTL_FIELD)


def read_journal(number: int, data: Mapping[str, Any]) -> tuple[str, JournalEntry]:
    """A journal line's tenant and entry."""
    with _at(number, "journal line"):
        entry = JournalEntry(
            _text(data, "thread_id"),
            _text(data, "namespace"),
            _text(data, "tool_call_id"),
            _typed(data["value"], "the entry's value"),
            _time(data, "recorded_at"),  # type: ignore[arg-type]  # required: never None
            _text(data, "origin") if "origin" in data else "",  # absent before version 5
        )
        return _text(data, "tenant"), entry


def read_memory(number: int, data: Mapping[str, Any]) -> MemoryRecord:
    """A memory line's record (labels, ids, ranges and vectors are checked by the store's own
    validation when imported)."""
    with _at(number, "memory line"):
        namespace = data["namespace"]
        if not isinstance(namespace, list) or not all(isinstance(x, str) for x in namespace):
            raise InvalidInput("namespace must be a list of str labels")
        embedding = data["embedding"]
        vector = None
        if embedding is not None:
            raw = _bytes(embedding, "embedding")
            if not raw or len(raw) % 4:
                raise InvalidInput("embedding must hold whole float32 numbers")
            vector = tuple(np.frombuffer(raw, dtype="<f4").tolist())
        model = data["embedding_model"]
        importance, ttl = data["importance"], data["ttl_seconds"]
        for name, number_value in (("importance", importance), ("ttl_seconds", ttl)):
            if number_value is not None and (
                isinstance(number_value, bool) or not isinstance(number_value, int | float)
            ):
                raise InvalidInput(f"{name} must be a number, got {number_value!r}")
        return MemoryRecord(
            tuple(namespace),
            _text(data, "id"),
            _text(data, "text"),
            _json_object(data["value"], "a memory's value"),
            vector,
            None if model is None else _text(data, "embedding_model"),
            importance,
            ttl,
            _time(data, "created_at"),
            _time(data, "updated_at"),
            _time(data, "last_used_at"),
            _time(data, "expires_at", optional=True),
        )


def read_end(number: int, data: Mapping[str, Any]) -> Counts:
    """The end line's counts."""
    counts = data.get("counts")
    names = {f.name for f in fields(Counts)}
    if (
        not isinstance(counts, dict)
        or set(counts) != names
        or not all(type(n) is int and n >= 0 for n in counts.values())
    ):
        raise bad(number, f"the end line needs counts of {', '.join(sorted(names))}")
    return Counts.of(counts)
