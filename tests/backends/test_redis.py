"""What only the Redis backend does: key layout, TTL, trimming, compression, clients, scripts."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.exceptions import NoScriptError

import memfold
from memfold import (
    BackendUnavailable,
    Conflict,
    InvalidInput,
    Message,
    Part,
    SchemaTooNew,
    ToolCall,
)
from memfold.backends.redis import RedisThreadStore
from memfold.backends.redis.keys import LAYOUT_VERSION, layout_key, tenant_keys, thread_keys
from memfold.retention import RetentionPolicy
from tests.support import REDIS_URL, drop_store, redis_store

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

MakeStore = Callable[..., RedisThreadStore]


@pytest.fixture
def make() -> Iterator[MakeStore]:
    """Opens Redis stores under fresh key prefixes, and deletes their keys afterwards."""
    made: list[RedisThreadStore] = []

    def open_one(**options: Any) -> RedisThreadStore:
        store = redis_store(**options)
        assert isinstance(store, RedisThreadStore)
        made.append(store)
        return store

    yield open_one
    for store in made:
        drop_store(store)
        store.close()


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    """A plain client of the test server, to look at what the store wrote."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def msgs(*texts: str) -> list[Message]:
    return [Message(role="user", content=t) for t in texts]


def test_ids_with_separators_and_braces_never_collide(make: MakeStore) -> None:
    """Tenants and threads whose ids hold ':', '{', '}' or '%' stay apart."""
    store = make()
    pairs = [("a:b", "c"), ("a", "b:c"), ("a", "b%3Ac"), ("{a}", "b"), ("a}", "{b"), ("%", "%25")]
    for n, (tenant, thread) in enumerate(pairs):
        store.append(thread, msgs(str(n)), tenant=tenant)
    for n, (tenant, thread) in enumerate(pairs):
        assert [m.content for m in store.load(thread, tenant=tenant)] == [str(n)]
        listed = {t.thread_id for t in store.list_threads(tenant=tenant)}
        assert listed == {h for t, h in pairs if t == tenant}
    assert store.clear_tenant("a") == 2
    assert store.count("c", tenant="a:b") == 1


def test_every_key_starts_with_the_prefix(make: MakeStore, raw: redis.Redis) -> None:
    """A store writes only keys under its key_prefix, one hash tag per tenant."""
    store = make()
    store.append("t", msgs("x"), tenant="acme")
    store.set_thread_metadata("u", {"k": 1}, tenant="acme")
    keys = sorted(k.decode() for k in raw.scan_iter(match=f"{store.key_prefix}*"))
    p = store.key_prefix
    assert keys == [
        f"{p}layout",
        f"{p}tenants",
        f"{p}{{acme}}:firsts",
        f"{p}{{acme}}:sizes",
        f"{p}{{acme}}:t:t:h",
        f"{p}{{acme}}:t:t:i",
        f"{p}{{acme}}:t:t:m",
        f"{p}{{acme}}:t:u:h",
        f"{p}{{acme}}:threads",
    ]


def test_prefixes_keep_stores_apart(make: MakeStore) -> None:
    """Two stores on one database with different key prefixes share nothing."""
    first, second = make(), make()
    first.append("t", msgs("one"))
    assert second.load("t") == []
    assert second.list_threads() == []


def test_a_second_store_on_the_same_prefix_sees_the_data(make: MakeStore) -> None:
    """Stores on the same prefix share threads: the data lives in Redis, not in the process."""
    store = make()
    stored = store.append("t", msgs("shared"))
    other = RedisThreadStore.from_url(REDIS_URL, key_prefix=store.key_prefix)
    try:
        assert other.load("t") == stored
        assert other.capabilities.shared
        assert other.capabilities.persistent
    finally:
        other.close()


@pytest.mark.parametrize("prefix", ["", "a{b}:", "x}", 5])
def test_bad_key_prefixes_are_refused(prefix: Any) -> None:
    """Empty, non-str and brace-bearing prefixes raise InvalidInput."""
    with pytest.raises(InvalidInput):
        RedisThreadStore(REDIS_URL, key_prefix=prefix)


