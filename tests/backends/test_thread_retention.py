"""Retention sweeps of threads on every backend, through the sync and async APIs: keep_last,
max_age_seconds, TTLs (a thread's own and the policy's) and max_threads, each counted the same
by a dry run that changes nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import memfold.stores
from memfold import Message, ToolCall
from memfold.model import utcnow
from memfold.retention import RetentionPolicy
from tests.support import Api, drop_store, make_store


class Clock:
    """The time sweeps and new messages are stamped with: now, moved on by hand (the stores'
    own update times stay real, so a thread written now is that much older at the sweep)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Sweeps and messages are stamped by a clock the test moves."""
    fake = Clock()
    monkeypatch.setattr(memfold.stores, "utcnow", fake)
    return fake


def chat(n: int, prefix: str = "m") -> list[Message]:
    return [
        Message(role="user" if i % 2 == 0 else "assistant", content=f"{prefix}{i}")
        for i in range(n)
    ]


async def contents(api: Api, thread_id: str, **tenant: str) -> list[str]:
    return [str(m.content) for m in await api.load(thread_id, **tenant)]


async def test_keep_last_keeps_the_newest_messages_of_each_thread(api: Api) -> None:
    """keep_last=N leaves each thread its newest N messages; a dry run counts the same and
    changes nothing; a second sweep finds nothing."""
    await api.append("a", chat(6))
    await api.append("b", chat(2))
    policy = RetentionPolicy(keep_last=2)
    planned = await api.sweep(policy, dry_run=True)
    assert (planned.threads, planned.messages) == (0, 4)
    assert await contents(api, "a") == ["m0", "m1", "m2", "m3", "m4", "m5"]
    assert await api.sweep(policy) == planned
    assert await contents(api, "a") == ["m4", "m5"]
    assert await contents(api, "b") == ["m0", "m1"]
    assert (await api.sweep(policy)).total == 0
    await api.append("a", chat(1, "new"))
    assert await contents(api, "a") == ["m4", "m5", "new0"]


async def test_a_cut_never_leaves_a_tool_result_without_its_call(api: Api) -> None:
    """When the cut would start what stays with tool results, they go with their call."""
    call = ToolCall(id="c1", name="add", arguments={"a": 2, "b": 2})
    await api.append(
        "t",
        [
            Message(role="user", content="add 2 and 2"),
            Message(role="assistant", content="", tool_calls=(call,)),
            Message(role="tool", content="4", tool_call_id="c1"),
            Message(role="assistant", content="4"),
        ],
    )
    policy = RetentionPolicy(keep_last=2)
    assert (await api.sweep(policy, dry_run=True)).messages == 3
    assert (await api.sweep(policy)).messages == 3
    assert await contents(api, "t") == ["4"]
    assert (await api.load("t"))[0].role == "assistant"


async def test_keep_last_with_max_age_deletes_a_thread_its_cut_empties(
    api: Api, clock: Clock
) -> None:
    """A thread that keep_last's tool-safe cut empties, not written within max_age, goes whole
    (as under max_age alone), and a dry run counts the same."""
    call = ToolCall(id="c1", name="f", arguments={})
    await api.append(
        "t",
        [
            Message(role="user", content="q"),
            Message(role="assistant", content="", tool_calls=(call,)),
            Message(role="tool", content="r", tool_call_id="c1"),
        ],
    )
    clock.advance(7200)
    policy = RetentionPolicy(keep_last=1, max_age_seconds=3600)
    planned = await api.sweep(policy, dry_run=True)
    assert (planned.threads, planned.messages) == (1, 3)
    assert await api.sweep(policy) == planned
    assert await api.list_threads() == []


async def test_keep_last_with_max_age_cuts_on_past_old_messages_out_of_order(
    api: Api, clock: Clock
) -> None:
    """After keep_last's cut, the cut goes on past messages older than max_age and the tool
    results they leave at the front, though newer ones come between: one sweep does it all,
    and a second finds nothing."""
    call = ToolCall(id="c1", name="f", arguments={})
    old = clock.now - timedelta(days=2)
    await api.append(
        "t",
        [
            Message(role="user", content="m0"),
            Message(role="assistant", content="m1", tool_calls=(call,), created_at=old),
            Message(role="tool", content="m2", tool_call_id="c1"),
            Message(role="user", content="m3", created_at=old),
            Message(role="assistant", content="m4"),
        ],
    )
    policy = RetentionPolicy(keep_last=4, max_age_seconds=86_400)
    planned = await api.sweep(policy, dry_run=True)
    assert (planned.threads, planned.messages) == (0, 4)
    assert await api.sweep(policy) == planned
    assert await contents(api, "t") == ["m4"]
    assert (await api.sweep(policy)).total == 0


async def test_max_age_drops_old_messages_and_threads_left_empty(api: Api, clock: Clock) -> None:
    """max_age removes messages created longer ago than that; a thread it empties that was not
    written within max_age goes whole, and newer messages stay."""
    await api.append("t", chat(3, "old"))
    await api.append("idle", chat(2, "old"))
    clock.advance(100)
    await api.append("t", chat(2, "new"))
    clock.advance(50)
    policy = RetentionPolicy(max_age_seconds=120)
    planned = await api.sweep(policy, dry_run=True)
    assert (planned.threads, planned.messages) == (1, 5)
    assert await api.count("idle") == 2
    assert await api.sweep(policy) == planned
    assert await contents(api, "t") == ["new0", "new1"]
    assert [t.thread_id for t in await api.list_threads()] == ["t"]
    assert (await api.sweep(policy)).total == 0


async def test_ttl_deletes_idle_threads_and_a_threads_own_ttl_wins(api: Api, clock: Clock) -> None:
    """A thread not written for its TTL goes whole: its own (set_thread_ttl) if it has one,
    else the policy's; clearing its own TTL puts it back under the policy."""
    for thread in ("short", "long", "default", "cleared"):
        await api.append(thread, chat(2))
    assert await api.set_thread_ttl("short", 10)
    assert await api.set_thread_ttl("long", 10_000)
    assert await api.set_thread_ttl("cleared", 10)
    assert await api.set_thread_ttl("cleared", None)
    assert not await api.set_thread_ttl("missing", 10)
    clock.advance(120)
    first = await api.sweep(RetentionPolicy(ttl_seconds=1000), dry_run=True)
    assert (first.threads, first.messages) == (1, 2)
    assert await api.sweep(RetentionPolicy(ttl_seconds=1000)) == first
    assert await api.count("short") == 0
    planned = await api.sweep(RetentionPolicy(ttl_seconds=60), dry_run=True)
    assert (planned.threads, planned.messages) == (2, 4)
    assert await api.count("default") == 2
    assert await api.sweep(RetentionPolicy(ttl_seconds=60)) == planned
    assert [t.thread_id for t in await api.list_threads()] == ["long"]
    assert await contents(api, "long") == ["m0", "m1"]


