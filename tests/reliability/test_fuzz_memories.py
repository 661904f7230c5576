"""Hostile input to every long-term memory method, on memory, SQLite, PostgreSQL, Redis and
Chroma, sync and async: each write stores its values exactly or raises a `memfold.errors`
error, each read answers or raises one, and canary records written before are unchanged."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memfold import InvalidInput, MemfoldError
from memfold.memories import SEP, BaseMemoryStore, open_memory_store
from memfold.recall.embedders import HashingEmbedder
from tests.reliability.fuzzing import (
    FUZZ,
    INJECTIONS,
    as_json,
    call,
    hostile_ids,
    hostile_text,
    json_objects,
    json_values,
    numbers,
    vectors,
)
from tests.support import (
    MEMORY_DIMS,
    REDIS_URL,
    drop_checkpoint_store,
    make_memory_store,
)

CANARY = ("memfold-canary", "user")

NUMBERS = numbers(-3, 30)
FRACTIONS = st.one_of(st.floats(0, 1), st.floats(), st.integers(-2, 2), st.none(), st.just("x"))
OPERATORS = ["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$type", "$size"]
TYPES = ["object", "array", "string", "number", "boolean", "null"]


def namespaces() -> st.SearchStrategy[Any]:
    """Namespace tuples of hostile labels, and things that are not namespaces."""
    label = hostile_text(max_size=12)
    return st.one_of(
        st.lists(label, min_size=1, max_size=4).map(tuple),
        st.tuples(st.just("fuzz"), label),
        st.lists(st.just("\u4e2d" * 100), min_size=2, max_size=5).map(tuple),
        st.sampled_from([(), "fuzz", None, ("fuzz", None), ("fuzz", 1), ["fuzz", "x"]]),
    )


def filters() -> st.SearchStrategy[Any]:
    """Filters of hostile fields, operators and values, nested with $and/$or."""
    field = st.one_of(st.sampled_from(["kind", "n", "a.b", "x"]), hostile_text(max_size=10))
    operator = st.sampled_from([*OPERATORS, "$and", "$or", "$not", "$regex"]) | hostile_text()
    condition = st.one_of(
        json_values(max_leaves=3),
        st.dictionaries(
            operator,
            json_values(max_leaves=3) | st.sampled_from(TYPES) | st.integers(0, 3),
            min_size=1,
            max_size=2,
        ),
    )
    leaf = st.dictionaries(field, condition, max_size=3)
    return st.one_of(
        st.none(),
        st.recursive(
            leaf,
            lambda inner: st.dictionaries(
                st.sampled_from(["$and", "$or"]), st.lists(inner, max_size=3), min_size=1
            ),
            max_leaves=6,
        ),
        st.sampled_from([[], "kind", {"$and": "x"}, {"kind": {"$in": "notalist"}}]),
    )


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis", "chroma"])
async def mstore(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseMemoryStore]:
    """A fresh memory store of each backend, embedding with a `HashingEmbedder`."""
    if request.param == "redis":
        store = open_memory_store(
            REDIS_URL,
            key_prefix=f"memfold-test:{uuid.uuid4().hex}:",
            embedder=HashingEmbedder(MEMORY_DIMS),
        )
    else:
        store = make_memory_store(request.param, tmp_path)
    yield store
    await store.aclose()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops the schema or the keys


@pytest.fixture(params=["sync", "async"])
def use_async(request: pytest.FixtureRequest) -> bool:
    """Whether the store is driven through its async twins."""
    return request.param == "async"


class Canary:
    """Records written before the fuzzing; `check` fails if any of them changed."""

    def __init__(self, store: BaseMemoryStore) -> None:
        self.store = store
        store.put(CANARY, "Prefers green tea", {"kind": "preference", "n": 1}, id="tea")
        store.put((*CANARY, "deep"), "Works on billing", {"kind": "fact"}, id="work")
        self.initial = self.snapshot()

    def snapshot(self) -> Any:
        return self.store.list_records(CANARY[:1], include_embedding=True)

    def check(self) -> None:
        assert self.snapshot() == self.initial


@pytest.fixture
def canary(mstore: BaseMemoryStore) -> Canary:
    """The canary records, in the store under test."""
    return Canary(mstore)


async def stored(store: BaseMemoryStore, namespace: Any, id: Any) -> Any:
    """The record at ``(namespace, id)``, or an error marker if that key is refused."""
    try:
        return store.get(namespace, id, include_embedding=True)
    except MemfoldError:
        return "refused"


@FUZZ
@given(
    namespace=namespaces(),
    text=hostile_text(max_size=50) | hostile_ids(),
    value=json_objects(),
    id=st.none() | hostile_ids(),
    embedding=st.none() | vectors(MEMORY_DIMS),
    importance=FRACTIONS,
    ttl=st.none() | NUMBERS,
)
async def test_put_stores_exactly_or_refuses(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    namespace: Any,
    text: Any,
    value: Any,
    id: Any,
    embedding: Any,
    importance: Any,
    ttl: Any,
) -> None:
    """A put with hostile namespaces, text, values, ids, vectors, importance and TTL stores the
    record exactly, or raises a memfold error and leaves the key as it was."""
    before = None if id is None else await stored(mstore, namespace, id)
    try:
        record = await call(
            use_async, mstore, "put", namespace, text, value,
            id=id, embedding=embedding, importance=importance, ttl_seconds=ttl,
        )  # fmt: skip
    except MemfoldError:
        if id is not None:
            assert await stored(mstore, namespace, id) == before
    else:
        got = mstore.get(namespace, record.id)
        if got is None:  # only a record whose TTL has run out since may be gone
            assert ttl is not None
            assert ttl < 60
            return
        assert got is not None
        assert (got.namespace, got.text) == (tuple(namespace), text)
        assert got.value == as_json(value or {})
        assert got.importance == float(importance)
        assert got.ttl_seconds == (None if ttl is None else float(ttl))
    canary.check()


@FUZZ
@given(
    op=st.sampled_from(
        ["search", "list_records", "count", "delete_where", "list_namespaces", "get_many",
         "delete"]
    ),
    prefix=namespaces(),
    query=st.none() | hostile_text() | hostile_ids(),
    vector=st.none() | vectors(MEMORY_DIMS),
    filter=filters(),
    k=NUMBERS,
    weights=st.tuples(FRACTIONS, FRACTIONS),
    min_score=st.none() | NUMBERS,
    half_life=st.none() | NUMBERS,
    decay=FRACTIONS,
    suffix=st.just(()) | namespaces(),
    ids=st.lists(hostile_ids(), max_size=3) | hostile_ids(),
)  # fmt: skip
async def test_reads_and_deletes_answer_or_refuse(
    mstore: BaseMemoryStore,
    canary: Canary,
    use_async: bool,
    op: str,
    prefix: Any,
    query: Any,
    vector: Any,
    filter: Any,
    k: Any,
    weights: tuple[Any, Any],
    min_score: Any,
    half_life: Any,
    decay: Any,
    suffix: Any,
    ids: Any,
) -> None:
    """Searches, listings, counts, namespace listings and deletes with hostile prefixes,
    queries, vectors, filters and numbers answer or raise a memfold error, and never touch
    records outside their prefix."""
    try:
        if op == "search":
            hits = await call(
                use_async, mstore, "search", prefix, query, vector=vector, filter=filter, k=k,
                text_weight=weights[0], vector_weight=weights[1], min_score=min_score,
                half_life_seconds=half_life, decay_weight=decay,
            )  # fmt: skip
            assert all(math.isfinite(h.score) for h in hits)
        elif op == "list_records":
            await call(use_async, mstore, "list_records", prefix, filter=filter, limit=k, offset=0)
        elif op == "count":
            await call(use_async, mstore, "count", prefix, filter=filter)
        elif op == "delete_where":
            await call(use_async, mstore, "delete_where", prefix, filter)
        elif op == "list_namespaces":
            await call(
                use_async, mstore, "list_namespaces", prefix, suffix=suffix, max_depth=k, limit=10
            )
        else:
            await call(use_async, mstore, op, prefix, ids)
    except MemfoldError:
        pass
    canary.check()


@pytest.mark.parametrize("label", INJECTIONS)
def test_injection_labels_stay_in_their_namespace(
    mstore: BaseMemoryStore, canary: Canary, label: str
) -> None:
    """A namespace label or filter value that is a query or key-pattern injection is data:
    it is stored, found under its own namespace only, and deletes nothing else (the one label
    refused is the separator of stored namespace keys)."""
    if label == SEP:
        with pytest.raises(InvalidInput, match="separator"):
            mstore.put(("fuzz", label), label)
        return
    mstore.put(("fuzz", label), label, {"kind": label}, id="x")
    assert [r.text for r in mstore.list_records(("fuzz", label))] == [label]
    assert mstore.count(("fuzz",), filter={"kind": label}) == 1
    assert mstore.delete_where(("fuzz", label), {"kind": label}) == 1
    assert mstore.count(("fuzz",)) == 0
    canary.check()
