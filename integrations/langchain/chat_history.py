"""A LangChain chat message history backed by a memfold thread.

LangChain deprecated ``BaseChatMessageHistory`` in 1.6.4 (removal in 2.0); it stays useful for
``RunnableWithMessageHistory`` code and for agents that load and save their history by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from memfold import ThreadStore, open_store
from memfold.integrations._convert import convert_all
from memfold.integrations.langchain.messages import to_langchain, to_memfold

__all__ = ["MemfoldChatMessageHistory"]


class MemfoldChatMessageHistory(BaseChatMessageHistory):
    """The messages of one memfold thread, as LangChain messages.

    Every read returns fresh message objects; each ``add_messages`` call is one store append,
    and the ``a*`` methods await the store's async API.

    Args:
        store: a memfold store, or a URL for `memfold.open_store`. Pass a store object
            to share it: two histories opened on ``"memory://"`` get two separate stores.
        thread_id: the thread holding this conversation.
        tenant: the tenant the thread belongs to (None: the store's default tenant, which a
            store opened with ``require_tenant`` refuses).

    Examples:
        >>> from langchain_core.messages import AIMessage, HumanMessage
        >>> history = MemfoldChatMessageHistory("memory://", "thread-1")
        >>> history.add_messages([HumanMessage("hi"), AIMessage("hello!")])
        >>> [m.type for m in history.messages]
        ['human', 'ai']
    """

    def __init__(
        self, store: ThreadStore | str, thread_id: str, *, tenant: str | None = None
    ) -> None:
        super().__init__()
        self.store: ThreadStore = open_store(store) if isinstance(store, str) else store
        self.thread_id = thread_id
        self.tenant = tenant

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]  # base: plain attribute
        """The thread's messages, oldest first (a new list on every read)."""
        return convert_all(self.store.load(self.thread_id, tenant=self.tenant), to_langchain)

    async def aget_messages(self) -> list[BaseMessage]:
        """Async `messages`."""
        loaded = await self.store.aload(self.thread_id, tenant=self.tenant)
        return convert_all(loaded, to_langchain)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append ``messages`` to the thread in one store call."""
        if messages:
            self.store.append(self.thread_id, [to_memfold(m) for m in messages], tenant=self.tenant)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Async `add_messages`."""
        if messages:
            converted = [to_memfold(m) for m in messages]
            await self.store.aappend(self.thread_id, converted, tenant=self.tenant)

    def clear(self) -> None:
        """Remove the thread's messages."""
        self.store.clear(self.thread_id, tenant=self.tenant)

    async def aclear(self) -> None:
        """Async `clear`."""
        await self.store.aclear(self.thread_id, tenant=self.tenant)
