"""A LlamaIndex ``BaseChatStore`` backed by memfold threads (one thread per chat key).

``ChatMemoryBuffer``, ``ChatSummaryMemoryBuffer`` and chat engines use this interface; the newer
``Memory`` needs `memfold.integrations.llama_index.MemfoldDBChatStore` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.llms import ChatMessage
from llama_index.core.storage.chat_store import BaseChatStore
from pydantic import PrivateAttr

from memfold import DEFAULT_TENANT, Message, ThreadStore, open_store
from memfold.integrations.llama_index.messages import to_llama_index, to_memfold

__all__ = ["MemfoldChatStore", "all_keys", "split_at"]

_PAGE = 1000


def split_at(stored: Sequence[Message], idx: int) -> tuple[list[Message], Message] | None:
    """``stored`` without the message at list position ``idx``, and that message (or None)."""
    if not -len(stored) <= idx < len(stored):
        return None
    kept = list(stored)
    return kept, kept.pop(idx)


async def all_keys(store: ThreadStore, tenant: str) -> list[str]:
    """Every thread id of ``tenant``, read page by page with the async API."""
    keys: list[str] = []
    while page := await store.alist_threads(tenant=tenant, limit=_PAGE, offset=len(keys)):
        keys += [t.thread_id for t in page]
    return keys


class MemfoldChatStore(BaseChatStore):
    """Chat keys are memfold thread ids; every read returns fresh ``ChatMessage`` objects.

    ``delete_message(key, idx)`` takes a list position, as ``SimpleChatStore`` does. The core has
    no atomic replace or single-message delete yet, so ``set_messages`` and the single-message
    deletes clear the thread and append the kept messages (ids and times are kept): a reader in
    between sees an empty thread.

    Args:
        store: a memfold store, or a URL for `memfold.open_store`.
        tenant: the tenant whose threads this chat store sees.

    Examples:
        >>> from llama_index.core.llms import ChatMessage
        >>> chat_store = MemfoldChatStore("memory://")
        >>> chat_store.add_message("user-1", ChatMessage(role="user", content="hi"))
        >>> [str(m) for m in chat_store.get_messages("user-1")]
        ['user: hi']
    """

    tenant: str = DEFAULT_TENANT
    _store: ThreadStore = PrivateAttr()

    def __init__(self, store: ThreadStore | str, *, tenant: str = DEFAULT_TENANT) -> None:
        super().__init__(tenant=tenant)  # type: ignore[call-arg]  # mypy sees only base fields
        self._store = open_store(store) if isinstance(store, str) else store

    @classmethod
    def class_name(cls) -> str:
        """The LlamaIndex component name."""
        return "MemfoldChatStore"

    @property
    def store(self) -> ThreadStore:
        """The memfold store behind this chat store."""
        return self._store

    def set_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Replace the messages of ``key`` (not atomic, see the class notes)."""
        self._replace(key, [to_memfold(m) for m in messages])

    def get_messages(self, key: str) -> list[ChatMessage]:
        """The messages of ``key``, oldest first."""
        return [to_llama_index(m) for m in self._store.load(key, tenant=self.tenant)]

    def add_message(self, key: str, message: ChatMessage) -> None:
        """Append one message to ``key``."""
        self._store.append(key, to_memfold(message), tenant=self.tenant)

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        """Delete ``key`` and return its messages (None if there was no such key)."""
        messages = self.get_messages(key)
        return messages if self._store.delete_thread(key, tenant=self.tenant) else None

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Delete and return the message at list position ``idx`` (None if out of range)."""
        found = split_at(self._store.load(key, tenant=self.tenant), idx)
        if found is None:
            return None
        self._replace(key, found[0])
        return to_llama_index(found[1])

    def delete_last_message(self, key: str) -> ChatMessage | None:
        """Delete and return the newest message of ``key`` (None if it has none)."""
        return self.delete_message(key, -1)

    def get_keys(self) -> list[str]:
        """Every chat key (thread id) of the tenant, most recently updated first."""
        keys: list[str] = []
        while page := self._store.list_threads(tenant=self.tenant, limit=_PAGE, offset=len(keys)):
            keys += [t.thread_id for t in page]
        return keys

    def _replace(self, key: str, messages: list[Message]) -> None:
        self._store.clear(key, tenant=self.tenant)
        if messages:
            self._store.append(key, messages, tenant=self.tenant)

    async def aset_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Async `set_messages`."""
        await self._areplace(key, [to_memfold(m) for m in messages])

    async def aget_messages(self, key: str) -> list[ChatMessage]:
        """Async `get_messages`."""
        return [to_llama_index(m) for m in await self._store.aload(key, tenant=self.tenant)]

    async def async_add_message(self, key: str, message: ChatMessage) -> None:
        """Async `add_message` (LlamaIndex's name for it)."""
        await self._store.aappend(key, to_memfold(message), tenant=self.tenant)

    async def adelete_messages(self, key: str) -> list[ChatMessage] | None:
        """Async `delete_messages`."""
        messages = await self.aget_messages(key)
        return messages if await self._store.adelete_thread(key, tenant=self.tenant) else None

    async def adelete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Async `delete_message`."""
        found = split_at(await self._store.aload(key, tenant=self.tenant), idx)
        if found is None:
            return None
        await self._areplace(key, found[0])
        return to_llama_index(found[1])

    async def adelete_last_message(self, key: str) -> ChatMessage | None:
        """Async `delete_last_message`."""
        return await self.adelete_message(key, -1)

    async def aget_keys(self) -> list[str]:
        """Async `get_keys`."""
        return await all_keys(self._store, self.tenant)

    async def _areplace(self, key: str, messages: list[Message]) -> None:
        await self._store.aclear(key, tenant=self.tenant)
        if messages:
            await self._store.aappend(key, messages, tenant=self.tenant)
