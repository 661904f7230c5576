"""How SQL checkpoint stores keep their rows (see `memfold.backends.sql.checkpoint_rows` and
`memfold.backends.sql.checkpoint_schema`): compressible payloads and bodies deflate-compressed
with a preset dictionary, others as given, no row at all for "no value", one copy of what a
pending write and the next checkpoint both hold, and puts that leave the thread's indexed
times alone."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

import memfold.checkpoints
from memfold import BackendUnavailable, RetentionPolicy
from memfold.backends.checkpoint_dictionary import DICTIONARY, DICTIONARY_SHA256
from memfold.backends.sql import checkpoint_plans, checkpoint_rows
from memfold.backends.sql.checkpoint_rows import ParsedRows, id_text, parse_value
from memfold.checkpoint_deltas import pack_sequence
from memfold.checkpoint_ops import PutCheckpointWrites
from memfold.checkpoints import (
    BaseCheckpointStore,
    Blob,
    PendingWrite,
    SequenceBlob,
    open_checkpoint_store,
)
from tests.support import PG_URL, Api, drop_checkpoint_store, postgres_checkpoint_store

BODY = Blob("json", b"{}")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BaseCheckpointStore]:
    """A fresh SQL checkpoint store."""
    if request.param == "sqlite":
        found = open_checkpoint_store(f"sqlite:///{tmp_path / 'checkpoints.db'}")
    else:
        found = postgres_checkpoint_store()
    yield found
    await found.aclose()
    drop_checkpoint_store(found)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, store: BaseCheckpointStore) -> Api:
    """The store through its sync or async API."""
    return Api(store, request.param == "async")


def stored(store: BaseCheckpointStore, table: str) -> list[tuple[int, str | None]]:
    """``(length of data, codec)`` of every row of the store's ``table`` (values or writes)."""
    found = getattr(store.tables, table)  # type: ignore[attr-defined]
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(select(func.length(found.c.data), found.c.codec)).all()
    return sorted((int(n), codec) for n, codec in rows)


async def test_compressible_payloads_are_stored_compressed_and_read_back_whole(
    store: BaseCheckpointStore, api: Api
) -> None:
    """A long repetitive list item and pending write are stored deflate-compressed, a random
    one and a short one as given; all read back byte for byte, as do payloads earlier releases
    stored in the zlib format and as raw deflate without the dictionary."""
    talk = b'"%s"' % (b"the parcel never arrived, please reship it " * 40)
    noise = os.urandom(2000)
    messages = SequenceBlob("json", (b'"hi"', talk))
    await api.put("t", "c1", BODY, versions={"m": 1, "n": 1},
                  values={"m": messages, "n": Blob("bytes", noise)})  # fmt: skip
    await api.put_writes("t", "c1", [
        PendingWrite("task", 0, "m", Blob("json", talk)),
        PendingWrite("task", 1, "n", Blob("bytes", noise)),
        PendingWrite("task", 2, "n", Blob("json", b"7")),
    ])  # fmt: skip
    found = await api.get("t")
    assert found.values == {"m": messages, "n": Blob("bytes", noise)}
    assert [w.value for w in found.writes] == [
        Blob("json", talk), Blob("bytes", noise), Blob("json", b"7"),
    ]  # fmt: skip
    values, writes = stored(store, "values"), stored(store, "writes")
    assert [codec for _, codec in values] == ["d1", None]
    assert values[0][0] < len(talk) // 5
    assert writes[0] == (1, None)
    assert writes[1][1] == "d1"
    assert writes[2] == (2000, None)
    assert writes[1][0] < len(talk) // 5
    assert [c.values["m"] for c in await api.list_checkpoints("t")] == [messages]
    w = store.tables.writes  # type: ignore[attr-defined]
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(w).where(w.c.idx == 0).values(data=zlib.compress(talk), codec="zlib"))
        packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw = packer.compress(talk) + packer.flush()
        conn.execute(update(w).where(w.c.idx == 1).values(data=raw, codec="deflate"))
    found_writes = (await api.get("t")).writes  # type: ignore[union-attr]
    assert [w.value for w in found_writes[:2]] == [Blob("json", talk), Blob("bytes", talk)]


