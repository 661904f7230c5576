"""MemfoldCompactionMiddleware in a real create_agent loop: the model sees a view within
budget with the summary, the agent state keeps every message and the record, and a LangChain
chat model can write the summaries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from memfold import InvalidInput
from memfold.compaction import ApproximateCounter, RunningSummary
from memfold.integrations.langchain import to_memfold
from memfold.integrations.langchain.middleware import (
    RECORD_STATE_KEY,
    MemfoldCompactionMiddleware,
    acompact_messages,
    compact_messages,
)
from memfold.integrations.langchain.summarizer import ChatModelSummarizer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COUNTER = ApproximateCounter()


@tool
def price(flight: str) -> str:
    """The price of a flight."""
    return f"{flight}: 89 euros"


def replies(turns: int) -> list[AIMessage]:
    """A tool turn with parallel calls, then plain answers."""
    calls = [{"name": "price", "args": {"flight": f"TP{i}"}, "id": f"c{i}"} for i in (1, 2)]
    out = [AIMessage("", tool_calls=calls), AIMessage("TP1 and TP2 cost 89 euros each.")]
    return out + [AIMessage(f"Noted: Ana's trip number {i} to Lisbon.") for i in range(turns)]


@pytest.mark.parametrize("use_async", [False, True])
async def test_agent_sees_a_view_and_keeps_its_history(
    fake_model: Callable[..., Any], use_async: bool
) -> None:
    """Over 25 turns every model call fits the budget, the summary appears once folded, the
    state still holds every message, and the record is checkpointed."""
    model = fake_model(*replies(30))
    middleware = MemfoldCompactionMiddleware(RunningSummary(350, counter=COUNTER))
    agent = create_agent(
        model, tools=[price], middleware=[middleware], checkpointer=InMemorySaver()
    )
    config: Any = {"configurable": {"thread_id": "t1"}}
    for i in range(25):
        state: Any = {"messages": [HumanMessage(f"Turn {i}: Ana flies to Lisbon on May {i + 1}.")]}
        result = await agent.ainvoke(state, config) if use_async else agent.invoke(state, config)
    for seen in model.seen:
        assert COUNTER.count_messages([to_memfold(m) for m in seen]) <= 350
    last = model.seen[-1]
    assert str(last[0].content).startswith("Summary of the conversation so far:")
    assert len(result["messages"]) == 25 * 2 + 3, "the state lost messages"
    record = result[RECORD_STATE_KEY]
    assert record["first_id"] == result["messages"][0].id
    saved = agent.get_state(config).values[RECORD_STATE_KEY]
    assert saved == record


def test_chat_model_summarizer_extends_its_summary() -> None:
    """With a chat model as summarizer, each fold sends only its newly evicted messages; the
    summary so far goes along only when a fold merges it with them."""
    summaries = iter([AIMessage(f"Summary {i}: Ana flies.") for i in range(50)])
    model = GenericFakeChatModel(messages=summaries)
    sent: list[str] = []
    original = model._generate

    def spy(messages: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(messages[0].content)
        return original(messages, *args, **kwargs)

    object.__setattr__(model, "_generate", spy)
    summarizer = ChatModelSummarizer(
        model, summarize="NEW={messages}", extend="PREV={previous} NEW={messages}"
    )
    strategy = RunningSummary(200, counter=COUNTER)
    history: list[Any] = []
    record = None
    for i in range(60):
        history += [HumanMessage(f"Fact {i}: Bo is {i}.", id=f"h{i}"), AIMessage("ok", id=f"a{i}")]
        view, record = compact_messages(history, strategy, summarizer, record)
    assert record is not None
    assert len(sent) == len(record.folds) >= 4
    assert sent[1].startswith("NEW=")
    assert "Fact 0:" not in sent[1]
    merges = [i for i, prompt in enumerate(sent) if prompt.startswith("PREV=")]
    assert merges, "the summary never filled up"
    first = merges[0]
    assert sent[first].startswith(
        "PREV=" + "\n".join(f"Summary {i}: Ana flies." for i in range(first))
    )
    assert view[0].content == "Summary of the conversation so far:\n" + record.summary


async def test_a_chat_model_passed_as_the_summarizer_is_refused() -> None:
    """A chat model passed directly, not in ChatModelSummarizer, is refused with InvalidInput
    naming the wrapper, by the middleware when built and by compact_messages and its twin."""
    model = FakeListChatModel(responses=["Ana flies."])
    strategy = RunningSummary(200, counter=COUNTER)
    history = [HumanMessage(f"Fact {i}: Bo is {i}.", id=f"h{i}") for i in range(40)]
    with pytest.raises(InvalidInput, match="ChatModelSummarizer"):
        MemfoldCompactionMiddleware(strategy, model)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="ChatModelSummarizer"):
        compact_messages(history, strategy, model)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="ChatModelSummarizer"):
        await acompact_messages(history, strategy, model)  # type: ignore[arg-type]
