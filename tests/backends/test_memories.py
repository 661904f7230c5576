"""The long-term memory behaviour every backend shares, through the sync and async APIs.

A backend joins the suite by adding its name to ``tests.support.MEMORY_BACKENDS`` and a branch
to ``tests.support.make_memory_store``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memfold.memories
from memfold import InvalidInput
from memfold.memories import BaseMemoryStore, MemoryRecord, open_memory_store
from memfold.recall.embedders import HashingEmbedder
from memfold.recall.filters import parse_filter
from tests.support import MEMORY_BACKENDS, Api, drop_checkpoint_store, make_memory_store
from tests.support import MEMORY_DIMS as DIMS


@pytest.fixture(params=MEMORY_BACKENDS)
def memory_backend(request: pytest.FixtureRequest) -> str:
    """The name of the memory backend under test."""
    return str(request.param)


@pytest.fixture
async def mstore(memory_backend: str, tmp_path: Path) -> AsyncIterator[BaseMemoryStore]:
    """A fresh, set-up memory store of each backend."""
    store = make_memory_store(memory_backend, tmp_path)
    yield store
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops any test schema


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, mstore: BaseMemoryStore) -> Api:
    """The memory store driven through its sync or its async API."""
    return Api(mstore, request.param == "async")  # type: ignore[arg-type]


class Clock:
    """A settable clock standing in for ``utcnow`` where operations are built."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Operations are stamped with a clock the test moves by hand."""
    fake = Clock()
    monkeypatch.setattr(memfold.memories, "utcnow", fake)
    return fake


NS = ("acme", "u1", "prefs")


async def test_put_get_upsert(api: Api, clock: Clock) -> None:
    """An upsert by id replaces text and value but keeps the creation time."""
    first = await api.put(NS, "likes tea", {"kind": "pref"}, id="m1", importance=0.7)
    clock.advance(10)
    second = await api.put(NS, "likes coffee", {"kind": "pref", "n": 2}, id="m1")
    got = await api.get(NS, "m1", include_embedding=True)
    assert got.text == "likes coffee"
    assert got.value == {"kind": "pref", "n": 2}
    assert got.created_at == first.created_at
    assert got.updated_at == second.updated_at
    assert got.embedding is not None
    assert len(got.embedding) == DIMS
    assert got.embedding_model == "hashing-64"
    assert await api.get(NS, "missing") is None
    assert await api.get(("other", *NS[1:]), "m1") is None
    assert await api.count(("acme",)) == 1


async def test_a_stored_value_is_never_shared_with_the_caller(api: Api) -> None:
    """Changing the dict given to put, or one a read returned, leaves the stored value as
    written (the memory backend once kept and returned the caller's own objects)."""
    value = {"m": {"a": 1}, "tags": ["x"]}
    await api.put(NS, "text", value, id="k")
    value["m"]["a"] = 2
    value["tags"].append("y")
    got = await api.get(NS, "k")
    got.value["m"]["a"] = 3
    (await api.list_records(NS))[0].value["tags"].append("z")
    assert (await api.get(NS, "k")).value == {"m": {"a": 1}, "tags": ["x"]}


async def test_delete_and_delete_where(api: Api) -> None:
    """Deletes by id count what existed; delete_where removes only what the filter selects."""
    for i in range(6):
        await api.put(NS, f"note {i}", {"i": i}, id=f"n{i}")
    assert await api.delete(NS, ["n0", "nope"]) == 1
    assert await api.delete_where(("acme",), {"i": {"$gte": 4}}) == 2
    assert sorted(r.id for r in await api.list_records(("acme",))) == ["n1", "n2", "n3"]
    assert await api.delete_where(("acme", "u1")) == 3
    assert await api.count(("acme",)) == 0


async def test_no_ids_read_and_delete_nothing(api: Api) -> None:
    """An empty id list is an empty answer (SQL stores once sent an ``IN ()`` and failed)."""
    await api.put(NS, "kept", id="k")
    assert await api.get_many(NS, []) == []
    assert await api.delete(NS, []) == 0
    assert [r.id for r in await api.list_records(NS)] == ["k"]


async def test_list_pages_in_write_order_and_prefix(api: Api, clock: Clock) -> None:
    """list_records returns records under the prefix oldest first, paged."""
    for i in range(5):
        clock.advance(1)
        await api.put(("acme", f"u{i % 2}"), f"note {i}", id=f"n{i}")
    await api.put(("acmex", "u0"), "another tenant", id="x")
    page = await api.list_records(("acme",), limit=2, offset=1)
    assert [r.id for r in page] == ["n1", "n2"]
    assert [r.id for r in await api.list_records(("acme", "u1"))] == ["n1", "n3"]
    assert await api.list_namespaces(("acme",)) == [("acme", "u0"), ("acme", "u1")]
    assert await api.list_namespaces(("acme",), max_depth=1) == [("acme",)]
    assert await api.list_namespaces(("acme",), suffix=("u1",)) == [("acme", "u1")]


