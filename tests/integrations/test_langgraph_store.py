"""MemfoldStore behaves as LangGraph's long-term store on every memory backend, sync and async."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.graph import START, StateGraph
from langgraph.store.base import GetOp, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

import memfold.memories
from memfold.errors import InvalidInput, UnsupportedOperation
from memfold.integrations.langgraph import MemfoldStore
from memfold.memories import BaseMemoryStore
from tests.support import MEMORY_BACKENDS, Api, drop_checkpoint_store, make_memory_store

USERS = ("users", "u1")


@pytest.fixture(params=MEMORY_BACKENDS)
def memory_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseMemoryStore]:
    """A fresh memory store of each backend, with the hashing embedder."""
    store = make_memory_store(str(request.param), tmp_path)
    yield store
    store.close()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops any test schema


@pytest.fixture(params=["sync", "async"])
def lg(request: pytest.FixtureRequest, memory_store: BaseMemoryStore) -> Api:
    """A MemfoldStore indexing the ``text`` field, driven through its sync or async API."""
    store = MemfoldStore(memory_store, index={"fields": ["text"]}, tenant="acme")
    return Api(store, request.param == "async")  # type: ignore[arg-type]


class Note(TypedDict):
    """A graph state: a user and a text."""

    user: str
    text: str


class Clock:
    """Stands in for ``utcnow`` where the memory store stamps its operations."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_put_get_delete_round_trip(lg: Api) -> None:
    """An item comes back with its value, key, namespace (without the tenant) and times."""
    await lg.put(USERS, "tea", {"text": "likes green tea", "n": 1})
    item = await lg.get(USERS, "tea")
    assert (item.key, item.namespace, item.value) == (
        "tea",
        USERS,
        {"text": "likes green tea", "n": 1},
    )
    assert item.created_at <= item.updated_at
    await lg.delete(USERS, "tea")
    assert await lg.get(USERS, "tea") is None


async def test_batch_runs_in_order(lg: Api) -> None:
    """Results come in op order, and a get after a put in the same batch sees the put."""
    results = await lg.batch(
        [GetOp(USERS, "a"), PutOp(USERS, "a", {"text": "x"}), GetOp(USERS, "a"),
         PutOp(USERS, "a", None), SearchOp(("users",))]
    )  # fmt: skip
    assert results[0] is None
    assert results[1] is None
    assert results[3] is None
    assert results[2].value == {"text": "x"}
    assert results[4] == []


async def test_query_ranks_indexed_fields_and_skips_unindexed_items(lg: Api) -> None:
    """A query ranks by the indexed field; index=False items are only listed and filtered."""
    await lg.put(USERS, "tea", {"text": "likes green tea", "kind": "pref"})
    await lg.put(USERS, "job", {"text": "works on the billing service", "kind": "fact"})
    await lg.put(USERS, "secret", {"text": "green tea green tea", "kind": "pref"}, index=False)
    hits = await lg.search(("users",), query="green tea", limit=5)
    assert next(h.key for h in hits) == "tea"
    assert "secret" not in [h.key for h in hits]
    assert hits[0].score is not None
    assert hits[0].score > 0
    listed = await lg.search(("users",), filter={"kind": "pref"})
    assert sorted(i.key for i in listed) == ["secret", "tea"]
    assert all(i.score is None for i in listed)


async def test_an_empty_query_lists_as_no_query_does(lg: Api) -> None:
    """``query=""`` is no query: the search lists every item in write order, those stored with
    ``index=False`` too, without scores (it ranked them; found by differential testing against
    LangGraph's InMemoryStore)."""
    await lg.put(USERS, "a", {"text": "green tea", "kind": "pref"})
    await lg.put(USERS, "b", {"text": "black coffee", "kind": "fact"})
    await lg.put(USERS, "c", {"text": "not indexed", "kind": "pref"}, index=False)
    listed = await lg.search(("users",), query="")
    assert [(i.key, i.score) for i in listed] == [("a", None), ("b", None), ("c", None)]
    assert listed == await lg.search(("users",))
    filtered = await lg.search(("users",), query="", filter={"kind": "pref"}, offset=1)
    assert [i.key for i in filtered] == ["c"]


