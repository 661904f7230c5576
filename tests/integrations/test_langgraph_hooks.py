"""compaction_hook in real LangGraph graphs: the model sees a view within budget, the state keeps
every message, and the running summary is checkpointed and extended, never re-made."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import create_react_agent

from memfold import InvalidInput
from memfold.compaction import (
    ApproximateCounter,
    ExtractiveSummarizer,
    RunningSummary,
    SummarizeRequest,
)
from memfold.integrations.langchain import to_memfold
from memfold.integrations.langgraph import MemfoldSaver
from memfold.integrations.langgraph.hooks import (
    RECORD_STATE_KEY,
    CompactionState,
    compaction_hook,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COUNTER = ApproximateCounter()
BUDGET = 300


class CountingSummarizer(ExtractiveSummarizer):
    """The extractive summarizer, recording the ids of every message it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str | None] = []

    def summarize(self, request: SummarizeRequest) -> str:
        self.sent += [m.id for m in request.messages]
        return super().summarize(request)


def turn(i: int) -> Any:
    return {"messages": [HumanMessage(f"Turn {i}: Ana flies to Lisbon on May {i % 28 + 1}.")]}


def fits(seen: list[BaseMessage]) -> bool:
    return COUNTER.count_messages([to_memfold(m) for m in seen]) <= BUDGET  # reply included


@pytest.mark.parametrize("use_async", [False, True])
async def test_react_agent_sees_a_view_and_keeps_its_history(
    fake_model: Callable[..., Any], tmp_path: Path, use_async: bool
) -> None:
    """Over 30 turns of a checkpointed create_react_agent, each model call fits the budget, the
    state keeps all 60 messages, and each message is summarized at most once."""
    model = fake_model(*[f"Noted: trip {i} to Lisbon." for i in range(30)])
    summarizer = CountingSummarizer()
    hook = compaction_hook(RunningSummary(BUDGET, counter=COUNTER), summarizer)
    config: Any = {"configurable": {"thread_id": "t1"}}
    with MemfoldSaver.from_url(f"sqlite:///{tmp_path / 'cp.db'}") as saver:
        agent = create_react_agent(
            model, [], pre_model_hook=hook, state_schema=CompactionState, checkpointer=saver
        )
        for i in range(30):
            if use_async:
                result = await agent.ainvoke(turn(i), config)
            else:
                result = agent.invoke(turn(i), config)
        state = agent.get_state(config).values
    assert all(fits(seen) for seen in model.seen)
    assert str(model.seen[-1][0].content).startswith("Summary of the conversation so far:")
    assert len(result["messages"]) == 60, "the hook removed messages from the state"
    assert state[RECORD_STATE_KEY]["first_id"] == result["messages"][0].id
    assert summarizer.sent, "no fold happened"
    assert len(summarizer.sent) == len(set(summarizer.sent)), "a message was summarized twice"


def test_summary_survives_a_new_graph_on_the_same_checkpoint(
    fake_model: Callable[..., Any], tmp_path: Path
) -> None:
    """A graph built afresh on the same saver reads the saved record: its first view starts
    with a summary, later folds extend that record, and they send only new messages."""
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    config: Any = {"configurable": {"thread_id": "t1"}}
    strategy = RunningSummary(BUDGET, counter=COUNTER)
    first = CountingSummarizer()
    with MemfoldSaver.from_url(url) as saver:
        agent = create_react_agent(
            fake_model(*["ok"] * 20),
            [],
            pre_model_hook=compaction_hook(strategy, first),
            state_schema=CompactionState,
            checkpointer=saver,
        )
        for i in range(20):
            agent.invoke(turn(i), config)
        saved = agent.get_state(config).values[RECORD_STATE_KEY]
    second = CountingSummarizer()
    model = fake_model(*["ok"] * 20)
    with MemfoldSaver.from_url(url) as saver:
        agent = create_react_agent(
            model,
            [],
            pre_model_hook=compaction_hook(strategy, second),
            state_schema=CompactionState,
            checkpointer=saver,
        )
        for i in range(20, 40):
            agent.invoke(turn(i), config)
        record = agent.get_state(config).values[RECORD_STATE_KEY]
    assert str(model.seen[0][0].content).startswith("Summary of the conversation so far:")
    assert record["folds"][: len(saved["folds"])] == saved["folds"], "the summary was re-made"
    assert record["covered"] > saved["covered"]
    assert second.sent
    assert not set(second.sent) & set(first.sent), "the new graph re-summarized old messages"


async def test_hook_in_a_hand_built_graph(fake_model: Callable[..., Any]) -> None:
    """In a StateGraph the hook node feeds the model node through llm_input_messages, and the
    state's messages stay whole."""
    model = fake_model(*[f"Reply {i}: the meeting is at {i} pm." for i in range(25)])

    async def call_model(state: CompactionState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["llm_input_messages"])]}

    builder = StateGraph(CompactionState)
    builder.add_node("compact", compaction_hook(RunningSummary(BUDGET, counter=COUNTER)))
    builder.add_node("model", call_model)
    builder.add_edge(START, "compact")
    builder.add_edge("compact", "model")
    graph = builder.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "t1"}}
    for i in range(25):
        state = await graph.ainvoke(turn(i), config)
    assert len(state["messages"]) == 50
    assert all(isinstance(m, AIMessage) for m in state["messages"][1::2])
    assert all(fits(seen) for seen in model.seen)
    assert str(model.seen[-1][0].content).startswith("Summary of the conversation so far:")
    assert state[RECORD_STATE_KEY]["covered"] > 0


def test_hook_refuses_a_summarizer_of_the_wrong_kind() -> None:
    """A model name (or a chat model without its wrapper) is refused when the hook is built."""
    with pytest.raises(InvalidInput, match="ChatModelSummarizer"):
        compaction_hook(RunningSummary(BUDGET, counter=COUNTER), "gpt-4o")  # type: ignore[arg-type]
