"""Size limits: what a store refuses before anything reaches its backend.

Every store enforces one `Limits` (the defaults unless it was opened with ``limits=``): a value
over a limit raises `memfold.errors.LimitExceeded`, which names the limit and how to raise it,
and nothing is stored. Sizes count the UTF-8 bytes of a value's JSON, so they mean the same on
every backend. Ids and namespaces have fixed limits instead, set by the widths of the SQL
schema's key columns (`memfold.stores.MAX_ID_LENGTH`, `MAX_NAMESPACE_BYTES`), and durations
have a fixed ceiling (`MAX_SECONDS`).

Examples:
    >>> from memfold import LimitExceeded, Limits, Message, open_store
    >>> store = open_store("memory://", limits=Limits(max_message_bytes=1_000))
    >>> try:
    ...     store.append("t1", Message(role="user", content="x" * 2_000, id="m1"))
    ... except LimitExceeded as exc:
    ...     print(exc)  # doctest: +ELLIPSIS
    message 'm1' is 2,000 bytes or more; the limit is 1,000 (max_message_bytes): ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final

from memfold.errors import InvalidInput, LimitExceeded

__all__ = [
    "DEFAULT_LIMITS",
    "EARLIEST_TIME",
    "LATEST_TIME",
    "MAX_COUNT",
    "MAX_JSON_DEPTH",
    "MAX_NAMESPACE_BYTES",
    "MAX_SECONDS",
    "MAX_VECTOR_DIMENSIONS",
    "Limits",
    "check_limits",
    "check_tree",
]

MiB: Final = 1 << 20

MAX_NAMESPACE_BYTES: Final = 1_024
"""The longest long-term memory namespace: its labels' UTF-8 bytes plus one per label."""

MAX_COUNT: Final = 2**63 - 1
"""The largest count, limit or index accepted (a signed 64-bit integer: SQL's ``BIGINT``;
larger ones overflowed SQLite and PostgreSQL)."""

MAX_SECONDS: Final = 100 * 365 * 86_400
"""The longest TTL, lease or age accepted, in seconds (100 years: later instants overflow the
date types of Python and the backends)."""

EARLIEST_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest time a thread, checkpoint, memory or journal entry may be restored with (Redis's
scripts read times with no sign)."""

LATEST_TIME: Final = datetime(2200, 1, 1, tzinfo=UTC)
"""Restored times fall before this (SQL keeps some times as float seconds, which hold every
microsecond only until about 2255)."""

MAX_JSON_DEPTH: Final = 500
"""The deepest nesting `Limits.max_json_depth` may allow (JSON codecs recurse per level)."""

MAX_VECTOR_DIMENSIONS: Final = 16_000
"""The most dimensions `Limits.max_vector_dimensions` may allow (pgvector's ``vector`` type)."""

_CEILINGS = {"max_json_depth": MAX_JSON_DEPTH, "max_vector_dimensions": MAX_VECTOR_DIMENSIONS}


@dataclass(frozen=True, slots=True)
class Limits:
    """The largest values a store accepts; every field is a positive int.

    Pass one when opening a store (``open_store(url, limits=Limits(max_message_bytes=...))``,
    likewise ``open_checkpoint_store`` and ``open_memory_store``) or assign ``store.limits``.
    """

    max_message_bytes: int = 32 * MiB
    """One message as JSON: its content, parts, tool calls and metadata together."""
    max_metadata_bytes: int = 1 * MiB
    """A thread's or a checkpoint's metadata as JSON."""
    max_memory_text_bytes: int = 1 * MiB
    """A long-term memory's text."""
    max_memory_value_bytes: int = 4 * MiB
    """A long-term memory's value as JSON."""
    max_blob_bytes: int = 64 * MiB
    """One serialized checkpoint body, channel value or pending write."""
    max_json_depth: int = 64
    """How deeply metadata, values and tool-call arguments may nest lists and objects (at
    most `MAX_JSON_DEPTH`)."""
    max_vector_dimensions: int = 8_192
    """The longest embedding accepted (at most `MAX_VECTOR_DIMENSIONS`); a store that knows its
    dimensions also refuses every other length."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            ceiling = _CEILINGS.get(f.name, 1 << 40)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
                raise InvalidInput(f"Limits.{f.name} must be an int from 1 to {ceiling}")

    def _limit(self, name: object) -> int:
        if not isinstance(name, str) or name not in _NAMES:
            raise InvalidInput(f"{name!r} is not a limit: use one of {', '.join(_NAMES)}")
        value: int = getattr(self, name)
        return value

    def exceeded(self, name: str, what: str, size: int, unit: str = "bytes") -> LimitExceeded:
        """The error for ``what`` being ``size`` ``unit`` against limit ``name`` (`InvalidInput`
        if ``name`` is not a limit)."""
        limit = self._limit(name)
        return LimitExceeded(
            f"{what} is {size:,} {unit}; the limit is {limit:,} ({name}): store less, or raise "
            f"the limit by opening the store with limits=Limits({name}=...)"
        )

    def check(self, name: str, what: str, size: int, unit: str = "bytes") -> None:
        """Raise `LimitExceeded` if ``size`` is over limit ``name`` (`InvalidInput` if ``name``
        is not a limit or ``size`` not an int)."""
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidInput(f"a size must be an int, got {size!r}")
        if size > self._limit(name):
            raise self.exceeded(name, what, size, unit)


_NAMES: Final = tuple(f.name for f in fields(Limits))
DEFAULT_LIMITS: Final = Limits()
"""The limits of a store opened without ``limits=``."""


def check_limits(limits: object) -> Limits:
    """``limits`` if it is a `Limits` (None: the defaults), else `InvalidInput`."""
    if limits is None:
        return DEFAULT_LIMITS
    if not isinstance(limits, Limits):
        raise InvalidInput(f"limits must be a memfold Limits, got {type(limits).__name__}")
    return limits


def check_tree(value: Any, what: str, limits: Limits, *, nul: bool = True) -> int:
    """Check that ``value`` nests no deeper than ``limits.max_json_depth`` and that every
    object key is a str (JSON would turn ``1`` into ``"1"``, and merge it with a real ``"1"``);
    with ``nul=False``, no key or string holds a NUL character either. The values themselves
    are checked by the JSON encoder.

    Returns the characters of its keys and strings: a lower bound of its JSON's size in bytes,
    known before encoding it.

    Raises:
        LimitExceeded: nested too deeply.
        InvalidInput: a key that is not a str, or a NUL where none may be.
    """
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, Mapping | list | tuple):
        return 0
    size = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limits.max_json_depth:
            raise limits.exceeded("max_json_depth", f"{what} nesting", depth, "levels")
        children: Any = item
        if isinstance(item, Mapping):
            for key in item:
                if not isinstance(key, str):
                    raise InvalidInput(
                        f"{what} has the key {key!r}, a {type(key).__name__}: JSON object keys "
                        "are str, so write it as one"
                    )
                if not nul and "\x00" in key:
                    raise InvalidInput(f"{what} has a key with a NUL character: drop it")
                size += len(key)
            children = item.values()
        for child in children:
            if isinstance(child, str):
                if not nul and "\x00" in child:
                    raise InvalidInput(f"{what} holds a NUL character, which JSONB cannot: drop it")
                size += len(child)
            elif isinstance(child, Mapping | list | tuple):
                stack.append((child, depth + 1))
    return size
