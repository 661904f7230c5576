"""The checkpoint value layout: appended suffixes over snapshots, rebuilt exactly, no I/O."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memfold import Conflict, InvalidInput, NotFound
from memfold.checkpoint_deltas import (
    BlobKey,
    ChainMemo,
    DeltaPolicy,
    ListDigests,
    StoredBlob,
    channel_key,
    pack_items,
    plan_blob,
    plan_put,
    reachable,
    rebuild,
    unpack_items,
    version_key,
)
from memfold.checkpoint_model import Blob, SequenceBlob

Rows = dict[BlobKey, StoredBlob]


def seq(*items: bytes, tag: str = "msgpack") -> SequenceBlob:
    return SequenceBlob(tag, items)


class Chain:
    """Stores successive versions of one channel, each based on the previous one."""

    def __init__(self, policy: DeltaPolicy | None = None) -> None:
        self.policy = policy or DeltaPolicy()
        self.rows: Rows = {}
        self.head: StoredBlob | None = None

    def add(self, value: SequenceBlob | Blob | None) -> StoredBlob:
        version = 1 if self.head is None else int(self.head.version) + 1
        row = plan_blob("messages", version, value, self.head, self.policy)
        self.rows[row.key] = row
        self.head = row
        return row

    def read(self, row: StoredBlob) -> Blob | SequenceBlob | None:
        return rebuild(row, self.rows.get)


def test_version_keys_keep_the_version_type() -> None:
    """1, 1.0 and "1" are different versions; a bool or None is not a version."""
    assert len({version_key(1), version_key(1.0), version_key("1")}) == 3
    for bad in (True, None, [1]):
        with pytest.raises(InvalidInput):
            version_key(bad)  # type: ignore[arg-type]


def test_an_appended_list_stores_only_the_new_items() -> None:
    """The first version is a snapshot; each extension stores only its appended items."""
    chain = Chain()
    first = chain.add(seq(b"a", b"b"))
    second = chain.add(seq(b"a", b"b", b"c", b"d"))
    assert (first.kind, first.items) == ("snapshot", (b"a", b"b"))
    assert (second.kind, second.items, second.length, second.depth) == (
        "delta", (b"c", b"d"), 4, 1,
    )  # fmt: skip
    assert second.snapshot_version == first.version
    assert chain.read(second) == seq(b"a", b"b", b"c", b"d")
    assert chain.read(first) == seq(b"a", b"b")


@pytest.mark.parametrize(
    "changed",
    [
        seq(b"a", b"X", b"c"),  # an item replaced
        seq(b"a", b"c"),  # an item removed
        seq(b"b"),  # shorter
        seq(b"a", b"b", b"c", tag="other"),  # another serializer
    ],
    ids=["replaced", "removed", "shorter", "new-tag"],
)
def test_a_list_that_does_not_extend_its_base_is_a_snapshot(changed: SequenceBlob) -> None:
    """Anything but an append (replace, remove, truncate, new tag) is stored whole."""
    chain = Chain()
    chain.add(seq(b"a", b"b"))
    row = chain.add(changed)
    assert row.kind == "snapshot"
    assert chain.read(row) == changed


def test_an_unchanged_list_under_a_new_version_is_an_empty_delta() -> None:
    """Re-setting the same list costs no item bytes."""
    chain = Chain()
    chain.add(seq(b"a"))
    row = chain.add(seq(b"a"))
    assert (row.kind, row.items, row.size) == ("delta", (), 0)


def test_plain_values_and_missing_values_are_single_rows() -> None:
    """A Blob is a value row and None an empty row; both rebuild to themselves."""
    chain = Chain()
    assert chain.read(chain.add(Blob("json", b"7"))) == Blob("json", b"7")
    assert chain.read(chain.add(None)) is None
    after_plain = chain.add(seq(b"a"))
    assert after_plain.kind == "snapshot"


def test_strict_snapshot_every_k_versions() -> None:
    """With min_growth=0 every k-th version is a snapshot."""
    chain = Chain(DeltaPolicy(snapshot_every=4, min_growth=0.0))
    kinds = [chain.add(seq(*[b"x"] * n)).kind for n in range(1, 10)]
    assert kinds == ["snapshot", "delta", "delta", "delta"] * 2 + ["snapshot"]


def test_whole_list_every_time_policy() -> None:
    """DeltaPolicy(1, 0.0) stores the whole list at every version, like LangGraph's savers."""
    chain = Chain(DeltaPolicy(1, 0.0))
    assert {chain.add(seq(*[b"x"] * n)).kind for n in range(1, 6)} == {"snapshot"}


