"""Helpers the host converters share: turning a loaded thread into host objects without keeping
both object graphs alive, and reading an LLM's raw tool-call arguments."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from memfold import Message

__all__ = ["convert_all", "json_object"]

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


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def json_object(text: str) -> dict[str, Any] | None:
    """The object the JSON ``text`` holds, or ``None`` if it holds another value or is not JSON
    that memfold can store (``NaN``, out-of-range numbers and lone surrogates are not).

    Examples:
        >>> json_object('{"city": "Paris"}'), json_object("[1]"), json_object("{oops")
        ({'city': 'Paris'}, None, None)
    """
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_constant)
        if not isinstance(value, dict):
            return None
        json.dumps(value, ensure_ascii=False).encode()  # a lone surrogate raises here
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None
    return value
