"""`journaled`: a LangChain tool whose completed calls are replayed from a memfold effect journal.

Inside a LangGraph run (``ToolNode``, ``create_agent``) a tool is invoked with a ``ToolCall`` and
the run's config. The wrapper keys the call by the config's ``thread_id`` and ``checkpoint_ns``
(the namespace of the tool's own task, which a resume from the same checkpoint repeats) and
the call's ``id``, and records the checkpoint the task runs from (its ``checkpoint_map``). A
recorded call returns its recorded output without running the tool; otherwise the tool runs
and its output is recorded before it is returned. So a run killed after the tool ran, and
resumed, does not repeat the tool's side effect: also when the crash lost the checkpoint the
tool's task ran from (LangGraph's default ``durability="async"`` stores it while the tools
run), and the resumed step runs the call under a new namespace, since `EffectJournal.recall`
finds the call's entry from that unstored checkpoint.

Outputs are stored as memfold JSON (a ``ToolMessage`` through the lossless message converter,
or a JSON value); anything else (a LangGraph ``Command``) as LangGraph's serializer's typed
bytes, never pickle.

Examples:
    >>> from langchain_core.tools import tool
    >>> from memfold.journal import open_journal
    >>> calls = []
    >>> @tool
    ... def refund(order: str) -> str:
    ...     '''Refund an order.'''
    ...     calls.append(order)
    ...     return f"refunded {order}"
    >>> safe = journaled(refund, open_journal("memory://"))
    >>> call = {"name": "refund", "args": {"order": "A1"}, "id": "call-1", "type": "tool_call"}
    >>> config = {"configurable": {"thread_id": "t1"}}
    >>> [safe.invoke(call, config).content for _ in range(2)], calls
    (['refunded A1', 'refunded A1'], ['A1'])
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import ConfigDict

from memfold import InvalidInput, Message
from memfold.checkpoint_model import Blob
from memfold.checkpoints import parent_namespace
from memfold.integrations.langchain.messages import to_langchain, to_memfold
from memfold.journal import JSON_TAG, EffectJournal, JournalEntry
from memfold.stores import check_id, encode_json

__all__ = ["JournaledTool", "journaled"]


def _key(
    tool_input: Any, config: RunnableConfig | None
) -> tuple[str, str, Any, str, tuple[str, ...]]:
    """``(thread_id, namespace, tool_call_id, origin, running)`` of a call (``running``: the
    checkpoints of its run, LangGraph's ``checkpoint_map``), or `InvalidInput` saying what is
    missing."""
    if not (isinstance(tool_input, dict) and tool_input.get("type") == "tool_call"):
        raise InvalidInput(
            "a journaled tool needs the call's id: invoke it with a ToolCall "
            "({'name', 'args', 'id', 'type': 'tool_call'}), as ToolNode and create_agent do"
        )
    configurable = (config or {}).get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if thread_id is None:
        raise InvalidInput(
            "a journaled tool keys its calls by thread: run the graph with a checkpointer and "
            "config={'configurable': {'thread_id': ...}}"
        )
    namespace = str(configurable.get("checkpoint_ns", ""))
    checkpoints = configurable.get("checkpoint_map") or {}
    origin = checkpoints.get(parent_namespace(namespace))
    running = tuple(str(c) for c in checkpoints.values() if c)
    return str(thread_id), namespace, tool_input.get("id"), str(origin or ""), running


def _encode(output: Any) -> Blob:
    """The output as typed bytes: memfold JSON if it can be, else LangGraph's serializer."""
    try:
        if isinstance(output, ToolMessage):
            text = encode_json({"message": to_memfold(output).to_dict()}, "the tool message")
        else:
            text = encode_json({"value": output}, "the tool output")
        return Blob(JSON_TAG, text.encode())
    except InvalidInput:
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        return Blob(*JsonPlusSerializer().dumps_typed(output))


def _decode(entry: JournalEntry) -> Any:
    if entry.value.tag != JSON_TAG:
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        return JsonPlusSerializer().loads_typed((entry.value.tag, entry.value.data))
    recorded = json.loads(entry.value.data)
    if "message" in recorded:
        return to_langchain(Message.from_dict(recorded["message"]))
    return recorded["value"]


class JournaledTool(BaseTool):
    """A LangChain tool that runs each tool call at most once per thread (see `journaled`).

    Its name, description, argument schema and output format are the wrapped tool's, so a
    model binds it and ``ToolNode`` injects state into it exactly as into the tool itself.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tool: BaseTool
    """The wrapped tool."""
    journal: EffectJournal
    """Where completed calls are recorded."""
    tenant: str | None = None
    """The tenant of the threads this tool runs in."""

    def __init__(self, **data: Any) -> None:
        if not isinstance(data.get("tool"), BaseTool):
            raise InvalidInput("a journaled tool wraps a LangChain BaseTool")
        if not isinstance(data.get("journal"), EffectJournal):
            raise InvalidInput("a journaled tool needs an EffectJournal (memfold.journal)")
        if data.get("tenant") is not None:
            check_id(data["tenant"], "tenant")
        super().__init__(**data)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Return the call's recorded output, or run the tool and record its output first."""
        thread_id, namespace, call_id, origin, running = _key(input, config)
        found = self.journal.recall(
            thread_id, call_id, namespace=namespace, origin=origin, running=running,
            tenant=self.tenant,
        )  # fmt: skip
        if found is not None:
            return _decode(found)
        output = self.tool.invoke(input, config, **kwargs)
        value = _encode(output)
        entry = self.journal.record(
            thread_id, call_id, value, namespace=namespace, origin=origin, tenant=self.tenant
        )
        return output if entry.value == value else _decode(entry)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async `invoke`."""
        thread_id, namespace, call_id, origin, running = _key(input, config)
        found = await self.journal.arecall(
            thread_id, call_id, namespace=namespace, origin=origin, running=running,
            tenant=self.tenant,
        )  # fmt: skip
        if found is not None:
            return _decode(found)
        output = await self.tool.ainvoke(input, config, **kwargs)
        value = _encode(output)
        entry = await self.journal.arecord(
            thread_id, call_id, value, namespace=namespace, origin=origin, tenant=self.tenant
        )
        return output if entry.value == value else _decode(entry)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: ``run`` carries no tool call id, so the call could not be journaled."""
        raise InvalidInput(
            f"tool {self.name!r} is journaled: call invoke/ainvoke with a ToolCall, not run"
        )


def journaled(
    tool: BaseTool, journal: EffectJournal, *, tenant: str | None = None
) -> JournaledTool:
    """Wrap ``tool`` so that each of its calls in a thread runs at most once: a call recorded in
    ``journal`` returns its recorded output (a resumed run does not repeat the side effect).

    Args:
        tool: the LangChain tool.
        journal: the journal, usually on the run's checkpoint store
            (``EffectJournal(saver.store)``).
        tenant: the tenant of the runs' threads (the saver's ``tenant``).
    """
    if not isinstance(tool, BaseTool):
        raise InvalidInput(f"journaled wraps a LangChain BaseTool, got {type(tool).__name__}")
    return JournaledTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
        response_format=tool.response_format,
        tool=tool,
        journal=journal,
        tenant=tenant,
    )