def test_ttl_expires_threads_and_each_write_restarts_it(make: MakeStore, raw: redis.Redis) -> None:
    """A thread not written for ttl_seconds is gone from loads and listings; writes renew it."""
    store = make(ttl_seconds=1.0)
    store.append("old", msgs("x"))
    store.append("kept", msgs("x"))
    keys = thread_keys(store.key_prefix, "default", "kept")
    assert all(0 < raw.pttl(k) <= 1000 for k in keys.all if raw.exists(k))
    time.sleep(0.6)
    store.append("kept", msgs("y"))
    assert all(raw.pttl(k) > 700 for k in keys.all if raw.exists(k))
    time.sleep(0.6)
    assert store.load("old") == []
    assert store.count("kept") == 2
    assert [t.thread_id for t in store.list_threads()] == ["kept"]
    assert raw.zcard(keys.index) == 1
    time.sleep(1.0)
    assert store.list_threads() == []
    assert not list(raw.scan_iter(match=f"{store.key_prefix}{{*"))


def test_reads_do_not_restart_the_ttl(make: MakeStore, raw: redis.Redis) -> None:
    """Loading a thread leaves its expiry where the last write put it."""
    store = make(ttl_seconds=30)
    store.append("t", msgs("x"))
    info_key = thread_keys(store.key_prefix, "default", "t").info
    raw.pexpire(info_key, 5_000)
    store.load("t")
    store.get_thread("t")
    assert raw.pttl(info_key) <= 5_000


def test_max_messages_drops_the_oldest(make: MakeStore) -> None:
    """Past max_messages the earliest messages go; paging and duplicate checks follow."""
    store = make(max_messages=3)
    stored = store.append("t", msgs("1", "2", "3"))
    stored += store.append("t", msgs("4", "5"))
    assert [m.content for m in store.load("t")] == ["3", "4", "5"]
    assert store.count("t") == 3
    assert [m.content for m in store.load("t", before=stored[4].id)] == ["3", "4"]
    with pytest.raises(memfold.NotFound):
        store.load("t", before=stored[0].id)
    store.append("t", [stored[0]])
    assert [m.content for m in store.load("t")] == ["4", "5", "1"]
    assert [m.content for m in store.replace("t", msgs("a", "b", "c", "d", "e"))] == list("abcde")
    assert [m.content for m in store.load("t")] == ["c", "d", "e"]


@pytest.mark.parametrize("compress", [None, 1], ids=["plain", "compressed"])
def test_max_messages_never_leaves_a_tool_result_without_its_call(
    make: MakeStore, compress: int | None
) -> None:
    """The cap drops the tool results whose call it dropped, as every other trim does
    (`memfold.retention.tool_safe_cut`), read from the element even when it is compressed; a
    cap that leaves only tool results empties the thread, and it stays listed and writable."""
    store = make(max_messages=3, compress_min_bytes=compress)
    call = Message(role="assistant", content="", tool_calls=(ToolCall("c1", "f", {}),))
    results = [Message(role="tool", content=f"r{i}", tool_call_id=f"c{i}") for i in (1, 2, 3)]
    turn = [Message(role="user", content="q"), call, *results]
    store.append("t", [*turn, Message(role="assistant", content="done")])
    assert [m.content for m in store.load("t")] == ["done"]
    assert store.count("t") == 1
    store.replace("t", turn)
    assert store.load("t") == []
    assert [t.thread_id for t in store.list_threads()] == ["t"]
    assert [m.content for m in store.append("t", msgs("x"))] == ["x"]
    assert [m.content for m in store.load("t")] == ["x"]


