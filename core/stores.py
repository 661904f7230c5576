"""Store protocols, capabilities, and the public thread API written once over operations.

A backend subclasses `BaseThreadStore` and implements two methods, ``execute(op)`` and
``aexecute(op)``; everything public (validation, id assignment, sync and async twins) lives here.

Examples:
    >>> from memfold import Message, open_store
    >>> store = open_store("memory://")
    >>> _ = store.append("t1", [Message(role="user", content="hello")])
    >>> [m.content for m in store.load("t1")]
    ['hello']
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Protocol, Self, TypeVar, cast, runtime_checkable

from memfold import ops
from memfold.encryption import (
    ENCRYPTED_METADATA,
    Keyring,
    check_keyring,
    check_plain_metadata,
    check_plain_parts,
    open_hits,
    open_infos,
    open_messages,
    seal_message,
    seal_metadata,
)
from memfold.errors import Conflict, InvalidInput, UnsupportedOperation
from memfold.limits import DEFAULT_LIMITS, EARLIEST_TIME, LATEST_TIME, Limits, check_tree
from memfold.model import (
    JSON,
    ROLES,
    Message,
    MessageHit,
    ThreadInfo,
    ensure_sequence,
    stamped,
    utcnow,
)
from memfold.redaction import Redactor, check_redactor
from memfold.retention import (
    RetentionPolicy,
    Sweepable,
    SweepResult,
    check_policy,
    check_seconds,
)
from memfold.rotation import Progress, adrive, drive, rotate_threads
from memfold.schema_steps import SchemaSteps

__all__ = [
    "DEFAULT_TENANT",
    "MAX_ID_LENGTH",
    "BaseStore",
    "BaseThreadStore",
    "Capabilities",
    "ThreadStore",
    "check_flag",
    "check_id",
    "check_time",
    "new_id",
    "not_following",
    "random_10",
]

T = TypeVar("T")

DEFAULT_TENANT: Final = "default"
"""The tenant used when a call names none (single-tenant apps)."""

MAX_ID_LENGTH: Final = 512
"""The longest id accepted (thread, tenant, message, memory, checkpoint), in UTF-8 bytes: 512
ASCII characters, fewer of others (PostgreSQL indexes keys of a few ids together, and one index
entry holds at most 2,704 bytes)."""

MAX_PAGE: Final = 10_000


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do; a call that needs a missing capability raises
    `memfold.errors.UnsupportedOperation`."""

    persistent: bool = False
    """Data outlives the process."""
    shared: bool = False
    """Several processes can use the same data at once."""
    transactions: bool = False
    """Multi-row writes are atomic."""
    full_text_search: bool = False
    """``search`` ranks messages by their words."""
    ttl: bool = False
    """Threads can expire."""
    vector_search: bool = False
    """Memories can be stored with vectors and searched by them."""
    effect_journal: bool = False
    """The store keeps an effect journal of completed tool calls (see `memfold.journal`)."""
    encrypted: bool = False
    """Content is encrypted at rest (see `memfold.encryption`), which turns full-text search
    off; vector search, listing and metadata keep working."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise InvalidInput(f"Capabilities.{f.name} must be True or False")

    def require(self, name: str, backend: str) -> None:
        """Raise `UnsupportedOperation` unless capability ``name`` is declared (`InvalidInput`
        for a name that is no capability)."""
        if not isinstance(name, str) or name not in {f.name for f in fields(self)}:
            raise InvalidInput(f"unknown capability {name!r}")
        if not getattr(self, name):
            raise UnsupportedOperation(
                f"the {backend} backend does not support {name.replace('_', ' ')}: "
                "check store.capabilities first, or open a backend that declares it"
            )


def check_id(value: object, what: str) -> str:
    """Return ``value`` if it is a usable id, else raise `InvalidInput`."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"{what} is {len(value)} characters; the limit is {MAX_ID_LENGTH} bytes")
    if "\x00" in value:
        raise InvalidInput(f"{what} must not contain NUL characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid Unicode text: {exc.reason}") from exc
    if size > MAX_ID_LENGTH:
        raise InvalidInput(
            f"{what} is {size} bytes of UTF-8; the limit is {MAX_ID_LENGTH} (MAX_ID_LENGTH, fixed "
            "by the key columns): use a shorter id, such as a hash of this one"
        )
    return value


