"""Turn a loaded thread into host objects without keeping both object graphs alive."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from memfold import Message

__all__ = ["convert_all"]

T = TypeVar("T")


def convert_all(messages: list[Message], convert: Callable[[Message], T]) -> list[T]:
    """``[convert(m) for m in messages]``, emptying ``messages`` as it goes.

    Each memfold message is freed as soon as its host object exists, so a long thread never has
    two full object graphs alive at once: the garbage collector, which walks every live
    container when it runs, then has half as much to walk while the host objects are built.

    Examples:
        >>> loaded = [Message(role="user", content="hi")]
        >>> convert_all(loaded, lambda m: m.content), loaded
        (['hi'], [])
    """
    messages.reverse()
    pop = messages.pop
    return [convert(pop()) for _ in range(len(messages))]