async def test_list_breaks_ties_by_namespace(api: Api, clock: Clock) -> None:
    """Records of one id and creation time in several namespaces list in namespace order, on
    every backend and page by page (the order was the backend's own: write order in memory and
    Chroma, and PostgreSQL's pages repeated a record and lost another)."""
    tied = [("acme",), ("acme", "u1", "x"), *[("acme", f"u{i}") for i in range(8)]]
    for ns in reversed(sorted(tied)):
        await api.put(ns, "same time", id="k")
    clock.advance(1)
    await api.put(("acme", "a"), "later", id="k")
    order = [*sorted(tied), ("acme", "a")]
    assert [r.namespace for r in await api.list_records(("acme",))] == order
    pages = [await api.list_records(("acme",), limit=2, offset=i) for i in range(0, 11, 2)]
    assert [r.namespace for page in pages for r in page] == order


async def test_search_breaks_ties_by_namespace(api: Api, clock: Clock) -> None:
    """Hits tied on every score, time and id rank in namespace order (they kept the order the
    backend returned them in)."""
    tied = [("acme", f"u{i}") for i in range(6)]
    for ns in [tied[3], tied[0], tied[5], tied[1], tied[4], tied[2]]:
        await api.put(ns, "green tea every morning", id="k")
    hits = await api.search(("acme",), "green tea", k=6)
    assert [h.record.namespace for h in hits] == tied


async def test_a_suffix_matches_only_the_labels_after_the_tenant(api: Api) -> None:
    """A suffix never reaches the tenant label (it once matched ``("acme", "users")`` on the
    tenant), and limit and offset page the namespaces that match."""
    for ns in [("acme",), ("acme", "users"), ("acme", "x", "users"), ("acme", "y", "users")]:
        await api.put(ns, "note", id="k")
    assert await api.list_namespaces(("acme",), suffix=("acme",)) == []
    assert await api.list_namespaces(("acme",), suffix=("acme", "users")) == []
    assert await api.list_namespaces(("acme",), suffix=("acme", "x", "users")) == []
    assert await api.list_namespaces(("acme",), suffix=("users",)) == [
        ("acme", "users"), ("acme", "x", "users"), ("acme", "y", "users")
    ]  # fmt: skip
    assert await api.list_namespaces(("acme",), suffix=("x", "users")) == [("acme", "x", "users")]
    assert await api.list_namespaces(("acme",), suffix=("users",), limit=1, offset=1) == [
        ("acme", "x", "users")
    ]  # fmt: skip
    assert await api.list_namespaces(("acme",), suffix=("users",), max_depth=2) == [
        ("acme", "users"), ("acme", "x"), ("acme", "y")
    ]  # fmt: skip


async def test_search_hybrid_text_and_vector(api: Api) -> None:
    """Text, vector and fused search each put the matching memory first."""
    texts = ["Prefers green tea in the morning", "Works on the billing service",
             "Has a dog named Rex", "Visited Lisbon last spring"]  # fmt: skip
    for i, t in enumerate(texts):
        await api.put(NS, t, {"i": i}, id=f"m{i}")
    hits = await api.search(("acme",), "which dogs does she have?", k=2)
    assert hits[0].record.id == "m2"
    assert len(hits) == 2
    assert hits[0].score >= hits[1].score
    text_only = await api.search(("acme",), "billing", k=1, vector_weight=0)
    assert text_only[0].record.id == "m1"
    assert text_only[0].vector_score is None
    emb = HashingEmbedder(DIMS).embed(["Visited Lisbon last spring"])[0]
    by_vector = await api.search(("acme",), vector=emb, k=1)
    assert by_vector[0].record.id == "m3"
    assert by_vector[0].vector_score == pytest.approx(1, 1e-5)
    assert await api.search(("acme",), "tea", k=4, min_score=0.99) == [
        h for h in await api.search(("acme",), "tea", k=4) if h.score >= 0.99
    ]


