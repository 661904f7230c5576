"""Hostile input to the LlamaIndex adapter's ``Memory`` chat store (`MemfoldDBChatStore`), its
journaled tools and its LLM summarizer, on memory and SQLite stores, sync and async: each call
returns (and what it stores reads back exactly) or raises a `memfold.errors` error, and canary
data written before is unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_index.core.llms import ChatMessage, MockLLM
from llama_index.core.storage.chat_store.base_db import MessageStatus
from llama_index.core.tools import FunctionTool

from memfold import InvalidInput, MemfoldError
from memfold.compaction import SummarizeRequest, render_prompt
from memfold.integrations.llama_index import (
    JournaledTool,
    JournalScope,
    LLMSummarizer,
    MemfoldDBChatStore,
    journal_scope,
    journaled,
)
from memfold.journal import EffectJournal, open_journal
from memfold.stores import BaseThreadStore
from tests.reliability.fuzzing import (
    FUZZ,
    hostile_ids,
    hostile_text,
    json_values,
    messages,
    nested,
)
from tests.reliability.test_fuzz_llama_index import NUMBERS, _same, li_messages
from tests.reliability.test_fuzz_threads import CANARY
from tests.reliability.test_fuzz_threads import Canary as ThreadCanary
from tests.support import Api

STATUSES = st.sampled_from([MessageStatus.ACTIVE, MessageStatus.ARCHIVED]) | st.sampled_from(
    [None, "active", "archived", "x", 1, MessageStatus]
)
"""Message statuses: LlamaIndex's own, and values that are not one."""
PLAIN = st.builds(
    ChatMessage,
    role=st.sampled_from(["user", "assistant"]),
    content=st.text("ab \u4e2d", max_size=8),
)
"""Messages every store keeps, so that a key holds some before the hostile call."""

# -- The Memory chat store ----------------------------------------------------------------------


@FUZZ
@given(
    op=st.sampled_from(["set_messages", "add_message", "add_messages", "get_messages",
                        "count_messages", "delete_message", "delete_messages",
                        "delete_oldest_messages", "archive_oldest_messages"]),
    key=st.just("session") | hostile_ids(),
    tenant=st.sampled_from([None, "acme"]) | hostile_ids(),
    seed=st.lists(PLAIN, max_size=4),
    batch=st.lists(PLAIN | li_messages(), max_size=3) | st.sampled_from([None, "hi", [None], [1]]),
    status=STATUSES,
    n=st.integers(-2, 6) | NUMBERS,
    page=st.tuples(st.none() | st.integers(-1, 5) | NUMBERS, st.none() | st.integers(-1, 5)),
)  # fmt: skip
async def test_db_chat_store_answers_or_refuses(
    tstore: BaseThreadStore,
    op: str,
    key: Any,
    tenant: Any,
    seed: list[Any],
    batch: Any,
    status: Any,
    n: Any,
    page: tuple[Any, Any],
) -> None:
    """`MemfoldDBChatStore` built with hostile tenants, and each of its (async) methods
    ``set_messages``, ``add_message``, ``add_messages``, ``get_messages``, ``count_messages``,
    ``delete_message``, ``delete_messages``, ``delete_oldest_messages`` and
    ``archive_oldest_messages`` with hostile keys, messages, statuses, counts and pages, on a key
    already holding messages: what is written reads back exactly under its status, every call
    answers or raises a memfold error, and the canary threads are unchanged."""
    canary = ThreadCanary(Api(tstore, True))
    await canary.seed()
    try:
        chat = MemfoldDBChatStore(tstore, tenant=tenant)
        await chat.add_messages(key, seed)
        before = await chat.count_messages(key, None)
        if op == "set_messages":
            await chat.set_messages(key, batch, status)
            got = await chat.get_messages(key, status)
            assert len(got) == len(batch)
            assert all(_same(r, w) for r, w in zip(got, batch, strict=True))
            assert await chat.count_messages(key, None) == len(batch)
        elif op in ("add_message", "add_messages"):
            many = batch if op == "add_messages" else [batch[0] if batch else batch]
            if op == "add_messages":
                await chat.add_messages(key, batch, status)
            else:
                await chat.add_message(key, many[0], status)
            got = await chat.get_messages(key, None)
            assert len(got) == before + len(many)
            assert all(_same(r, w) for r, w in zip(got[before:], many, strict=True))
        elif op == "get_messages":
            got = await chat.get_messages(key, status, limit=page[0], offset=page[1])
            assert len(got) <= before
        elif op == "count_messages":
            counted = await chat.count_messages(key, status)
            assert 0 <= counted <= before
        elif op == "delete_message":
            removed = await chat.delete_message(key, n)
            assert await chat.count_messages(key, None) == before - (removed is not None)
        elif op == "delete_messages":
            await chat.delete_messages(key, status)
            assert await chat.count_messages(key, status) == 0
        else:
            take = getattr(chat, op)
            taken = await take(key, n)
            assert len(taken) == max(0, min(n, before))
            kept = before - len(taken) if op == "delete_oldest_messages" else before
            assert await chat.count_messages(key, None) == kept
            assert await chat.count_messages(key, MessageStatus.ACTIVE) == before - len(taken)
    except MemfoldError:
        pass
    await canary.check()


