"""Store operations as data.

A public store method validates its arguments, builds one of these frozen operations and hands it
to the backend's ``execute`` (sync) or ``aexecute`` (async). Backends implement only those two
entry points, so the public API is written once, in `memfold.stores`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from memfold.model import JSON, Message, MessageHit, ThreadInfo
from memfold.retention import RetentionPolicy, SweepResult

__all__ = [
    "AppendMessages",
    "ClearTenant",
    "ClearThread",
    "CountMessages",
    "DeleteMessages",
    "DeleteThread",
    "GetThread",
    "GetThreadTTL",
    "ListThreads",
    "LoadThread",
    "Op",
    "ReplaceThread",
    "RestoreThread",
    "ScrubSearchIndex",
    "SearchMessages",
    "SetThreadMetadata",
    "SetThreadTTL",
    "SweepThreads",
    "ThreadSweep",
    "UpdateMessages",
    "appended",
]

T = TypeVar("T")


class Op(Generic[T]):
    """An operation whose result has type ``T``."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AppendMessages(Op[None]):
    """Append messages (ids and times already assigned) with their stored bodies (their
    JSON without the id and a UTC time: see `memfold.backends.bodies`).

    With ``follows``, append only if the thread's last message has that id (``""``: only if
    the thread has no message), else raise `memfold.errors.Conflict` and change nothing. A
    tiered store appends to its hot tier this way, so the hot copy never holds a thread's
    messages in another order than the durable store.
    """

    tenant: str
    thread_id: str
    messages: tuple[Message, ...]
    bodies: tuple[str, ...]
    follows: str | None = None


def appended(
    tenant: str, thread_id: str, messages: tuple[Message, ...], bodies: tuple[str, ...]
) -> AppendMessages:
    """``AppendMessages(tenant, thread_id, messages, bodies)``, its slots set through their
    descriptors: every append builds one, in about half the time of the frozen dataclass's
    ``__init__`` (which has no checks to skip)."""
    op = _new(AppendMessages)
    _tenant(op, tenant)
    _thread_id(op, thread_id)
    _messages(op, messages)
    _bodies(op, bodies)
    _follows(op, None)
    return op


def _setter(name: str) -> Callable[[AppendMessages, object], None]:
    """The ``__set__`` of `AppendMessages`'s slot ``name``."""
    setter: Callable[[AppendMessages, object], None] = vars(AppendMessages)[name].__set__
    return setter


_new = object.__new__
_tenant, _thread_id, _messages = _setter("tenant"), _setter("thread_id"), _setter("messages")
_bodies, _follows = _setter("bodies"), _setter("follows")


@dataclass(frozen=True, slots=True)
class ReplaceThread(Op[None]):
    """Atomically swap a thread's messages for ``messages`` (created if missing)."""

    tenant: str
    thread_id: str
    messages: tuple[Message, ...]
    bodies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UpdateMessages(Op[None]):
    """Rewrite stored messages in place, matched by id; every id must be in the thread. With
    ``keep_times`` (a key rotation's rewrite), the thread's update time and TTL stay."""

    tenant: str
    thread_id: str
    messages: tuple[Message, ...]
    bodies: tuple[str, ...]
    keep_times: bool = False


@dataclass(frozen=True, slots=True)
class ScrubSearchIndex(Op[None]):
    """Rewrite the full-text index so it keeps no word of messages rewritten or deleted
    (SQLite's FTS5 keeps them in old segments until those merge); nothing elsewhere."""

    tenant: str


@dataclass(frozen=True, slots=True)
class DeleteMessages(Op[list[Message]]):
    """Remove messages by id; returns the ones that were there, oldest first."""

    tenant: str
    thread_id: str
    message_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LoadThread(Op[list[Message]]):
    """Read a thread in order: all of it, its last ``last`` messages, or those before ``before``."""

    tenant: str
    thread_id: str
    last: int | None = None
    before: str | None = None


@dataclass(frozen=True, slots=True)
class CountMessages(Op[int]):
    """Count the messages of a thread."""

    tenant: str
    thread_id: str


@dataclass(frozen=True, slots=True)
class GetThread(Op[ThreadInfo]):
    """Describe one thread."""

    tenant: str
    thread_id: str


@dataclass(frozen=True, slots=True)
class ListThreads(Op[list[ThreadInfo]]):
    """List a tenant's threads, most recently updated first."""

    tenant: str
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class SetThreadMetadata(Op[ThreadInfo]):
    """Replace a thread's metadata, creating the thread if needed."""

    tenant: str
    thread_id: str
    metadata: Mapping[str, JSON]
    encoded: str


@dataclass(frozen=True, slots=True)
class RestoreThread(Op[ThreadInfo]):
    """Give a thread the metadata and the creation and update times it was exported with,
    creating it if needed (the last step of an import or a migration)."""

    tenant: str
    thread_id: str
    metadata: Mapping[str, JSON]
    encoded: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ClearThread(Op[int]):
    """Remove a thread's messages but keep the thread; returns how many were removed."""

    tenant: str
    thread_id: str


@dataclass(frozen=True, slots=True)
class DeleteThread(Op[bool]):
    """Remove a thread and its messages; returns whether it existed."""

    tenant: str
    thread_id: str


@dataclass(frozen=True, slots=True)
class ClearTenant(Op[int]):
    """Remove every thread of a tenant; returns how many threads were removed."""

    tenant: str


@dataclass(frozen=True, slots=True)
class SearchMessages(Op[list[MessageHit]]):
    """Full-text search in one thread, or across a tenant when ``thread_id`` is None."""

    tenant: str
    query: str
    thread_id: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class GetThreadTTL(Op[float | None]):
    """A thread's own time to live in seconds (None: it has none, or there is no thread)."""

    tenant: str
    thread_id: str


@dataclass(frozen=True, slots=True)
class SetThreadTTL(Op[bool]):
    """Set or clear a thread's own time to live; returns whether the thread exists."""

    tenant: str
    thread_id: str
    ttl_seconds: float | None


@dataclass(frozen=True, slots=True)
class ThreadSweep:
    """What a thread sweep removed, and the ``(tenant, thread_id)`` of every thread it changed
    or deleted (a tiered store drops those from its hot tier)."""

    removed: SweepResult
    changed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SweepThreads(Op[ThreadSweep]):
    """Apply a retention policy to one tenant's threads, or every tenant's when ``tenant`` is
    None; with ``dry_run``, only count."""

    tenant: str | None
    policy: RetentionPolicy
    now: datetime
    dry_run: bool = False
