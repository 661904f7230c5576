"""SQL backends on SQLAlchemy 2 Core: SQLite and PostgreSQL share one schema, one set of
statements, and sync and async drivers."""

from memfold.backends.sql.store import SQLThreadStore

__all__ = ["SQLThreadStore"]