# -- Journaled tools ----------------------------------------------------------------------------


def _journal(kind: str, tmp_path: Path) -> EffectJournal:
    """A fresh effect journal of backend ``kind``, holding a canary call in a thread of its
    own."""
    name = f"journal-{uuid4().hex}.db"
    opened = open_journal("memory://" if kind == "memory" else f"sqlite:///{tmp_path / name}")
    opened.record("memfold-canary", "call-0", {"kept": True})
    return opened


def _printable(output: Any) -> bool:
    """Whether LlamaIndex's ``FunctionTool`` can make its ``ToolOutput`` of ``output`` (it
    takes the ``str()``, which nesting thousands deep exhausts): what it cannot, the tool itself
    fails on, before the journal sees it."""
    try:
        str(output)
    except RecursionError:
        return False
    return True


@FUZZ
@given(
    thread_id=st.sampled_from([None, "t1"]) | hostile_ids(),
    fixed_thread=st.sampled_from([None, "t0"]) | hostile_ids(),
    call_id=st.just("call-1") | hostile_ids(),
    namespace=st.just("") | hostile_ids(),
    tenant=st.sampled_from([None, "acme"]) | hostile_ids(),
    output=json_values(max_leaves=6).filter(_printable),
    wrapped=st.sampled_from(["tool", "tool", "tool", "not a tool", None, 1]),
    scoped=st.booleans() | st.just(True),
)
async def test_journaled_tool_replays_exactly_or_refuses(
    backend: str,
    tmp_path: Path,
    use_async: bool,
    thread_id: Any,
    fixed_thread: Any,
    call_id: Any,
    namespace: Any,
    tenant: Any,
    output: Any,
    wrapped: Any,
    scoped: bool,
) -> None:
    """`journaled` of hostile values (and `JournaledTool` made by it), and
    `JournaledTool.call` (and ``acall``) inside a `journal_scope` (a `JournalScope`) naming
    hostile threads, call ids and namespaces, or outside any, with hostile tenants and
    outputs: the first call runs the tool once and a second returns the same output without
    running it, or a memfold error is raised; the journal's canary call is unchanged. Each
    example has a journal of its own, so no call is recorded before it."""
    runs: list[int] = []
    journal = _journal(backend, tmp_path)

    def echo(x: int) -> Any:
        """Return the fuzzed output."""
        runs.append(x)
        return output

    before = journal.get("memfold-canary", "call-0")
    try:
        tool = FunctionTool.from_defaults(fn=echo) if wrapped == "tool" else wrapped
        safe = journaled(tool, journal, thread_id=fixed_thread, tenant=tenant)
        assert isinstance(safe, JournaledTool)
        outputs = []
        for _ in range(2):
            if scoped:
                with journal_scope(thread_id, call_id, namespace=namespace) as scope:
                    assert isinstance(scope, JournalScope)
                    got = await safe.acall(x=1) if use_async else safe.call(x=1)
            else:
                got = await safe.acall(x=1) if use_async else safe.call(x=1)
            outputs.append(got)
        assert runs == [1]
        assert outputs[1].content == outputs[0].content
        assert outputs[1].tool_name == outputs[0].tool_name
    except MemfoldError:
        assert len(runs) <= 1
    after = journal.get("memfold-canary", "call-0")
    assert after is not None
    assert before is not None
    assert after.value == before.value
    await journal.store.aclose()


