"""Schema status and upgrades for every store kind a URL opens (``memfold db status`` and
``memfold db upgrade`` from Python).

A URL opens the thread, checkpoint and long-term memory stores it can (``chroma://`` only
memories; ``memory://`` keeps no schema at all); each reports its numbered steps per backend
(see `memfold.schema_steps`). `status` only reads. `upgrade` applies the pending steps of each
kind under its backend's lock, the same as each store's ``setup()``; with ``dry_run`` it only
reports them, with the DDL a SQL database would run. A database made by a newer memfold raises
`memfold.errors.SchemaTooNew` before anything is changed.

Long-term memories on PostgreSQL are sized by their vector length: an existing memory table's
is read from the database, and ``dimensions`` sizes a new one (without it, a database with no
memory table leaves memories out). Keyword ``options`` (``schema``, ``table_prefix``,
``key_prefix``, ...) go to every store the URL opens.

Examples:
    >>> import tempfile, pathlib
    >>> from memfold import schema
    >>> url = f"sqlite:///{pathlib.Path(tempfile.mkdtemp()) / 'chat.db'}"
    >>> fresh = schema.status(url)
    >>> [(s.kind, s.version, s.pending[0].version) for s in fresh]
    [('threads', 0, 1), ('checkpoints', 0, 1), ('memories', 0, 1)]
    >>> planned = schema.upgrade(url, dry_run=True)  # changes nothing
    >>> [s.pending for s in planned] == [s.pending for s in fresh]
    True
    >>> [len(s.pending) for s in schema.upgrade(url)] == [s.latest for s in fresh]
    True
    >>> all(s.up_to_date for s in schema.status(url))
    True
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from memfold.errors import InvalidInput
from memfold.schema_steps import PendingStep, SchemaStatus, SchemaSteps
from memfold.stores import BaseStore
from memfold.urls import check_url

__all__ = ["PendingStep", "SchemaStatus", "astatus", "aupgrade", "status", "upgrade"]


def _postgres(url: str) -> bool:
    return urlsplit(url).scheme.split("+")[0] in ("postgresql", "postgres")


def _open(url: str, dimensions: int | None, options: dict[str, Any]) -> list[BaseStore]:
    """Every store kind ``url`` opens, not set up (a kind the URL does not support is left out;
    if none opens, the long-term memory store's error says why)."""
    from memfold.checkpoints import open_checkpoint_store
    from memfold.memories import open_memory_store
    from memfold.open import open_store

    check_url(url)
    stores: list[BaseStore] = []
    errors: list[InvalidInput] = []
    sized = options if dimensions is None else {**options, "dimensions": dimensions}
    for opener, kind_options in (
        (open_store, options),
        (open_checkpoint_store, options),
        (open_memory_store, sized),
    ):
        try:
            stores.append(opener(url, setup=False, **kind_options))
        except InvalidInput as exc:
            errors.append(exc)
    if not stores:
        raise errors[-1]
    return stores


def _table_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in ("schema", "table_prefix")}


def _stores(target: str | BaseStore, dimensions: int | None, **options: Any) -> list[BaseStore]:
    if isinstance(target, BaseStore):
        return [target]
    if dimensions is None and _postgres(target):
        from memfold.backends.sql.memory_store import stored_dimensions

        dimensions = stored_dimensions(target, **_table_options(options))
    return _open(target, dimensions, options)


async def _astores(
    target: str | BaseStore, dimensions: int | None, **options: Any
) -> list[BaseStore]:
    if isinstance(target, BaseStore):
        return [target]
    if dimensions is None and _postgres(target):
        from memfold.backends.sql.memory_store import astored_dimensions

        dimensions = await astored_dimensions(target, **_table_options(options))
    return _open(target, dimensions, options)


def _steps(stores: list[BaseStore]) -> list[SchemaSteps]:
    return [steps for store in stores for steps in store.schema_steps()]


def status(
    target: str | BaseStore, *, dimensions: int | None = None, **options: Any
) -> list[SchemaStatus]:
    """Where the schema of each store kind at ``target`` (a URL or a store) stands, threads,
    then checkpoints, then memories (a tiered store's durable tier before its hot one).
    Changes nothing.

    Raises:
        SchemaTooNew: a schema was made by a newer memfold.
        Conflict: a recorded SQL step differs from this memfold's.
    """
    stores = _stores(target, dimensions, **options)
    try:
        return [steps.status() for steps in _steps(stores)]
    finally:
        if not isinstance(target, BaseStore):
            for store in stores:
                store.close()


async def astatus(
    target: str | BaseStore, *, dimensions: int | None = None, **options: Any
) -> list[SchemaStatus]:
    """Async `status`."""
    stores = await _astores(target, dimensions, **options)
    try:
        return [await steps.astatus() for steps in _steps(stores)]
    finally:
        if not isinstance(target, BaseStore):
            for store in stores:
                await store.aclose()


def upgrade(
    target: str | BaseStore,
    *,
    dry_run: bool = False,
    dimensions: int | None = None,
    **options: Any,
) -> list[SchemaStatus]:
    """Apply the pending steps of each store kind at ``target`` (a URL or a store), each kind
    in one transaction under its backend's lock; safe to run from several processes at once.

    Returns each kind's status as found, ``pending`` holding the steps this call applied (with
    ``dry_run``: the steps an upgrade would apply, and nothing is changed).

    Raises:
        SchemaTooNew: a schema was made by a newer memfold (nothing of that kind is changed).
        Conflict: a recorded SQL step differs from this memfold's.
    """
    if dry_run:
        return status(target, dimensions=dimensions, **options)
    stores = _stores(target, dimensions, **options)
    try:
        return [steps.upgrade() for steps in _steps(stores)]
    finally:
        if not isinstance(target, BaseStore):
            for store in stores:
                store.close()


async def aupgrade(
    target: str | BaseStore,
    *,
    dry_run: bool = False,
    dimensions: int | None = None,
    **options: Any,
) -> list[SchemaStatus]:
    """Async `upgrade`."""
    if dry_run:
        return await astatus(target, dimensions=dimensions, **options)
    stores = await _astores(target, dimensions, **options)
    try:
        return [await steps.aupgrade() for steps in _steps(stores)]
    finally:
        if not isinstance(target, BaseStore):
            for store in stores:
                await store.aclose()