def test_default_snapshots_come_at_geometric_lengths() -> None:
    """By default snapshots wait until the list has grown fourfold since the last one, so all
    snapshots together stay a fraction of the list."""
    chain = Chain()
    lengths = [n for n in range(1, 400) if chain.add(seq(*[b"x"] * n)).kind == "snapshot"]
    assert lengths[0] == 1
    assert all(b >= 4 * a for a, b in itertools.pairwise(lengths))
    assert sum(lengths) < 1.5 * 399


def test_bytes_per_step_follow_new_items_not_history() -> None:
    """Growing a list one 300-byte item at a time to 200 items stores under 2x the items' bytes
    with the default policy, and over 50x with the whole-list layout."""
    items = [bytes([i % 251]) * 300 for i in range(200)]
    floor = sum(map(len, items))

    def stored(policy: DeltaPolicy) -> list[int]:
        chain = Chain(policy)
        return [chain.add(seq(*items[:n])).size for n in range(1, 201)]

    deltas, whole = stored(DeltaPolicy()), stored(DeltaPolicy(1, 0.0))
    assert sum(deltas) < 2 * floor
    assert sum(whole) > 50 * floor
    # Bytes per step in the second half are about those of the first half.
    assert sum(deltas[100:]) < 2.0 * sum(deltas[:100])


def test_rebuild_reports_a_missing_base() -> None:
    """A delta whose base row is gone raises NotFound instead of returning a wrong list."""
    chain = Chain()
    first = chain.add(seq(b"a"))
    second = chain.add(seq(b"a", b"b"))
    del chain.rows[first.key]
    with pytest.raises(NotFound):
        chain.read(second)


def test_rebuild_reports_a_damaged_chain() -> None:
    """A chain whose items do not add up to the recorded length raises NotFound."""
    chain = Chain()
    chain.add(seq(b"a"))
    second = chain.add(seq(b"a", b"b"))
    damaged = dataclasses.replace(second, length=5)
    with pytest.raises(NotFound):
        rebuild(damaged, chain.rows.get)


def test_a_shared_memo_reads_each_chain_row_once() -> None:
    """Rebuilding every version of a chain with one memo, newest first or oldest first,
    looks each row up at most once and gives the same lists as separate rebuilds."""
    chain = Chain(DeltaPolicy(snapshot_every=100))
    rows = [chain.add(seq(*(bytes([i]) for i in range(n)))) for n in range(1, 40)]
    for order in (rows[::-1], rows):
        looked: list[BlobKey] = []

        def lookup(key: BlobKey, looked: list[BlobKey] = looked) -> StoredBlob | None:
            looked.append(key)
            return chain.rows.get(key)

        memo: ChainMemo = {}
        assert [rebuild(r, lookup, memo) for r in order] == [chain.read(r) for r in order]
        assert len(looked) == len(set(looked)) <= len(rows)


def test_forks_sharing_a_memo_keep_their_own_items() -> None:
    """Two versions that extend the same base differently (a fork), and versions that extend
    each of them, rebuild to their own items through one memo, in any order."""
    chain = Chain(DeltaPolicy(snapshot_every=100))
    base = [chain.add(seq(*(bytes([i]) for i in range(n)))) for n in range(1, 6)][-1]
    prefix = tuple(bytes([i]) for i in range(5))
    forks: list[StoredBlob] = []
    for version, tail in ((10, b"x"), (20, b"y")):
        parent = base
        for step in range(3):
            value = seq(*prefix, *[tail] * (step + 1))
            row = plan_blob("messages", version + step, value, parent, chain.policy)
            chain.rows[row.key] = row
            forks.append(parent := row)
    every = [base, *forks]
    for order in (every, every[::-1], [forks[0], forks[3], base, forks[5], forks[2]]):
        memo: ChainMemo = {}
        assert [rebuild(r, chain.rows.get, memo) for r in order] == [chain.read(r) for r in order]
    assert chain.read(forks[2]) == seq(*prefix, b"x", b"x", b"x")
    assert chain.read(forks[5]) == seq(*prefix, b"y", b"y", b"y")