def check_flag(value: object, what: str) -> bool:
    """``value`` as a bool (None is False), or `InvalidInput`."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be True or False, got {value!r}")
    return value


def check_time(value: object, what: str) -> datetime:
    """Return ``value`` if it is a timezone-aware datetime from `memfold.limits.EARLIEST_TIME`
    to before `memfold.limits.LATEST_TIME` (the times every backend stores exactly), else
    raise `InvalidInput`."""
    if not isinstance(value, datetime):
        raise InvalidInput(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{what} must be timezone-aware: use datetime.now(UTC)")
    if not EARLIEST_TIME <= value < LATEST_TIME:
        raise InvalidInput(
            f"{what} must be from 1970-01-01 to before 2200-01-01 (UTC), the times every "
            f"backend stores exactly, got {value.isoformat()}"
        )
    return value


def not_following(thread_id: str, follows: str, last: str | None) -> Conflict:
    """The error for an `ops.AppendMessages` whose ``follows`` is not the thread's last
    message (``last``; None or ``""``: the thread has none)."""
    return Conflict(
        f"thread {thread_id!r} ends with message {last or None!r}, not {follows or None!r}, so "
        "nothing was appended: read the thread again and append after its last message"
    )


def _check_count(value: object, what: str, *, low: int = 0, high: int = MAX_PAGE) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{what} must be an int from {low} to {high}, got {value!r}")
    return value


def _compact_encoder() -> Callable[[object], str]:
    """Compact JSON encoding (no NaN), by the C encoder built once when the interpreter has
    one: ``JSONEncoder.encode`` builds it anew on every call. Cycles are not looked for (a
    cyclic value fails with `RecursionError`; `check_tree` refuses such depth first)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython has the C encoder
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

    def default(value: object) -> object:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    # markers (None: no cycle check), default, str encoder, indent, separators, sort_keys,
    # skipkeys, allow_nan: as JSONEncoder(ensure_ascii=False, separators=(",", ":"),
    # allow_nan=False, check_circular=False) passes them.
    chunks = make(None, default, json.encoder.encode_basestring, None, ":", ",", *(False,) * 3)
    return lambda value: "".join(chunks(value, 0))


_encode = _compact_encoder()
_quote = json.encoder.encode_basestring
"""A str as a JSON string (as `_encode` writes it)."""


def encode_json(
    value: object,
    what: str,
    limits: Limits | None = None,
    size_limit: str | None = None,
    *,
    nul: bool = True,
) -> str:
    """JSON text for ``value``, or `InvalidInput` naming what could not be encoded.

    With ``limits``, ``value`` is first checked with `memfold.limits.check_tree` (depth, str
    keys, and NUL characters unless ``nul``), and its UTF-8 size against the limit named
    ``size_limit``.
    """
    if limits is not None:
        rough = check_tree(value, what, limits, nul=nul)
        if size_limit is not None:
            limits.check(size_limit, what, rough, "bytes or more")
    encoded, size = _encoded(value, what)
    if limits is not None and size_limit is not None:
        limits.check(size_limit, what, size, "bytes of JSON")
    return encoded


def _encoded(value: object, what: str) -> tuple[str, int]:
    """JSON text for ``value`` and its size in UTF-8 bytes."""
    try:
        encoded = _encode(value)
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} holds text that is not valid Unicode") from exc
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"{what} is not JSON-serialisable: {exc}") from exc
    return encoded, _utf8_size(encoded, what)


_RANDOM: deque[bytes] = deque()
"""Ten `os.urandom` bytes for each of the next ids and stamps, read 400 at a time (a system
call per id cost more than the rest of an append's Python, and releases the GIL); `deque.popleft`
hands each out once, whichever thread asks."""
os.register_at_fork(after_in_child=_RANDOM.clear)  # a child must not make its parent's ids


def random_10() -> bytes:
    """Ten fresh random bytes from the pool (`os.urandom`, never repeated in a forked child)."""
    try:
        return _RANDOM.popleft()
    except IndexError:
        pool = os.urandom(4000)
        _RANDOM.extend([pool[i : i + 10] for i in range(10, 4000, 10)])
        return pool[:10]


def new_id() -> str:
    """A UUIDv7 as 32 hex digits: random, but sorting by creation time, so indexes stay local."""
    r = random_10()
    # 48 bits of milliseconds, version 7 and 12 random bits, variant 0b10 and 62 random bits.
    head = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    return (head + bytes((0x70 | r[0] & 0x0F, r[1], 0x80 | r[2] & 0x3F)) + r[3:]).hex()


def _rough_size(message: Message) -> int:
    """A cheap lower bound of a message's JSON size: the characters of its content."""
    if isinstance(message.content, str):
        return len(message.content)
    fields = [f for p in message.content for f in (p.text, p.data, p.url)]
    return sum(len(f) for f in fields if isinstance(f, str))


