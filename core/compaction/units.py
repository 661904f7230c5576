"""Where a thread may be cut: the pinned system prefix and the atomic units after it.

A unit is a run of messages that a view keeps or drops whole: a message plus the tool results
that follow it (so an assistant's tool calls, parallel ones included, stay with their results).
A tool result with nothing before it to answer cannot start a view, so such leading results
form a unit of their own that views leave out.

Examples:
    >>> from memfold import Message, ToolCall
    >>> thread = [
    ...     Message(role="system", content="be brief"),
    ...     Message(role="user", content="2+2?"),
    ...     Message(role="assistant", tool_calls=[ToolCall(id="c1", name="add")]),
    ...     Message(role="tool", content="4", tool_call_id="c1"),
    ... ]
    >>> pinned, units = split(thread)
    >>> len(pinned), [len(u) for u in units]
    (1, [1, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from memfold.model import Message, ensure_sequence

__all__ = [
    "PINNED_ROLES",
    "TOOL_ROLES",
    "Unit",
    "group",
    "is_orphan",
    "pinned_prefix",
    "split",
    "turn_starts",
]

PINNED_ROLES: Final = frozenset({"system", "developer"})
"""Roles of the leading messages every view keeps first."""

TOOL_ROLES: Final = frozenset({"tool", "function"})
"""Roles of tool results, which never start a view."""

Unit = tuple[Message, ...]


def split(messages: Sequence[Message]) -> tuple[tuple[Message, ...], list[Unit]]:
    """The leading system/developer messages, and the units of the rest, oldest first.

    Raises:
        InvalidInput: ``messages`` is not a sequence of `Message`.
    """
    messages = ensure_sequence(messages)
    pinned = pinned_prefix(messages)
    return pinned, group(messages[len(pinned) :])


def pinned_prefix(messages: Sequence[Message]) -> tuple[Message, ...]:
    """The leading system/developer messages."""
    start = 0
    while start < len(messages) and messages[start].role in PINNED_ROLES:
        start += 1
    return tuple(messages[:start])


def group(messages: Sequence[Message]) -> list[Unit]:
    """The units of ``messages``, oldest first, pinning nothing."""
    units: list[Unit] = []
    current: list[Message] = []
    for m in messages:
        if m.role not in TOOL_ROLES and current:
            units.append(tuple(current))
            current = []
        current.append(m)
    if current:
        units.append(tuple(current))
    return units


def is_orphan(unit: Unit) -> bool:
    """Whether ``unit`` starts with a tool result (only the first unit can), so no view may
    start with it."""
    return unit[0].role in TOOL_ROLES


def turn_starts(units: Sequence[Unit]) -> list[int]:
    """Indexes of the units that open a turn: those starting with a user message."""
    return [i for i, u in enumerate(units) if u[0].role == "user"]