async def test_text_search_matches_words_as_written(api: Api) -> None:
    """Accents and underscores belong to words on every backend: ``naive`` finds no ``naïve``
    (SQLite's tokenizer folds accents, so its candidates are checked against the terms)."""
    await api.put(NS, "naïve café foo_bar", id="m")
    for query in ("naive", "cafe", "foo"):
        assert await api.search(("acme",), query, vector_weight=0, expand_query=False) == []
    for query in ("naïve", "CAFÉ", "foo_bar"):
        hits = await api.search(("acme",), query, vector_weight=0)
        assert [h.record.id for h in hits] == ["m"], query


async def test_query_expansion_finds_a_memory_without_the_query_words(api: Api) -> None:
    """The words the best hits share join the query: a memory sharing none of the query's
    words is found, and ``expand_query=False`` turns that off."""
    texts = ["Caroline researched adoption agencies all week",
             "Caroline said the adoption agencies were kind",
             "Caroline phoned adoption agencies again",
             "Two agencies called back about the adoption papers"]  # fmt: skip
    texts += [f"Caroline painted lake number {i} at sunrise" for i in range(10)]
    for i, t in enumerate(texts):
        await api.put(NS, t, id=f"m{i}")
    expanded = await api.search(("acme",), "What did Caroline research?", k=5, vector_weight=0)
    assert "m3" in [h.record.id for h in expanded]
    plain = await api.search(
        ("acme",), "What did Caroline research?", k=5, vector_weight=0, expand_query=False
    )
    assert "m3" not in [h.record.id for h in plain]
    assert expanded[0].record.id == plain[0].record.id == "m0"


async def test_vectors_that_all_point_away_still_rank_by_similarity(api: Api, clock: Clock) -> None:
    """Every candidate's cosine is negative, so each fuses to 0: they still come back nearest
    first, not newest first (the nearer one was written first)."""
    query = np.zeros(DIMS)
    query[0] = 1.0
    for key, second in (("near", 0.9), ("far", 0.1)):
        vector = np.zeros(DIMS)
        vector[:2] = (-1.0, -second)  # near: cosine -0.74; far: -0.99
        await api.put_many([MemoryRecord(NS, key, embedding=tuple(vector))])
        clock.advance(1)
    hits = await api.search(("acme",), vector=query.tolist(), k=2)
    assert [h.record.id for h in hits] == ["near", "far"]
    assert [h.score for h in hits] == [0.0, 0.0]


async def test_filtered_search_returns_k_when_k_match(api: Api) -> None:
    """A selective filter still yields k hits when k records match, ranked among themselves."""
    rng = np.random.default_rng(7)
    base = rng.normal(size=DIMS)
    records = [
        MemoryRecord(NS, f"r{i}", value={"keep": i % 25 == 0},
                     embedding=tuple(base + rng.normal(scale=0.1 if i % 25 else 2.0, size=DIMS)))
        for i in range(300)
    ]  # fmt: skip
    await api.put_many(records)
    hits = await api.search(("acme",), vector=base.tolist(), k=12, filter={"keep": True})
    assert len(hits) == 12
    assert all(h.record.value["keep"] for h in hits)
    assert len(await api.search(("acme",), vector=base.tolist(), k=50, filter={"keep": True})) == 12


VALUES: list[dict[str, Any]] = [
    {"kind": "fact", "n": 1, "ok": True, "tag": "b"},
    {"kind": "fact", "n": 1.5, "ok": False, "tag": "a", "sub": {"x": 3}},
    {"kind": "pref", "n": "1", "ok": 1, "tag": None},
    {"kind": "pref", "n": 10, "sub": {"x": "3"}},
    {"kind": "é", "n": -2, "ok": None, "sub": {"y": [1, 2]}},
    {"n": 0, "tag": "B"},
    {},
]
FILTERS: list[dict[str, Any]] = [
    {"kind": "fact"}, {"n": 1}, {"n": {"$gt": 1}}, {"n": {"$gte": 1, "$lt": 10}},
    {"n": {"$lte": "1"}}, {"tag": {"$gt": "a"}}, {"ok": True}, {"ok": 1}, {"ok": None},
    {"ok": {"$ne": True}}, {"tag": {"$in": ["a", "B", None]}}, {"kind": {"$nin": ["fact"]}},
    {"sub.x": 3}, {"sub.x": {"$exists": True}}, {"sub": {"$exists": False}},
    {"$or": [{"kind": "pref"}, {"n": {"$lt": 0}}]},
    {"$and": [{"kind": {"$exists": True}}, {"tag": {"$ne": "b"}}]}, {"kind": {"$gt": "q"}},
    {"sub.y": {"$exists": True}}, {"n": {"$eq": 1.0}}, {"$or": []},
    {"sub": {"$type": "object"}}, {"sub.y": {"$type": "array"}}, {"n": {"$type": "number"}},
    {"n": {"$type": "string"}}, {"ok": {"$type": "boolean"}}, {"tag": {"$type": "null"}},
    {"$and": [{"sub": {"$type": "object"}}, {"sub.x": {"$ne": 3}}]},
]  # fmt: skip