def check_message(message: Message, what: str, limits: Limits) -> str:
    """The stored body of ``message`` (its id and time filled in; see
    `memfold.backends.bodies`), checked against ``limits``, which count the whole JSON of the
    message, id and time included.

    Raises:
        LimitExceeded: the message is too large, or its metadata, tool-call arguments or
            part extras nest too deeply.
        InvalidInput: something in it JSON cannot hold exactly, or a part of the type
            memfold reserves for encrypted messages (`memfold.encryption.ENCRYPTED_PART`).
    """
    content = message.content
    head = _PLAIN_HEAD.get(message.role)
    if head is not None and type(content) is str and _plain(message):
        limits.check("max_message_bytes", what, len(content), "bytes or more")
        body = head + _quote(content) + "}"
        size = _utf8_size(body, what) + _left_out(message, None)
        limits.check("max_message_bytes", what, size, "bytes of JSON")
        return body
    rough = _rough_size(message)
    limits.check("max_message_bytes", what, rough, "bytes or more")
    if message.metadata:
        rough += check_tree(message.metadata, f"the metadata of {what}", limits)
    for call in message.tool_calls:
        rough += check_tree(call.arguments, f"the arguments of a tool call in {what}", limits)
    if not isinstance(content, str):
        check_plain_parts(content, what)
        for part in content:
            rough += check_tree(part.extra, f"a part of {what}", limits)
    limits.check("max_message_bytes", what, rough, "bytes or more")
    data = message.to_dict(stored=True)
    body, size = _encoded(data, what)
    size += _left_out(message, data)
    limits.check("max_message_bytes", what, size, "bytes of JSON")
    return body


_PLAIN_HEAD: Final = {role: f'{{"role":{_quote(role)},"content":' for role in ROLES}
"""The start of a plain message's stored body, by role: `Message.to_dict` with ``stored=True``
as `_encode` writes it, for a message that has only a role, text content and a UTC time."""


def _plain(message: Message) -> bool:
    """Whether ``message``'s stored body holds only its role and content (which must be a
    str): no name, tool calls, tool call id, metadata, or time outside UTC."""
    created = message.created_at
    return (
        message.name is None
        and not message.tool_calls
        and message.tool_call_id is None
        and not message.metadata
        and (created is None or created.tzinfo is UTC)
    )


def _utf8_size(text: str, what: str) -> int:
    """The UTF-8 size of JSON ``text``, or `InvalidInput` if it holds a lone surrogate."""
    if text.isascii():  # ASCII is its own UTF-8
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} holds text that is not valid Unicode") from exc


def _left_out(message: Message, stored: Mapping[str, JSON] | None) -> int:
    """The bytes the id and time of ``message`` add to its JSON beyond its stored body
    (``,"id":"..."`` and ``,"created_at":"..."``, ISO 8601 with a ``+00:00`` offset);
    ``stored`` None: a body without a time."""
    size = 0
    if message.id is not None:
        quoted = _quote(message.id)
        size += 6 + (len(quoted) if quoted.isascii() else len(quoted.encode("utf-8")))
    created = message.created_at
    if created is not None and (stored is None or "created_at" not in stored):
        size += 16 + (32 if created.microsecond else 25)
    return size


def _prepare(
    messages: Message | Sequence[Message],
    redactor: Redactor | None,
    limits: Limits,
    keyring: Keyring | None,
) -> tuple[tuple[Message, ...], tuple[Message, ...], tuple[str, ...]]:
    """Give each message an id and a time, redact it (with a ``redactor``), check it against
    ``limits``, and encrypt it (with a ``keyring``). Returns the messages as the caller gets
    them back, as they are stored, and the stored ones encoded."""
    now = utcnow()
    if type(messages) is Message and redactor is None and keyring is None:  # the hot path
        m = _stamped(messages, now)
        return (m,), (m,), (check_message(m, f"message {m.id!r}", limits),)
    ready: list[Message] = []
    stored: list[Message] = []
    bodies: list[str] = []
    seen: set[str] = set()
    for m in ensure_sequence(messages):
        m = _stamped(m, now)
        message_id = cast(str, m.id)
        if message_id in seen:
            raise InvalidInput(f"message id {message_id!r} appears twice in one append")
        seen.add(message_id)
        if redactor is not None:
            m = redactor.redact_message(m)
        ready.append(m)
        body = check_message(m, f"message {message_id!r}", limits)
        if keyring is not None:  # the limits are on what was written, not on its ciphertext
            m = seal_message(keyring, m)
            body = encode_json(m.to_dict(stored=True), f"message {message_id!r}")
        stored.append(m)
        bodies.append(body)
    return tuple(ready), tuple(stored), tuple(bodies)


def _stamped(message: Message, now: datetime) -> Message:
    """``message`` with a checked id (a new one if it has none) and a time (``now`` if it
    has none)."""
    message_id = check_id(message.id, "message id") if message.id else new_id()
    if message.id != message_id or message.created_at is None:
        return stamped(message, message_id, message.created_at or now)
    return message