def test_plan_put_skips_rows_stored_with_the_same_content() -> None:
    """Putting a checkpoint again stores no new rows."""
    rows: Rows = {}
    new = (("x", 1, Blob("json", b"1")),)
    first, refs = plan_put("c1", {"x": 1}, new, None, rows.get, DeltaPolicy())
    rows.update((r.key, r) for r in first)
    again, refs_again = plan_put("c1", {"x": 1}, new, None, rows.get, DeltaPolicy())
    assert len(first) == 1
    assert again == []
    assert refs == refs_again == {}


def test_plan_put_keeps_a_fork_that_reuses_a_version_number() -> None:
    """Other content under a taken (channel, version) is stored under the checkpoint's id, and
    the checkpoint's refs point at it; its children inherit the ref while the version holds."""
    rows: Rows = {}
    original, _ = plan_put("c2", {"x": 2}, (("x", 2, Blob("j", b"old")),), None, rows.get,
                           DeltaPolicy())  # fmt: skip
    rows.update((r.key, r) for r in original)
    forked, refs = plan_put("f2", {"x": 2}, (("x", 2, Blob("j", b"new")),), None, rows.get,
                            DeltaPolicy())  # fmt: skip
    rows.update((r.key, r) for r in forked)
    assert refs == {"x": "f2"}
    assert rebuild(rows[channel_key("x", 2, refs)], rows.get) == Blob("j", b"new")
    assert rebuild(rows[channel_key("x", 2, {})], rows.get) == Blob("j", b"old")
    child_rows, child_refs = plan_put("f3", {"x": 2, "y": 1}, (("y", 1, None),),
                                      ({"x": 2}, refs), rows.get, DeltaPolicy())  # fmt: skip
    assert child_refs == {"x": "f2"}
    assert [r.channel for r in child_rows] == ["y"]


def test_a_forked_snapshot_heads_its_own_chain() -> None:
    """A list snapshot stored under a fork's id is the snapshot its deltas point at, so the rows
    sharing a snapshot key are exactly one chain's."""
    rows: Rows = {}

    def put(checkpoint_id: str, version: int, value: SequenceBlob, parent: Any) -> Any:
        planned, refs = plan_put(checkpoint_id, {"m": version}, (("m", version, value),),
                                 parent, rows.get, DeltaPolicy())  # fmt: skip
        rows.update((r.key, r) for r in planned)
        return planned, refs

    put("c1", 1, seq(b"a"), None)
    put("c2", 2, seq(b"a", b"b"), ({"m": 1}, {}))
    [forked], fork_refs = put("f2", 2, seq(b"z"), ({"m": 1}, {}))
    [child], _ = put("f3", 3, seq(b"z", b"y"), ({"m": 2}, fork_refs))
    assert forked.kind == "snapshot"
    assert forked.snapshot_key == forked.key == ("m", "2", "f2")
    assert child.kind == "delta"
    assert child.snapshot_key == forked.key
    chain = [r for r in rows.values() if r.snapshot_key == forked.key]
    assert rebuild(child, {r.key: r for r in chain}.get) == seq(b"z", b"y")


def test_plan_put_refuses_other_content_for_the_same_checkpoint_and_version() -> None:
    """A checkpoint id re-put with different content for a forked row is a Conflict."""
    rows: Rows = {}
    for checkpoint_id, data in (("c", b"1"), ("f", b"2")):
        planned, _ = plan_put(checkpoint_id, {"x": 1}, (("x", 1, Blob("j", data)),), None,
                              rows.get, DeltaPolicy())  # fmt: skip
        rows.update((r.key, r) for r in planned)
    with pytest.raises(Conflict):
        plan_put("f", {"x": 1}, (("x", 1, Blob("j", b"3")),), None, rows.get, DeltaPolicy())


def test_plan_put_bases_a_delta_on_the_parent_checkpoints_row() -> None:
    """The parent checkpoint's version of a list channel is the delta's base."""
    rows: Rows = {}
    first, _ = plan_put("c1", {"m": 1}, (("m", 1, seq(b"a")),), None, rows.get, DeltaPolicy())
    rows.update((r.key, r) for r in first)
    second, _ = plan_put("c2", {"m": 2}, (("m", 2, seq(b"a", b"b")),), ({"m": 1}, {}),
                         rows.get, DeltaPolicy())  # fmt: skip
    assert (second[0].kind, second[0].items) == ("delta", (b"b",))