async def test_filter_semantics_match_python_everywhere(api: Api) -> None:
    """Every backend selects exactly what the Python predicate selects, for every filter."""
    for i, value in enumerate(VALUES):
        await api.put(NS, f"record {i}", value, id=f"v{i}")
    for spec in FILTERS:
        wanted = {f"v{i}" for i, v in enumerate(VALUES) if parse_filter(spec).matches(v)}
        got = {r.id for r in await api.list_records(("acme",), filter=spec)}
        assert got == wanted, spec
        assert await api.count(("acme",), filter=spec) == len(wanted), spec
        searched = await api.search(("acme",), "record", k=20, filter=spec)
        assert {h.record.id for h in searched} == wanted, spec


async def test_whole_float_bounds_compare_by_value(api: Api) -> None:
    """A float bound of 1e16 or more compares by its value, as the Python predicate does (not
    by its shortest decimal form, once on PostgreSQL); fractional floats still equal their
    stored selves. Deleting by such a filter deletes what it lists."""
    values: dict[str, Any] = {
        "i60": {"n": 2**60}, "i60+1": {"n": 2**60 + 1}, "i64": {"n": 2**64},
        "tenth": {"n": 0.1}, "half": {"n": 4503599627370496.5}, "neg": {"n": -(2**60)},
    }  # fmt: skip
    for key, value in values.items():
        await api.put(NS, f"record {key}", value, id=key)
    bounds = [2.0**60, 2.0**64, -(2.0**60), 0.1, 4503599627370496.5, 1e16]
    specs: list[dict[str, Any]] = [
        {"n": {op: bound}}
        for bound in bounds
        for op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
    ]
    specs += [{"n": {"$in": [2.0**60, 0.1]}}, {"n": {"$nin": [2.0**64, -(2.0**60)]}}]
    for spec in specs:
        wanted = {k for k, v in values.items() if parse_filter(spec).matches(v)}
        assert {r.id for r in await api.list_records(("acme",), filter=spec)} == wanted, spec
        assert await api.count(("acme",), filter=spec) == len(wanted), spec
    assert await api.delete_where(("acme",), {"n": {"$gte": 2.0**60}}) == 3
    assert {r.id for r in await api.list_records(("acme",))} == {"tenth", "half", "neg"}


async def test_type_selects_the_fields_holding_that_json_type(api: Api) -> None:
    """``$type`` selects the records whose field holds a value of that JSON type (a missing
    field holds none), so a condition under an object can require the object itself."""
    values: dict[str, Any] = {
        "obj": {"m": {"s": "done"}}, "open": {"m": {"s": "open"}}, "empty": {"m": {}},
        "arr": {"m": [1]}, "str": {"m": "x"}, "int": {"m": 2}, "float": {"m": 1.5},
        "bool": {"m": False}, "null": {"m": None}, "none": {"x": 1},
    }  # fmt: skip
    for key, value in values.items():
        await api.put(NS, f"record {key}", value, id=key)

    async def ids(spec: dict[str, Any]) -> set[str]:
        return {r.id for r in await api.list_records(("acme",), filter=spec)}

    assert await ids({"m": {"$type": "object"}}) == {"obj", "open", "empty"}
    assert await ids({"m": {"$type": "array"}}) == {"arr"}
    assert await ids({"m": {"$type": "string"}}) == {"str"}
    assert await ids({"m": {"$type": "number"}}) == {"int", "float"}
    assert await ids({"m": {"$type": "boolean"}}) == {"bool"}
    assert await ids({"m": {"$type": "null"}}) == {"null"}
    assert await ids({"m": {"$type": "object"}, "m.s": {"$ne": "done"}}) == {"open", "empty"}
    assert await ids({"m.s": {"$type": "string"}}) == {"obj", "open"}
    assert await api.count(("acme",), filter={"m": {"$type": "object"}}) == 3
    for bad in ("dict", "Object", ["object"], None, True):
        with pytest.raises(InvalidInput, match=r"\$type"):
            await api.list_records(("acme",), filter={"m": {"$type": bad}})