# -- The LLM summarizer -------------------------------------------------------------------------


@FUZZ
@given(
    batch=st.lists(messages(), max_size=3) | st.sampled_from([None, "hi", [None]]),
    previous=st.none() | hostile_text() | st.sampled_from([1, b"x"]),
    max_tokens=st.integers(-5, 10**6) | st.sampled_from([None, 1.5, "3"]),
    reply_tokens=st.none() | st.integers(1, 5),
    prompt=st.none() | hostile_text(max_size=30) | st.sampled_from(["{0}", "{x.y}", "{", "}", 1]),
)
async def test_llm_summarizer_answers_or_refuses(
    use_async: bool,
    batch: Any,
    previous: Any,
    max_tokens: Any,
    reply_tokens: int | None,
    prompt: Any,
) -> None:
    """`LLMSummarizer` over LlamaIndex's own ``MockLLM`` with hostile prompts, and its
    ``summarize`` (``asummarize``) of hostile requests: the LLM's reply, stripped, or a memfold
    error. ``MockLLM`` answers ``reply_tokens`` words, or (None) echoes the prompt, so the
    hostile text comes back as the reply."""
    prompts = {} if prompt is None else {"summarize": prompt, "extend": prompt, "condense": prompt}
    try:
        request = SummarizeRequest(
            tuple(batch) if isinstance(batch, list) else batch, previous, max_tokens
        )
        summarizer = LLMSummarizer(MockLLM(max_tokens=reply_tokens), **prompts)
        got = await summarizer.asummarize(request) if use_async else summarizer.summarize(request)
        if reply_tokens is None:
            assert render_prompt(request, **summarizer.prompts).strip() in got
        else:
            assert got == " ".join(["text"] * reply_tokens)
    except MemfoldError:
        pass


async def _record_deep_output(store: BaseThreadStore) -> Any:
    tool = FunctionTool.from_defaults(fn=lambda x: nested(300), name="deep", description="x")
    with journal_scope("t1", "call-1"):
        return await journaled(tool, open_journal("memory://")).acall(x=1)


def _chat(store: BaseThreadStore, **kwargs: Any) -> MemfoldDBChatStore:
    return MemfoldDBChatStore(store, **kwargs)


REGRESSIONS: list[tuple[str, Any]] = [
    ("a tenant that is not a str", lambda s: _chat(s, tenant=0).count_messages(CANARY)),
    ("set_messages of None (deleted the key)", lambda s: _chat(s).set_messages(CANARY, None)),
    (
        "a status that is not one",
        lambda s: _chat(s).add_message(CANARY, ChatMessage(content="x"), "x"),
    ),
    ("count_messages of an int status", lambda s: _chat(s).count_messages(CANARY, 1)),
    ("a str limit", lambda s: _chat(s).get_messages(CANARY, None, limit="3")),
    ("a negative offset", lambda s: _chat(s).get_messages(CANARY, None, offset=-1)),
    ("a str count", lambda s: _chat(s).delete_oldest_messages(CANARY, "3")),
    ("a float count", lambda s: _chat(s).archive_oldest_messages(CANARY, 1.5)),
    ("a tool output nested too deeply to dump", _record_deep_output),
]
"""Calls that raised a builtin or pydantic error (or changed stored data) before the fuzz suite
found them; each returns an awaitable."""


@pytest.mark.parametrize(("case", "call"), REGRESSIONS, ids=[c for c, _ in REGRESSIONS])
async def test_found_bugs_raise_invalid_input(
    tstore: BaseThreadStore,
    case: str,
    call: Any,
) -> None:
    """Each input the fuzzing found crashing the adapter now raises `InvalidInput`, and the
    canary threads are unchanged."""
    canary = ThreadCanary(Api(tstore, True))
    await canary.seed()
    with pytest.raises(InvalidInput):
        await call(tstore)
    await canary.check()
