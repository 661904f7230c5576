"""A LlamaIndex chat memory that sends the LLM a memfold compaction view of a stored thread.

`MemfoldCompactionMemory` keeps the whole conversation in a `MemfoldChatStore` (one memfold
thread per ``chat_store_key``); ``get`` returns the view a `memfold.compaction.Compactor` builds
under a `memfold.compaction.RunningSummary`. The summary is saved with the thread, so a new
memory, chat engine or process on the same store continues it. Unlike
``ChatSummaryMemoryBuffer``, nothing is deleted, the system message stays first, each message is
summarized once, and tool calls stay with their results.

Examples:
    >>> from llama_index.core.llms import ChatMessage
    >>> from memfold.compaction import ApproximateCounter, RunningSummary
    >>> from memfold.integrations.llama_index import MemfoldChatStore
    >>> memory = MemfoldCompactionMemory(
    ...     MemfoldChatStore("memory://"), RunningSummary(200, counter=ApproximateCounter())
    ... )
    >>> memory.put_messages([
    ...     ChatMessage(role=r, content=f"Turn {i}: Bo is {i}.") for i in range(30)
    ...     for r in ("user", "assistant")
    ... ])
    >>> view = memory.get()
    >>> view[0].content.startswith("Summary of the conversation so far:"), len(memory.get_all())
    (True, 60)
"""

from __future__ import annotations

from typing import Any

from llama_index.core.llms import LLM, ChatMessage
from llama_index.core.memory.types import DEFAULT_CHAT_STORE_KEY, BaseChatStoreMemory
from pydantic import PrivateAttr, SerializeAsAny

from memfold.compaction import Compactor, RunningSummary, Summarizer
from memfold.integrations._convert import convert_all
from memfold.integrations.llama_index.chat_store import MemfoldChatStore, converted_messages
from memfold.integrations.llama_index.messages import to_llama_index
from memfold.integrations.llama_index.summarizer import LLMSummarizer
from memfold.stores import check_id

__all__ = ["MemfoldCompactionMemory"]


class MemfoldCompactionMemory(BaseChatStoreMemory):
    """A ``BaseMemory`` for chat engines and agents: ``get`` is the compacted view, ``get_all``
    the whole thread; ``put``/``set``/``reset`` write the thread.

    Args:
        chat_store: where the threads live (a `MemfoldChatStore`).
        strategy: budgets and token counter (`memfold.compaction.RunningSummary`).
        summarizer: writes summaries (default: the offline extractive one; see
            `memfold.integrations.llama_index.LLMSummarizer`).
        chat_store_key: the thread id of this conversation.

    The budget covers what ``get`` returns: a chat engine's own ``system_prompt`` is added
    outside it, so keep the system message in the thread, or leave room for it.
    """

    chat_store: SerializeAsAny[MemfoldChatStore]
    _compactor: Compactor = PrivateAttr()

    def __init__(
        self,
        chat_store: MemfoldChatStore,
        strategy: RunningSummary,
        summarizer: Summarizer | None = None,
        *,
        chat_store_key: str = DEFAULT_CHAT_STORE_KEY,
    ) -> None:
        check_id(chat_store_key, "chat_store_key")
        super().__init__(chat_store=chat_store, chat_store_key=chat_store_key)
        self._compactor = Compactor(chat_store.store, strategy, summarizer)

    @classmethod
    def class_name(cls) -> str:
        """The LlamaIndex component name."""
        return "MemfoldCompactionMemory"

    @classmethod
    def from_defaults(
        cls,
        chat_history: list[ChatMessage] | None = None,
        llm: LLM | None = None,
        **kwargs: Any,
    ) -> MemfoldCompactionMemory:
        """A memory from ``chat_store``, ``strategy`` (and optionally ``summarizer`` and
        ``chat_store_key``) keywords, holding ``chat_history`` if given; with ``llm`` and no
        summarizer, the LLM writes the summaries."""
        if llm is not None and kwargs.get("summarizer") is None:
            kwargs["summarizer"] = LLMSummarizer(llm)
        memory = cls(**kwargs)
        if chat_history is not None:
            memory.set(chat_history)
        return memory

    @property
    def compactor(self) -> Compactor:
        """The `memfold.compaction.Compactor` behind ``get`` (``expand``, ``record``)."""
        return self._compactor

    def get(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """The view to send the LLM, folding (and saving the summary) when it is due."""
        store = self.chat_store
        view = self._compactor.view(self.chat_store_key, tenant=store.tenant)
        return convert_all(view, to_llama_index)

    async def aget(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """Async `get`."""
        store = self.chat_store
        view = await self._compactor.aview(self.chat_store_key, tenant=store.tenant)
        return convert_all(view, to_llama_index)

    def put_messages(self, messages: list[ChatMessage]) -> None:
        """Append ``messages`` in one write."""
        converted = converted_messages(messages)
        self.chat_store.store.append(self.chat_store_key, converted, tenant=self.chat_store.tenant)

    async def aput_messages(self, messages: list[ChatMessage]) -> None:
        """Async `put_messages`."""
        converted = converted_messages(messages)
        store = self.chat_store
        await store.store.aappend(self.chat_store_key, converted, tenant=store.tenant)