def test_reachable_follows_chains_to_their_snapshot() -> None:
    """The rows a delta needs are all reachable from it, and nothing else is."""
    chain = Chain()
    rows = [chain.add(seq(*[b"x"] * n)) for n in (1, 2, 3)]
    other = chain.add(seq(b"y"))
    assert reachable([rows[-1].key], chain.rows.get) == {r.key for r in rows}
    assert reachable([other.key], chain.rows.get) == {other.key}


def test_packed_items_round_trip() -> None:
    """Items packed into one column come back unchanged; damaged packing is refused."""
    items = (b"ab", b"", b"\x00\xff" * 100)
    assert unpack_items(pack_items(items)) == items
    assert unpack_items(pack_items(())) == ()
    with pytest.raises(InvalidInput):
        unpack_items(pack_items(items) + b"junk")


EDITS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(st.binary(max_size=8), min_size=1, max_size=4)),
        st.tuples(st.just("replace"), st.integers(0, 50), st.binary(max_size=8)),
        st.tuples(st.just("remove"), st.integers(0, 50)),
        st.tuples(
            st.just("same"),
        ),
    ),
    min_size=1,
    max_size=60,
)


def _apply(items: list[bytes], edit: tuple[object, ...]) -> list[bytes]:
    kind = edit[0]
    if kind == "append":
        return items + cast(list[bytes], edit[1])
    if not items or kind == "same":
        return list(items)
    at = int(edit[1]) % len(items)  # type: ignore[call-overload]
    if kind == "replace":
        return [*items[:at], edit[2], *items[at + 1 :]]  # type: ignore[list-item]
    return items[:at] + items[at + 1 :]


@settings(max_examples=150, deadline=None)
@given(edits=EDITS, every=st.integers(1, 6), growth=st.sampled_from([0.0, 1.0, 3.0]))
def test_every_version_rebuilds_exactly_under_random_edits(
    edits: list[tuple[object, ...]], every: int, growth: float
) -> None:
    """Under any mix of appends, replacements and removals, every stored version rebuilds to
    exactly its list from the rows sharing its snapshot key, and a chain never holds more than
    ``snapshot_every`` rows when ``min_growth`` is 0."""
    chain = Chain(DeltaPolicy(every, growth))
    items: list[bytes] = [b"seed"]
    history: list[tuple[StoredBlob, list[bytes]]] = []
    for edit in edits:
        items = _apply(items, edit)
        value = seq(*items) if items else Blob("msgpack", b"\x90")
        history.append((chain.add(value), list(items)))
    for row, expected in history:
        rebuilt = chain.read(row)
        if expected:
            assert rebuilt == seq(*expected)
            group = {r.key: r for r in chain.rows.values() if r.snapshot_key == row.snapshot_key}
            assert rebuild(row, group.get) == rebuilt  # one query by snapshot key suffices
            if growth == 0.0:
                assert row.depth < every
        else:
            assert rebuilt == Blob("msgpack", b"\x90")
    memo: dict[BlobKey, tuple[bytes, ...]] = {}
    for row, expected in reversed(history):  # newest first, as a listing reads them
        assert rebuild(row, chain.rows.get, memo) == (
            seq(*expected) if expected else Blob("msgpack", b"\x90")
        )


def test_policy_rejects_nonsense() -> None:
    """snapshot_every must be a positive int and min_growth non-negative."""
    for bad in ({"snapshot_every": 0}, {"snapshot_every": 1.5}, {"min_growth": -1.0}):
        with pytest.raises(InvalidInput):
            DeltaPolicy(**bad)


@given(
    st.lists(st.binary(max_size=6), max_size=5),
    st.lists(st.binary(max_size=6), max_size=5),
    st.lists(st.binary(max_size=6), min_size=1, max_size=5),
)
def test_list_digests_equal_a_digest_from_scratch(
    known: list[bytes], head: list[bytes], tail: list[bytes]
) -> None:
    """Digests built on a known list's state equal digests computed from scratch, whether
    the list starts with the known items or only has as many (then it is hashed whole)."""
    first = plan_blob("m", 1, seq(*known, b"k"), None, DeltaPolicy())
    digests = ListDigests()
    assert plan_blob("m", 1, seq(*known, b"k"), None, DeltaPolicy(), digests) == first
    again = ListDigests(digests.made)
    value = seq(*(head if len(head) == len(known) else known), b"k", *tail)
    expected = plan_blob("m", 2, value, first, DeltaPolicy())
    assert plan_blob("m", 2, value, first, DeltaPolicy(), again) == expected
    assert again.made[0].digest == expected.digest
