"""A LangGraph pre-model hook that sends the model a memfold compaction view.

`compaction_hook(strategy)` is a node for ``create_react_agent(pre_model_hook=...)`` or for any
graph, placed before the node that calls the model. It folds the state's messages under a
`memfold.compaction.RunningSummary` and returns the view as ``llm_input_messages``; the state's
``messages`` are never removed or rewritten. The running summary's record is kept in the state
(key `RECORD_STATE_KEY`), so a checkpointer persists it and the next turn extends it instead of
re-reading the whole history.

Examples:
    >>> from langchain_core.messages import AIMessage, HumanMessage
    >>> from memfold.compaction import ApproximateCounter, RunningSummary
    >>> hook = compaction_hook(RunningSummary(200, counter=ApproximateCounter()))
    >>> history = [
    ...     m for i in range(30)
    ...     for m in (HumanMessage(f"Bo is {i}.", id=f"h{i}"), AIMessage("ok", id=f"a{i}"))
    ... ]
    >>> update = hook.invoke({"messages": history})
    >>> update["llm_input_messages"][0].content.startswith("Summary of the conversation")
    True
    >>> update[RECORD_STATE_KEY]["first_id"], "messages" in update
    ('h0', False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, NotRequired, TypedDict

from langchain_core.messages import AnyMessage, BaseMessage
from langchain_core.runnables import RunnableLambda
from langgraph.graph.message import add_messages
from langgraph.managed import RemainingSteps

from memfold.compaction import CompactionRecord, RunningSummary, Summarizer
from memfold.compaction.summarizers import check_summarizer
from memfold.errors import InvalidInput
from memfold.integrations.langchain.middleware import (
    RECORD_STATE_KEY,
    acompact_messages,
    compact_messages,
)

__all__ = ["RECORD_STATE_KEY", "CompactionState", "compaction_hook"]


class CompactionState(TypedDict):
    """Graph state with the messages, the compaction record and the hook's view; pass it as
    ``state_schema`` (or add its last two keys to your own state)."""

    messages: Annotated[Sequence[BaseMessage], add_messages]
    remaining_steps: NotRequired[RemainingSteps]
    memfold_compaction: NotRequired[dict[str, Any] | None]
    llm_input_messages: NotRequired[list[AnyMessage]]


def _update(
    view: list[BaseMessage], record: CompactionRecord | None, state: Mapping[str, Any]
) -> dict[str, Any]:
    update: dict[str, Any] = {"llm_input_messages": view}
    new = None if record is None else record.to_dict()
    if new != state.get(RECORD_STATE_KEY):
        update[RECORD_STATE_KEY] = new
    return update


def _state(state: object) -> Mapping[str, Any]:
    if not isinstance(state, Mapping) or "messages" not in state:
        raise InvalidInput("the compaction hook runs on a graph state with 'messages'")
    return state


def compaction_hook(
    strategy: RunningSummary, summarizer: Summarizer | None = None
) -> RunnableLambda[Any, dict[str, Any]]:
    """A pre-model node: the view of ``state["messages"]`` as ``llm_input_messages``, and the
    record when a fold changed it. Runs natively in sync (``invoke``) and async (``ainvoke``)
    graphs.

    Args:
        strategy: budgets and token counter (`memfold.compaction.RunningSummary`).
        summarizer: writes summaries (default: the offline extractive one; see
            `memfold.integrations.langchain.ChatModelSummarizer`).
    """

    if not isinstance(strategy, RunningSummary):
        raise InvalidInput(f"strategy must be a RunningSummary, got {type(strategy).__name__}")
    summarizer = check_summarizer(summarizer)

    def hook(state: Mapping[str, Any]) -> dict[str, Any]:
        record = _state(state).get(RECORD_STATE_KEY)
        view, new = compact_messages(state["messages"], strategy, summarizer, record)
        return _update(view, new, state)

    async def ahook(state: Mapping[str, Any]) -> dict[str, Any]:
        record = _state(state).get(RECORD_STATE_KEY)
        view, new = await acompact_messages(state["messages"], strategy, summarizer, record)
        return _update(view, new, state)

    return RunnableLambda(hook, afunc=ahook, name="memfold_compaction")
