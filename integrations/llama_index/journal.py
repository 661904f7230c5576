"""`journaled`: a LlamaIndex tool whose completed calls are replayed from a memfold effect
journal.

LlamaIndex calls a tool with its arguments only, so the caller names each call: inside
``with journal_scope(thread_id, tool_call_id):`` (a context variable, so it follows ``await``
and stays per task) a call of the wrapped tool is keyed by that thread, namespace and tool call
id, e.g. the ``tool_id`` of the ``ToolSelection`` the model returned. The thread may instead be
fixed when wrapping (``journaled(tool, journal, thread_id=...)``). A recorded call returns its
recorded ``ToolOutput`` without running the tool; otherwise the tool runs and its output is
recorded before it is returned. A call outside any scope raises `memfold.InvalidInput`.

The ``ToolOutput`` is stored as JSON; a ``raw_output`` that is not JSON is recorded as its
``str()``.

Examples:
    >>> from llama_index.core.tools import FunctionTool
    >>> from memfold.journal import open_journal
    >>> sent = []
    >>> def email(to: str) -> str:
    ...     '''Send an email.'''
    ...     sent.append(to)
    ...     return f"sent to {to}"
    >>> safe = journaled(FunctionTool.from_defaults(fn=email), open_journal("memory://"))
    >>> with journal_scope("t1", "call-1"):
    ...     outputs = [safe.call(to="bo@example.com").content for _ in range(2)]
    >>> outputs, sent
    (['sent to bo@example.com', 'sent to bo@example.com'], ['bo@example.com'])
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from llama_index.core.tools import AsyncBaseTool, BaseTool, ToolMetadata, ToolOutput
from llama_index.core.tools.types import adapt_to_async_tool

from memfold import InvalidInput
from memfold.checkpoint_model import Blob
from memfold.journal import JSON_TAG, EffectJournal, JournalEntry
from memfold.stores import encode_json

__all__ = ["JournalScope", "JournaledTool", "journal_scope", "journaled"]


@dataclass(frozen=True, slots=True)
class JournalScope:
    """The key of the tool call being made: its thread, namespace and tool call id."""

    thread_id: str | None
    tool_call_id: str
    namespace: str = ""


_SCOPE: ContextVar[JournalScope | None] = ContextVar("memfold_journal_scope", default=None)


@contextmanager
def journal_scope(
    thread_id: str | None, tool_call_id: str, *, namespace: str = ""
) -> Iterator[JournalScope]:
    """Name the tool call made inside the block (``thread_id=None``: the wrapper's thread)."""
    scope = JournalScope(thread_id, tool_call_id, namespace)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def _encode(output: ToolOutput) -> Blob:
    """The output as memfold JSON, or `InvalidInput` if pydantic cannot dump it (nested too
    deeply)."""
    try:
        dumped = output.model_dump(mode="json", fallback=str)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"the output of the journaled tool cannot be recorded: {exc}") from exc
    return Blob(JSON_TAG, encode_json(dumped, "the tool output").encode())


def _decode(entry: JournalEntry) -> ToolOutput:
    if entry.value.tag != JSON_TAG:
        raise InvalidInput(
            f"journal entry {entry.tool_call_id!r} holds {entry.value.tag!r} bytes, not a "
            "LlamaIndex ToolOutput: was it recorded by another framework's tool?"
        )
    return ToolOutput.model_validate(json.loads(entry.value.data))


class JournaledTool(AsyncBaseTool):
    """A LlamaIndex tool that runs each named call at most once per thread (see `journaled`)."""

    def __init__(
        self,
        tool: BaseTool,
        journal: EffectJournal,
        *,
        thread_id: str | None = None,
        tenant: str | None = None,
    ) -> None:
        self.tool: AsyncBaseTool = adapt_to_async_tool(tool)
        self.journal = journal
        self.thread_id = thread_id
        self.tenant = tenant

    @property
    def metadata(self) -> ToolMetadata:
        """The wrapped tool's name, description and argument schema."""
        return self.tool.metadata

    def _key(self) -> tuple[str, str, str]:
        scope = _SCOPE.get()
        if scope is None:
            raise InvalidInput(
                f"tool {self.metadata.name!r} is journaled: call it inside "
                "`with journal_scope(thread_id, tool_call_id):` naming the call"
            )
        thread_id = scope.thread_id or self.thread_id
        if thread_id is None:
            raise InvalidInput(
                "no thread for the journaled call: pass thread_id to journal_scope or journaled"
            )
        return thread_id, scope.namespace, scope.tool_call_id

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """Return the call's recorded output, or run the tool and record its output first."""
        thread_id, namespace, call_id = self._key()
        found = self.journal.get(thread_id, call_id, namespace=namespace, tenant=self.tenant)
        if found is not None:
            return _decode(found)
        output = self.tool.call(*args, **kwargs)
        value = _encode(output)
        entry = self.journal.record(
            thread_id, call_id, value, namespace=namespace, tenant=self.tenant
        )
        return output if entry.value == value else _decode(entry)

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        """Async `call`."""
        thread_id, namespace, call_id = self._key()
        found = await self.journal.aget(thread_id, call_id, namespace=namespace, tenant=self.tenant)
        if found is not None:
            return _decode(found)
        output = await self.tool.acall(*args, **kwargs)
        value = _encode(output)
        entry = await self.journal.arecord(
            thread_id, call_id, value, namespace=namespace, tenant=self.tenant
        )
        return output if entry.value == value else _decode(entry)


def journaled(
    tool: BaseTool,
    journal: EffectJournal,
    *,
    thread_id: str | None = None,
    tenant: str | None = None,
) -> JournaledTool:
    """Wrap a LlamaIndex tool so that each call named by `journal_scope` runs at most once.

    Args:
        tool: a LlamaIndex ``BaseTool`` (such as a ``FunctionTool``).
        journal: the journal (``memfold.journal.open_journal(url)``).
        thread_id: the thread of calls whose scope names none.
        tenant: the tenant of the threads.
    """
    if not isinstance(tool, BaseTool):
        raise InvalidInput(f"journaled wraps a LlamaIndex BaseTool, got {type(tool).__name__}")
    return JournaledTool(tool, journal, thread_id=thread_id, tenant=tenant)
