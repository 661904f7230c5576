"""Memory tools for LlamaIndex agents: remember, recall, update and forget, as a tool spec.

The namespace is fixed when the spec is built (one spec per user), and no tool takes a
namespace argument, so a prompt cannot steer one user's agent into another user's memories.
"""

from __future__ import annotations

from llama_index.core.tools.tool_spec.base import SPEC_FUNCTION_TYPE, BaseToolSpec

from memfold.memories import (
    MemoryHit,
    MemoryRecord,
    MemoryStore,
    Namespace,
    areplace_text,
    check_namespace,
    replace_text,
)

__all__ = ["MemfoldToolSpec"]


def _listing(hits: list[MemoryHit]) -> str:
    if not hits:
        return "No matching memories."
    return "\n".join(f"- {h.record.text} (id: {h.record.id})" for h in hits)


def _updated(record_id: str, record: MemoryRecord | None) -> str:
    if record is None:
        return f"No memory has id {record_id}: recall first to find its id."
    return f"Updated memory {record_id}."


class MemfoldToolSpec(BaseToolSpec):
    """Remember, recall, update and forget memories in one namespace of a memfold store.

    Examples:
        >>> from memfold.memories import open_memory_store
        >>> spec = MemfoldToolSpec(open_memory_store(), ("acme", "u1", "memories"))
        >>> [t.metadata.name for t in spec.to_tool_list()]
        ['remember', 'recall', 'update_memory', 'forget']
        >>> spec.remember("Likes green tea").startswith("Remembered")
        True
    """

    spec_functions: list[SPEC_FUNCTION_TYPE] = [  # noqa: RUF012  # the host's convention
        ("remember", "aremember"),
        ("recall", "arecall"),
        ("update_memory", "aupdate_memory"),
        ("forget", "aforget"),
    ]

    def __init__(self, store: MemoryStore, namespace: Namespace) -> None:
        self.store = store
        self.namespace = check_namespace(namespace)

    def remember(self, content: str) -> str:
        """Save a lasting fact or preference about the user, as one sentence."""
        return f"Remembered (id: {self.store.put(self.namespace, content).id})."

    async def aremember(self, content: str) -> str:
        """Save a lasting fact or preference about the user, as one sentence."""
        return f"Remembered (id: {(await self.store.aput(self.namespace, content)).id})."

    def recall(self, query: str, limit: int = 5) -> str:
        """Search what you remember about the user; returns up to limit memories with ids."""
        return _listing(self.store.search(self.namespace, query, k=limit, touch=True))

    async def arecall(self, query: str, limit: int = 5) -> str:
        """Search what you remember about the user; returns up to limit memories with ids."""
        return _listing(await self.store.asearch(self.namespace, query, k=limit, touch=True))

    def update_memory(self, id: str, content: str) -> str:
        """Replace the text of the memory with this id (from recall)."""
        return _updated(id, replace_text(self.store, self.namespace, id, content))

    async def aupdate_memory(self, id: str, content: str) -> str:
        """Replace the text of the memory with this id (from recall)."""
        return _updated(id, await areplace_text(self.store, self.namespace, id, content))

    def forget(self, id: str) -> str:
        """Delete the memory with this id (from recall)."""
        deleted = self.store.delete(self.namespace, id)
        return f"Forgot memory {id}." if deleted else f"No memory has id {id}."

    async def aforget(self, id: str) -> str:
        """Delete the memory with this id (from recall)."""
        deleted = await self.store.adelete(self.namespace, id)
        return f"Forgot memory {id}." if deleted else f"No memory has id {id}."