def test_deletes_and_updates_keep_paging_right(make: MakeStore) -> None:
    """After trimming and deleting from the middle, before= and updates find the right slots."""
    store = make(max_messages=6)
    stored = store.append("t", msgs(*"abcdefgh"))
    assert store.delete_messages("t", [stored[4].id, stored[6].id]) == [stored[4], stored[6]]
    assert [m.content for m in store.load("t")] == ["c", "d", "f", "h"]
    assert [m.content for m in store.load("t", before=stored[7].id, last=2)] == ["d", "f"]
    store.update_messages("t", [Message(role="user", content="F", id=stored[5].id)])
    assert [m.content for m in store.load("t")] == ["c", "d", "F", "h"]
    assert store.delete_messages("t", [stored[2].id]) == [stored[2]]
    assert [m.content for m in store.load("t", before=stored[5].id)] == ["d"]
    with pytest.raises(Conflict):
        store.append("t", [stored[3]])


def _elements(raw: redis.Redis, store: RedisThreadStore, thread: str) -> list[bytes]:
    elements: list[bytes] = raw.lrange(
        thread_keys(store.key_prefix, "default", thread).messages, 0, -1
    )
    return elements


def test_large_messages_are_compressed_small_ones_not(make: MakeStore, raw: redis.Redis) -> None:
    """Bodies past compress_min_bytes are stored zstd-compressed beside plain ones."""
    store = make(compress_min_bytes=200)
    big = Message(role="user", content="the same words again " * 100, id="big")
    parts = Message(role="user", content=(Part(type="text", text="y" * 500, extra={"id": 1}),))
    stored = store.append("t", [Message(role="user", content="small", id="s"), big, parts])
    small_el, big_el, parts_el = _elements(raw, store, "t")
    assert small_el.startswith(b"ts\x00")
    assert small_el[11:12] == b"{"
    assert b'"id"' not in small_el
    assert b"created_at" not in small_el
    assert big_el.startswith(b"ubig\x00")
    assert len(big_el) < len(big.content) / 5
    assert parts_el[0:1] == b"c"  # an assigned id, stored as 16 bytes
    assert store.load("t") == stored
    assert store.delete_messages("t", ["big"]) == [stored[1]]


def test_compression_can_be_turned_off(make: MakeStore, raw: redis.Redis) -> None:
    """With compress_min_bytes=None every body is plain JSON."""
    store = make(compress_min_bytes=None)
    store.append("t", [Message(role="user", content="z" * 10_000)])
    assert _elements(raw, store, "t")[0][0:1] == b"b"


def test_layout_1_elements_still_read_trim_and_delete(make: MakeStore, raw: redis.Redis) -> None:
    """Elements written by layout 1 (id, NUL, JSON with the time) load, page, trim and delete
    beside newer ones, and setup() records the upgrade to the current layout."""
    store = make(max_messages=3, compress_min_bytes=None)
    old = [Message(role="user", content=f"old {i}", id=f"o{i}", created_at=WHEN) for i in range(2)]
    keys = thread_keys(store.key_prefix, "default", "t")
    store.append("t", old)  # creates the thread's keys, then rewrite both as layout 1 wrote them
    for i, m in enumerate(old):
        body = m.to_dict()
        del body["id"]
        raw.lset(keys.messages, i, b"j" + m.id.encode() + b"\x00" + json.dumps(body).encode())
    raw.set(layout_key(store.key_prefix), 1)
    assert store.setup() == LAYOUT_VERSION == int(raw.get(layout_key(store.key_prefix)))
    assert store.load("t") == old
    new = store.append("t", msgs("n1", "n2"))
    assert store.load("t") == old[1:] + new  # trimmed the oldest, layout 1 element
    assert store.load("t", before=new[0].id) == old[1:]
    assert store.delete_messages("t", ["o1", new[1].id]) == [old[1], new[1]]
    assert store.load("t") == new[:1]