@pytest.mark.parametrize("codec", ["d1", "deflate-d1", "deflate", "zlib"])
async def test_a_payload_that_does_not_inflate_is_a_typed_error(
    store: BaseCheckpointStore, api: Api, codec: str
) -> None:
    """A damaged row (plain bytes under a codec) fails the read with `BackendUnavailable`
    naming the codec, not with zlib's own error."""
    await api.put("t", "c1", BODY, versions={})
    await api.put_writes("t", "c1", [PendingWrite("t1", 0, "m", Blob("json", b"1" * 200), "")])
    w = store.tables.writes  # type: ignore[attr-defined]
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(w).values(data=b"boom", codec=codec))
    with pytest.raises(BackendUnavailable, match=f"says it is '{codec}' but does not inflate"):
        await api.get("t")


async def test_bodies_are_stored_compressed_with_the_preset_dictionary(
    store: BaseCheckpointStore, api: Api
) -> None:
    """A LangGraph-like checkpoint body takes a fraction of its size (the dictionary holds its
    keys), reads back byte for byte, and a body stored as given (an earlier release's) too."""
    body = Blob("msgpack", DICTIONARY[:120].replace(b"2026-01-01", b"2026-11-30"))
    await api.put("t", "c1", body, versions={})
    await api.put("t", "c2", BODY, versions={})
    c = store.tables.checkpoints  # type: ignore[attr-defined]
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            select(c.c.checkpoint_id, func.length(c.c.body), c.c.body_codec).order_by(
                c.c.checkpoint_id
            )
        ).all()
    assert rows[0][2] == "d1"
    assert rows[0][1] < 40
    assert rows[1][1:] == (2, None)
    assert (await api.get("t", checkpoint_id="c1")).body == body
    assert [x.body for x in await api.list_checkpoints("t")] == [BODY, body]


def test_the_dictionary_codec_reads_under_its_earlier_name_too() -> None:
    """Payloads that lean on the preset dictionary are written as ``d1`` and read back under
    that name and under ``deflate-d1`` (earlier releases), never without the dictionary."""
    payload = DICTIONARY[-300:]
    packed, codec = checkpoint_rows.compress(payload)
    assert codec == "d1"
    assert len(packed) < 40
    assert checkpoint_rows.decompress(packed, "d1") == payload
    assert checkpoint_rows.decompress(packed, "deflate-d1") == payload
    with pytest.raises(BackendUnavailable, match="'deflate' but does not inflate"):
        checkpoint_rows.decompress(packed, "deflate")


def test_the_preset_dictionary_never_changes() -> None:
    """Stored payloads name the dictionary by codec, so its bytes are fixed for good."""
    assert hashlib.sha256(DICTIONARY).hexdigest() == DICTIONARY_SHA256
    assert DICTIONARY_SHA256 == "5f47e3b3650e10f1ad9410a6caf4ff2dc6527448ec8b4d981f7227012b7de6b6"


async def test_a_channel_without_a_value_has_no_row(store: BaseCheckpointStore, api: Api) -> None:
    """A channel with a version but no value stores nothing; the checkpoint reads back without
    it, even after a fork gives the same version a value."""
    await api.put("t", "c1", BODY, versions={"x": 1, "y": 1},
                  values={"x": None, "y": Blob("json", b"1")})  # fmt: skip
    assert len(stored(store, "values")) == 1
    await api.put("t", "c2", BODY, versions={"x": 1, "y": 1},
                  values={"x": Blob("json", b"2"), "y": Blob("json", b"1")})  # fmt: skip
    await api.put("t", "c3", BODY, parent_id="c1", versions={"x": 2, "y": 1},
                  values={"x": SequenceBlob("json", (b"3",))})  # fmt: skip
    assert (await api.get("t", checkpoint_id="c1")).values == {"y": Blob("json", b"1")}
    assert (await api.get("t", checkpoint_id="c2")).values["x"] == Blob("json", b"2")
    assert (await api.get("t", checkpoint_id="c3")).values["x"] == SequenceBlob("json", (b"3",))
    assert [sorted(c.values) for c in await api.list_checkpoints("t")] == [
        ["x", "y"], ["x", "y"], ["y"],
    ]  # fmt: skip


