"""PostgreSQL row-level security by tenant.

Every memfold table that holds tenant data has a ``tenant`` column. A SQL store opened with
``row_level_security=True`` (or ``?row_level_security=true``) runs each operation in a
transaction that first sets ``memfold.tenant`` to the operation's tenant, with
``set_config('memfold.tenant', <tenant>, true)`` (the tenant a bound parameter), so a policy

    USING (tenant = current_setting('memfold.tenant', true))

keeps every statement of the transaction to that tenant's rows, whatever the statement says.
The setting is local to the transaction (``SET LOCAL``): it ends with the COMMIT or ROLLBACK and
nothing outlives it on the connection, so it is safe behind PgBouncer in transaction mode. An
operation that spans tenants (a sweep of every tenant) sets nothing, and
under the policy sees no rows: run those as a role the policy does not bind.

`policies` gives the statements that enable the policy on a store's tables.

Examples:
    >>> from memfold.backends.sql import SQLThreadStore
    >>> store = SQLThreadStore("postgresql://app@db.internal/app", schema="app",
    ...                        row_level_security=True)  # connects on first use
    >>> for statement in policies(store)[:3]:
    ...     print(statement)
    ALTER TABLE app.memfold_threads ENABLE ROW LEVEL SECURITY
    DROP POLICY IF EXISTS memfold_tenant ON app.memfold_threads
    CREATE POLICY memfold_tenant ON app.memfold_threads
        USING (tenant = current_setting('memfold.tenant', true))
        WITH CHECK (tenant = current_setting('memfold.tenant', true))
    >>> [statement.split()[2] for statement in policies(store)[::3]]
    ['app.memfold_threads', 'app.memfold_messages', 'app.memfold_tombstones']
    >>> store.close()
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from sqlalchemy import Engine, Table, text

from memfold import memory_ops
from memfold.errors import InvalidInput
from memfold.memories import SEP
from memfold.stores import check_flag
from memfold.urls import flag, take_option

__all__ = [
    "SETTING",
    "SET_TENANT",
    "TenantTables",
    "op_tenant",
    "policies",
    "row_level_security_option",
]

SETTING: Final = "memfold.tenant"
"""The PostgreSQL setting that holds the tenant of the running transaction."""

SET_TENANT: Final = text(f"SELECT set_config('{SETTING}', :tenant, true)")
"""Sets the tenant for the rest of the transaction (``is_local``: like ``SET LOCAL``)."""

_CURRENT = f"current_setting('{SETTING}', true)"


def op_tenant(op: Any) -> str | None:
    """The one tenant ``op`` acts for (None: it spans tenants).

    Thread, checkpoint and journal operations name it; a memory operation's namespace key (or
    prefix key) starts with it.

    Raises:
        InvalidInput: a memory write holding records of several tenants.
    """
    tenant = getattr(op, "tenant", None)
    if isinstance(tenant, str):
        return tenant
    if isinstance(op, memory_ops.PutMemories):
        tenants = {record.namespace[0] for record in op.records}
        if len(tenants) > 1:
            raise InvalidInput(
                "under row-level security one write holds one tenant's records: call "
                f"put_many once per tenant (this one holds {sorted(tenants)})"
            )
        return tenants.pop() if tenants else None
    key = getattr(op, "namespace", None) or getattr(op, "prefix", None)
    return key.split(SEP, 1)[0] if isinstance(key, str) and key else None


def row_level_security_option(url: Any, given: bool | None) -> tuple[Any, bool]:
    """``url`` without a ``row_level_security`` query option, and whether row-level security is
    on (the keyword ``given`` wins over the URL)."""
    found = None
    if isinstance(url, str):
        url, _, found = take_option(url, {}, "row_level_security", flag)
    return url, check_flag(found if given is None else given, "row_level_security")


class TenantTables(Protocol):
    """A SQL store whose tables carry tenants (the thread, checkpoint and memory stores)."""

    @property
    def engine(self) -> Engine: ...
    @property
    def tenant_tables(self) -> tuple[Table, ...]: ...


def policies(store: TenantTables, *, force: bool = False) -> list[str]:
    """The statements that turn row-level security on for ``store``'s tables, each with the
    policy ``memfold_tenant``: a row is visible and writable only while its tenant is the
    transaction's ``memfold.tenant``.

    Run them as the tables' owner, after ``setup()`` (again after an upgrade adds tables). The
    owner, a superuser or a BYPASSRLS role is not bound by the policy, unless ``force`` adds
    ``FORCE ROW LEVEL SECURITY`` (which binds the owner too).
    """
    quote = store.engine.dialect.identifier_preparer
    check = f"tenant = {_CURRENT}"
    statements = []
    for table in store.tenant_tables:
        name = quote.format_table(table)
        statements += [
            f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS memfold_tenant ON {name}",
            f"CREATE POLICY memfold_tenant ON {name} USING ({check}) WITH CHECK ({check})",
        ]
        if force:
            statements.append(f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY")
    return statements