def test_an_upgrade_to_layout_3_indexes_the_threads_written_before(
    make: MakeStore, raw: redis.Redis
) -> None:
    """Threads written before layout 3 (no set of tenants, no size or first-message index)
    are found by no sweep until setup() fills the indexes in; then a sweep of every tenant
    finds them."""
    store = make()
    for tenant in ("acme", "a:b"):
        store.append("t", msgs("a", "b", "c"), tenant=tenant)
    p = store.key_prefix
    indexes = [k for tenant in ("acme", "a:b") for k in tenant_keys(p, tenant).all[1:3]]
    raw.delete(f"{p}tenants", *indexes)
    raw.set(layout_key(p), 2)
    assert store.sweep(RetentionPolicy(keep_last=1)).messages == 0
    assert store.setup() == LAYOUT_VERSION
    assert raw.smembers(f"{p}tenants") == {b"acme", b"a%3Ab"}
    assert store.sweep(RetentionPolicy(keep_last=1)).messages == 4
    assert [m.content for m in store.load("t", tenant="a:b")] == ["c"]


def _texts(n: int) -> list[Message]:
    return msgs(*(str(i) for i in range(n)))


def test_the_size_index_scores_size_classes_and_keep_last_sweeps_stay_exact(
    make: MakeStore, raw: redis.Redis
) -> None:
    """The size index holds a thread's count rounded up to its size class (exact to 16, then 8
    classes per doubling), moved only when an append changes the class; a keep_last sweep
    trims exactly the threads over keep_last, those just under it in the same class too."""
    store = make()
    sizes = tenant_keys(store.key_prefix, "default").sizes
    expected = {1: 1, 16: 16, 17: 18, 18: 18, 19: 20, 33: 36, 64: 64, 65: 72, 1000: 1024}
    for count, size_class in expected.items():
        store.append(f"t{count}", _texts(count))
        assert raw.zscore(sizes, f"t{count}") == size_class
    store.append("grows", _texts(17))
    raw.zadd(sizes, {"grows": 1})  # an append within the class leaves the score alone...
    store.append("grows", msgs("18th"))
    assert raw.zscore(sizes, "grows") == 1
    store.append("grows", msgs("19th"))  # ...one into the next class moves it
    assert raw.zscore(sizes, "grows") == 20
    store.append("under", _texts(19))
    store.append("over", _texts(20))
    result = store.sweep(RetentionPolicy(keep_last=19), tenant="default")
    assert store.count("under") == store.count("over") == 19
    assert store.count("t1000") == store.count("t64") == 19
    assert result.messages == (1000 - 19) + (65 - 19) + (64 - 19) + (33 - 19) + (20 - 19)
    assert raw.zscore(sizes, "over") == raw.zscore(sizes, "t1000") == 20


def test_appends_index_a_new_front_and_leave_an_unchanged_one(
    make: MakeStore, raw: redis.Redis
) -> None:
    """The first-message index holds the time of each thread's oldest message: set by its first
    append, left alone by later ones, and moved when max_messages drops the oldest (one at a
    time, or a batch larger than the cap)."""
    store = make(max_messages=2)
    firsts = tenant_keys(store.key_prefix, "default").firsts
    at = [WHEN + timedelta(seconds=i) for i in range(6)]

    def stamped(*indices: int) -> list[Message]:
        return [Message(role="user", content=str(i), created_at=at[i]) for i in indices]

    def first() -> float | None:
        return raw.zscore(firsts, "t")

    store.append("t", stamped(0))
    assert first() == at[0].timestamp() * 1e6
    raw.zadd(firsts, {"t": 7})  # an append that keeps the front leaves the score alone
    store.append("t", stamped(1))
    assert first() == 7
    store.append("t", stamped(2))  # the cap drops message 0: message 1 is the front
    assert first() == at[1].timestamp() * 1e6
    store.append("t", stamped(3, 4, 5))  # all of the old messages go
    assert first() == at[4].timestamp() * 1e6
    assert [m.content for m in store.load("t")] == ["4", "5"]


def test_an_upgrade_to_layout_5_rescores_the_size_index(make: MakeStore, raw: redis.Redis) -> None:
    """Layout 4 scored threads by their exact count; setup() rescores them by size class, so
    that appends within the class keep the score at or above the count."""
    store = make()
    store.append("t", _texts(17))
    sizes = tenant_keys(store.key_prefix, "default").sizes
    raw.zadd(sizes, {"t": 17})
    raw.set(layout_key(store.key_prefix), 4)
    assert store.setup() == LAYOUT_VERSION == 5
    assert raw.zscore(sizes, "t") == 18
    store.append("t", msgs("18th"))
    assert store.sweep(RetentionPolicy(keep_last=17)).messages == 1