async def test_size_selects_arrays_of_that_length(api: Api) -> None:
    """``$size`` selects the records whose field is an array of that many elements: ``0`` an
    empty array, never a missing field, null, "", an empty object or a scalar."""
    values: dict[str, Any] = {
        "none": {"m": []}, "one": {"m": ["x"]}, "two": {"m": [1, [2]]}, "deep": {"d": {"m": []}},
        "blank": {"m": ""}, "null": {"m": None}, "obj": {"m": {}}, "zero": {"m": 0},
        "missing": {"x": 1},
    }  # fmt: skip
    for key, value in values.items():
        await api.put(NS, f"record {key}", value, id=key)

    async def ids(spec: dict[str, Any]) -> set[str]:
        wanted = {k for k, v in values.items() if parse_filter(spec).matches(v)}
        got = {r.id for r in await api.list_records(("acme",), filter=spec)}
        assert got == wanted, spec
        assert await api.count(("acme",), filter=spec) == len(got), spec
        return got

    assert await ids({"m": {"$size": 0}}) == {"none"}
    assert await ids({"m": {"$size": 1}}) == {"one"}
    assert await ids({"m": {"$size": 2}}) == {"two"}
    assert await ids({"d.m": {"$size": 0}}) == {"deep"}
    assert await ids({"$or": [{"m": {"$size": 0}}, {"m": ""}]}) == {"none", "blank"}
    assert await ids({"m": {"$type": "array", "$size": 1}}) == {"one"}
    for bad in (-1, 1.0, True, "0", None, [0]):
        with pytest.raises(InvalidInput, match=r"\$size"):
            await api.list_records(("acme",), filter={"m": {"$size": bad}})
    assert await api.delete_where(("acme",), {"m": {"$size": 0}}) == 1
    assert await api.count(("acme",)) == len(values) - 1


async def test_bad_filters_and_vectors_are_refused(api: Api) -> None:
    """Bad filters and NaN, infinite, zero or wrong-length vectors raise InvalidInput."""
    specs: list[Any] = [{"n": {"$regex": "x"}}, {"n": [1, 2]}, {"$not": {}}, {"n": {"$gt": True}},
                 {"": 1}, {"a.0": 1}, {"n": float("nan")},
                 # Read as array positions by PostgreSQL's #> (arrays have no fields elsewhere).
                 {"tags.-1": "x"}, {"tags.+0": "a"}, {"tags. 1": {"$exists": True}}]  # fmt: skip
    for spec in specs:
        with pytest.raises(InvalidInput):
            await api.list_records(("acme",), filter=spec)
    bad = ([float("nan")] * DIMS, [float("inf")] * DIMS, [0.0] * DIMS, [1.0] * (DIMS - 1))
    for vector in bad:
        with pytest.raises(InvalidInput):
            await api.put(NS, "x", embedding=vector)
        with pytest.raises(InvalidInput):
            await api.search(("acme",), vector=vector)
    with pytest.raises(InvalidInput):
        await api.list_records(())
    with pytest.raises(InvalidInput):
        await api.put(("a\x1fb",), "x")
    assert await api.count(("acme",)) == 0


async def test_expired_records_are_hidden_then_swept(api: Api, clock: Clock) -> None:
    """A record past its TTL is never returned, a touch restarts its TTL, and sweep deletes."""
    await api.put(NS, "short lived", id="s", ttl_seconds=60)
    await api.put(NS, "touched", id="t", ttl_seconds=60)
    await api.put(NS, "forever", id="f")
    clock.advance(50)
    assert (await api.get(NS, "t", touch=True)).expires_at == clock.now + timedelta(seconds=60)
    clock.advance(20)
    assert await api.get(NS, "s") is None
    assert {r.id for r in await api.list_records(("acme",))} == {"t", "f"}
    assert {h.record.id for h in await api.search(("acme",), "short lived touched", k=5)} == {
        "t", "f"
    }  # fmt: skip
    assert (await api.sweep()).records == 1
    clock.advance(100)
    assert (await api.sweep()).records == 1
    assert [r.id for r in await api.list_records(("acme",))] == ["f"]