async def test_a_value_of_empty_bytes_has_no_row(store: BaseCheckpointStore, api: Api) -> None:
    """A channel whose value is empty bytes (LangGraph's branch channels) stores no row: its
    checkpoint's refs hold the tag. It reads back with its tag, from this store and from
    another (no remembered head), after a copy and after a sweep; a fork giving the same
    version other content stores a row that the first checkpoint does not read."""
    empty = Blob("null", b"")
    await api.put("t", "c1", BODY, versions={"b": 1, "y": 1},
                  values={"b": empty, "y": Blob("json", b"1")})  # fmt: skip
    await api.put("t", "c2", BODY, parent_id="c1", versions={"b": 1, "y": 2},
                  values={"y": Blob("json", b"2")})  # fmt: skip
    assert len(stored(store, "values")) == 2
    assert (await api.get("t")).values == {"b": empty, "y": Blob("json", b"2")}
    await api.put("t", "c3", BODY, versions={"b": 1}, values={"b": Blob("json", b"9")})
    assert len(stored(store, "values")) == 3
    with reader(store) as other:
        assert other.get("t", checkpoint_id="c2").values["b"] == empty  # type: ignore[union-attr]
        assert other.get("t", checkpoint_id="c3").values["b"] == Blob("json", b"9")  # type: ignore[union-attr]
        assert [c.values.get("b") for c in other.list_checkpoints("t")] == [
            Blob("json", b"9"), empty, empty,
        ]  # fmt: skip
    assert await api.copy_thread("t", "u") == 3
    assert (await api.get("u", checkpoint_id="c1")).values["b"] == empty  # type: ignore[union-attr]
    await api.sweep(RetentionPolicy(keep_last=1))
    assert [c.checkpoint_id for c in await api.list_checkpoints("t")] == ["c3"]
    assert len(stored(store, "values")) == 2  # c3's row in each thread


def thread_times(store: BaseCheckpointStore) -> tuple[int, float, int]:
    """``(updated_us, expires_us, last_us)`` of the store's one checkpoint thread."""
    t = store.tables.threads  # type: ignore[attr-defined]
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        row = conn.execute(select(t.c.updated_us, t.c.expires_us, t.c.last_us)).one()
    return int(row[0]), float(row[1]), int(row[2])


