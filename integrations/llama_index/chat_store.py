"""A LlamaIndex ``BaseChatStore`` backed by memfold threads (one thread per chat key).

``ChatMemoryBuffer``, ``ChatSummaryMemoryBuffer`` and chat engines use this interface; the newer
``Memory`` needs `memfold.integrations.llama_index.MemfoldDBChatStore` instead.
``ChatSummaryMemoryBuffer`` rewrites the whole thread on every ``get()``, so what LlamaIndex
cannot represent (other hosts' blocks, message ids, thread metadata) is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.llms import ChatMessage
from llama_index.core.storage.chat_store import BaseChatStore
from pydantic import PrivateAttr

from memfold import InvalidInput, Message, ThreadInfo, ThreadStore, open_store
from memfold.integrations._convert import convert_all
from memfold.integrations.llama_index.messages import to_llama_index, to_memfold
from memfold.stores import check_id

__all__ = [
    "MemfoldChatStore",
    "all_threads",
    "amessage_at",
    "check_position",
    "converted_messages",
    "message_at",
]

_PAGE = 1000


def message_at(store: ThreadStore, key: str, idx: int, tenant: str | None) -> Message | None:
    """The message at list position ``idx`` of thread ``key`` (None if out of range), read
    from the end of the thread: only the messages from it on are loaded."""
    total = None if check_position(idx) < 0 else store.count(key, tenant=tenant)
    span = _span(idx, total)
    return _at(store.load(key, last=span, tenant=tenant) if span else [], idx, total)


async def amessage_at(store: ThreadStore, key: str, idx: int, tenant: str | None) -> Message | None:
    """Async `message_at`."""
    total = None if check_position(idx) < 0 else await store.acount(key, tenant=tenant)
    span = _span(idx, total)
    return _at(await store.aload(key, last=span, tenant=tenant) if span else [], idx, total)


def converted_messages(messages: object) -> list[Message]:
    """LlamaIndex messages (a list) as memfold's, or `InvalidInput`."""
    if isinstance(messages, str) or not isinstance(messages, Sequence):
        raise InvalidInput(f"messages must be a list of ChatMessage, got {type(messages).__name__}")
    return [to_memfold(m) for m in messages]


def check_position(idx: object, what: str = "a message position") -> int:
    """``idx`` if it is an int (not a bool), else `InvalidInput` naming ``what`` it is."""
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise InvalidInput(f"{what} must be an int, got {idx!r:.100}")
    return idx


def _span(idx: int, total: int | None) -> int:
    """How many messages from the end of the thread reach position ``idx`` (0: none do)."""
    return -idx if total is None else max(total - idx, 0)


def _at(tail: list[Message], idx: int, total: int | None) -> Message | None:
    return tail[0] if tail and len(tail) == _span(idx, total) else None


async def all_threads(store: ThreadStore, tenant: str | None) -> list[ThreadInfo]:
    """Every thread of ``tenant``, read page by page with the async API."""
    threads: list[ThreadInfo] = []
    while page := await store.alist_threads(tenant=tenant, limit=_PAGE, offset=len(threads)):
        threads += page
    return threads


class MemfoldChatStore(BaseChatStore):
    """Chat keys are memfold thread ids; every read returns fresh ``ChatMessage`` objects.

    ``delete_message(key, idx)`` takes a list position, as ``SimpleChatStore`` does.
    ``set_messages`` replaces a thread in one transaction.

    Args:
        store: a memfold store, or a URL for `memfold.open_store`.
        tenant: the tenant whose threads this chat store sees (None: the store's default
            tenant, which a store opened with ``require_tenant`` refuses).

    Examples:
        >>> from llama_index.core.llms import ChatMessage
        >>> chat_store = MemfoldChatStore("memory://")
        >>> chat_store.add_message("user-1", ChatMessage(role="user", content="hi"))
        >>> [str(m) for m in chat_store.get_messages("user-1")]
        ['user: hi']
    """

    tenant: str | None = None
    _store: ThreadStore = PrivateAttr()

    def __init__(self, store: ThreadStore | str, *, tenant: str | None = None) -> None:
        if tenant is not None:
            check_id(tenant, "tenant")
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
        """Replace the messages of ``key`` in one transaction."""
        self._store.replace(key, converted_messages(messages), tenant=self.tenant)

    def get_messages(self, key: str) -> list[ChatMessage]:
        """The messages of ``key``, oldest first."""
        return convert_all(self._store.load(key, tenant=self.tenant), to_llama_index)

    def add_message(self, key: str, message: ChatMessage) -> None:
        """Append one message to ``key``."""
        self._store.append(key, to_memfold(message), tenant=self.tenant)

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        """Delete ``key`` and return its messages (None if there was no such key)."""
        messages = self.get_messages(key)
        return messages if self._store.delete_thread(key, tenant=self.tenant) else None

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Delete and return the message at list position ``idx`` (None if out of range)."""
        found = message_at(self._store, key, idx, self.tenant)
        if found is None:
            return None
        removed = self._store.delete_messages(key, [found.id or ""], tenant=self.tenant)
        return to_llama_index(removed[0]) if removed else None

    def delete_last_message(self, key: str) -> ChatMessage | None:
        """Delete and return the newest message of ``key`` (None if it has none)."""
        return self.delete_message(key, -1)

    def get_keys(self) -> list[str]:
        """Every chat key (thread id) of the tenant, most recently updated first."""
        keys: list[str] = []
        while page := self._store.list_threads(tenant=self.tenant, limit=_PAGE, offset=len(keys)):
            keys += [t.thread_id for t in page]
        return keys

    async def aset_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Async `set_messages`."""
        await self._store.areplace(key, converted_messages(messages), tenant=self.tenant)

    async def aget_messages(self, key: str) -> list[ChatMessage]:
        """Async `get_messages`."""
        return convert_all(await self._store.aload(key, tenant=self.tenant), to_llama_index)

    async def async_add_message(self, key: str, message: ChatMessage) -> None:
        """Async `add_message` (LlamaIndex's name for it)."""
        await self._store.aappend(key, to_memfold(message), tenant=self.tenant)

    async def adelete_messages(self, key: str) -> list[ChatMessage] | None:
        """Async `delete_messages`."""
        messages = await self.aget_messages(key)
        return messages if await self._store.adelete_thread(key, tenant=self.tenant) else None

    async def adelete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Async `delete_message`."""
        found = await amessage_at(self._store, key, idx, self.tenant)
        if found is None:
            return None
        removed = await self._store.adelete_messages(key, [found.id or ""], tenant=self.tenant)
        return to_llama_index(removed[0]) if removed else None

    async def adelete_last_message(self, key: str) -> ChatMessage | None:
        """Async `delete_last_message`."""
        return await self.adelete_message(key, -1)

    async def aget_keys(self) -> list[str]:
        """Async `get_keys`."""
        return [t.thread_id for t in await all_threads(self._store, self.tenant)]
