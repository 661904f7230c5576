"""`journaled` LlamaIndex tools: each call named by `journal_scope` runs once, sync and async."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.tools import FunctionTool, ToolOutput

from memfold import InvalidInput
from memfold.integrations.llama_index import JournaledTool, journal_scope, journaled
from memfold.journal import EffectJournal, open_journal

SENT: list[str] = []


class Receipt:
    """A raw output that is not JSON."""

    def __str__(self) -> str:
        return "receipt#1"


def email(to: str) -> Receipt:
    """Send an email."""
    SENT.append(to)
    return Receipt()


@pytest.fixture
def journal() -> EffectJournal:
    """A fresh in-memory journal, and a fresh outbox."""
    SENT.clear()
    return open_journal("memory://")


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Any:
    """``tool.call`` or ``await tool.acall``, behind one awaitable."""

    async def run(target: JournaledTool, **kwargs: Any) -> ToolOutput:
        if request.param == "async":
            return await target.acall(**kwargs)
        return target.call(**kwargs)

    return run


async def test_a_named_call_runs_once(journal: EffectJournal, call: Any) -> None:
    """Called twice in one scope, the tool runs once and both calls return its output."""
    safe = journaled(FunctionTool.from_defaults(fn=email), journal)
    with journal_scope("t1", "call-1", namespace="agent"):
        first = await call(safe, to="bo@example.com")
        again = await call(safe, to="bo@example.com")
    assert SENT == ["bo@example.com"]
    assert (again.content, again.tool_name, again.raw_output) == (
        first.content,
        "email",
        "receipt#1",
    )
    [entry] = journal.list_entries("t1", namespace="agent")
    assert entry.tool_call_id == "call-1"


async def test_each_call_id_and_thread_runs(journal: EffectJournal, call: Any) -> None:
    """Another tool call id or thread is another call; the wrapper's thread is the default."""
    safe = journaled(FunctionTool.from_defaults(fn=email), journal, thread_id="t9")
    for thread_id, call_id in [(None, "a"), (None, "b"), ("t2", "a"), (None, "a")]:
        with journal_scope(thread_id, call_id):
            await call(safe, to=f"{thread_id}-{call_id}")
    assert SENT == ["None-a", "None-b", "t2-a"]
    assert [e.tool_call_id for e in journal.list_entries("t9")] == ["a", "b"]


async def test_an_unnamed_call_is_refused(journal: EffectJournal, call: Any) -> None:
    """Outside a scope, or with no thread anywhere, the call is refused before the tool runs."""
    safe = journaled(FunctionTool.from_defaults(fn=email), journal)
    with pytest.raises(InvalidInput, match="journal_scope"):
        await call(safe, to="x")
    with journal_scope(None, "c"), pytest.raises(InvalidInput, match="thread"):
        await call(safe, to="x")
    assert SENT == []


def test_the_wrapper_looks_like_the_tool(journal: EffectJournal) -> None:
    """Its metadata (name, description, schema) is the tool's; non-tools are refused."""
    tool = FunctionTool.from_defaults(fn=email)
    assert journaled(tool, journal).metadata == tool.metadata
    with pytest.raises(InvalidInput, match="BaseTool"):
        journaled(email, journal)  # type: ignore[arg-type]