async def test_expired_records_neither_score_nor_take_duplicates(
    memory_backend: str, tmp_path: Path, clock: Clock
) -> None:
    """A record past its TTL but not swept yet counts in no text score (with or without a
    filter) and takes no near-duplicate: the write merges into the nearest live record (the
    memory backend counted expired records and merged into nothing)."""
    store = make_memory_store(memory_backend, tmp_path)
    try:
        store.put(NS, "user prefers green tea", id="a")
        store.put(NS, "user prefers black coffee", id="d")
        store.put(NS, "user prefers black coffee beans", id="old", ttl_seconds=10)
        store.put(NS, "meeting notes about the budget", id="x", ttl_seconds=10)
        clock.advance(20)

        def scores(**options: Any) -> list[tuple[str, float | None]]:
            hits = store.search(
                ("acme",), "user prefers black coffee", expand_query=False, vector_weight=0,
                **options,
            )  # fmt: skip
            return [(h.record.id, h.text_score) for h in hits]

        unfiltered = scores()
        assert unfiltered == scores(filter={"z": {"$exists": False}})
        store.sweep()
        assert unfiltered == scores()
        store.put(NS, "user prefers black coffee beans", id="x", ttl_seconds=10)  # x: expired
        clock.advance(20)
        again = MemoryRecord(NS, text="user prefers black coffee beans")  # nearest: x
        assert [r.id for r in store.put_many([again], dedupe_threshold=0.8)] == ["d"]
        assert {r.id for r in store.list_records(("acme",))} == {"a", "d"}
    finally:
        store.close()
        drop_checkpoint_store(store)  # type: ignore[arg-type]


async def test_a_touching_search_restarts_only_the_ttls_of_its_hits(api: Api, clock: Clock) -> None:
    """With query expansion, only the final search's hits are touched: the first pass's hits
    that the expanded search drops expire (they were kept alive, never returned)."""
    for i, topic in enumerate(("agencies", "papers", "court")):
        await api.put(NS, f"caroline research adoption {topic}", id=f"s{i}", ttl_seconds=60)
    for i in range(20):
        await api.put(
            NS, f"caroline went to place{i} with friend{i} and cousin{i}", id=f"w{i:02}",
            ttl_seconds=60,
        )  # fmt: skip
    for i in range(5):
        await api.put(NS, f"adoption adoption form{i}", id=f"x{i}", ttl_seconds=60)
    clock.advance(50)
    hits = await api.search(("acme",), "caroline research", k=20, touch=True, vector_weight=0)
    clock.advance(20)  # what was not touched has expired
    alive = {r.id for r in await api.list_records(("acme",), limit=1000)}
    assert alive == {h.record.id for h in hits}
    assert {"x0", "s0"} <= alive  # the expansion found the adoption records


async def test_search_pages_with_an_offset_and_touches_only_the_page(
    api: Api, clock: Clock
) -> None:
    """``offset`` skips the best hits: the page is the full ranking's slice, and with
    ``touch`` only its records restart their TTL."""
    for i in range(4):
        await api.put(NS, "green tea " + "lemon " * i, id=f"t{i}", ttl_seconds=60)
    clock.advance(50)
    full = await api.search(("acme",), "green tea lemon", k=4, vector_weight=0)
    page = await api.search(
        ("acme",), "green tea lemon", k=2, offset=1, touch=True, vector_weight=0
    )
    assert [h.record.id for h in page] == [h.record.id for h in full[1:3]]
    assert all(h.record.expires_at == clock.now + timedelta(seconds=60) for h in page)
    clock.advance(20)
    alive = {r.id for r in await api.list_records(("acme",))}
    assert alive == {h.record.id for h in page}
    with pytest.raises(InvalidInput, match="offset"):
        await api.search(("acme",), "tea", offset=-1)


async def test_a_batch_merges_into_records_as_it_rewrites_them(
    memory_backend: str, tmp_path: Path
) -> None:
    """A write's near-duplicate check sees a record the same write rewrote as rewritten: a
    record like the old text of one it just replaced is stored, not merged into it (Chroma
    compared it with the old text and lost the rewrite)."""
    store = make_memory_store(memory_backend, tmp_path)
    try:
        store.put(NS, "meeting notes about the budget", id="b")
        batch = [
            MemoryRecord(NS, text="user prefers green tea", id="b"),
            MemoryRecord(NS, text="meeting notes about the budget", id="x"),
        ]
        assert [r.id for r in store.put_many(batch, dedupe_threshold=0.9)] == ["b", "x"]
        texts = {r.id: r.text for r in store.list_records(("acme",))}
        assert texts == {"b": "user prefers green tea", "x": "meeting notes about the budget"}
    finally:
        store.close()
        drop_checkpoint_store(store)  # type: ignore[arg-type]


