"""MemfoldCompactionMemory with SimpleChatEngine and MockLLM: the LLM sees a view within budget,
the raw thread stays whole in the store, and the summary carries over to a new engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatResponse, ToolCallBlock
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import ChatMessage, MockLLM
from pydantic import Field

from memfold.compaction import (
    ApproximateCounter,
    ExtractiveSummarizer,
    RunningSummary,
    SummarizeRequest,
)
from memfold.integrations.llama_index import (
    LLMSummarizer,
    MemfoldChatStore,
    MemfoldCompactionMemory,
    to_memfold,
)
from memfold.stores import BaseThreadStore

COUNTER = ApproximateCounter()
BUDGET = 300
SYSTEM = ChatMessage(role="system", content="You help Ana plan trips. Be brief.")


class RecordingLLM(MockLLM):
    """MockLLM that records every chat it is sent (its async chat goes through ``chat``)."""

    seen: list[list[ChatMessage]] = Field(default_factory=list, exclude=True)

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self.seen.append(list(messages))
        response: ChatResponse = super().chat(messages, **kwargs)
        return response


class CountingSummarizer(ExtractiveSummarizer):
    """The extractive summarizer, recording the ids of every message it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str | None] = []

    def summarize(self, request: SummarizeRequest) -> str:
        self.sent += [m.id for m in request.messages]
        return super().summarize(request)


def question(i: int) -> str:
    return f"Turn {i}: Ana flies to Lisbon on May {i % 28 + 1}, seat {i}A, for {i * 10} euros."


def fits(seen: list[ChatMessage]) -> bool:
    return COUNTER.count_messages([to_memfold(m) for m in seen]) <= BUDGET  # reply included


def memory_on(store: BaseThreadStore, summarizer: Any = None) -> MemfoldCompactionMemory:
    strategy = RunningSummary(BUDGET, counter=COUNTER)
    return MemfoldCompactionMemory(
        MemfoldChatStore(store), strategy, summarizer, chat_store_key="ana"
    )


@pytest.mark.parametrize("use_async", [False, True], ids=["chat", "achat"])
async def test_chat_engine_sees_a_view_and_the_store_keeps_the_thread(
    store: BaseThreadStore, use_async: bool, forbid_sync_io: Callable[[BaseThreadStore], None]
) -> None:
    """Over 30 turns each LLM call fits the budget with the system message first and, once
    folded, the summary second; the store holds all 61 messages (async: no sync store I/O)."""
    memory = memory_on(store)
    llm = RecordingLLM(max_tokens=6)
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)
    if use_async:
        forbid_sync_io(store)
        await memory.aput(SYSTEM)
        for i in range(30):
            await engine.achat(question(i))
        stored = await store.aload("ana")
        record = await memory.compactor.arecord("ana")
    else:
        memory.put(SYSTEM)
        for i in range(30):
            engine.chat(question(i))
        stored = store.load("ana")
        record = memory.compactor.record("ana")
    assert len(llm.seen) == 30
    assert all(fits(seen) and seen[0].content == SYSTEM.content for seen in llm.seen)
    assert str(llm.seen[-1][1].content).startswith("Summary of the conversation so far:")
    assert [m.text for m in stored[1::2]] == [question(i) for i in range(30)]
    assert len(stored) == 61
    assert record is not None
    assert record.first_id == stored[1].id


def test_summary_carries_over_to_a_new_engine(store: BaseThreadStore) -> None:
    """A new chat store, memory and engine on the same store start from the saved summary and
    later folds extend it, sending only messages never summarized before."""
    first = CountingSummarizer()
    engine = SimpleChatEngine.from_defaults(
        llm=MockLLM(max_tokens=6), memory=memory_on(store, first)
    )
    for i in range(20):
        engine.chat(question(i))
    second = CountingSummarizer()
    memory = memory_on(store, second)
    saved = memory.compactor.record("ana")
    assert saved is not None
    llm = RecordingLLM(max_tokens=6)
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=memory)
    for i in range(20, 40):
        engine.chat(question(i))
    record = memory.compactor.record("ana")
    assert str(llm.seen[0][0].content).startswith("Summary of the conversation so far:")
    assert record is not None
    assert record.folds[: len(saved.folds)] == saved.folds
    assert second.sent
    assert not set(second.sent) & set(first.sent)
    assert len(memory.get_all()) == 80


@pytest.mark.parametrize("backend", ["sqlite"])  # adapter logic: one backend is enough
def test_tool_calls_stay_with_their_results(store: BaseThreadStore) -> None:
    """Folding a thread of tool turns never leaves a tool result without its call in the view;
    expanding the saved record returns the original messages the summary covers."""
    memory = memory_on(store)
    for i in range(15):
        call = ToolCallBlock(tool_call_id=f"c{i}", tool_name="price", tool_kwargs={"day": i})
        memory.put_messages(
            [
                ChatMessage(role="user", content=question(i)),
                ChatMessage(role="assistant", blocks=[call]),
                ChatMessage(
                    role="tool",
                    content=f"{i * 10} euros",
                    additional_kwargs={"tool_call_id": f"c{i}", "name": "price"},
                ),
                ChatMessage(role="assistant", content=f"It costs {i * 10} euros."),
            ]
        )
    view = [to_memfold(m) for m in memory.get()]
    assert view[0].text.startswith("Summary of the conversation so far:")
    assert view[1].role == "user"
    calls = {c.id for m in view for c in m.tool_calls}
    assert all(m.tool_call_id in calls for m in view if m.role == "tool")
    record = memory.compactor.record("ana")  # ChatMessage has no id: expand the record
    assert record is not None
    covered = memory.compactor.expand(record, "ana")
    assert covered[0].text == question(0)
    assert len(covered) + len(view) - 1 == 60


@pytest.mark.parametrize("backend", ["sqlite"])  # adapter logic: one backend is enough
async def test_from_defaults_with_an_llm_summarizes_with_it(store: BaseThreadStore) -> None:
    """from_defaults(llm=...) writes summaries with that LLM and stores chat_history."""
    llm = RecordingLLM(max_tokens=5)
    history = [ChatMessage(role="user", content=question(i)) for i in range(40)]
    memory = MemfoldCompactionMemory.from_defaults(
        history,
        llm,
        chat_store=MemfoldChatStore(store),
        strategy=RunningSummary(BUDGET, counter=COUNTER),
    )
    view = await memory.aget()
    assert view[0].content == "Summary of the conversation so far:\ntext text text text text"
    assert any(question(i) in str(llm.seen[0][0].content) for i in range(40))
    assert len(await memory.aget_all()) == 40


@pytest.mark.parametrize("use_async", [False, True])
async def test_llm_summarizer_sends_the_prompt_and_the_previous_summary(use_async: bool) -> None:
    """LLMSummarizer sends one user message with the messages (and the summary so far when
    extending) and returns the LLM's reply, stripped."""
    llm = RecordingLLM(max_tokens=3)
    summarizer = LLMSummarizer(llm, extend="Old: {previous}\nNew: {messages}")
    request = SummarizeRequest(
        (to_memfold(ChatMessage(role="user", content="I fly on 3 May")),), "Ana likes tea.", 50
    )
    if use_async:
        text = await summarizer.asummarize(request)
    else:
        text = summarizer.summarize(request)
    assert text == "text text text"
    [[prompt]] = llm.seen
    assert prompt.role.value == "user"
    assert prompt.content == "Old: Ana likes tea.\nNew: user: I fly on 3 May"
