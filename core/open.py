"""Open any store by URL: ``memory://`` (the default), ``sqlite:///path.db``,
``postgresql://``, ``redis://`` or ``tiered+redis://host?durable=<url-encoded durable URL>``.

Examples:
    >>> from memfold import open_store
    >>> store = open_store("memory://?max_threads=100")
    >>> store.capabilities.persistent
    False
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit

from memfold.backends.memory import MemoryThreadStore
from memfold.backends.sql import SQLThreadStore
from memfold.checkpoints import (
    BaseCheckpointStore,
    aopen_checkpoint_store,
    open_checkpoint_store,
)
from memfold.encryption import take_keyring
from memfold.errors import InvalidInput
from memfold.limits import Limits, check_limits
from memfold.memories import BaseMemoryStore, aopen_memory_store, open_memory_store
from memfold.redaction import take_redactor
from memfold.retention import KINDS, POLICY_OPTIONS, check_kinds, policy_from_options
from memfold.stores import BaseThreadStore, check_flag
from memfold.urls import (
    check_url,
    drop_other_kinds,
    flag,
    split_options,
    take_option,
    take_sql_options,
)

__all__ = [
    "AnyStore",
    "aopen_store",
    "aopen_stores",
    "create_memory",
    "open_store",
    "open_stores",
]

AnyStore: TypeAlias = BaseThreadStore | BaseCheckpointStore | BaseMemoryStore
"""A store of any kind: threads, checkpoints or long-term memories."""

_MEMORY_OPTIONS: dict[str, Callable[[str], Any]] = {
    **POLICY_OPTIONS,
    "max_messages_per_thread": int,
}


def _build(url: str, options: dict[str, Any]) -> BaseThreadStore:
    check_url(url)
    url = drop_other_kinds(url, "threads")
    url, options, require = take_option(url, options, "require_tenant", flag)
    require_tenant = check_flag(require, "require_tenant")
    url, options, redactor = take_redactor(url, options)
    url, options, keyring = take_keyring(url, options)
    store = _backend(url, options)
    store.require_tenant = require_tenant
    store.redactor = redactor
    store.keyring = keyring
    return store


def _backend(url: str, options: dict[str, Any]) -> BaseThreadStore:
    scheme = urlsplit(url).scheme.split("+")[0]
    if scheme == "tiered":
        return _tiered(url, options)
    if scheme == "memory":
        return MemoryThreadStore(
            **{**split_options(url, _MEMORY_OPTIONS, strict=True)[1], **options}
        )
    if scheme in ("sqlite", "postgresql", "postgres"):
        plain, options = take_sql_options(url, options)
        plain, ours = split_options(plain, POLICY_OPTIONS, strict=False)
        if ours:
            options = {"retention": policy_from_options(ours), **options}
        return SQLThreadStore(plain, **options)  # postgresql needs the postgres extra
    if scheme in ("redis", "rediss"):
        from memfold.backends.redis import RedisThreadStore  # needs the redis extra

        return RedisThreadStore.from_url(url, **options)
    raise InvalidInput(
        f"unknown store URL {url!r}: use memory://, sqlite:///path/to/file.db, "
        "postgresql://host/db, redis://host or tiered+redis://host?durable=..."
    )


def _tiered(url: str, options: dict[str, Any]) -> BaseThreadStore:
    """``tiered+redis://host/0?durable=<url-encoded durable URL>``: Redis in front of SQL.

    The options ``hot_options`` and ``durable_options`` (dicts) go to each tier's backend; the
    rest to `TieredThreadStore`.
    """
    from memfold.backends.tiered import TieredThreadStore

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    durable = [value for key, value in query if key == "durable"]
    if len(durable) != 1 or not parts.scheme.startswith("tiered+"):
        raise InvalidInput(
            f"a tiered URL looks like tiered+redis://host:6379/0?durable=<url-encoded "
            f"postgresql:// or sqlite:// URL>, not {url!r}"
        )
    hot_url = parts._replace(
        scheme=parts.scheme.removeprefix("tiered+"),
        query=urlencode([(key, value) for key, value in query if key != "durable"]),
    ).geturl()
    if urlsplit(durable[0]).scheme.startswith("tiered"):
        raise InvalidInput("the durable store of a tiered URL cannot itself be tiered")
    rest = dict(options)
    hot = _build(hot_url, dict(rest.pop("hot_options", None) or {}))
    return TieredThreadStore(
        hot, _build(durable[0], dict(rest.pop("durable_options", None) or {})), **rest
    )


def open_store(
    url: str = "memory://", *, setup: bool = True, limits: Limits | None = None, **options: Any
) -> BaseThreadStore:
    """Open the thread store at ``url`` and (unless ``setup=False``) create its schema.

    Options are the backend's keyword arguments (see `MemoryThreadStore` and
    `SQLThreadStore`), ``require_tenant=True`` (or ``?require_tenant=true`` in the URL):
    refuse every call that names no ``tenant`` (see `BaseStore.require_tenant`), and
    ``redactor=`` (or ``?redact=default``): redact messages before they are stored (see
    `memfold.redaction`), ``keyring=`` (or ``?keyring=env``): encrypt them at rest (see
    `memfold.encryption`). ``limits`` caps the size of what the store accepts
    (`memfold.limits.Limits`; None: the defaults). Every URL takes the store's retention
    policy as query options (``keep_last``, ``max_age_seconds``, ``ttl_seconds``,
    ``max_threads``; see `memfold.retention`), e.g. ``sqlite:///chat.db?ttl_seconds=2592000``.
    """
    store = _build(url, options)
    store.limits = check_limits(limits)
    if setup:
        store.setup()
    return store


async def aopen_store(
    url: str = "memory://", *, setup: bool = True, limits: Limits | None = None, **options: Any
) -> BaseThreadStore:
    """Async `open_store`: the schema is created without blocking the event loop."""
    store = _build(url, options)
    store.limits = check_limits(limits)
    if setup:
        await store.asetup()
    return store


_OPENERS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "threads": (open_store, aopen_store),
    "checkpoints": (open_checkpoint_store, aopen_checkpoint_store),
    "memories": (open_memory_store, aopen_memory_store),
}


def open_stores(
    url: str, *, kinds: Iterable[str] = KINDS, setup: bool = True, **options: Any
) -> list[AnyStore]:
    """A store of every kind ``url`` opens (thread, checkpoint and memory stores, in that
    order; a kind the URL does not support is left out), each opened with ``options``.

    Args:
        url: the store URL.
        kinds: only these kinds (``"threads"``, ``"checkpoints"``, ``"memories"``).
        setup: create or upgrade each store's schema.
        options: each kind's open options (``keyring=``, ``redactor=``, ...).

    Raises:
        InvalidInput: no kind opens ``url``, or an unknown kind.
    """
    stores: list[AnyStore] = []
    errors: list[InvalidInput] = []
    for kind in check_kinds(kinds):
        try:
            stores.append(_OPENERS[kind][0](url, setup=setup, **options))
        except InvalidInput as exc:
            errors.append(exc)
    if not stores:
        raise errors[0] if errors else InvalidInput("no store kind was asked for")
    return stores


async def aopen_stores(
    url: str, *, kinds: Iterable[str] = KINDS, setup: bool = True, **options: Any
) -> list[AnyStore]:
    """Async `open_stores`: schemas are set up without blocking the event loop."""
    stores: list[AnyStore] = []
    errors: list[InvalidInput] = []
    for kind in check_kinds(kinds):
        try:
            stores.append(await _OPENERS[kind][1](url, setup=setup, **options))
        except InvalidInput as exc:
            errors.append(exc)
    if not stores:
        raise errors[0] if errors else InvalidInput("no store kind was asked for")
    return stores


def create_memory(
    kind: str = "memory", *, db_path: str | Path | None = None, **options: Any
) -> BaseThreadStore:
    """Open a store by kind, in the style of other memory kits.

    ``create_memory("sqlite", db_path="chat.db")`` is ``open_store("sqlite:///chat.db")``.
    """
    if kind == "memory":
        return open_store("memory://", **options)
    if kind == "sqlite":
        if db_path is None:
            raise InvalidInput('create_memory("sqlite") needs db_path="path/to/file.db"')
        return open_store(f"sqlite:///{Path(db_path)}", **options)
    raise InvalidInput(f"unknown memory kind {kind!r}: use 'memory' or 'sqlite'")
