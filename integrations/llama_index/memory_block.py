"""A LlamaIndex memory block for ``Memory``: long-term memories in a memfold store.

Messages ``Memory`` flushes from its short-term queue become memory records (one per user or
assistant message with text, near-duplicates merged when the store dedupes); on every read the
block searches the namespace with the latest user message and hands ``Memory`` the best
memories as text. Unlike ``FactExtractionMemoryBlock``, nothing lives only in the block: any
session, process or framework using the same namespace sees the same memories. A message the
store could not hold as it is (a NUL character, text over the store's limit) is stored and
searched as `memfold.memories.storable_text` makes it, since ``Memory`` has already taken the
flushed messages out of the chat by the time the block gets them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.memory import BaseMemoryBlock
from pydantic import Field, PrivateAttr

from memfold.errors import InvalidInput
from memfold.memories import (
    MemoryRecord,
    MemoryStore,
    check_namespace,
    open_memory_store,
    storable_text,
)

__all__ = ["MemfoldMemoryBlock"]

_KEPT = (MessageRole.USER, MessageRole.ASSISTANT)


def _checked(messages: object) -> Sequence[ChatMessage]:
    """``messages`` (None: none) if it is a list of ``ChatMessage``, else `InvalidInput`."""
    if messages is None:
        return []
    if isinstance(messages, str) or not isinstance(messages, Sequence):
        raise InvalidInput(f"messages must be a list of ChatMessage, got {type(messages).__name__}")
    for m in messages:
        if not isinstance(m, ChatMessage):
            raise InvalidInput(f"messages must be ChatMessage objects, got {type(m).__name__}")
    return messages


class MemfoldMemoryBlock(BaseMemoryBlock[str]):
    """Long-term memories for ``Memory(memory_blocks=[...])``, searched by the latest user
    message.

    Args:
        store: a memfold memory store, or its URL.
        namespace: where the memories live, ``(tenant, user_id, ...)``.
        similarity_top_k: how many memories each read returns.
        data: the other ``BaseMemoryBlock`` fields (``name``, ``priority``, ...).

    Examples:
        >>> from llama_index.core.llms import ChatMessage
        >>> from memfold.recall.embedders import HashingEmbedder
        >>> block = MemfoldMemoryBlock(open_memory_store(embedder=HashingEmbedder()),
        ...                            namespace=("acme", "u1"))
        >>> block.put([ChatMessage(role="user", content="I drink green tea every morning")])
        >>> print(block.get([ChatMessage(role="user", content="what tea do I like?")]))
        - user: I drink green tea every morning
    """

    name: str = "LongTermMemory"
    namespace: tuple[str, ...] = Field(description="Where the memories live: (tenant, ...).")
    similarity_top_k: int = Field(default=5, ge=1, le=100)
    _store: MemoryStore = PrivateAttr()

    def __init__(
        self,
        store: MemoryStore | str,
        *,
        namespace: tuple[str, ...],
        similarity_top_k: int = 5,
        **data: Any,
    ) -> None:
        if isinstance(similarity_top_k, bool) or not isinstance(similarity_top_k, int):
            raise InvalidInput(f"similarity_top_k must be an int, got {similarity_top_k!r:.100}")
        if not 1 <= similarity_top_k <= 100:
            raise InvalidInput(f"similarity_top_k must be from 1 to 100, got {similarity_top_k}")
        namespace = check_namespace(namespace)
        super().__init__(namespace=namespace, similarity_top_k=similarity_top_k, **data)  # type: ignore[call-arg]
        self._store = open_memory_store(store) if isinstance(store, str) else store

    def put(self, messages: list[ChatMessage]) -> None:
        """Sync `aput` (``Memory`` itself only calls the async API)."""
        records = self._records(messages)
        if records:
            self._store.put_many(records)

    def get(self, messages: list[ChatMessage] | None = None) -> str:
        """Sync `aget`."""
        query = self._query(messages)
        return (
            ""
            if query is None
            else self._format(self._store.search(self.namespace, query, k=self.similarity_top_k))
        )

    def _records(self, messages: list[ChatMessage]) -> list[MemoryRecord]:
        return [
            MemoryRecord(
                self.namespace,
                text=storable_text(f"{m.role.value}: {m.content}", self._store.limits),
                value={
                    "role": m.role.value,
                    **(
                        {"session_id": sid}
                        if (sid := m.additional_kwargs.get("session_id"))
                        else {}
                    ),
                },
            )
            for m in _checked(messages)
            if m.role in _KEPT and m.content
        ]

    def _query(self, messages: list[ChatMessage] | None) -> str | None:
        users = [m.content for m in _checked(messages) if m.role == MessageRole.USER and m.content]
        return storable_text(users[-1], self._store.limits) if users else None

    @staticmethod
    def _format(hits: list[Any]) -> str:
        return "\n".join(f"- {h.record.text}" for h in hits)

    async def _aput(self, messages: list[ChatMessage]) -> None:
        records = self._records(messages)
        if records:
            await self._store.aput_many(records)

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        query = self._query(messages)
        if query is None:
            return ""
        hits = await self._store.asearch(self.namespace, query, k=self.similarity_top_k)
        return self._format(hits)