async def test_near_duplicates_merge_and_capacity_evicts(
    memory_backend: str, tmp_path: Path, clock: Clock
) -> None:
    """A near-duplicate write updates the existing record; a full namespace drops its least
    important records."""
    store = make_memory_store(memory_backend, tmp_path, dedupe_threshold=0.9, capacity=3)
    try:
        first = store.put(NS, "User prefers green tea", importance=0.9)
        clock.advance(1)
        merged = store.put(NS, "user prefers green tea!", {"v": 2}, importance=0.2)
        assert merged.id == first.id
        assert merged.created_at == first.created_at
        assert merged.importance == 0.9
        assert [r.text for r in store.list_records(("acme",))] == ["user prefers green tea!"]
        for i, importance in enumerate([0.1, 0.5, 0.6]):
            clock.advance(1)
            store.put(NS, f"distinct fact number {i} about {i * 7}", id=f"f{i}",
                      importance=importance)  # fmt: skip
        kept = {r.id for r in store.list_records(("acme",))}
        assert kept == {first.id, "f1", "f2"}
        again = MemoryRecord(NS, text="user prefers green tea!", importance=1.0)
        assert store.put_many([again], dedupe_threshold=None)[0].id != first.id
    finally:
        store.close()
        drop_checkpoint_store(store)  # type: ignore[arg-type]


async def _together(use_async: bool, calls: list[Callable[[], Any]]) -> None:
    """Runs ``calls`` at once: on threads (sync), or as tasks (each returns a coroutine)."""
    if use_async:
        await asyncio.gather(*(call() for call in calls))
        return
    start = threading.Barrier(len(calls), timeout=30)

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        call()

    with ThreadPoolExecutor(len(calls)) as pool:
        list(pool.map(run, calls))


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_concurrent_puts_keep_the_capacity_and_merge_duplicates(
    memory_backend: str, tmp_path: Path, use_async: bool
) -> None:
    """Puts racing on one namespace leave exactly ``capacity`` records, and copies of one text
    written at once merge into one record."""
    capped = make_memory_store(memory_backend, tmp_path, capacity=3)
    merging = make_memory_store(memory_backend, tmp_path, dedupe_threshold=0.9)
    try:
        for round_ in range(5):
            ns, other = ("acme", f"u{round_}"), ("acme", f"v{round_}")
            put, same = (capped.aput, merging.aput) if use_async else (capped.put, merging.put)
            facts = [partial(put, ns, f"fact number {i} word{i}") for i in range(12)]
            await _together(use_async, facts)
            assert capped.count(ns) == 3
            copies = [partial(same, other, "Prefers green tea", {"i": i}) for i in range(8)]
            await _together(use_async, copies)
            assert merging.count(other) == 1
    finally:
        for store in (capped, merging):
            store.close()
            drop_checkpoint_store(store)  # type: ignore[arg-type]


async def test_recency_decay_prefers_newer(api: Api, clock: Clock) -> None:
    """With a half-life, the newer of two equally matching memories ranks first."""
    await api.put(NS, "meeting notes about budget", id="old")
    clock.advance(86_400 * 30)
    await api.put(NS, "meeting notes about budget", id="new")
    clock.advance(60)
    plain = await api.search(("acme",), "budget meeting", k=2)
    assert plain[0].score == pytest.approx(plain[1].score)
    hits = await api.search(
        ("acme",), "budget meeting", k=2, half_life_seconds=86_400 * 7, decay_weight=1.0
    )
    assert [h.record.id for h in hits] == ["new", "old"]
    assert hits[1].score < hits[0].score / 8


async def test_reembed_redoes_vectors_of_other_models(api: Api) -> None:
    """reembed re-embeds records made by another model (or none) and reports progress."""
    store: BaseMemoryStore = api.store  # type: ignore[assignment]
    for i in range(5):
        await api.put(NS, f"fact number {i}", id=f"r{i}")
    await api.put(NS, "", {"no": "text"}, id="empty")
    store.embedder = HashingEmbedder(DIMS)
    calls: list[tuple[int, int]] = []
    assert (
        await api.reembed(("acme",), batch_size=2, progress=lambda d, t: calls.append((d, t))) == 0
    )
    store.embedder = _Renamed(HashingEmbedder(DIMS))
    assert (
        await api.reembed(("acme",), batch_size=2, progress=lambda d, t: calls.append((d, t))) == 5
    )
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert {r.embedding_model for r in await api.list_records(("acme",)) if r.text} == {"renamed"}
    assert await api.reembed(("acme",), force=True) == 5


class _Renamed:
    """The hashing embedder under another model name."""

    def __init__(self, inner: HashingEmbedder) -> None:
        self.inner = inner
        self.model = "renamed"
        self.dimensions = inner.dimensions

    def embed(self, texts: Any, *, kind: Any = "document") -> list[list[float]]:
        return self.inner.embed(texts, kind=kind)

    async def aembed(self, texts: Any, *, kind: Any = "document") -> list[list[float]]:
        return self.inner.embed(texts, kind=kind)


