"""Store URLs: memfold's own query options, split from the ones a driver reads.

One URL may open every store kind (`memfold.open.open_stores`), so it may carry options that
only one kind takes (`KIND_OPTIONS`); each kind's opener drops the others' with
`drop_other_kinds` before it reads its own, so they never reach its driver.

Examples:
    >>> from memfold.urls import split_options
    >>> split_options("sqlite:///x.db?keep_last=3&mode=ro", {"keep_last": int}, strict=False)
    ('sqlite:///x.db?mode=ro', {'keep_last': 3})
    >>> drop_other_kinds("memory://?max_messages_per_thread=5&capacity=3", "memories")
    'memory://?capacity=3'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from memfold.errors import InvalidInput

__all__ = [
    "KIND_OPTIONS",
    "SQL_OPTIONS",
    "check_url",
    "drop_other_kinds",
    "flag",
    "split_options",
    "take_option",
    "take_sql_options",
]

KIND_OPTIONS: Final[Mapping[str, frozenset[str]]] = {
    "threads": frozenset(
        {"max_messages_per_thread", "max_messages", "compress_min_bytes", "key_prefix"}
    ),
    "checkpoints": frozenset({"snapshot_every", "min_growth", "compress_min_bytes", "key_prefix"}),
    "memories": frozenset(
        {"dimensions", "dedupe_threshold", "capacity", "text_weight", "vector_weight", "key_prefix"}
    ),
}
"""The URL query options of each store kind that not every kind takes (on some backend).
Options every kind takes (``require_tenant``, ``redact``, ``keyring`` and the retention policy's)
are not listed."""


def flag(value: str) -> bool:
    """A yes/no query option: ``true``, ``1``, ``yes`` or ``on``; ``false``, ``0``, ``no`` or
    ``off``."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{value!r} is neither true nor false")


SQL_OPTIONS: Final[Mapping[str, Callable[[str], Any]]] = {
    "schema": str,
    "table_prefix": str,
    "prepared_statements": flag,
}
"""The query options of ``sqlite://`` and ``postgresql://`` URLs that say where memfold's tables
live (so that a URL alone, as the CLI takes, reaches any schema) and whether PostgreSQL prepares
statements; the driver never sees them as URL options."""


def drop_other_kinds(url: str, kind: str) -> str:
    """``url`` without the query options that only store kinds other than ``kind`` take."""
    base, _, query = url.partition("?")
    if not query:
        return url
    foreign = frozenset().union(*(v for k, v in KIND_OPTIONS.items() if k != kind))
    foreign -= KIND_OPTIONS[kind]
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [(key, value) for key, value in pairs if key not in foreign]
    if len(kept) == len(pairs):
        return url
    return f"{base}?{urlencode(kept)}" if kept else base


def check_url(url: object, what: str = "a store URL") -> str:
    """``url`` if it is a str of valid Unicode without NUL characters, else `InvalidInput`
    (drivers and the URL parser fail on those in ways of their own)."""
    if not isinstance(url, str):
        raise InvalidInput(f"{what} must be a str, got {type(url).__name__}")
    if "\x00" in url:
        raise InvalidInput(f"{what} must not contain a NUL character, got {url!r}")
    try:
        url.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid Unicode (a lone surrogate): {url!r}") from exc
    return url


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
            what = "true or false" if kind is flag else "a number"
            raise InvalidInput(f"option {key}={value!r} in {url!r} is not {what}") from exc
    return (f"{base}?{urlencode(rest)}" if rest else base), parsed


def take_option(
    url: str, options: Mapping[str, Any], name: str, kind: Callable[[str], Any]
) -> tuple[str, dict[str, Any], Any]:
    """``url`` and ``options`` without the option ``name``, and its value: the keyword's if
    given, else the URL's parsed by ``kind``, else None. Other query options stay in the URL.
    A ``url`` that `check_url` refuses or ``options`` that is not a mapping is `InvalidInput`.

    Examples:
        >>> take_option("memory://?require_tenant=true", {}, "require_tenant", flag)
        ('memory://', {}, True)
    """
    check_url(url)
    if not isinstance(options, Mapping):
        raise InvalidInput(f"store options must be a mapping, got {type(options).__name__}")
    rest = dict(options)
    if "?" in url and name in url.partition("?")[2]:
        url, parsed = split_options(url, {name: kind}, strict=False)
    else:
        parsed = {}
    return url, rest, rest.pop(name, parsed.get(name))


def take_sql_options(url: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``url`` without its `SQL_OPTIONS`, and ``options`` with them added (a keyword wins).

    Examples:
        >>> take_sql_options("postgresql://h/db?schema=agents&sslmode=disable", {})
        ('postgresql://h/db?sslmode=disable', {'schema': 'agents'})
    """
    plain, parsed = split_options(url, SQL_OPTIONS, strict=False)
    return plain, {**parsed, **options}