async def test_filters_follow_langgraph_semantics(lg: Api) -> None:
    """Plain values mean equality, nested dicts match partially, operators compare."""
    await lg.put(USERS, "a", {"text": "a", "meta": {"lang": "en", "stars": 5}, "n": 1})
    await lg.put(USERS, "b", {"text": "b", "meta": {"lang": "fr", "stars": 2}, "n": 2})
    await lg.put(("users", "u2"), "c", {"text": "c", "meta": {"lang": "en"}, "n": 3})

    async def keys(**kwargs: Any) -> list[str]:
        return sorted(i.key for i in await lg.search(("users",), **kwargs))

    assert await keys(filter={"meta": {"lang": "en"}}) == ["a", "c"]
    assert await keys(filter={"meta": {"lang": "en"}, "n": {"$gt": 1}}) == ["c"]
    assert await keys(filter={"n": {"$ne": 2}}) == ["a", "c"]
    assert await keys(filter={"meta": {"stars": {"$gte": 2}}}) == ["a", "b"]
    assert await keys(filter={"n": 1}, limit=1, offset=0) == ["a"]
    with pytest.raises(UnsupportedOperation, match=r"\$in"):
        await lg.search(("users",), filter={"tags": ["x", "y"]})
    # A dotted key names a key of the value in LangGraph: refused, never read as a path.
    with pytest.raises(UnsupportedOperation, match=r"holds a '\.'"):
        await lg.search(("users",), filter={"meta.lang": "en"})


async def test_a_nested_filter_matches_only_where_the_value_there_is_a_dict(lg: Api) -> None:
    """A nested filter needs an object at its key, in listings and ranked searches alike: a
    negation under it, or an empty one, no longer matches items with no such object (found by
    differential testing against LangGraph's InMemoryStore)."""
    await lg.put(USERS, "open", {"text": "note", "meta": {"status": "open"}})
    await lg.put(USERS, "done", {"text": "note", "meta": {"status": "done"}})
    await lg.put(USERS, "no_meta", {"text": "note", "title": "x"})
    await lg.put(USERS, "meta_not_obj", {"text": "note", "meta": "flat"})
    await lg.put(USERS, "deep", {"text": "note", "meta": {"status": {"by": "bot"}}})

    async def keys(spec: dict[str, Any], **kwargs: Any) -> list[str]:
        return sorted(i.key for i in await lg.search(("users",), filter=spec, **kwargs))

    for query in (None, "note"):
        assert await keys({"meta": {"status": {"$ne": "done"}}}, query=query) == ["deep", "open"]
        assert await keys({"meta": {}}, query=query) == ["deep", "done", "open"]
        assert await keys({"meta": {"status": {}}}, query=query) == ["deep"]
        assert await keys({"meta": {"status": {"by": {"$ne": "x"}}}}, query=query) == ["deep"]


async def test_none_filters_match_as_in_langgraph(lg: Api) -> None:
    """Equality with None also matches a missing field and ``$ne`` None needs one, as in
    LangGraph's InMemoryStore, which the same items and filters are checked against (memfold
    asked for a present null; found by differential testing)."""
    items = {
        "null": {"text": "t", "x": None, "meta": {"y": None}},
        "missing": {"text": "t", "meta": {}},
        "set": {"text": "t", "x": 1, "meta": {"y": 2}},
        "flat": {"text": "t", "x": 0, "meta": "flat"},
    }
    reference = InMemoryStore()
    for key, value in items.items():
        await lg.put(USERS, key, value)
        reference.put(USERS, key, value)
    filters: list[dict[str, Any]] = [
        {"x": None}, {"x": {"$eq": None}}, {"x": {"$ne": None}}, {"meta": {"y": None}},
        {"meta": {"y": {"$ne": None}}}, {"x": None, "meta": {"y": None}}, {"x": {"$ne": 1}},
    ]  # fmt: skip
    for spec in filters:
        found = sorted(i.key for i in await lg.search(("users",), filter=spec))
        assert found == sorted(i.key for i in reference.search(("users",), filter=spec)), spec
    assert sorted(i.key for i in await lg.search(("users",), filter={"x": None})) == [
        "missing", "null",
    ]  # fmt: skip


async def test_filtered_query_returns_limit_results_when_that_many_match(lg: Api) -> None:
    """A filter runs inside the ranking, so a query returns ``limit`` matching items."""
    for i in range(12):
        kind = "pref" if i % 4 == 0 else "noise"
        await lg.put(USERS, f"k{i}", {"text": f"green tea note {i}", "kind": kind})
    hits = await lg.search(("users",), query="green tea", filter={"kind": "pref"}, limit=3)
    assert sorted(h.key for h in hits) == ["k0", "k4", "k8"]