@runtime_checkable
class ThreadStore(Sweepable, Protocol):
    """Conversation threads scoped by ``(tenant, thread_id)``, with sync and async methods."""

    @property
    def capabilities(self) -> Capabilities: ...

    def setup(self) -> int: ...
    async def asetup(self) -> int: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...

    def append(
        self, thread_id: str, messages: Message | Sequence[Message], *, tenant: str | None = ...
    ) -> list[Message]: ...
    async def aappend(
        self, thread_id: str, messages: Message | Sequence[Message], *, tenant: str | None = ...
    ) -> list[Message]: ...
    def replace(
        self, thread_id: str, messages: Message | Sequence[Message], *, tenant: str | None = ...
    ) -> list[Message]: ...
    async def areplace(
        self, thread_id: str, messages: Message | Sequence[Message], *, tenant: str | None = ...
    ) -> list[Message]: ...
    def update_messages(
        self, thread_id: str, messages: Message | Sequence[Message], *, tenant: str | None = ...
    ) -> list[Message]: ...
    async def aupdate_messages(
        self, thread_id: str, messages: Message | Sequence[Message], *, tenant: str | None = ...
    ) -> list[Message]: ...
    def delete_messages(
        self, thread_id: str, message_ids: Sequence[str], *, tenant: str | None = ...
    ) -> list[Message]: ...
    async def adelete_messages(
        self, thread_id: str, message_ids: Sequence[str], *, tenant: str | None = ...
    ) -> list[Message]: ...
    def load(
        self,
        thread_id: str,
        *,
        last: int | None = None,
        before: str | None = None,
        tenant: str | None = ...,
    ) -> list[Message]: ...
    async def aload(
        self,
        thread_id: str,
        *,
        last: int | None = None,
        before: str | None = None,
        tenant: str | None = ...,
    ) -> list[Message]: ...
    def count(self, thread_id: str, *, tenant: str | None = ...) -> int: ...
    async def acount(self, thread_id: str, *, tenant: str | None = ...) -> int: ...
    def get_thread(self, thread_id: str, *, tenant: str | None = ...) -> ThreadInfo: ...
    async def aget_thread(self, thread_id: str, *, tenant: str | None = ...) -> ThreadInfo: ...
    def list_threads(
        self, *, tenant: str | None = ..., limit: int = 50, offset: int = 0
    ) -> list[ThreadInfo]: ...
    async def alist_threads(
        self, *, tenant: str | None = ..., limit: int = 50, offset: int = 0
    ) -> list[ThreadInfo]: ...
    def set_thread_metadata(
        self, thread_id: str, metadata: Mapping[str, JSON], *, tenant: str | None = ...
    ) -> ThreadInfo: ...
    async def aset_thread_metadata(
        self, thread_id: str, metadata: Mapping[str, JSON], *, tenant: str | None = ...
    ) -> ThreadInfo: ...
    def clear(self, thread_id: str, *, tenant: str | None = ...) -> int: ...
    async def aclear(self, thread_id: str, *, tenant: str | None = ...) -> int: ...
    def delete_thread(self, thread_id: str, *, tenant: str | None = ...) -> bool: ...
    async def adelete_thread(self, thread_id: str, *, tenant: str | None = ...) -> bool: ...
    def clear_tenant(self, tenant: str) -> int: ...
    async def aclear_tenant(self, tenant: str) -> int: ...
    def search(
        self, query: str, *, thread_id: str | None = None, tenant: str | None = ..., limit: int = 10
    ) -> list[MessageHit]: ...
    async def asearch(
        self, query: str, *, thread_id: str | None = None, tenant: str | None = ..., limit: int = 10
    ) -> list[MessageHit]: ...
    def get_thread_ttl(self, thread_id: str, *, tenant: str | None = ...) -> float | None: ...
    async def aget_thread_ttl(
        self, thread_id: str, *, tenant: str | None = ...
    ) -> float | None: ...
    def set_thread_ttl(
        self, thread_id: str, ttl_seconds: float | None, *, tenant: str | None = ...
    ) -> bool: ...
    async def aset_thread_ttl(
        self, thread_id: str, ttl_seconds: float | None, *, tenant: str | None = ...
    ) -> bool: ...


