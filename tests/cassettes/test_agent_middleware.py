"""MemfoldCompactionMiddleware in a LangChain 1.x agent whose model and summarizer are a real
model (ChatOpenAI on the recording server), replayed from a cassette: every model call fits
the budget, carries the summary once folded, the state keeps every message and the record,
and each fold sends the summarizer only the newly evicted messages."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from vcr.cassette import Cassette

from memfold import Message
from memfold.compaction import CompactionRecord
from memfold.compaction.tokens import REPLY_TOKENS
from memfold.integrations.langchain import to_memfold
from memfold.integrations.langchain.middleware import (
    RECORD_STATE_KEY,
    MemfoldCompactionMiddleware,
)
from memfold.integrations.langchain.summarizer import ChatModelSummarizer
from tests.cassettes.support import (
    COUNTER,
    MAX_TOKENS,
    PROMPTS,
    SUMMARY_REPLY_TOKENS,
    chat_messages,
    chat_openai,
    check_folds,
    conversation,
    is_summarizer_call,
    replaying,
    strategy,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

AGENT_REPLY_TOKENS = 40


def _message(sent: dict[str, Any]) -> Message:
    return Message(role=sent["role"], content=sent["content"], name=sent.get("name"))


@pytest.mark.vcr
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_agent_with_a_real_model(use_async: bool, vcr: Cassette) -> None:
    """Caroline's twelve lines of the chat, one agent turn each."""
    middleware = MemfoldCompactionMiddleware(
        strategy(), ChatModelSummarizer(chat_openai(SUMMARY_REPLY_TOKENS), **PROMPTS)
    )
    agent = create_agent(
        chat_openai(AGENT_REPLY_TOKENS), middleware=[middleware], checkpointer=InMemorySaver()
    )
    config: Any = {"configurable": {"thread_id": "chat"}}
    lines = [m for m in conversation() if m.name == "Caroline"]
    records: list[CompactionRecord] = []
    for line in lines:
        state: Any = {"messages": [HumanMessage(line.text, name="Caroline")]}
        result = await agent.ainvoke(state, config) if use_async else agent.invoke(state, config)
        found = result.get(RECORD_STATE_KEY)
        if found is not None and (not records or found != records[-1].to_dict()):
            records.append(CompactionRecord.from_dict(found))
    calls = [chat_messages(r) for r in vcr.requests]
    model_calls = [m for m in calls if not is_summarizer_call(m)]
    assert len(model_calls) == len(lines)
    for sent in model_calls:
        assert REPLY_TOKENS + COUNTER.count_messages([_message(m) for m in sent]) <= MAX_TOKENS
    assert len(records) >= 2, "the chat should fold more than once"
    prefix = strategy().prefix
    assert model_calls[-1][0] == {"role": "user", "content": prefix + records[-1].summary}
    assert len(result["messages"]) == 2 * len(lines), "the state lost messages"
    assert result[RECORD_STATE_KEY] == agent.get_state(config).values[RECORD_STATE_KEY]
    check_folds(vcr, [to_memfold(m) for m in result["messages"]], records)
    if replaying(vcr):
        assert vcr.all_played, "a recorded model call was not made"
