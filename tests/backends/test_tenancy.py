"""Every store call acts for one tenant: the default tenant when a call names none, unless the
store requires a tenant, in which case a call that names none is refused and stores nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from memfold import DEFAULT_TENANT, InvalidInput, Message, open_store
from memfold.checkpoints import (
    BaseCheckpointStore,
    Blob,
    PendingWrite,
    RetentionPolicy,
    open_checkpoint_store,
)
from memfold.journal import EffectJournal
from memfold.memories import open_memory_store
from memfold.stores import BaseThreadStore
from tests.support import (
    BACKENDS,
    PG_URL,
    REDIS_URL,
    Api,
    drop_checkpoint_store,
    drop_store,
    has,
)

REQUIRE = "require_tenant=true"
BODY = Blob("json", b"{}")


def _server_options() -> tuple[dict[str, str], dict[str, str]]:
    """A fresh Redis key prefix and a fresh PostgreSQL schema (dropped by the drop helpers)."""
    return (
        {"key_prefix": f"memfold-test:{uuid.uuid4().hex}:"},
        {"schema": f"memfold_test_{uuid.uuid4().hex}"},
    )


def _url(backend: str, tmp_path: Path, name: str) -> tuple[str, dict[str, Any]]:
    """A URL of ``backend`` asking for ``require_tenant``, and the options that keep the store
    apart from other tests."""
    prefix, schema = _server_options()
    if backend == "memory":
        return f"memory://?{REQUIRE}", {}
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / name}?{REQUIRE}", {}
    if backend == "postgresql":
        return f"{PG_URL}?{REQUIRE}", schema
    if backend == "redis":
        return f"{REDIS_URL}?{REQUIRE}", prefix
    durable = quote(PG_URL, safe="")
    options = {"hot_options": prefix, "durable_options": schema}
    return f"tiered+{REDIS_URL}?durable={durable}&{REQUIRE}", options


@pytest.fixture(params=BACKENDS)
async def strict(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseThreadStore]:
    """A thread store opened from a URL with ``?require_tenant=true``."""
    url, options = _url(str(request.param), tmp_path, "threads.db")
    store = open_store(url, **options)
    yield store
    await store.aclose()
    drop_store(store)


ThreadCall = Callable[..., Awaitable[Any]]

THREAD_CALLS: dict[str, ThreadCall] = {
    "append": lambda api, **t: api.append("t", Message(role="user", content="hi there"), **t),
    "replace": lambda api, **t: api.replace(
        "t", [Message(role="user", content="hi there", id="m1")], **t
    ),
    "update_messages": lambda api, **t: api.update_messages(
        "t", [Message(role="user", content="hello there", id="m1")], **t
    ),
    "delete_messages": lambda api, **t: api.delete_messages("t", ["nobody"], **t),
    "load": lambda api, **t: api.load("t", **t),
    "count": lambda api, **t: api.count("t", **t),
    "get_thread": lambda api, **t: api.get_thread("t", **t),
    "list_threads": lambda api, **t: api.list_threads(**t),
    "set_thread_metadata": lambda api, **t: api.set_thread_metadata("t", {"k": 1}, **t),
    "search": lambda api, **t: api.search("hello", **t),
    "clear": lambda api, **t: api.clear("t", **t),
    "delete_thread": lambda api, **t: api.delete_thread("t", **t),
}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_store_requiring_a_tenant_refuses_every_call_without_one(
    strict: BaseThreadStore, use_async: bool
) -> None:
    """With ``?require_tenant=true`` each thread call that names no tenant raises InvalidInput
    saying what to pass and stores nothing, while the same call naming a tenant runs."""
    api = Api(strict, use_async)
    assert api.store.require_tenant
    searchable = await has(api, "full_text_search")
    for name, call in THREAD_CALLS.items():
        if name == "search" and not searchable:
            continue
        with pytest.raises(InvalidInput, match=r"require_tenant.*pass tenant="):
            await call(api)
        await call(api, tenant="acme")
        if name == "replace":
            assert [m.content for m in await api.load("t", tenant="acme")] == ["hi there"]
        if name == "search":
            assert [h.message.content for h in await call(api, tenant="acme")] == ["hello there"]
    assert await api.list_threads(tenant=DEFAULT_TENANT) == []
    assert await api.count("t", tenant=DEFAULT_TENANT) == 0
    assert await api.list_threads(tenant="acme") == []  # delete_thread ran last
    with pytest.raises(InvalidInput, match="tenant"):
        await api.clear_tenant(None)


async def test_the_default_tenant_serves_calls_that_name_none(api: Api) -> None:
    """A store that does not require a tenant runs a call without one for the default tenant,
    which is one tenant among others."""
    assert not api.store.require_tenant
    await api.append("t", Message(role="user", content="mine"))
    await api.append("t", Message(role="user", content="theirs"), tenant="other")
    assert [m.content for m in await api.load("t", tenant=DEFAULT_TENANT)] == ["mine"]
    assert [m.content for m in await api.load("t")] == ["mine"]
    assert [t.tenant for t in await api.list_threads()] == [DEFAULT_TENANT]
    assert await api.delete_thread("t")
    assert [m.content for m in await api.load("t", tenant="other")] == ["theirs"]


def test_require_tenant_is_a_keyword_too(tmp_path: Path) -> None:
    """``require_tenant=True`` as a keyword does what the URL option does; a keyword wins over
    the URL, and a value that is not a flag is refused."""
    with (
        open_store(f"sqlite:///{tmp_path / 'k.db'}", require_tenant=True) as store,
        pytest.raises(InvalidInput, match="require_tenant"),
    ):
        store.load("t")
    with open_store(f"memory://?{REQUIRE}", require_tenant=False) as store:
        assert store.load("t") == []
    with pytest.raises(InvalidInput, match="true or false"):
        open_store("memory://?require_tenant=maybe")
    with pytest.raises(InvalidInput, match="require_tenant must be True or False"):
        open_store("memory://", require_tenant="yes")
    with open_memory_store(f"memory://?{REQUIRE}") as memories:
        assert memories.require_tenant  # a namespace names its tenant: nothing to refuse
        assert memories.put(("acme", "u1"), "kept").namespace == ("acme", "u1")


# Checkpoints and the effect journal.


@pytest.fixture(params=BACKENDS)
async def strict_checkpoints(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BaseCheckpointStore]:
    """A checkpoint store opened from a URL with ``?require_tenant=true``."""
    url, options = _url(str(request.param), tmp_path, "checkpoints.db")
    store = open_checkpoint_store(url, **options)
    yield store
    await store.aclose()
    drop_checkpoint_store(store)


CHECKPOINT_CALLS: dict[str, ThreadCall] = {
    "put": lambda api, **t: api.put("t", "c2", BODY, parent_id="c1", **t),
    "put_writes": lambda api, **t: api.put_writes(
        "t", "c2", [PendingWrite("task", 0, "ch", BODY)], **t
    ),
    "get": lambda api, **t: api.get("t", **t),
    "list_checkpoints": lambda api, **t: api.list_checkpoints(**t),
    "stats": lambda api, **t: api.stats(**t),
    "set_thread_ttl": lambda api, **t: api.set_thread_ttl("t", 3600, **t),
    "release": lambda api, **t: api.release("t", "nobody", **t),
    "copy_thread": lambda api, **t: api.copy_thread("t", "copy", **t),
    "delete_for_runs": lambda api, **t: api.delete_for_runs(["run"], **t),
    "prune": lambda api, **t: api.prune(["t"], **t),
    "sweep": lambda api, **t: api.sweep(RetentionPolicy(keep_last=1), **t),
    "delete_thread": lambda api, **t: api.delete_thread("t", **t),
}

JOURNAL_CALLS: dict[str, ThreadCall] = {
    "record": lambda api, **t: api.record("t", "call", {"ok": True}, **t),
    "get": lambda api, **t: api.get("t", "call", **t),
    "list_entries": lambda api, **t: api.list_entries("t", **t),
    "delete_thread": lambda api, **t: api.delete_thread("t", **t),
}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_checkpoint_store_requiring_a_tenant_refuses_calls_without_one(
    strict_checkpoints: BaseCheckpointStore, use_async: bool
) -> None:
    """Each checkpoint and journal call that names no tenant raises InvalidInput and stores
    nothing (a sweep too: it would cover every tenant); naming one, it runs."""
    api = Api(strict_checkpoints, use_async)  # type: ignore[arg-type]  # any store works
    await api.put("t", "c1", BODY, tenant="acme")
    for name, call in CHECKPOINT_CALLS.items():
        with pytest.raises(InvalidInput, match=r"require_tenant.*pass tenant="):
            await call(api)
        await call(api, tenant="acme")
        if name == "copy_thread":
            assert len(await api.list_checkpoints("copy", tenant="acme")) == 2
    assert await api.list_checkpoints(tenant=DEFAULT_TENANT) == []
    journal = Api(EffectJournal(strict_checkpoints), use_async)  # type: ignore[arg-type]
    for name, call in JOURNAL_CALLS.items():
        with pytest.raises(InvalidInput, match=r"require_tenant.*pass tenant="):
            await call(journal)
        await call(journal, tenant="acme")
        if name == "record":
            assert (await journal.get("t", "call", tenant="acme")).result == {"ok": True}
    assert await journal.list_entries("t", tenant=DEFAULT_TENANT) == []
    assert {c.thread_id for c in await api.list_checkpoints(tenant="acme")} == {"copy"}
