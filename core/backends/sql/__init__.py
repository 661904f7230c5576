"""SQL backends on SQLAlchemy 2 Core: one schema, one set of statements, sync and async drivers."""

from memfold.backends.sql.store import SQLThreadStore

__all__ = ["SQLThreadStore"]
