"""Memory tools for LangChain agents: remember, recall, update and forget.

The namespace a tool reads and writes is fixed when the tool is built; a label written as
``"{user_id}"`` is filled from the run's ``config["configurable"]["user_id"]``. The model's
arguments never name a namespace (the tools' schemas have no such field, and extra arguments
are dropped), so a prompt cannot steer one user's agent into another user's memories.

Arguments the store refuses (an empty or over-long id, text with NUL characters or over the
size limit) are the model's mistake: the tool answers with the error (LangChain's
``ToolException``, handled), so an agent's run goes on and the model can try again. A run whose
config lacks a namespace label is the caller's mistake, and raises `memfold.errors.InvalidInput`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field

from memfold.errors import InvalidInput
from memfold.memories import (
    MemoryHit,
    MemoryRecord,
    MemoryStore,
    Namespace,
    areplace_text,
    check_namespace,
    replace_text,
)

__all__ = ["ForgetTool", "RecallTool", "RememberTool", "UpdateTool", "memory_tools"]


class _RememberInput(BaseModel):
    content: str = Field(description="The fact or preference to remember, as one sentence.")


class _RecallInput(BaseModel):
    query: str = Field(description="What to look for, in words.")
    limit: int = Field(default=5, ge=1, le=50, description="How many memories to return.")


class _UpdateInput(BaseModel):
    id: str = Field(description="The id of the memory to change (from recall).")
    content: str = Field(description="The memory's new text.")


class _ForgetInput(BaseModel):
    id: str = Field(description="The id of the memory to delete (from recall).")


def _listing(hits: list[MemoryHit]) -> str:
    if not hits:
        return "No matching memories."
    return "\n".join(f"- {h.record.text} (id: {h.record.id})" for h in hits)


def _updated(record_id: str, record: MemoryRecord | None) -> str:
    if record is None:
        return f"No memory has id {record_id}: recall first to find its id."
    return f"Updated memory {record_id}."


@contextmanager
def _answered() -> Iterator[None]:
    """The store's refusal of the model's arguments, as the tool's answer to the model."""
    try:
        yield
    except InvalidInput as exc:
        raise ToolException(str(exc)) from exc


class _MemoryTool(BaseTool):
    """A tool bound to one memory store and one namespace template."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: MemoryStore = Field(exclude=True)
    """The memfold memory store the tool uses."""
    namespace: tuple[str, ...]
    """``(tenant, ...)``; a ``"{key}"`` label is filled from ``config["configurable"][key]``."""
    handle_tool_error: bool = True
    """Refused arguments go back to the model as the tool's answer (see the module)."""

    def __init__(self, **data: Any) -> None:
        if not isinstance(data.get("store"), MemoryStore):
            raise InvalidInput("a memory tool needs a memfold memory store")
        data["namespace"] = check_namespace(data.get("namespace"), "a memory tool's namespace")
        super().__init__(**data)

    def _ns(self, config: RunnableConfig) -> Namespace:
        configurable = config.get("configurable") or {}
        labels = []
        for label in self.namespace:
            if label.startswith("{") and label.endswith("}"):
                value = configurable.get(label[1:-1])
                if not isinstance(value, str) or not value:
                    raise InvalidInput(
                        f"the {self.name} tool's namespace needs "
                        f"config['configurable'][{label[1:-1]!r}] (a non-empty str)"
                    )
                label = value
            labels.append(label)
        return tuple(labels)


class RememberTool(_MemoryTool):
    """Store a new memory (merged into a near-duplicate if the store dedupes)."""

    name: str = "remember"
    description: str = "Save a lasting fact or preference about the user for future conversations."
    args_schema: type[BaseModel] = _RememberInput

    def _run(self, content: str, config: RunnableConfig) -> str:
        ns = self._ns(config)
        with _answered():
            return f"Remembered (id: {self.store.put(ns, content).id})."

    async def _arun(self, content: str, config: RunnableConfig) -> str:
        ns = self._ns(config)
        with _answered():
            return f"Remembered (id: {(await self.store.aput(ns, content)).id})."


class RecallTool(_MemoryTool):
    """Search the memories by words and meaning."""

    name: str = "recall"
    description: str = "Search what you remember about the user; returns memories with ids."
    args_schema: type[BaseModel] = _RecallInput

    def _run(self, query: str, config: RunnableConfig, limit: int = 5) -> str:
        ns = self._ns(config)
        with _answered():
            return _listing(self.store.search(ns, query, k=limit, touch=True))

    async def _arun(self, query: str, config: RunnableConfig, limit: int = 5) -> str:
        ns = self._ns(config)
        with _answered():
            return _listing(await self.store.asearch(ns, query, k=limit, touch=True))


class UpdateTool(_MemoryTool):
    """Replace a memory's text, keeping its id, value, importance and time to live."""

    name: str = "update_memory"
    description: str = "Correct a memory you recalled earlier, by its id."
    args_schema: type[BaseModel] = _UpdateInput

    def _run(self, id: str, content: str, config: RunnableConfig) -> str:
        ns = self._ns(config)
        with _answered():
            updated = replace_text(self.store, ns, id, content)
        return _updated(id, updated)

    async def _arun(self, id: str, content: str, config: RunnableConfig) -> str:
        ns = self._ns(config)
        with _answered():
            updated = await areplace_text(self.store, ns, id, content)
        return _updated(id, updated)


class ForgetTool(_MemoryTool):
    """Delete a memory by id."""

    name: str = "forget"
    description: str = "Delete a memory that is wrong or that the user asked you to forget."
    args_schema: type[BaseModel] = _ForgetInput

    def _run(self, id: str, config: RunnableConfig) -> str:
        ns = self._ns(config)
        with _answered():
            deleted = self.store.delete(ns, id)
        return f"Forgot memory {id}." if deleted else f"No memory has id {id}."

    async def _arun(self, id: str, config: RunnableConfig) -> str:
        ns = self._ns(config)
        with _answered():
            deleted = await self.store.adelete(ns, id)
        return f"Forgot memory {id}." if deleted else f"No memory has id {id}."


def memory_tools(store: MemoryStore, namespace: Namespace) -> list[BaseTool]:
    """The four memory tools on one store and namespace template.

    Examples:
        >>> from memfold.memories import open_memory_store
        >>> tools = memory_tools(open_memory_store(), ("acme", "{user_id}", "memories"))
        >>> config = {"configurable": {"user_id": "u1"}}
        >>> tools[0].invoke({"content": "Likes green tea"}, config).startswith("Remembered")
        True
        >>> tools[1].invoke({"query": "green tea"}, config).startswith("- Likes green tea")
        True
    """
    return [
        cls(store=store, namespace=namespace)
        for cls in (RememberTool, RecallTool, UpdateTool, ForgetTool)
    ]
