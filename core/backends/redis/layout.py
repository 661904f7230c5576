"""Each Redis store kind's key layout as numbered steps, its version recorded in one key.

The thread store records its layout at ``Playout``, the checkpoint store at ``Pc:layout`` and
the memory store at ``Pm:layout`` (for key prefix ``P``; see `memfold.schema_steps`). Every step
so far changes only what new writes look like, and memfold reads the data of every earlier step
as it is, so applying a step is recording its number; a kind whose step adds an index gives a
*backfill*, which fills it in for the data of earlier steps (idempotently) before the number is
recorded. Recording happens in one Lua script, which Redis runs alone (the lock): it compares
the version found with this memfold's and raises it, never lowers it, so two processes
upgrading at once record each step once. A version newer than this memfold's is left as it is
and raises `memfold.errors.SchemaTooNew`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final

from memfold.backends.redis.calls import Call
from memfold.backends.redis.scripts import Script
from memfold.schema_steps import SchemaStatus, SchemaSteps, Step

if TYPE_CHECKING:
    from memfold.backends.redis.store import RedisThreadStore

__all__ = ["UPGRADE", "RedisLayout"]

UPGRADE: Final = Script(
    """
local found = tonumber(redis.call('GET', KEYS[1]) or '0')
if found < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return found
"""
)
"""``KEYS = layout key``, ``ARGV = latest``: record ``latest`` unless a version at least as new
is there; returns the version found (0: none)."""


def _version(reply: bytes | None) -> int:
    return 0 if reply is None else int(reply)


class RedisLayout(SchemaSteps):
    """One store kind's layout steps under a key prefix, recorded at ``key``.

    Args:
        redis: the thread store whose clients send the commands.
        kind: ``threads``, ``checkpoints`` or ``memories``.
        key: the key holding the version.
        steps: the kind's layout steps.
        scripts: the store's scripts, loaded by each upgrade in the same round trip.
        backfill: makes the flow that fills in the indexes of the latest step for data written
            by an earlier one (run by an upgrade from a version between 1 and the latest).
    """

    backend = "redis"

    def __init__(
        self,
        redis: RedisThreadStore,
        kind: str,
        key: str,
        steps: tuple[Step, ...],
        scripts: tuple[Script, ...],
        *,
        backfill: Callable[[], Generator[Call[Any], Any, Any]] | None = None,
    ) -> None:
        self.redis, self.kind, self.key, self.steps, self.scripts = redis, kind, key, steps, scripts
        self.backfill = backfill
        self.where = f"under key_prefix {redis.key_prefix!r}"

    def status(self) -> SchemaStatus:
        """Read the recorded version (changes nothing)."""
        return self.status_at(self.redis._send(Call(("GET", self.key), _version)))

    async def astatus(self) -> SchemaStatus:
        """Async `status`."""
        return self.status_at(await self.redis._asend(Call(("GET", self.key), _version)))

    def upgrade(self) -> SchemaStatus:
        """Fill in what the latest step indexes (if it has a backfill and older data is
        there), then record the latest version and load the scripts in one round trip."""
        if self.backfill is not None and 0 < self.status().version < self.latest:
            self.redis.drive(self.backfill())
        return self.status_at(self.redis.claim_layout(self.key, self.latest, self.scripts))

    async def aupgrade(self) -> SchemaStatus:
        """Async `upgrade`."""
        if self.backfill is not None and 0 < (await self.astatus()).version < self.latest:
            await self.redis.adrive(self.backfill())
        found = await self.redis.aclaim_layout(self.key, self.latest, self.scripts)
        return self.status_at(found)
