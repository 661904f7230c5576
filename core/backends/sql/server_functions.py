"""PostgreSQL: the hot statements of a checkpoint store (puts and reads) as calls of functions
whose body is the statement.

Without prepared statements (memfold's default on PostgreSQL, since a pooler in transaction mode
can hand one client's named statement to another), the server parses and plans every statement
it receives. A checkpoint put is one large statement, and a read joins a checkpoint with its
writes and value rows; parsing and planning them takes longer than running them. PL/pgSQL keeps
the plans of the statements in a function's body for the life of the connection: state that
neither the client nor a pooler tracks. So a store runs each shape of those statements as
``SELECT * FROM <name>($1, ...)``, where ``<name>`` is the table prefix, the statement's kind
(``put_``, ``get_``, ``list_``) and a hash of its text and result types (a release that changes
the statement, or a schema step that changes the types it returns, calls a new function).

A statement's first run is plain, and tells its result's column types. The function is then
created when the store's next operation starts, before that operation's own transaction, in a
transaction of its own: an advisory lock keeps two processes from creating it at once, and the
parameter types are those the server infers for the statement (``PREPARE``). Where it cannot be
created (no ``CREATE`` privilege on the schema, say), the statement runs plain. A function
dropped behind a store's back is created again by a later run; a dropped schema takes its
functions with it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Generator
from typing import Any

__all__ = ["ServerFunctions"]

_STALE = ("42883", "42804")
"""The SQLSTATEs of a call of a function that does not exist, and of one whose result types are
no longer its statement's (a schema step changed a column's type)."""

Step = Generator[tuple[str, Any], list[Any], None]
"""What a runner executes to create a function: ``(sql, parameters)`` pairs, each sent back its
rows."""

_TAG = "$memfold_fn$"


class ServerFunctions:
    """The statements a store routes through functions, and the calls of those made.

    Args:
        schema: the schema holding the store's tables and its functions (None: the
            connection's current schema).
        prefix: the store's table prefix, which starts every function name.
        quote: quotes an identifier for PostgreSQL.
    """

    def __init__(self, schema: str | None, prefix: str, quote: Any) -> None:
        self._schema = schema
        self._prefix = prefix
        self._quote = quote
        self._kinds: dict[str, str] = {}
        """Statement text: the word its function's name starts with."""
        self._types: dict[str, tuple[int, ...]] = {}
        """Statement text: the type OIDs of its result's columns, from its first run."""
        self._calls: dict[str, str | None] = {}
        """Statement text: its call (None: runs as it is)."""
        self.waiting: set[str] = set()
        """Statements that ran plain and have no function yet (`creation` makes them)."""

    def register(self, sql: str, kind: str) -> None:
        """Route ``sql`` (a statement returning rows) through a function named for ``kind``."""
        self._kinds[sql] = kind

    def call(self, sql: str) -> str | None:
        """The call that runs ``sql``, once its function exists (None: run ``sql``)."""
        return self._calls.get(sql)

    def ran(self, sql: str, description: Any) -> None:
        """Note what ``sql`` returned on a plain run (a DB-API ``cursor.description``): its
        column types, which its function returns."""
        if sql in self._kinds and sql not in self._types and description:
            self._types[sql] = tuple(int(column.type_code) for column in description)
            if sql not in self._calls:
                self.waiting.add(sql)

    def refuse(self, sql: str) -> None:
        """Run ``sql`` as it is from now on (its function could not be created)."""
        self._calls[sql] = None
        self.waiting.discard(sql)

    def forget(self, sql: str, error: Exception) -> bool:
        """Whether ``error``, raised by ``sql``'s call, says its function is gone or stale; if
        so ``sql`` runs plain again (its next plain run notes its types, and a later operation
        makes a function for them)."""
        if getattr(error, "sqlstate", None) not in _STALE:
            return False
        self._calls.pop(sql, None)
        self._types.pop(sql, None)
        return True

    def creation(self, sql: str) -> Step:
        """The statements that create ``sql``'s function (unless another connection did) in a
        transaction of their own; records the call once they committed."""
        signature = "\x00".join([sql, *map(str, self._types[sql])])
        digest = hashlib.sha256(signature.encode()).digest()
        name = f"{self._prefix}{self._kinds[sql]}_{digest.hex()[:16]}"
        qualified = self._quote.quote(name)
        if self._schema is not None:
            qualified = f"{self._quote.quote_schema(self._schema)}.{qualified}"
        yield "BEGIN", None
        yield "SELECT pg_advisory_xact_lock($1)", (int.from_bytes(digest[:8], "big", signed=True),)
        found = yield (
            "SELECT (SELECT pronargs FROM pg_proc WHERE proname = $1 AND pronamespace = "
            "(SELECT oid FROM pg_namespace WHERE nspname = s)), has_schema_privilege(s, 'CREATE') "
            "FROM COALESCE($2::text, current_schema()) AS s",
            (name, self._schema),
        )
        existing, allowed = found[0]
        if existing is not None:
            count = int(existing)
        elif not allowed:
            yield "COMMIT", None
            self.refuse(sql)
            return
        else:
            probe = f"memfold_probe_{uuid.uuid4().hex}"
            yield f"PREPARE {probe} AS {sql}", None
            types = yield (
                "SELECT parameter_types::text[], ARRAY(SELECT format_type(t, NULL) FROM "
                "unnest($2::oid[]) WITH ORDINALITY AS r(t, i) ORDER BY i) "
                "FROM pg_prepared_statements WHERE name = $1",
                (probe, list(self._types[sql])),
            )
            yield f"DEALLOCATE {probe}", None
            arguments, results = (list(column) for column in types[0])
            count = len(arguments)
            returns = (
                f"SETOF {results[0]}"
                if len(results) == 1
                else f"TABLE ({', '.join(f'out_{i} {t}' for i, t in enumerate(results))})"
            )
            yield (
                f"CREATE FUNCTION {qualified}({', '.join(arguments)}) RETURNS {returns} "
                f"LANGUAGE plpgsql AS {_TAG} #variable_conflict use_column\n"
                f"BEGIN RETURN QUERY {sql}; END {_TAG}",
                None,
            )
        yield "COMMIT", None
        placeholders = ", ".join(f"${i}" for i in range(1, count + 1))
        self._calls[sql] = f"SELECT * FROM {qualified}({placeholders})"
        self.waiting.discard(sql)