class BaseStore(ABC):
    """What every store kind shares: capabilities, the two backend entry points ``execute``
    and ``aexecute``, schema setup, and closing (also as a sync or async context manager)."""

    name: str = "base"
    """The backend's URL scheme, used in error messages."""
    require_tenant: bool = False
    """Refuse a call that names no tenant, instead of running it for `DEFAULT_TENANT` (set by
    ``require_tenant=True`` or ``?require_tenant=true`` when opening the store). A memory
    namespace always starts with its tenant, so memory stores meet it anyway."""
    limits: Limits = DEFAULT_LIMITS
    """The size limits enforced before anything reaches the backend (see `memfold.limits`);
    set by ``limits=`` when the store is opened, or assign another `memfold.limits.Limits`."""

    _keyring: Keyring | None = None

    def __init__(self, capabilities: Capabilities) -> None:
        self._capabilities = capabilities

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do (with a `keyring`: ``encrypted``, and no full-text
        search)."""
        if self._keyring is None:
            return self._capabilities
        return replace(self._capabilities, full_text_search=False, encrypted=True)

    @property
    def keyring(self) -> Keyring | None:
        """The keys content is encrypted under at rest (None, the default: stored as
        written). See `memfold.encryption`."""
        return self._keyring

    @keyring.setter
    def keyring(self, keyring: Keyring | None) -> None:
        self._keyring = check_keyring(keyring)

    def resolve_tenant(self, tenant: str | None) -> str:
        """The tenant a call acts for: ``tenant`` if it names one, else `DEFAULT_TENANT`.

        Raises:
            InvalidInput: a bad tenant, or none named while `require_tenant` is set.
        """
        if tenant is not None:
            return check_id(tenant, "tenant")
        if self.require_tenant:
            raise InvalidInput(
                "this store was opened with require_tenant, so every call names its tenant: "
                "pass tenant='<the tenant this call acts for>'"
            )
        return DEFAULT_TENANT

    @abstractmethod
    def execute(self, op: ops.Op[T]) -> T:
        """Run one operation (backends implement this)."""

    @abstractmethod
    async def aexecute(self, op: ops.Op[T]) -> T:
        """Run one operation without blocking the event loop (backends implement this)."""

    def setup(self) -> int:
        """Create or upgrade the backend's schema: apply the pending `schema_steps` (safe to
        call again, and from several processes at once); returns the schema version (0: the
        store keeps no schema)."""
        versions = [steps.upgrade().latest for steps in self.schema_steps()]
        return versions[0] if versions else 0

    async def asetup(self) -> int:
        """Async `setup`."""
        versions = [(await steps.aupgrade()).latest for steps in self.schema_steps()]
        return versions[0] if versions else 0

    def schema_steps(self) -> list[SchemaSteps]:
        """The numbered schema steps of this store's backends and the record of those applied
        (see `memfold.schema_steps`); empty for a store that keeps no schema."""
        return []

    @property
    def tombstone_place(self) -> Hashable:
        """Where this store keeps its tombstones (see `memfold.tombstones`), as a key equal for
        the stores that share them, so `memfold.erase` counts a shared tombstone once; by
        default the store itself (its tombstones are its own)."""
        return self

    def purge_deleted(self) -> None:
        """Make the storage engine drop what it still keeps of deleted data outside its tables
        (`memfold.erase` calls it; SQLite truncates its write-ahead log; elsewhere nothing)."""

    async def apurge_deleted(self) -> None:
        """Async `purge_deleted`."""

    def close(self) -> None:
        """Release connections and files."""

    async def aclose(self) -> None:
        """Async `close`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class BaseThreadStore(BaseStore):
    """The public `ThreadStore` API, written once over ``execute``/``aexecute``.

    Args:
        capabilities: what the backend can do.
        retention: what `sweep` removes when called without a policy.
    """

    def __init__(
        self, capabilities: Capabilities, *, retention: RetentionPolicy | None = None
    ) -> None:
        super().__init__(capabilities)
        self.retention = check_policy(retention or RetentionPolicy())

    _redactor: Redactor | None = None

    @property
    def redactor(self) -> Redactor | None:
        """What redacts messages before they are stored (None, the default: nothing does)."""
        return self._redactor

    @redactor.setter
    def redactor(self, redactor: Redactor | None) -> None:
        self._redactor = check_redactor(redactor)

    # Building operations: pure, shared by the sync and async twins.

    def _append_op(
        self, thread_id: str, messages: Message | Sequence[Message], tenant: str | None
    ) -> tuple[ops.AppendMessages, tuple[Message, ...]]:
        ready, stored, bodies = _prepare(messages, self._redactor, self.limits, self._keyring)
        tenant = self.resolve_tenant(tenant)
        return ops.appended(tenant, check_id(thread_id, "thread id"), stored, bodies), ready

    def _replace_op(
        self, thread_id: str, messages: Message | Sequence[Message], tenant: str | None
    ) -> tuple[ops.ReplaceThread, tuple[Message, ...]]:
        ready, stored, bodies = _prepare(messages, self._redactor, self.limits, self._keyring)
        return ops.ReplaceThread(*self._thread_key(thread_id, tenant), stored, bodies), ready

    def _update_op(
        self, thread_id: str, messages: Message | Sequence[Message], tenant: str | None
    ) -> tuple[ops.UpdateMessages, tuple[Message, ...]]:
        found = ensure_sequence(messages)
        if any(m.id is None for m in found):
            raise InvalidInput("update_messages needs the id of each message to rewrite")
        ready, stored, bodies = _prepare(found, self._redactor, self.limits, self._keyring)
        return ops.UpdateMessages(*self._thread_key(thread_id, tenant), stored, bodies), ready

    def _delete_messages_op(
        self, thread_id: str, message_ids: Sequence[str], tenant: str | None
    ) -> ops.DeleteMessages:
        if isinstance(message_ids, str) or not isinstance(message_ids, Sequence):
            raise InvalidInput("message_ids must be a sequence of message id strings")
        ids = tuple(dict.fromkeys(check_id(i, "message id") for i in message_ids))
        return ops.DeleteMessages(*self._thread_key(thread_id, tenant), ids)

    def _load_op(
        self, thread_id: str, last: int | None, before: str | None, tenant: str | None
    ) -> ops.LoadThread:
        return ops.LoadThread(
            self.resolve_tenant(tenant),
            check_id(thread_id, "thread id"),
            None if last is None else _check_count(last, "last", high=10**9),
            None if before is None else check_id(before, "before"),
        )

    def _search_op(
        self, query: str, thread_id: str | None, tenant: str | None, limit: int
    ) -> ops.SearchMessages:
        self.capabilities.require("full_text_search", self.name)
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("search query must be a non-empty str")
        return ops.SearchMessages(
            self.resolve_tenant(tenant),
            query,
            None if thread_id is None else check_id(thread_id, "thread id"),
            _check_count(limit, "limit", low=1),
        )

    def _list_op(self, tenant: str | None, limit: int, offset: int) -> ops.ListThreads:
        return ops.ListThreads(
            self.resolve_tenant(tenant),
            _check_count(limit, "limit", low=1),
            _check_count(offset, "offset", high=10**12),
        )

    def _metadata_op(
        self, thread_id: str, metadata: Mapping[str, JSON], tenant: str | None
    ) -> ops.SetThreadMetadata:
        if not isinstance(metadata, Mapping):
            raise InvalidInput("thread metadata must be a mapping of str to JSON values")
        stored = dict(metadata)
        encoded = encode_json(stored, "thread metadata", self.limits, "max_metadata_bytes")
        check_plain_metadata(stored)
        if self._keyring is not None and ENCRYPTED_METADATA.intersection(stored):
            stored = seal_metadata(self._keyring, stored)
            encoded = encode_json(stored, "thread metadata")
        return ops.SetThreadMetadata(
            self.resolve_tenant(tenant), check_id(thread_id, "thread id"), stored, encoded
        )

    def _restore_op(self, info: ThreadInfo) -> ops.RestoreThread:
        if not isinstance(info, ThreadInfo):
            raise InvalidInput(f"restore_thread takes a ThreadInfo, got {type(info).__name__}")
        metadata = self._metadata_op(info.thread_id, info.metadata, info.tenant)
        return ops.RestoreThread(
            metadata.tenant,
            metadata.thread_id,
            metadata.metadata,
            metadata.encoded,
            check_time(info.created_at, "a thread's created_at"),
            check_time(info.updated_at, "a thread's updated_at"),
        )

    def _thread_key(self, thread_id: str, tenant: str | None) -> tuple[str, str]:
        return self.resolve_tenant(tenant), check_id(thread_id, "thread id")

    def _ttl_op(
        self, thread_id: str, ttl_seconds: float | None, tenant: str | None
    ) -> ops.SetThreadTTL:
        return ops.SetThreadTTL(
            *self._thread_key(thread_id, tenant), check_seconds(ttl_seconds, "ttl_seconds")
        )

    def _sweep_op(
        self, policy: RetentionPolicy | None, tenant: str | None, dry_run: bool
    ) -> ops.SweepThreads:
        if not isinstance(dry_run, bool):
            raise InvalidInput(f"dry_run must be a bool, got {dry_run!r}")
        return ops.SweepThreads(
            None if tenant is None and not self.require_tenant else self.resolve_tenant(tenant),
            self.retention if policy is None else check_policy(policy),
            utcnow(),
            dry_run,
        )

    # Sync API.

    def append(
        self,
        thread_id: str,
        messages: Message | Sequence[Message],
        *,
        tenant: str | None = None,
    ) -> list[Message]:
        """Append messages to a thread, creating it if needed.

        Returns the messages as stored, each with an ``id`` and ``created_at``.

        Raises:
            InvalidInput: a bad id, a duplicate message id, or metadata that is not JSON.
            Conflict: a message id already in the thread.
        """
        op, ready = self._append_op(thread_id, messages, tenant)
        self.execute(op)
        return list(ready)

    def replace(
        self,
        thread_id: str,
        messages: Message | Sequence[Message],
        *,
        tenant: str | None = None,
    ) -> list[Message]:
        """Swap a thread's messages for ``messages`` in one transaction (readers see either
        the old thread or the new one); returns them as stored."""
        op, ready = self._replace_op(thread_id, messages, tenant)
        self.execute(op)
        return list(ready)

    def update_messages(
        self,
        thread_id: str,
        messages: Message | Sequence[Message],
        *,
        tenant: str | None = None,
    ) -> list[Message]:
        """Rewrite stored messages in place, matched by id, keeping their positions.

        Raises:
            NotFound: an id is not in the thread (then nothing is changed).
        """
        op, ready = self._update_op(thread_id, messages, tenant)
        self.execute(op)
        return list(ready)

    def delete_messages(
        self, thread_id: str, message_ids: Sequence[str], *, tenant: str | None = None
    ) -> list[Message]:
        """Remove messages by id in one transaction; returns those removed, oldest first.

        Ids not in the thread are ignored.
        """
        removed = self.execute(self._delete_messages_op(thread_id, message_ids, tenant))
        return open_messages(self._keyring, removed)

    def load(
        self,
        thread_id: str,
        *,
        last: int | None = None,
        before: str | None = None,
        tenant: str | None = None,
    ) -> list[Message]:
        """A thread's messages, oldest first.

        With ``last=n``, only the newest ``n``; with ``before=message_id``, only the messages
        before that one (combine both to page backwards). An unknown thread is empty.

        Raises:
            NotFound: ``before`` names no message of the thread.
        """
        loaded = self.execute(self._load_op(thread_id, last, before, tenant))
        return open_messages(self._keyring, loaded)

    def count(self, thread_id: str, *, tenant: str | None = None) -> int:
        """How many messages a thread holds (0 for an unknown thread)."""
        return self.execute(ops.CountMessages(*self._thread_key(thread_id, tenant)))

    def get_thread(self, thread_id: str, *, tenant: str | None = None) -> ThreadInfo:
        """Describe a thread.

        Raises:
            NotFound: no such thread.
        """
        info = self.execute(ops.GetThread(*self._thread_key(thread_id, tenant)))
        return open_infos(self._keyring, [info])[0]

    def list_threads(
        self, *, tenant: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[ThreadInfo]:
        """A page of a tenant's threads, most recently updated first."""
        return open_infos(self._keyring, self.execute(self._list_op(tenant, limit, offset)))

    def set_thread_metadata(
        self, thread_id: str, metadata: Mapping[str, JSON], *, tenant: str | None = None
    ) -> ThreadInfo:
        """Replace a thread's metadata (creating an empty thread if needed)."""
        info = self.execute(self._metadata_op(thread_id, metadata, tenant))
        return open_infos(self._keyring, [info])[0]

    def restore_thread(self, info: ThreadInfo) -> ThreadInfo:
        """Give thread ``info.thread_id`` of ``info.tenant`` the metadata and the creation and
        update times of ``info`` (creating it if needed); returns it as stored.

        The last step of restoring an exported or migrated thread, after its messages are
        appended (an append stamps the current time). ``message_count`` is not used.
        """
        return open_infos(self._keyring, [self.execute(self._restore_op(info))])[0]

    def clear(self, thread_id: str, *, tenant: str | None = None) -> int:
        """Remove a thread's messages, keeping the thread; returns how many were removed."""
        return self.execute(ops.ClearThread(*self._thread_key(thread_id, tenant)))

    def delete_thread(self, thread_id: str, *, tenant: str | None = None) -> bool:
        """Remove a thread and its messages; returns whether it existed."""
        return self.execute(ops.DeleteThread(*self._thread_key(thread_id, tenant)))

    def clear_tenant(self, tenant: str) -> int:
        """Remove every thread of ``tenant``; returns how many threads were removed."""
        return self.execute(ops.ClearTenant(check_id(tenant, "tenant")))

    def search(
        self,
        query: str,
        *,
        thread_id: str | None = None,
        tenant: str | None = None,
        limit: int = 10,
    ) -> list[MessageHit]:
        """Messages matching ``query``'s words, best first, in one thread or a whole tenant.

        Raises:
            UnsupportedOperation: the backend has no full-text search.
        """
        hits = self.execute(self._search_op(query, thread_id, tenant, limit))
        return open_hits(self._keyring, hits)

    def get_thread_ttl(self, thread_id: str, *, tenant: str | None = None) -> float | None:
        """The thread's own TTL in seconds, set by `set_thread_ttl` (None: it has none, or
        there is no such thread)."""
        return self.execute(ops.GetThreadTTL(*self._thread_key(thread_id, tenant)))

    def set_thread_ttl(
        self, thread_id: str, ttl_seconds: float | None, *, tenant: str | None = None
    ) -> bool:
        """Let `sweep` delete this thread ``ttl_seconds`` after its last write, whatever the
        policy's TTL (None clears it); returns whether the thread exists."""
        return self.execute(self._ttl_op(thread_id, ttl_seconds, tenant))

    def sweep(
        self,
        policy: RetentionPolicy | None = None,
        *,
        tenant: str | None = None,
        dry_run: bool = False,
    ) -> SweepResult:
        """Apply a retention policy (the store's own by default) to one tenant or all (all
        only if the store does not `require_tenant`), oldest first, never leaving a tool
        result without its call (see `memfold.retention`).

        With ``dry_run``, count what would go and change nothing. Returns the threads and
        messages removed (a thread deleted whole counts its messages too).
        """
        return self.execute(self._sweep_op(policy, tenant, dry_run)).removed

    # Async API: the same operations, awaited.

    async def aappend(
        self,
        thread_id: str,
        messages: Message | Sequence[Message],
        *,
        tenant: str | None = None,
    ) -> list[Message]:
        """Async `append`."""
        op, ready = self._append_op(thread_id, messages, tenant)
        await self.aexecute(op)
        return list(ready)

    async def areplace(
        self,
        thread_id: str,
        messages: Message | Sequence[Message],
        *,
        tenant: str | None = None,
    ) -> list[Message]:
        """Async `replace`."""
        op, ready = self._replace_op(thread_id, messages, tenant)
        await self.aexecute(op)
        return list(ready)

    async def aupdate_messages(
        self,
        thread_id: str,
        messages: Message | Sequence[Message],
        *,
        tenant: str | None = None,
    ) -> list[Message]:
        """Async `update_messages`."""
        op, ready = self._update_op(thread_id, messages, tenant)
        await self.aexecute(op)
        return list(ready)

    async def adelete_messages(
        self, thread_id: str, message_ids: Sequence[str], *, tenant: str | None = None
    ) -> list[Message]:
        """Async `delete_messages`."""
        removed = await self.aexecute(self._delete_messages_op(thread_id, message_ids, tenant))
        return open_messages(self._keyring, removed)

    async def aload(
        self,
        thread_id: str,
        *,
        last: int | None = None,
        before: str | None = None,
        tenant: str | None = None,
    ) -> list[Message]:
        """Async `load`."""
        loaded = await self.aexecute(self._load_op(thread_id, last, before, tenant))
        return open_messages(self._keyring, loaded)

    async def acount(self, thread_id: str, *, tenant: str | None = None) -> int:
        """Async `count`."""
        return await self.aexecute(ops.CountMessages(*self._thread_key(thread_id, tenant)))

    async def aget_thread(self, thread_id: str, *, tenant: str | None = None) -> ThreadInfo:
        """Async `get_thread`."""
        info = await self.aexecute(ops.GetThread(*self._thread_key(thread_id, tenant)))
        return open_infos(self._keyring, [info])[0]

    async def alist_threads(
        self, *, tenant: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[ThreadInfo]:
        """Async `list_threads`."""
        infos = await self.aexecute(self._list_op(tenant, limit, offset))
        return open_infos(self._keyring, infos)

    async def aset_thread_metadata(
        self, thread_id: str, metadata: Mapping[str, JSON], *, tenant: str | None = None
    ) -> ThreadInfo:
        """Async `set_thread_metadata`."""
        info = await self.aexecute(self._metadata_op(thread_id, metadata, tenant))
        return open_infos(self._keyring, [info])[0]

    async def arestore_thread(self, info: ThreadInfo) -> ThreadInfo:
        """Async `restore_thread`."""
        return open_infos(self._keyring, [await self.aexecute(self._restore_op(info))])[0]

    async def aclear(self, thread_id: str, *, tenant: str | None = None) -> int:
        """Async `clear`."""
        return await self.aexecute(ops.ClearThread(*self._thread_key(thread_id, tenant)))

    async def adelete_thread(self, thread_id: str, *, tenant: str | None = None) -> bool:
        """Async `delete_thread`."""
        return await self.aexecute(ops.DeleteThread(*self._thread_key(thread_id, tenant)))

    async def aclear_tenant(self, tenant: str) -> int:
        """Async `clear_tenant`."""
        return await self.aexecute(ops.ClearTenant(check_id(tenant, "tenant")))

    async def asearch(
        self,
        query: str,
        *,
        thread_id: str | None = None,
        tenant: str | None = None,
        limit: int = 10,
    ) -> list[MessageHit]:
        """Async `search`."""
        hits = await self.aexecute(self._search_op(query, thread_id, tenant, limit))
        return open_hits(self._keyring, hits)

    # Key rotation.

    def rotate_key(
        self,
        *,
        tenant: str | None = None,
        batch_size: int = 500,
        progress: Progress | None = None,
    ) -> int:
        """Re-encrypt the tenant's messages under the keyring's active key (plain ones too),
        ``batch_size`` messages at a time; returns how many were rewritten. Idempotent: run it
        again to finish one that stopped. ``progress(done, total)`` counts messages read.

        Raises:
            InvalidInput: the store has no keyring.
            EncryptionError: a message's key is not in the keyring.
        """
        flow = rotate_threads(self, self.resolve_tenant(tenant), batch_size, progress)
        return drive(flow, self.execute)

    async def arotate_key(
        self,
        *,
        tenant: str | None = None,
        batch_size: int = 500,
        progress: Progress | None = None,
    ) -> int:
        """Async `rotate_key`."""
        flow = rotate_threads(self, self.resolve_tenant(tenant), batch_size, progress)
        return await adrive(flow, self.aexecute)

    async def aget_thread_ttl(self, thread_id: str, *, tenant: str | None = None) -> float | None:
        """Async `get_thread_ttl`."""
        return await self.aexecute(ops.GetThreadTTL(*self._thread_key(thread_id, tenant)))

    async def aset_thread_ttl(
        self, thread_id: str, ttl_seconds: float | None, *, tenant: str | None = None
    ) -> bool:
        """Async `set_thread_ttl`."""
        return await self.aexecute(self._ttl_op(thread_id, ttl_seconds, tenant))

    async def asweep(
        self,
        policy: RetentionPolicy | None = None,
        *,
        tenant: str | None = None,
        dry_run: bool = False,
    ) -> SweepResult:
        """Async `sweep`."""
        return (await self.aexecute(self._sweep_op(policy, tenant, dry_run))).removed
