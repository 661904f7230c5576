"""Compaction for LangChain: `compact_messages` (standalone) and
`MemfoldCompactionMiddleware` (a ``create_agent`` middleware).

The middleware's ``before_model`` hook folds the agent's messages under a
`memfold.compaction.RunningSummary` and saves the record in the agent state (key
`RECORD_STATE_KEY`, so the checkpointer persists it); ``wrap_model_call`` then sends the model the
view. The state's messages are never removed or rewritten.

Examples:
    >>> from langchain_core.messages import AIMessage, HumanMessage
    >>> from memfold.compaction import ApproximateCounter, RunningSummary
    >>> history = [
    ...     m for i in range(30)
    ...     for m in (HumanMessage(f"Bo is {i}.", id=f"h{i}"), AIMessage("ok", id=f"a{i}"))
    ... ]
    >>> view, record = compact_messages(history, RunningSummary(200, counter=ApproximateCounter()))
    >>> view[0].content.startswith("Summary of the conversation so far:"), record.first_id
    (True, 'h0')
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain_core.messages import AnyMessage, BaseMessage
from langgraph.runtime import Runtime

from memfold import InvalidInput, Message
from memfold.compaction import CompactionRecord, RunningSummary, Summarizer, arun, run
from memfold.compaction.summarizers import check_summarizer
from memfold.integrations.langchain.messages import to_langchain, to_memfold

__all__ = [
    "RECORD_STATE_KEY",
    "CompactionState",
    "MemfoldCompactionMiddleware",
    "acompact_messages",
    "compact_messages",
]

RECORD_STATE_KEY: Final = "memfold_compaction"
"""The agent-state key holding the compaction record (a JSON object)."""


class CompactionState(AgentState[Any]):
    """Agent state with the compaction record."""

    memfold_compaction: NotRequired[dict[str, Any] | None]


def _back(view: Sequence[Message], originals: Sequence[BaseMessage]) -> list[BaseMessage]:
    """LangChain messages for ``view``: the caller's own objects, a new one for the summary."""
    by_id = {m.id: m for m in originals if m.id is not None}
    return [by_id[m.id] if m.id in by_id else to_langchain(m) for m in view]


def _record(found: Mapping[str, Any] | CompactionRecord | None) -> CompactionRecord | None:
    if found is None or isinstance(found, CompactionRecord):
        return found
    return CompactionRecord.from_dict(found)


def _converted(messages: object) -> list[Message]:
    if isinstance(messages, str) or not isinstance(messages, Sequence):
        raise InvalidInput(f"messages must be a list of messages, got {type(messages).__name__}")
    return [to_memfold(m) for m in messages]


def compact_messages(
    messages: Sequence[BaseMessage],
    strategy: RunningSummary,
    summarizer: Summarizer | None = None,
    record: Mapping[str, Any] | CompactionRecord | None = None,
) -> tuple[list[BaseMessage], CompactionRecord | None]:
    """The view of ``messages`` and the (possibly new) record; keep the record for the next
    call. Messages need ids (LangGraph's ``add_messages`` assigns them)."""
    summarizer = check_summarizer(summarizer)
    done = run(strategy.fold(_converted(messages), _record(record)), summarizer)
    return _back(done.view, messages), done.record


async def acompact_messages(
    messages: Sequence[BaseMessage],
    strategy: RunningSummary,
    summarizer: Summarizer | None = None,
    record: Mapping[str, Any] | CompactionRecord | None = None,
) -> tuple[list[BaseMessage], CompactionRecord | None]:
    """Async `compact_messages`."""
    summarizer = check_summarizer(summarizer)
    done = await arun(strategy.fold(_converted(messages), _record(record)), summarizer)
    return _back(done.view, messages), done.record


class MemfoldCompactionMiddleware(AgentMiddleware[CompactionState, Any]):
    """Running-summary compaction for ``langchain.agents.create_agent``.

    The strategy's budget covers the agent's messages; ``create_agent``'s ``system_prompt`` is
    sent beside them, so leave room for it in ``max_tokens``.

    Args:
        strategy: budgets and token counter (`memfold.compaction.RunningSummary`).
        summarizer: writes summaries (default: the offline extractive one; see
            `memfold.integrations.langchain.ChatModelSummarizer`).
    """

    state_schema = CompactionState

    def __init__(self, strategy: RunningSummary, summarizer: Summarizer | None = None) -> None:
        if not isinstance(strategy, RunningSummary):
            raise InvalidInput(f"strategy must be a RunningSummary, got {type(strategy).__name__}")
        super().__init__()
        self.strategy = strategy
        self.summarizer = check_summarizer(summarizer)

    def _update(self, record: CompactionRecord | None, state: CompactionState) -> dict[str, Any]:
        old = state.get(RECORD_STATE_KEY)
        new = None if record is None else record.to_dict()
        return {} if new == old else {RECORD_STATE_KEY: new}

    def before_model(self, state: CompactionState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Fold if the view is over budget, saving the record in the state."""
        _, record = compact_messages(
            state["messages"], self.strategy, self.summarizer, state.get(RECORD_STATE_KEY)
        )
        return self._update(record, state) or None

    async def abefore_model(
        self, state: CompactionState, runtime: Runtime[Any]
    ) -> dict[str, Any] | None:
        """Async `before_model`."""
        _, record = await acompact_messages(
            state["messages"], self.strategy, self.summarizer, state.get(RECORD_STATE_KEY)
        )
        return self._update(record, state) or None

    def _view(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        found: Any = request.state.get(RECORD_STATE_KEY)
        record = _record(found)
        view = self.strategy.view(_converted(request.messages), record)
        messages: list[AnyMessage] = _back(view, request.messages)  # type: ignore[assignment]
        return request.override(messages=messages)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any]:
        """Send the model the view instead of the whole history."""
        return handler(self._view(request))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any]:
        """Async `wrap_model_call`."""
        return await handler(self._view(request))