def test_a_sweep_skips_and_unindexes_threads_evicted_behind_its_back(
    make: MakeStore, raw: redis.Redis
) -> None:
    """A thread whose keys vanished is neither counted nor trimmed, and leaves the indexes."""
    store = make()
    store.append("a", msgs("1", "2", "3"))
    store.append("b", msgs("1", "2", "3"))
    raw.delete(*thread_keys(store.key_prefix, "default", "b").all[:3])
    assert store.sweep(RetentionPolicy(keep_last=1)).messages == 2
    assert raw.zrange(tenant_keys(store.key_prefix, "default").sizes, 0, -1) == [b"a"]


def test_retention_options_in_the_url_make_the_stores_policy() -> None:
    """keep_last, max_age_seconds and max_threads in the URL make the retention policy;
    ttl_seconds and max_messages (applied by Redis on every write) fill it in too."""
    url = f"{REDIS_URL}?keep_last=3&max_age_seconds=60&max_threads=10&socket_timeout=5"
    store = RedisThreadStore.from_url(url)
    assert store.retention == RetentionPolicy(keep_last=3, max_age_seconds=60, max_threads=10)
    store.close()
    store = RedisThreadStore.from_url(f"{REDIS_URL}?ttl_seconds=5&max_messages=7")
    assert store.retention == RetentionPolicy(keep_last=7, ttl_seconds=5)
    store.close()
    with pytest.raises(InvalidInput):
        RedisThreadStore.from_url(f"{REDIS_URL}?keep_last=0")


def test_times_keep_their_zone(make: MakeStore) -> None:
    """A creation time in another zone than UTC comes back with its own offset."""
    store = make()
    zoned = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    stored = store.append("t", Message(role="user", content="hi", created_at=zoned))
    (loaded,) = store.load("t")
    assert loaded == stored[0]
    assert loaded.created_at.utcoffset() == zoned.utcoffset()


