"""Hostile input to every thread-store method, on memory, SQLite, PostgreSQL and Redis, sync and
async: each call stores and returns its values exactly or raises a `memfold.errors` error, and
a canary thread written before is unchanged after."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memfold import MemfoldError, Message
from tests.reliability.fuzzing import (
    FUZZ,
    as_json,
    hostile_ids,
    hostile_text,
    json_objects,
    messages,
    numbers,
    same_messages,
)
from tests.support import Api

CANARY = "memfold-canary"
CANARY_TENANT = "memfold-canary-tenant"

NUMBERS = numbers(-5, 20)


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backends the fuzz suite runs on (tiered is Redis in front of PostgreSQL)."""
    return str(request.param)


class Canary:
    """A thread in the default tenant and one in a tenant of its own, with metadata, written
    before the fuzzing; `check` fails if anything about them changed."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.initial: Any = None

    async def seed(self) -> None:
        for tenant in ("default", CANARY_TENANT):
            await self.api.append(
                CANARY,
                [Message(role="user", content="keep me", metadata={"n": 1}),
                 Message(role="assistant", content="and me")],
                tenant=tenant,
            )  # fmt: skip
            await self.api.set_thread_metadata(CANARY, {"topic": "canary"}, tenant=tenant)
        self.initial = await self.snapshot()

    async def snapshot(self) -> Any:
        out = []
        for tenant in ("default", CANARY_TENANT):
            info = await self.api.get_thread(CANARY, tenant=tenant)
            messages = await self.api.load(CANARY, tenant=tenant)
            out.append((info, messages, await self.api.count(CANARY, tenant=tenant)))
        return out

    async def check(self) -> None:
        assert await self.snapshot() == self.initial


@pytest.fixture
async def canary(api: Api) -> Canary:
    """The canary threads, seeded in the store under test."""
    seeded = Canary(api)
    await seeded.seed()
    return seeded


async def current(api: Api, thread_id: Any, tenant: Any) -> list[Message] | None:
    """The thread's messages, or None if its key is refused."""
    try:
        messages: list[Message] = await api.load(thread_id, tenant=tenant)
    except MemfoldError:
        return None
    return messages


@FUZZ
@given(
    thread_id=hostile_ids(),
    tenant=st.just("default") | hostile_ids(),
    batch=st.lists(messages(), min_size=1, max_size=3),
    how=st.sampled_from(["append", "replace"]),
)
async def test_writes_store_exactly_or_refuse(
    api: Api, canary: Canary, thread_id: Any, tenant: Any, batch: list[Message], how: str
) -> None:
    """An append or replace with hostile ids, text, parts, tool calls and metadata stores the
    messages exactly, or raises a memfold error and leaves the thread as it was."""
    before = await current(api, thread_id, tenant)
    try:
        stored = await getattr(api, how)(thread_id, batch, tenant=tenant)
    except MemfoldError:
        assert await current(api, thread_id, tenant) == before
    else:
        assert before is not None
        written = [
            Message(m.role, m.content, m.name, s.id, m.tool_calls, m.tool_call_id, s.created_at,
                    m.metadata)
            for m, s in zip(batch, stored, strict=True)
        ]  # fmt: skip
        loaded = await api.load(thread_id, tenant=tenant)
        assert same_messages(loaded, (before if how == "append" else []) + written)
        assert await api.count(thread_id, tenant=tenant) == len(loaded)
    await canary.check()


CALLS = st.sampled_from(
    ["load", "count", "get_thread", "clear", "delete_thread", "list_threads", "metadata",
     "delete_messages", "update_messages", "search", "clear_tenant"]
)  # fmt: skip


@FUZZ
@given(
    call=CALLS,
    thread_id=hostile_ids(),
    tenant=st.just("default") | hostile_ids(),
    text=hostile_text() | hostile_ids(),
    number=NUMBERS,
    other=NUMBERS,
    metadata=json_objects(),
    batch=st.lists(messages(), max_size=2),
)
async def test_every_call_answers_or_refuses(
    api: Api,
    canary: Canary,
    call: str,
    thread_id: Any,
    tenant: Any,
    text: Any,
    number: Any,
    other: Any,
    metadata: Any,
    batch: list[Message],
) -> None:
    """Reads, deletes, metadata, paging and search with hostile ids, queries and numbers either
    answer or raise a memfold error, and never touch another thread."""
    try:
        if call == "load":
            await api.load(thread_id, last=number, before=text, tenant=tenant)
        elif call == "list_threads":
            await api.list_threads(tenant=tenant, limit=number, offset=other)
        elif call == "metadata":
            info = await api.set_thread_metadata(thread_id, metadata, tenant=tenant)
            assert info.metadata == as_json(metadata)
            assert (await api.get_thread(thread_id, tenant=tenant)).metadata == as_json(metadata)
        elif call == "delete_messages":
            await api.delete_messages(thread_id, [text, thread_id], tenant=tenant)
        elif call == "update_messages":
            await api.update_messages(thread_id, batch, tenant=tenant)
        elif call == "search":
            await api.search(text, thread_id=thread_id, tenant=tenant, limit=number)
        elif call == "clear_tenant":
            await api.clear_tenant(text)
        else:
            await getattr(api, call)(thread_id, tenant=tenant)
    except MemfoldError:
        pass
    await canary.check()
