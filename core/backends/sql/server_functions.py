"""PostgreSQL: a checkpoint put as the call of a function whose body is its statement.

Without prepared statements (memfold's default on PostgreSQL, since a pooler in transaction
mode can hand one client's named statement to another), the server parses and plans every
statement it receives. A checkpoint put is one large statement, and parsing and planning it
takes several times as long as running it. PL/pgSQL keeps the plans of the statements in a
function's body for the life of the connection: state that neither the client nor a pooler
tracks. So a store runs each shape of its put statement as ``SELECT * FROM <name>($1, ...)``,
where ``<name>`` is ``<table prefix>put_`` and a hash of the statement's text (a release that
changes the statement calls a new function).

A function is created by the first put of its shape that runs outside a transaction, in a
transaction of its own: an advisory lock keeps two processes from creating it at once, and the
parameter types are those the server infers for the statement (``PREPARE``). Where it cannot be
created (no ``CREATE`` privilege on the schema, say), that shape runs as a plain statement. A
function dropped behind a store's back is created again by a later put; a dropped schema takes
its functions with it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Generator
from typing import Any

__all__ = ["ServerFunctions"]

_UNDEFINED_FUNCTION = "42883"
"""The SQLSTATE of a call of a function that does not exist."""

Step = Generator[tuple[str, Any], list[Any], None]
"""What a runner executes to create a function: ``(sql, parameters)`` pairs, each sent back its
rows."""

_TAG = "$memfold_put$"


class ServerFunctions:
    """The put statements a store routes through functions, and the calls of those made.

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
        self._eligible: set[str] = set()
        self._calls: dict[str, str | None] = {}
        """Statement text: its call (None: runs as it is)."""

    def register(self, sql: str) -> None:
        """Route ``sql`` (a statement returning one ``bigint`` column) through a function."""
        self._eligible.add(sql)

    def call(self, sql: str) -> str | None:
        """The call that runs ``sql``, once its function exists (None: run ``sql``)."""
        return self._calls.get(sql)

    def wants(self, sql: str) -> bool:
        """Whether ``sql`` is routed but has no function yet (`creation` makes it)."""
        return sql in self._eligible and sql not in self._calls

    def refuse(self, sql: str) -> None:
        """Run ``sql`` as it is from now on (its function could not be created)."""
        self._calls[sql] = None

    def run_plain(self, sql: str, error: Exception, in_transaction: bool) -> bool:
        """Whether ``sql`` should run as it is after its call raised ``error``: the function
        is gone (the next use creates it again) and no transaction is open to abort."""
        if getattr(error, "sqlstate", None) != _UNDEFINED_FUNCTION:
            return False
        self._calls.pop(sql, None)
        return not in_transaction

    def creation(self, sql: str) -> Step:
        """The statements that create ``sql``'s function (unless another connection did) in a
        transaction of their own; records the call once they committed."""
        digest = hashlib.sha256(sql.encode()).digest()
        name = f"{self._prefix}put_{digest.hex()[:16]}"
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
            self._calls[sql] = None
            return
        else:
            probe = f"memfold_probe_{uuid.uuid4().hex}"
            yield f"PREPARE {probe} AS {sql}", None
            types = yield (
                "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = $1",
                (probe,),
            )
            yield f"DEALLOCATE {probe}", None
            arguments = list(types[0][0])
            count = len(arguments)
            yield (
                f"CREATE FUNCTION {qualified}({', '.join(arguments)}) RETURNS SETOF bigint "
                f"LANGUAGE plpgsql AS {_TAG} BEGIN RETURN QUERY {sql}; END {_TAG}",
                None,
            )
        yield "COMMIT", None
        placeholders = ", ".join(f"${i}" for i in range(1, count + 1))
        self._calls[sql] = f"SELECT * FROM {qualified}({placeholders})"