LABELS = st.sampled_from(["u1", "u2", "x"])
WORDS = st.sampled_from(["tea", "coffee", "rex", "billing", "lisbon", "spring"])


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    writes=st.lists(
        st.tuples(st.sampled_from(["t1", "t2"]), LABELS, st.lists(WORDS, min_size=1, max_size=4)),
        min_size=1, max_size=12,
    ),
    query=st.lists(WORDS, min_size=1, max_size=3),
    user=LABELS,
)  # fmt: skip
def test_no_read_crosses_tenants(
    mstore: BaseMemoryStore, writes: list[tuple[str, str, list[str]]], query: list[str], user: str
) -> None:
    """No search, list, count or namespace listing under one tenant returns another's record."""
    for tenant in ("t1", "t2"):
        mstore.delete_where((tenant,))
    for i, (tenant, label, words) in enumerate(writes):
        mstore.put((tenant, label), " ".join(words), {"tenant": tenant}, id=f"w{i}")
    for prefix in (("t1",), ("t1", user)):
        found = [h.record for h in mstore.search(prefix, " ".join(query), k=50)]
        found += mstore.list_records(prefix, limit=100)
        found += [h.record for h in mstore.search(prefix, vector=[1.0] * DIMS, k=50)]
        assert all(r.namespace[: len(prefix)] == prefix for r in found)
        assert all(r.value["tenant"] == "t1" for r in found)
        assert all(ns[0] == "t1" for ns in mstore.list_namespaces(prefix))
    expected = sum(1 for t, _, _ in writes if t == "t1")
    assert mstore.count(("t1",)) == expected


def test_reembed_command(tmp_path: Path) -> None:
    """``memfold reembed`` re-embeds a namespace with a new model and reports the count."""
    from typer.testing import CliRunner

    from memfold.cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with open_memory_store(url, embedder=HashingEmbedder(32)) as store:
        store.put_many([MemoryRecord(("acme", "u1"), text=f"fact {i}") for i in range(3)])
        store.put(("other",), "not mine")
    result = CliRunner().invoke(app, ["reembed", "acme", "--url", url, "--embedder", "hashing:32"])
    assert result.exit_code == 0, result.output
    assert "Re-embedded 0 records" in result.output
    with open_memory_store(url, embedder=HashingEmbedder(32)) as store:
        store.embedder = _Renamed(HashingEmbedder(32))
        assert store.reembed(("acme",)) == 3
    result = CliRunner().invoke(app, ["reembed", "acme", "--url", url, "--embedder", "hashing:32"])
    assert "Re-embedded 3 records with hashing-32." in result.output
    bad = CliRunner().invoke(app, ["reembed", "acme", "--url", url, "--embedder", "word2vec"])
    assert bad.exit_code == 1


def test_sqlite_vector_cache_sees_other_writers(tmp_path: Path) -> None:
    """A SQLite store's in-memory vector matrix is refreshed after another store writes."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with open_memory_store(url, dimensions=2) as a, open_memory_store(url, dimensions=2) as b:
        a.put(NS, "east", id="e", embedding=[1.0, 0.0])
        assert [h.record.id for h in a.search(("acme",), vector=[0.0, 1.0], k=1)] == ["e"]
        b.put(NS, "north", id="n", embedding=[0.0, 1.0])
        assert [h.record.id for h in a.search(("acme",), vector=[0.0, 1.0], k=1)] == ["n"]
        b.delete(NS, "n")
        assert [h.record.id for h in a.search(("acme",), vector=[0.0, 1.0], k=2)] == ["e"]


async def test_filter_matching_only_the_farthest_records_still_fills_k(api: Api) -> None:
    """Past thousands of ranked candidates a store checks the filter over the whole prefix:
    the k matching records come back even when they are the farthest from the query."""
    rng = np.random.default_rng(5)
    near = rng.normal(scale=0.1, size=(4_990, DIMS)) + np.eye(DIMS)[0]
    far = rng.normal(scale=0.1, size=(10, DIMS)) - np.eye(DIMS)[0]
    records = [
        MemoryRecord(NS, f"r{i}", value={"far": i >= len(near)}, embedding=tuple(v.tolist()))
        for i, v in enumerate(np.vstack([near, far]))
    ]
    await api.put_many(records, dedupe_threshold=None)
    hits = await api.search(("acme",), vector=np.eye(DIMS)[0].tolist(), k=10, filter={"far": True})
    assert sorted(h.record.id for h in hits) == sorted(f"r{i}" for i in range(4_990, 5_000))