async def test_list_namespaces(lg: Api) -> None:
    """Namespaces list by prefix, suffix and depth, without the tenant; wildcards are refused."""
    for ns in [("users", "u1", "prefs"), ("users", "u2", "prefs"), ("teams", "t1", "facts")]:
        await lg.put(ns, "k", {"text": "x"})
    assert await lg.list_namespaces() == [
        ("teams", "t1", "facts"), ("users", "u1", "prefs"), ("users", "u2", "prefs")
    ]  # fmt: skip
    assert await lg.list_namespaces(prefix=("users",), max_depth=2) == [
        ("users", "u1"), ("users", "u2")
    ]  # fmt: skip
    assert await lg.list_namespaces(suffix=("facts",)) == [("teams", "t1", "facts")]
    assert await lg.list_namespaces(limit=1, offset=1) == [("users", "u1", "prefs")]
    with pytest.raises(UnsupportedOperation, match="wildcards"):
        await lg.list_namespaces(prefix=("users", "*"))


async def test_a_suffix_never_reaches_the_hidden_tenant(lg: Api) -> None:
    """A suffix matches namespaces as the caller sees them: one naming the tenant label matches
    nothing, and limit and offset page the matches (found by differential testing against
    LangGraph's InMemoryStore)."""
    for ns in [("users",), ("x", "users"), ("y", "users")]:
        await lg.put(ns, "k", {"text": "x"})
    assert await lg.list_namespaces(suffix=("acme", "users")) == []
    assert await lg.list_namespaces(suffix=("acme", "x", "users")) == []
    assert await lg.list_namespaces(suffix=("users",)) == [
        ("users",),
        ("x", "users"),
        ("y", "users"),
    ]
    assert await lg.list_namespaces(suffix=("users",), limit=1, offset=1) == [("x", "users")]


async def test_a_zero_limit_lists_no_namespaces(lg: Api) -> None:
    """``list_namespaces(limit=0)`` is [], as ``search(limit=0)`` is (it raised InvalidInput;
    found by differential testing against LangGraph's InMemoryStore)."""
    await lg.put(USERS, "k", {"text": "x"})
    assert await lg.list_namespaces(limit=0) == []
    assert await lg.list_namespaces(prefix=("users",), suffix=("u1",), limit=0, offset=1) == []
    assert await lg.search(("users",), limit=0) == []
    assert await lg.list_namespaces(limit=1) == [USERS]