async def test_max_threads_keeps_each_tenants_most_recently_updated(api: Api) -> None:
    """max_threads=N keeps the N most recently updated threads of each tenant; a sweep naming
    a tenant leaves the others alone."""
    for tenant in ("a", "b"):
        for i in range(4):
            await api.append(f"{tenant}{i}", chat(i + 1), tenant=tenant)
    await api.append("a0", chat(1, "again"), tenant="a")
    policy = RetentionPolicy(max_threads=2)
    planned = await api.sweep(policy, tenant="a", dry_run=True)
    assert (planned.threads, planned.messages) == (2, 2 + 3)
    assert len(await api.list_threads(tenant="a")) == 4
    assert await api.sweep(policy, tenant="a") == planned
    assert [t.thread_id for t in await api.list_threads(tenant="a")] == ["a0", "a3"]
    assert len(await api.list_threads(tenant="b")) == 4
    every = await api.sweep(policy)
    assert (every.threads, every.messages) == (2, 1 + 2)
    assert [t.thread_id for t in await api.list_threads(tenant="b")] == ["b3", "b2"]


async def test_a_sweep_without_a_policy_applies_the_stores_own(
    backend: str, tmp_path: Path
) -> None:
    """A store opened with a retention policy applies it when sweep gets none (the memory
    backend applies keep_last on every write as well)."""
    store = make_store(backend, tmp_path, retention=RetentionPolicy(keep_last=2))
    try:
        store.append("t", chat(5))
        assert store.sweep().messages == (0 if backend == "memory" else 3)
        assert [m.content for m in store.load("t")] == ["m3", "m4"]
    finally:
        drop_store(store)
        store.close()


def aged(n: int, seconds_ago: float, clock: Clock, prefix: str = "old") -> list[Message]:
    """``n`` messages created ``seconds_ago`` (and a second apart), as an import keeps them."""
    start = clock.now - timedelta(seconds=seconds_ago)
    return [
        Message(role="user", content=f"{prefix}{i}", created_at=start + timedelta(seconds=i))
        for i in range(n)
    ]


async def test_max_age_finds_old_messages_in_threads_created_since(api: Api, clock: Clock) -> None:
    """Messages keep their own creation time (an import or a restore): a max-age sweep trims
    exactly the ones older than max_age from threads created after them, whatever was written
    to the thread before (cleared, deleted, replaced, updated to an older time), and a dry run
    counts the same."""
    day = 86_400.0
    await api.append("imported", aged(3, 10 * day, clock) + aged(2, 60, clock, "new"))
    await api.append("cleared", chat(2, "new"))
    await api.clear("cleared")
    await api.append("cleared", aged(2, 5 * day, clock) + chat(1, "new"))
    await api.append("deleted", chat(2, "new"))
    await api.delete_messages("deleted", [m.id for m in await api.load("deleted")])
    await api.append("deleted", aged(1, 5 * day, clock))
    await api.append("replaced", chat(2, "new"))
    await api.replace("replaced", aged(1, 5 * day, clock) + chat(1, "new"))
    [first, *_] = await api.append("updated", chat(3, "new"))
    older = replace(first, created_at=clock.now - timedelta(days=2))
    await api.update_messages("updated", [older])
    await api.append("recent", aged(2, 60, clock, "new"))
    policy = RetentionPolicy(max_age_seconds=day)
    planned = await api.sweep(policy, dry_run=True)
    assert (planned.threads, planned.messages) == (0, 3 + 2 + 1 + 1 + 1)
    assert await contents(api, "imported") == ["old0", "old1", "old2", "new0", "new1"]
    assert await api.sweep(policy) == planned
    assert await contents(api, "imported") == ["new0", "new1"]
    assert await contents(api, "cleared") == ["new0"]
    assert await api.count("deleted") == 0  # emptied, but written within max_age: kept
    assert await contents(api, "replaced") == ["new0"]
    assert await contents(api, "updated") == ["new1", "new2"]
    assert await contents(api, "recent") == ["new0", "new1"]
    assert (await api.sweep(policy)).total == 0
    await api.append("deleted", aged(1, 3 * day, clock))
    assert (await api.sweep(policy)).messages == 1
