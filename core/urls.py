"""Store URLs: memfold's own query options, split from the ones a driver reads.

Examples:
    >>> from memfold.urls import split_options
    >>> split_options("sqlite:///x.db?keep_last=3&mode=ro", {"keep_last": int}, strict=False)
    ('sqlite:///x.db?mode=ro', {'keep_last': 3})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from memfold.errors import InvalidInput

__all__ = ["split_options"]


def split_options(
    url: str, kinds: Mapping[str, Callable[[str], Any]], *, strict: bool
) -> tuple[str, dict[str, Any]]:
    """``url`` without memfold's own query options, and those options parsed by ``kinds``.

    With ``strict`` an option that ``kinds`` does not name is refused (for a URL with no driver
    behind it, such as ``memory://``); otherwise it stays in the URL for the driver
    (``application_name``, ``socket_timeout``, ...).

    Raises:
        InvalidInput: an unknown option (with ``strict``) or a value that does not parse.
    """
    base, _, query = url.partition("?")
    parsed: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        kind = kinds.get(key)
        if kind is None:
            if strict:
                raise InvalidInput(f"unknown option {key!r} in {url!r}: use {sorted(kinds)}")
            rest.append((key, value))
            continue
        try:
            parsed[key] = kind(value)
        except ValueError as exc:
            raise InvalidInput(f"option {key}={value!r} in {url!r} is not a number") from exc
    return (f"{base}?{urlencode(rest)}" if rest else base), parsed