def test_an_append_is_one_round_trip(make: MakeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """append, load and count each send exactly one command."""
    store = make()
    store.append("t", msgs("warm"))
    sent: list[Any] = []
    real = store.client.execute_command
    monkeypatch.setattr(
        store.client, "execute_command", lambda *a, **k: sent.append(a) or real(*a, **k)
    )
    store.append("t", msgs("a", "b"))
    store.load("t", last=2)
    store.load("t", before=store.load("t")[-1].id)
    store.count("t")
    assert [a[0] for a in sent] == ["EVALSHA", "LRANGE", "LRANGE", "EVALSHA", "LLEN"]


def test_forgotten_scripts_are_loaded_again(
    make: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the server has lost the scripts (restart, SCRIPT FLUSH) a call loads and retries."""
    store = make()
    real = store.client.execute_command
    failed: list[bool] = []

    def once(*args: Any, **kwargs: Any) -> Any:
        if args[0] == "EVALSHA" and not failed:
            failed.append(True)
            raise NoScriptError("NOSCRIPT No matching script")
        return real(*args, **kwargs)

    monkeypatch.setattr(store.client, "execute_command", once)
    store.append("t", msgs("x"))
    assert failed == [True]
    assert store.count("t") == 1


def test_hiredis_parses_replies_when_installed(make: MakeStore) -> None:
    """redis-py picks the hiredis parser by itself; memfold does not get in its way."""
    pytest.importorskip("hiredis")
    store = make()
    connection = store.client.connection_pool.get_connection()
    try:
        assert type(connection._parser).__name__ == "_HiredisParser"
    finally:
        store.client.connection_pool.release(connection)


def test_url_options_configure_the_store(make: MakeStore) -> None:
    """key_prefix, ttl_seconds, max_messages and compress_min_bytes come from the URL query."""
    url = f"{REDIS_URL}?key_prefix=memfold-test-url:&ttl_seconds=60&max_messages=5"
    store = memfold.open_store(url + "&compress_min_bytes=100&socket_timeout=5")
    try:
        assert isinstance(store, RedisThreadStore)
        assert (store.key_prefix, store.ttl_seconds, store.max_messages) == (
            "memfold-test-url:", 60.0, 5,
        )  # fmt: skip
        assert store.codec.compress_min_bytes == 100
        assert store.client.connection_pool.connection_kwargs["socket_timeout"] == 5.0
    finally:
        drop_store(store)
        store.close()


@pytest.mark.parametrize(
    "query", ["nope=1", "ttl_seconds=soon", "max_messages=0", "decode_responses=true"]
)
def test_bad_url_options_are_refused(query: str) -> None:
    """Unknown or malformed options raise InvalidInput before anything is stored."""
    with pytest.raises(InvalidInput):
        memfold.open_store(f"{REDIS_URL}?{query}", setup=False)


def test_decoding_clients_are_refused() -> None:
    """A client that decodes replies to str cannot carry compressed bodies: InvalidInput."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    with pytest.raises(InvalidInput, match="decode_responses"):
        RedisThreadStore(client=client)
    client.close()


async def test_clients_passed_in_are_used_and_left_open(make: MakeStore) -> None:
    """A store on your own sync and async clients uses them and does not close them."""
    prefix = make().key_prefix
    client = redis.Redis.from_url(REDIS_URL)
    aclient = redis.asyncio.Redis.from_url(REDIS_URL)
    store = RedisThreadStore(client=client, async_client=aclient, key_prefix=prefix)
    store.append("t", msgs("sync"))
    await store.aappend("t", msgs("async"))
    assert [m.content for m in await store.aload("t")] == ["sync", "async"]
    await store.aclose()
    assert client.ping()
    assert await aclient.ping()
    client.close()
    await aclient.aclose()


async def test_a_store_with_one_client_says_which_to_pass() -> None:
    """Calling the async API of a sync-only store (or the reverse) says what to pass."""
    client = redis.Redis.from_url(REDIS_URL)
    with pytest.raises(InvalidInput, match="async_client"):
        await RedisThreadStore(client=client).acount("t")
    client.close()
    aclient = redis.asyncio.Redis.from_url(REDIS_URL)
    with pytest.raises(InvalidInput, match="client="):
        RedisThreadStore(async_client=aclient).count("t")
    await aclient.aclose()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_an_unreachable_server_is_backend_unavailable(closed_port: int) -> None:
    """Sync and async calls to a server that is not there raise BackendUnavailable."""
    store = RedisThreadStore(f"redis://127.0.0.1:{closed_port}/0")
    with pytest.raises(BackendUnavailable, match="server is running"):
        store.setup()
    with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{closed_port}"):
        await store.aappend("t", msgs("x"))
    await store.aclose()


def test_foreign_data_under_the_prefix_is_a_conflict(make: MakeStore, raw: redis.Redis) -> None:
    """A key of the wrong type where a thread should be raises Conflict, naming the prefix."""
    store = make()
    raw.set(thread_keys(store.key_prefix, "default", "t").messages, b"not a list")
    with pytest.raises(Conflict, match="key_prefix"):
        store.append("t", msgs("x"))


def test_setup_records_the_layout_and_refuses_newer_ones(make: MakeStore, raw: redis.Redis) -> None:
    """setup() is idempotent and refuses data written in a newer layout."""
    store = make()
    assert store.setup() == store.setup() == LAYOUT_VERSION
    raw.set(layout_key(store.key_prefix), LAYOUT_VERSION + 1)
    with pytest.raises(SchemaTooNew, match="upgrade memfold"):
        store.setup()
    assert int(raw.get(layout_key(store.key_prefix))) == LAYOUT_VERSION + 1  # left as it was


def test_concurrent_writers_lose_and_duplicate_nothing(make: MakeStore) -> None:
    """Four threads with their own stores append to one thread: all land, each in order."""
    prefix = make().key_prefix

    def writer(name: str) -> None:
        own = RedisThreadStore.from_url(REDIS_URL, key_prefix=prefix)
        for i in range(50):
            own.append("shared", Message(role="user", content=f"{name} {i}"))
        own.close()

    workers = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    store = RedisThreadStore.from_url(REDIS_URL, key_prefix=prefix)
    shared = [str(m.content) for m in store.load("shared")]
    assert len(shared) == len(set(shared)) == 200
    for n in range(4):
        assert [int(c.split()[1]) for c in shared if c.startswith(f"w{n} ")] == list(range(50))
    assert store.get_thread("shared").message_count == 200
    store.close()


def test_a_store_serves_several_event_loops(make: MakeStore, raw: redis.Redis) -> None:
    """Each asyncio.run gets a working async client of its own, closed when its loop ends."""
    name = f"memfold-test-{uuid.uuid4().hex}"
    url = f"{REDIS_URL}?client_name={name}"
    store = RedisThreadStore.from_url(url, key_prefix=make().key_prefix)
    for i in range(3):
        asyncio.run(store.aappend("t", msgs(str(i))))
    worker = threading.Thread(target=lambda: asyncio.run(store.aappend("t", msgs("3"))))
    worker.start()
    worker.join()
    assert asyncio.run(store.acount("t")) == 4
    store.close()
    assert [c for c in raw.client_list() if c["name"] == name] == []


def test_list_threads_skips_threads_evicted_behind_its_back(
    make: MakeStore, raw: redis.Redis
) -> None:
    """A thread whose keys vanished (evicted, deleted by hand) drops out of listings."""
    store = make()
    for name in ["a", "b", "c"]:
        store.append(name, msgs("x"))
    raw.delete(*thread_keys(store.key_prefix, "default", "b").all[:3])
    assert [t.thread_id for t in store.list_threads()] == ["c", "a"]
    assert [t.thread_id for t in store.list_threads(offset=1)] == ["a"]
    assert store.clear_tenant("default") == 2


def test_checkpoint_sweeps_read_indexes_an_upgrade_fills_in(
    raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoint writes score each thread by its largest namespace and oldest removable
    checkpoint (a re-put marks it dirty); a sweep scores what it keeps exactly. Threads written
    before layout 3 are found by no sweep until setup() fills the indexes in."""
    import memfold.checkpoints
    from memfold.backends.redis.checkpoint_keys import tenant_indexes
    from memfold.checkpoints import Blob
    from tests.support import drop_checkpoint_store, redis_checkpoint_store

    now = [WHEN]
    monkeypatch.setattr(memfold.checkpoints, "utcnow", lambda: now[0])
    store = redis_checkpoint_store()
    try:
        for i in range(5):
            store.put("big", f"c{i}", Blob("json", b"{}"), parent_id=f"c{i - 1}" if i else None)
            now[0] += timedelta(seconds=1)
        store.put("big", "k0", Blob("json", b"{}"), namespace="child")
        store.put("small", "c0", Blob("json", b"{}"), values={"x": Blob("json", b"1")},
                  versions={"x": 1})  # fmt: skip
        store.put("small", "c0", Blob("json", b"{}"), values={"x": Blob("json", b"2")},
                  versions={"x": 2})  # fmt: skip
        t = tenant_indexes(store.key_prefix, "default")  # type: ignore[attr-defined]
        assert raw.zrange(t.sizes, 0, -1, withscores=True) == [(b"small", 1), (b"big", 5)]
        assert raw.zrange(t.firsts, 0, -1, withscores=True) == [(b"big", WHEN.timestamp() * 1e6)]
        assert raw.zrange(t.dirty, 0, -1) == [b"small"]
        raw.delete(t.sizes, t.firsts, t.dirty)
        raw.set(f"{store.key_prefix}c:layout", 2)  # type: ignore[attr-defined]
        assert store.sweep(RetentionPolicy(keep_last=2)).total == 0
        store.setup()
        assert raw.zrange(t.dirty, 0, -1) == [b"big", b"small"]
        result = store.sweep(RetentionPolicy(keep_last=2))
        assert (result.checkpoints, result.blobs) == (3, 1)
        assert raw.zrange(t.sizes, 0, -1, withscores=True) == [(b"small", 1), (b"big", 2)]
        second = (WHEN + timedelta(seconds=3)).timestamp() * 1e6
        assert raw.zrange(t.firsts, 0, -1, withscores=True) == [(b"big", second)]
        assert raw.zrange(t.dirty, 0, -1) == []
        assert store.set_thread_ttl("small", 10)
        assert raw.zrange(t.ttls, 0, -1, withscores=True) == [(b"small", 10_000)]
        assert store.delete_thread("small") == 1
        assert all(raw.zscore(k, "small") is None for k in t.all)
    finally:
        store.close()
        drop_checkpoint_store(store)


def test_checkpoint_payloads_are_zstd_compressed_with_the_preset_dictionary(
    raw: redis.Redis,
) -> None:
    """Checkpoint values, pending writes and bodies as short as a chat message are stored
    compressed with the preset dictionary (flag ``d``), in well under the bytes the same
    checkpoints take uncompressed, and read back the same; payloads stored plain or with zstd
    alone (earlier releases) still read."""
    from memfold.backends.checkpoint_dictionary import DICTIONARY
    from memfold.backends.redis.elements import ElementCodec
    from memfold.checkpoints import Blob, PendingWrite, SequenceBlob
    from tests.support import drop_checkpoint_store, redis_checkpoint_store

    human = DICTIONARY[-140:]
    said = [human.replace(b"\xa0\xb1", b"\xbc%s\xb1" % f"where is order {i}?".encode(), 1)
            for i in range(6)]  # fmt: skip
    body = Blob("msgpack", DICTIONARY[:120])
    stores = [redis_checkpoint_store(), redis_checkpoint_store(compress_min_bytes=None)]
    try:
        for store in stores:
            for i in range(1, 4):
                values = {"m": SequenceBlob("msgpack", tuple(said[: 2 * i]))}
                store.put("t", f"c{i}", body, parent_id=f"c{i - 1}" if i > 1 else None,
                          versions={"m": i}, values=values)  # fmt: skip
                write = PendingWrite("task", 0, "m", Blob("msgpack", said[2 * i - 1]))
                store.put_writes("t", f"c{i}", [write])
        sizes = []
        for store in stores:
            prefix = store.key_prefix  # type: ignore[attr-defined]
            total = 0
            for key in raw.scan_iter(match=f"{prefix}*"):
                if raw.type(key) == b"hash":
                    for value in raw.hvals(key):
                        total += len(value)
            sizes.append(total)
            found = [store.get("t", checkpoint_id=f"c{i}") for i in range(1, 4)]
            assert (
                [c.values["m"].items for c in found if c]
                == [  # type: ignore[union-attr]
                    tuple(said[:2]),
                    tuple(said[:4]),
                    tuple(said[:6]),
                ]
            )
            assert [c.body for c in found if c] == [body] * 3
            assert [c.writes[0].value.data for c in found if c] == [said[1], said[3], said[5]]
        assert sizes[0] < sizes[1] * 0.6
        codec = ElementCodec(compress_min_bytes=64, preset_dictionary=True)
        packed = codec.pack(said[0])
        assert packed[:1] == b"d"
        assert len(packed) < len(said[0]) // 2
        assert ElementCodec().unpack(packed) == said[0]
        with pytest.raises(BackendUnavailable):
            codec.unpack(packed[:-3])  # a cut frame is refused, not read short
        older = ElementCodec(compress_min_bytes=64)
        assert [codec.unpack(older.pack(said[0] * 20)), codec.unpack(b"j" + said[0])] == [
            said[0] * 20,
            said[0],
        ]
    finally:
        for store in stores:
            store.close()
            drop_checkpoint_store(store)