async def test_puts_renew_the_indexed_thread_times_only_once_they_lag(
    api: Api, store: BaseCheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put 10 s after the last records its time exactly but leaves the indexed lower bounds
    of the last write and the expiry as they were (so PostgreSQL updates the row in place);
    a put 40 s later renews them."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    monkeypatch.setattr(memfold.checkpoints, "utcnow", lambda: now[0])
    await api.put("t", "c1", BODY)
    assert await api.set_thread_ttl("t", 3600)
    updated, expires, last = thread_times(store)
    assert (expires, last) == (updated + 3600e6, updated)
    now[0] += timedelta(seconds=10)
    await api.put("t", "c2", BODY, parent_id="c1")
    assert thread_times(store) == (updated, expires, last + 10_000_000)
    now[0] += timedelta(seconds=40)
    await api.put("t", "c3", BODY, parent_id="c2")
    last = last + 50_000_000
    assert thread_times(store) == (last, last + 3600e6, last)


def talk(seed: int, words: int = 60) -> bytes:
    """A JSON string of random words: compresses, but stays hundreds of bytes."""
    rng = random.Random(seed)
    return b'"%s"' % " ".join(f"w{rng.randrange(10_000)}" for _ in range(words)).encode()


def items(*values: bytes) -> SequenceBlob:
    return SequenceBlob("json", values)


def shared(store: BaseCheckpointStore) -> dict[tuple[str, str], tuple[str, str] | None]:
    """``(channel, version): (checkpoint, task) of the write whose payload it shares`` (None:
    it holds its own) for every value row; a sharing row holds no bytes."""
    v = store.tables.values  # type: ignore[attr-defined]
    query = select(
        v.c.channel, v.c.version, func.length(v.c.data), v.c.link_checkpoint, v.c.link_task
    )
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(query).all()
    assert all((size == 0) == (cid is not None) for _, _, size, cid, _ in rows)
    return {
        (ch, v): None if cid is None else (id_text(cid), id_text(task))
        for ch, v, _, cid, task in rows
    }


def reader(store: BaseCheckpointStore) -> BaseCheckpointStore:
    """Another store on the same tables."""
    if store.name == "sqlite":
        url = store.engine.url.render_as_string(hide_password=False)  # type: ignore[attr-defined]
        return open_checkpoint_store(url, setup=False)
    return open_checkpoint_store(PG_URL, schema=store.tables.schema, setup=False)  # type: ignore[attr-defined]


async def test_a_list_a_pending_write_of_the_parent_holds_is_stored_once(
    store: BaseCheckpointStore, api: Api
) -> None:
    """A checkpoint appending exactly the items of a pending write (`pack_sequence`) on its
    parent keeps no copy of them but the write's key, and reads them from the write; a short
    write is not shared. Replacing the write, or removing the parent, first copies the payload
    back, so the checkpoint still reads whole."""
    first, new, hi = talk(0), (talk(1), talk(2)), b'"hi"'
    await api.put("t", "c1", BODY, versions={"m": 1, "n": 1},
                  values={"m": items(first), "n": items(first)})  # fmt: skip
    await api.put_writes("t", "c1", [
        PendingWrite("task", 0, "m", pack_sequence(items(*new))),
        PendingWrite("task", 1, "n", pack_sequence(items(hi))),
    ])  # fmt: skip
    grown = {"m": items(first, *new), "n": items(first, hi)}
    await api.put("t", "c2", BODY, parent_id="c1", versions={"m": 2, "n": 2}, values=grown)
    assert shared(store) == {
        ("m", "1"): None, ("n", "1"): None, ("m", "2"): ("c1", "task"), ("n", "2"): None,
    }  # fmt: skip
    assert (await api.get("t")).values == grown  # type: ignore[union-attr]
    with reader(store) as other:  # remembers no head: reads as another process would
        assert other.get("t").values == grown  # type: ignore[union-attr]
        assert other.list_checkpoints("t")[0].values == grown
    parent = await api.get("t", checkpoint_id="c1")
    assert parent.writes[0].value == pack_sequence(items(*new))  # type: ignore[union-attr]

    rotated = PendingWrite("task", 0, "m", Blob("json", talk(3)))
    when = datetime.now(UTC)
    store.execute(PutCheckpointWrites("default", "t", "", "c1", (rotated,), None, when, True))
    assert set(shared(store).values()) == {None}
    assert (await api.get("t")).values == grown  # type: ignore[union-attr]

    await api.put("t", "c3", BODY, parent_id="c2", versions={"m": 3, "n": 2},
                  values={"m": items(first, *new, talk(4))})  # fmt: skip
    await api.put_writes("t", "c3", [PendingWrite("task", 0, "m", pack_sequence(items(talk(5))))])
    final = items(first, *new, talk(4), talk(5))
    await api.put("t", "c4", BODY, parent_id="c3", versions={"m": 4, "n": 2}, values={"m": final})
    assert shared(store)["m", "4"] == ("c3", "task")
    await api.prune(["t"])
    assert set(shared(store).values()) == {None}
    assert (await api.get("t")).values == {"m": final, "n": grown["n"]}  # type: ignore[union-attr]


def held_writes(
    tmp_path: Path,
) -> tuple[BaseCheckpointStore, list[PendingWrite], dict[str, Any], sqlite3.Connection]:
    """A SQLite store with checkpoint c1, writes on c1 and the values of its child c2 that
    append exactly those writes, and a connection holding the database's write lock (so the
    writes wait for it)."""
    path = tmp_path / "checkpoints.db"
    store = open_checkpoint_store(f"sqlite:///{path}")
    store.put("t", "c1", BODY, versions={"m": 1}, values={"m": items(talk(0))})
    new = (talk(1), talk(2))
    writes = [PendingWrite("task", 0, "m", pack_sequence(items(*new)))]
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return store, writes, {"m": items(talk(0), *new)}, blocker


def test_a_put_waits_for_the_pending_writes_of_its_parent_being_stored(tmp_path: Path) -> None:
    """LangGraph stores a step's pending writes and the next checkpoint at the same time: a put
    started while the store is storing its parent's writes waits for them, so it shares their
    payload instead of storing a copy."""
    store, writes, grown, blocker = held_writes(tmp_path)
    child = {"parent_id": "c1", "versions": {"m": 2}, "values": grown}
    threads = [
        threading.Thread(target=store.put_writes, args=("t", "c1", writes)),
        threading.Thread(target=store.put, args=("t", "c2", BODY), kwargs=child),
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    blocker.execute("COMMIT")
    for thread in threads:
        thread.join()
    blocker.close()
    assert shared(store)[("m", "2")] == ("c1", "task")
    assert store.get("t").values == grown  # type: ignore[union-attr]
    store.close()


async def test_an_async_put_waits_for_the_pending_writes_of_its_parent_being_stored(
    tmp_path: Path,
) -> None:
    """The async twin of the test above, on one event loop."""
    store, writes, grown, blocker = held_writes(tmp_path)
    stored_writes = asyncio.create_task(store.aput_writes("t", "c1", writes))
    await asyncio.sleep(0.2)
    put = asyncio.create_task(
        store.aput("t", "c2", BODY, parent_id="c1", versions={"m": 2}, values=grown)
    )
    await asyncio.sleep(0.2)
    blocker.execute("COMMIT")
    await asyncio.gather(stored_writes, put)
    blocker.close()
    assert shared(store)[("m", "2")] == ("c1", "task")
    assert (await store.aget("t")).values == grown  # type: ignore[union-attr]
    await store.aclose()
    store.close()


async def test_a_list_reads_and_parses_each_value_row_once(
    store: BaseCheckpointStore, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing checkpoints of one delta chain, and of a plain value channel, reads each stored
    value row once (not once per checkpoint whose chain holds it) and parses it once; values
    read back whole."""
    chain: tuple[bytes, ...] = ()
    parent = None
    for step in range(1, 9):
        chain += (b'"m%d"' % step,)
        values = {"m": SequenceBlob("json", chain), "v": Blob("json", b"%d" % step)}
        await api.put("t", f"c{step}", BODY, parent_id=parent,
                      versions={"m": step, "v": step}, values=values)  # fmt: skip
        parent = f"c{step}"
    fetched: list[Any] = []
    parsed: list[Any] = []
    read_rows = checkpoint_plans._parse_rows

    def reading(found: Any, into: Any, kept: Any, seen: Any = None) -> None:
        fetched.extend(found)
        read_rows(fetched[len(fetched) - len(found) :], into, kept, seen)

    def parsing(row: Any, seen: Any = None) -> Any:
        parsed.append(row)
        return parse_value(row, seen)

    monkeypatch.setattr(checkpoint_plans, "_parse_rows", reading)
    monkeypatch.setattr(checkpoint_rows, "parse_value", parsing)
    listed = await api.list_checkpoints("t")
    assert [len(c.values["m"].items) for c in listed] == list(range(8, 0, -1))
    assert listed[0].values["m"] == SequenceBlob("json", chain)
    assert [c.values["v"] for c in listed[::3]] == [Blob("json", b"%d" % s) for s in (8, 5, 2)]
    rows = (await api.stats("t")).blobs
    assert len(fetched) == len(parsed) == rows
    assert await api.list_checkpoints("t") == listed  # read again: the rows parsed are kept
    assert await api.get("t", checkpoint_id="c5") == listed[3]
    assert len(parsed) == rows


def test_parsed_rows_are_kept_by_every_column_within_their_budget() -> None:
    """A row equal in every column to one parsed before gives the kept parse, one that differs
    in its payload alone is parsed anew; past the budget the least recently read rows go."""

    def row(data: bytes) -> tuple[Any, ...]:
        return ("t", "", "v", "1", "", "value", b"d" * 16, "json", data, 0, 0, None, "", None, "",
                0, None)  # fmt: skip

    kept = ParsedRows(budget=100)  # a row of 20 payload bytes counts 40 (as read and parsed)
    first = kept.parse(row(b"1" * 20))
    assert kept.parse(row(b"1" * 20)) is first
    second = kept.parse(row(b"2" * 20))
    assert second[2].data == b"2" * 20
    assert kept.parse(row(b"1" * 20)) is first  # now the most recently read
    kept.parse(row(b"3" * 20))
    assert len(kept) == 2
    assert kept.parse(row(b"1" * 20)) is first
    assert kept.parse(row(b"2" * 20)) is not second
    assert kept.parse(row(b"4" * 200))[2].data == b"4" * 200  # larger than the budget: not kept
    assert len(kept) == 2


async def test_a_list_inflates_a_payload_a_value_row_shares_with_a_write_once(
    store: BaseCheckpointStore, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint's appended items that share its parent's pending write come back twice in
    a list (as the write and as the value row) but are decompressed once."""
    first, new = talk(10), (talk(11), talk(12))
    await api.put("t", "c1", BODY, versions={"m": 1}, values={"m": items(first)})
    await api.put_writes("t", "c1", [PendingWrite("task", 0, "m", pack_sequence(items(*new)))])
    await api.put("t", "c2", BODY, parent_id="c1", versions={"m": 2},
                  values={"m": items(first, *new)})  # fmt: skip
    assert shared(store)["m", "2"] == ("c1", "task")
    inflated: list[bytes] = []
    inflate = checkpoint_rows._inflate

    def counting(data: bytes, codec: str) -> bytes:
        inflated.append(data)
        return inflate(data, codec)

    monkeypatch.setattr(checkpoint_rows, "_inflate", counting)
    listed = await api.list_checkpoints("t")
    assert [c.values["m"] for c in listed] == [items(first, *new), items(first)]
    assert listed[1].writes[0].value == pack_sequence(items(*new))
    assert len(inflated) == len(set(inflated)) == 2


def test_an_id_is_stored_as_uuid_bytes_or_as_text_that_never_reads_as_one() -> None:
    """A canonical UUID takes its 16 bytes; any other id (one that merely looks like a UUID,
    15 or 16 bytes of UTF-8) is stored in another length; each reads back as given, and byte
    order is text order among ids of one form."""
    made = "1ef0c2a4-5b6d-6e7f-8a9b-0c1d2e3f4a5b"
    assert checkpoint_rows.id_bytes(made) == uuid.UUID(made).bytes
    others = [
        "a", "x" * 15, "y" * 16, "\u00e9" * 7 + "z", made.upper(), made + "\n", f"{{{made}}}",
        made.replace("-", ""), made[:-1] + "g", made.replace("-", "_"),
    ]  # fmt: skip
    for given in [made, *others]:
        stored = checkpoint_rows.id_bytes(given)
        assert (len(stored) == 16) == (given == made)
        assert checkpoint_rows.id_text(stored) == given
    uuids = sorted(str(uuid.uuid4()) for _ in range(200))
    assert sorted(uuids, key=checkpoint_rows.id_bytes) == uuids
    texts = ["a", "ab", "a\u00e9", "b", "x" * 14, "x" * 15, "x" * 15 + "y", "\U0001f600", "~"]
    assert sorted(texts, key=checkpoint_rows.id_bytes) == sorted(texts)


async def test_a_thread_mixing_uuid_and_other_ids_is_ordered_by_stored_bytes(api: Api) -> None:
    """UUIDs and other ids in one thread are ordered by their stored bytes (documented): a
    UUID starting with byte 0 sorts before ``"a"``, though its text sorts after."""
    low = str(uuid.UUID(int=1))
    await api.put("t", "a", BODY)
    await api.put("t", low, BODY, parent_id="a")
    assert [c.checkpoint_id for c in await api.list_checkpoints("t")] == ["a", low]
    assert (await api.get("t")).checkpoint_id == "a"  # type: ignore[union-attr]
    assert [c.checkpoint_id for c in await api.list_checkpoints("t", before="a")] == [low]