async def test_ttl_expires_and_reads_refresh_it(lg: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """An item expires ``ttl`` minutes after its last write or refreshing read."""
    clock = Clock()
    monkeypatch.setattr(memfold.memories, "utcnow", clock)
    await lg.put(USERS, "kept", {"text": "x"}, ttl=10)
    await lg.put(USERS, "gone", {"text": "y"}, ttl=10)
    clock.now += timedelta(minutes=8)
    assert (await lg.get(USERS, "kept")).key == "kept"  # refreshes: now expires at minute 18
    assert (await lg.get(USERS, "gone", refresh_ttl=False)).key == "gone"
    clock.now += timedelta(minutes=8)
    assert await lg.get(USERS, "gone") is None
    assert (await lg.get(USERS, "kept")).key == "kept"


async def test_a_search_without_a_query_refreshes_what_it_returns(
    lg: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filtered search (no query) restarts the TTL of each item it returns, as a get does,
    unless ``refresh_ttl=False`` (it once refreshed nothing)."""
    clock = Clock()
    monkeypatch.setattr(memfold.memories, "utcnow", clock)
    await lg.put(USERS, "found", {"kind": "a"}, ttl=10)
    await lg.put(USERS, "peeked", {"kind": "b"}, ttl=10)
    await lg.put(USERS, "forever", {"kind": "a"})
    clock.now += timedelta(minutes=8)
    assert sorted(i.key for i in await lg.search(USERS, filter={"kind": "a"})) == [
        "forever",
        "found",
    ]
    peeked = await lg.search(USERS, filter={"kind": "b"}, refresh_ttl=False)
    assert [i.key for i in peeked] == ["peeked"]
    clock.now += timedelta(minutes=8)
    assert sorted(i.key for i in await lg.search(USERS, refresh_ttl=False)) == ["forever", "found"]


async def test_a_query_search_refreshes_only_the_page_it_returns(
    lg: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ranked search with an offset restarts the TTL of the items it returns, not of those it
    skips (it refreshed them too, so a skipped item outlived its TTL)."""
    clock = Clock()
    monkeypatch.setattr(memfold.memories, "utcnow", clock)
    await lg.put(USERS, "best", {"text": "green tea with lemon"}, ttl=10)
    await lg.put(USERS, "next", {"text": "green tea"}, ttl=10)
    clock.now += timedelta(minutes=8)
    page = await lg.search(USERS, query="green tea with lemon", limit=1, offset=1)
    assert [i.key for i in page] == ["next"]
    assert await lg.search(USERS, query="green tea", limit=0) == []
    clock.now += timedelta(minutes=8)
    assert [i.key for i in await lg.search(USERS, refresh_ttl=False)] == ["next"]


async def test_default_ttl_from_config(memory_store: BaseMemoryStore) -> None:
    """``TTLConfig.default_ttl`` applies to puts that give no ttl."""
    store = MemfoldStore(memory_store, ttl={"default_ttl": 1.0})
    store.put(USERS, "k", {"a": 1})
    record = memory_store.get(("default", *USERS), "k")
    assert record is not None
    assert record.ttl_seconds == 60.0


async def test_tenants_are_isolated(memory_store: BaseMemoryStore) -> None:
    """Two stores over one memory store with different tenants never see each other's items."""
    acme = MemfoldStore(memory_store, index={"fields": ["text"]}, tenant="acme")
    other = MemfoldStore(memory_store, index={"fields": ["text"]}, tenant="other")
    acme.put(USERS, "tea", {"text": "likes green tea"})
    assert other.get(USERS, "tea") is None
    assert other.search((), query="green tea") == []
    assert other.search(()) == []
    assert other.list_namespaces() == []
    assert [i.key for i in acme.search((), query="green tea")] == ["tea"]


async def test_no_namespace_or_key_leaves_the_tenant(
    lg: Api, memory_store: BaseMemoryStore
) -> None:
    """A namespace naming another tenant stays under the store's tenant, a key crafted to name a
    deeper namespace is refused, and the other tenant's records are never read or changed."""
    victim = memory_store.put(("victim", "u1"), "victim's note", {"text": "secret"}, id="k")
    await lg.put(("users", "sub"), "x", {"text": "kept"})
    assert await lg.get(("victim", "u1"), "k") is None
    assert await lg.search(("victim",)) == []
    await lg.put(("victim", "u1"), "k", {"text": "written by acme"})
    await lg.delete(("victim", "u1"), "k")
    with pytest.raises(InvalidInput, match="separator"):
        await lg.get(("users",), "sub\x1fx")
    with pytest.raises(InvalidInput, match="separator"):
        await lg.delete(("users",), "sub\x1fx")
    assert memory_store.get(("victim", "u1"), "k").value == victim.value  # type: ignore[union-attr]
    assert {ns[0] for ns in memory_store.list_namespaces(("acme",))} == {"acme"}
    assert await lg.list_namespaces() == [("users", "sub")]
    assert (await lg.get(("users", "sub"), "x")).value == {"text": "kept"}


def test_a_store_requiring_tenants_needs_one_for_the_langgraph_store() -> None:
    """Over a memory store opened with ``require_tenant``, the LangGraph store must be given
    its tenant: it never falls back to the default one."""
    memories = memfold.memories.open_memory_store("memory://?require_tenant=true")
    with pytest.raises(InvalidInput, match="require_tenant"):
        MemfoldStore(memories)
    MemfoldStore(memories, tenant="acme").put(USERS, "k", {"a": 1})
    assert memories.count(("acme",)) == 1


def test_a_graph_node_uses_the_store(memory_store: BaseMemoryStore) -> None:
    """A LangGraph graph compiled with the store reads and writes it from a node."""
    from langgraph.config import get_store

    def remember(state: Note) -> dict[str, str]:
        store = get_store()
        store.put(("users", state["user"]), "last", {"text": state["text"]})
        return {"text": str(len(store.search(("users",))))}

    builder = StateGraph(Note)
    builder.add_node("remember", remember).add_edge(START, "remember")
    store = MemfoldStore(memory_store)
    graph = builder.compile(store=store)
    assert graph.invoke({"user": "u1", "text": "hi"})["text"] == "1"
    assert store.get(("users", "u1"), "last").value == {"text": "hi"}  # type: ignore[union-attr]
