"""Numbered schema steps: one framework for every backend and store kind.

Each store kind (``threads``, ``checkpoints``, ``memories``) has, on each backend that keeps a
schema, an append-only tuple of `Step` numbered 1, 2, ... and a record of the steps applied: a
version table on SQL (`memfold.backends.sql.migrations`), a key on Redis
(`memfold.backends.redis.layout`), the collection's metadata on Chroma. A `SchemaSteps` reads
that record (`SchemaSteps.status`, which changes nothing) and applies the missing steps under
the backend's lock (`SchemaSteps.upgrade`, what a store's ``setup()`` runs). A record newer than
this memfold's steps raises `memfold.errors.SchemaTooNew`, and nothing is changed.

A schema change is a new step at the end of its kind's tuple, never an edit of a released one;
`memfold.schema` reports and applies the steps of every kind a URL opens.

Examples:
    >>> import tempfile, pathlib
    >>> from memfold import open_store
    >>> store = open_store(f"sqlite:///{pathlib.Path(tempfile.mkdtemp()) / 'x.db'}")
    >>> [(s.kind, s.backend, s.version == s.latest, s.pending) for s in
    ...  (steps.status() for steps in store.schema_steps())]
    [('threads', 'sqlite', True, ())]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from memfold.errors import SchemaTooNew

__all__ = ["PendingStep", "SchemaStatus", "SchemaSteps", "Step"]


@dataclass(frozen=True, slots=True)
class Step:
    """One released schema change of a store kind on a backend: its number and what it does."""

    version: int
    description: str


@dataclass(frozen=True, slots=True)
class PendingStep:
    """A step not applied yet, and the statements an upgrade runs for it (SQL only; the first
    pending step's also create the version table, schema and extensions it needs)."""

    version: int
    description: str
    statements: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where one store kind's schema stands on one backend.

    ``version`` is the last step applied (0: none, the schema does not exist yet), ``latest``
    this memfold's last step, and ``pending`` the steps in between. An upgrade returns the
    status it found, with ``pending`` the steps it applied itself (another process may have
    applied the others first).
    """

    kind: str
    backend: str
    version: int
    latest: int
    pending: tuple[PendingStep, ...] = ()

    @property
    def up_to_date(self) -> bool:
        """Whether no step is pending."""
        return not self.pending


class SchemaSteps(ABC):
    """The steps of one store kind on one backend, and the record of those applied there.

    Subclasses read the record and apply steps for their backend; this class decides what is
    pending and refuses a record newer than the steps.
    """

    kind: str
    """``threads``, ``checkpoints`` or ``memories``."""
    backend: str
    """The backend's name (``sqlite``, ``postgresql``, ``redis``, ``chroma``)."""
    where: str
    """Where the schema lives, for messages (a key prefix, a collection); may be empty."""
    steps: tuple[Step, ...]
    """Append-only, numbered from 1."""

    @property
    def latest(self) -> int:
        """The version after every step."""
        return self.steps[-1].version

    def check(self, version: int) -> None:
        """Raise `SchemaTooNew` if ``version`` is newer than this memfold's steps."""
        if version > self.latest:
            where = f" {self.where}" if self.where else ""
            raise SchemaTooNew(
                f"the {self.backend} {self.kind} schema{where} is at version {version}, newer "
                f"than this memfold knows ({self.latest}): upgrade memfold to use it"
            )

    def status_at(
        self,
        version: int,
        applied: Callable[[Step], bool] | None = None,
        statements: Callable[[Step], tuple[str, ...]] = lambda step: (),
    ) -> SchemaStatus:
        """The status of a schema at ``version``: the steps ``applied`` says are missing
        (default: those above ``version``) are pending, with their ``statements``."""
        self.check(version)
        missing = [
            step
            for step in self.steps
            if (step.version > version if applied is None else not applied(step))
        ]
        pending = tuple(
            PendingStep(step.version, step.description, statements(step)) for step in missing
        )
        return SchemaStatus(self.kind, self.backend, version, self.latest, pending)

    @abstractmethod
    def status(self) -> SchemaStatus:
        """Read where the schema stands (changes nothing)."""

    @abstractmethod
    async def astatus(self) -> SchemaStatus:
        """Async `status`."""

    @abstractmethod
    def upgrade(self) -> SchemaStatus:
        """Apply the pending steps under the backend's lock (idempotent); returns the status
        found, ``pending`` holding the steps this call applied."""

    @abstractmethod
    async def aupgrade(self) -> SchemaStatus:
        """Async `upgrade`."""
