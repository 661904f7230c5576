"""Tombstones on Chroma: one item per tombstone in a collection of their own; pure, no I/O.

Chroma has no triggers or scripts, so `memfold.backends.chroma.store` checks the tombstones
around every put: before writing (a put under an erased tenant or user writes nothing), and
again after (a put that raced an erasure removes what it wrote under the erased namespaces),
while an erasure places its tombstones before reading what to delete. Either the erasure's read
sees the put's items, or the put's second check sees the tombstone.

The collection ``<collection>_tombstones`` holds, per tombstone (see `memfold.tombstones`), an
item whose id is ``tenant US kind US name`` (US: the unit separator ``\\x1f``), whose embedding
is ``[1.0]`` (Chroma stores a vector with every item) and whose metadata holds the tombstone's
fields, times in µs (``NEVER`` when it does not expire). Tombstones hold identifiers only.

Examples:
    >>> stone_ids(("acme", "ann", "prefs"))
    ('acme\\x1ftenant\\x1f', 'acme\\x1fuser\\x1fann')
    >>> from datetime import UTC, datetime
    >>> stone = Tombstone("acme", "user", "ann", "ann", datetime(2026, 1, 1, tzinfo=UTC))
    >>> decode(metadata(stone)) == stone
    True
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from memfold.backends.chroma.mapping import NEVER, micros
from memfold.memory_model import Namespace
from memfold.tombstones import TENANT, USER, Kind, Tombstone

__all__ = ["EMBEDDING", "SUFFIX", "decode", "metadata", "stone_id", "stone_ids"]

SUFFIX: Final = "_tombstones"
"""What the tombstone collection's name adds to the records collection's."""

EMBEDDING: Final = (1.0,)
"""The vector stored with each tombstone (never searched)."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def stone_id(tenant: str, kind: Kind, name: str) -> str:
    """The item id of tombstone ``(tenant, kind, name)``."""
    return f"{tenant}\x1f{kind}\x1f{name}"


def stone_ids(namespace: Namespace) -> tuple[str, ...]:
    """The ids of the tombstones that refuse a write under ``namespace``: its tenant's, and its
    user's (the second label) if it has one."""
    tenant = stone_id(namespace[0], TENANT, "")
    if len(namespace) < 2:
        return (tenant,)
    return tenant, stone_id(namespace[0], USER, namespace[1])


def metadata(stone: Tombstone) -> dict[str, str | int]:
    """The metadata of ``stone``'s item."""
    return {
        "tenant": stone.tenant,
        "kind": stone.kind,
        "name": stone.name,
        "subject": stone.subject,
        "erased_at": micros(stone.erased_at),
        "expires_at": NEVER if stone.expires_at is None else micros(stone.expires_at),
    }


def decode(meta: dict[str, Any]) -> Tombstone:
    """The tombstone an item's metadata holds."""
    expires = int(meta["expires_at"])
    return Tombstone(
        str(meta["tenant"]),
        cast("Kind", meta["kind"]),
        str(meta.get("name") or ""),
        str(meta.get("subject") or ""),
        _EPOCH + timedelta(microseconds=int(meta["erased_at"])),
        None if expires == NEVER else _EPOCH + timedelta(microseconds=expires),
    )
