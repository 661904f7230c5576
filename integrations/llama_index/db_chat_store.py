"""A LlamaIndex ``AsyncDBChatStore`` backed by memfold threads: the store behind ``Memory``.

A message's status lives in its memfold metadata: ``llama_index.status`` is ``"archived"`` for a
message ``Memory`` has flushed out of its short-term window, and absent while it is active. So
every status keeps one thread in order, and other hosts still read the whole conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from llama_index.core.llms import ChatMessage
from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus
from pydantic import PrivateAttr

from memfold import Message, ThreadStore, open_store
from memfold.integrations._convert import convert_all
from memfold.integrations.llama_index.chat_store import all_threads, message_id_at
from memfold.integrations.llama_index.messages import to_llama_index, to_memfold

__all__ = ["STATUS", "MemfoldDBChatStore"]

STATUS: Final = "llama_index.status"
ACTIVE, ARCHIVED = MessageStatus.ACTIVE, MessageStatus.ARCHIVED


def _status_of(message: Message) -> MessageStatus:
    """The LlamaIndex status recorded on a memfold message (active unless marked)."""
    return MessageStatus(message.metadata.get(STATUS, ACTIVE.value))


def _with_status(message: Message, status: MessageStatus) -> Message:
    """``message`` marked with ``status``."""
    metadata = {k: v for k, v in message.metadata.items() if k != STATUS}
    if status is not ACTIVE:
        metadata[STATUS] = status.value
    return replace(message, metadata=metadata)


def _chosen(stored: Sequence[Message], status: MessageStatus | None) -> list[Message]:
    return [m for m in stored if status is None or _status_of(m) == status]


class MemfoldDBChatStore(AsyncDBChatStore):
    """Pass it to ``Memory.from_defaults(chat_store=...)``; the session id is the thread id.

    Reads return fresh ``ChatMessage`` objects, ordered as the thread is. ``delete_message(key,
    idx)`` takes a position among all of the key's messages (any status). Archiving, deleting
    and ``set_messages`` each change the thread in one transaction.

    Args:
        store: a memfold store, or a URL for `memfold.open_store`.
        tenant: the tenant whose threads this chat store sees (None: the store's default
            tenant, which a store opened with ``require_tenant`` refuses).

    Examples:
        >>> from llama_index.core.memory import Memory
        >>> memory = Memory.from_defaults(session_id="s1", chat_store=MemfoldDBChatStore("memory://"))
        >>> memory.put(ChatMessage(role="user", content="hi"))
        >>> [m.content for m in memory.get_all()]
        ['hi']
    """

    tenant: str | None = None
    _store: ThreadStore = PrivateAttr()

    def __init__(self, store: ThreadStore | str, *, tenant: str | None = None) -> None:
        super().__init__(tenant=tenant)  # type: ignore[call-arg]  # mypy sees only base fields
        self._store = open_store(store) if isinstance(store, str) else store

    @classmethod
    def class_name(cls) -> str:
        """The LlamaIndex component name."""
        return "MemfoldDBChatStore"

    @property
    def store(self) -> ThreadStore:
        """The memfold store behind this chat store."""
        return self._store

    async def get_messages(
        self,
        key: str,
        status: MessageStatus | None = ACTIVE,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[ChatMessage]:
        """The messages of ``key`` with ``status`` (None: any), oldest first, paged."""
        start = offset or 0
        end = None if limit is None else start + limit
        chosen = _chosen(await self._store.aload(key, tenant=self.tenant), status)[start:end]
        return convert_all(chosen, to_llama_index)

    async def count_messages(self, key: str, status: MessageStatus | None = ACTIVE) -> int:
        """How many messages of ``key`` have ``status`` (None: any)."""
        if status is None:
            return await self._store.acount(key, tenant=self.tenant)
        return len(_chosen(await self._store.aload(key, tenant=self.tenant), status))

    async def add_message(
        self, key: str, message: ChatMessage, status: MessageStatus = ACTIVE
    ) -> None:
        """Append one message with ``status``."""
        await self.add_messages(key, [message], status)

    async def add_messages(
        self, key: str, messages: list[ChatMessage], status: MessageStatus = ACTIVE
    ) -> None:
        """Append messages with ``status`` in one store call."""
        if messages:
            converted = [_with_status(to_memfold(m), status) for m in messages]
            await self._store.aappend(key, converted, tenant=self.tenant)

    async def set_messages(
        self, key: str, messages: list[ChatMessage], status: MessageStatus = ACTIVE
    ) -> None:
        """Replace every message of ``key`` with ``messages``, all with ``status``."""
        converted = [_with_status(to_memfold(m), status) for m in messages]
        if converted:
            await self._store.areplace(key, converted, tenant=self.tenant)
        else:  # a key without messages is no key, as in SQLAlchemyChatStore
            await self._store.adelete_thread(key, tenant=self.tenant)

    async def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Delete and return the message at position ``idx`` (None if out of range)."""
        message_id = message_id_at(await self._store.aload(key, tenant=self.tenant), idx)
        if message_id is None:
            return None
        removed = await self._store.adelete_messages(key, [message_id], tenant=self.tenant)
        return to_llama_index(removed[0]) if removed else None

    async def delete_messages(self, key: str, status: MessageStatus | None = None) -> None:
        """Delete the messages of ``key`` with ``status`` (None: the whole key)."""
        if status is None:
            await self._store.adelete_thread(key, tenant=self.tenant)
            return
        stored = await self._store.aload(key, tenant=self.tenant)
        doomed = [m.id or "" for m in stored if _status_of(m) == status]
        await self._store.adelete_messages(key, doomed, tenant=self.tenant)

    async def delete_oldest_messages(self, key: str, n: int) -> list[ChatMessage]:
        """Delete and return the oldest ``n`` active messages."""
        return await self._take_oldest(key, n, archive=False)

    async def archive_oldest_messages(self, key: str, n: int) -> list[ChatMessage]:
        """Mark the oldest ``n`` active messages archived, and return them."""
        return await self._take_oldest(key, n, archive=True)

    async def get_keys(self) -> list[str]:
        """Every key (thread id) of the tenant that holds messages, most recently updated first."""
        threads = await all_threads(self._store, self.tenant)
        return [t.thread_id for t in threads if t.message_count]

    async def _take_oldest(self, key: str, n: int, *, archive: bool) -> list[ChatMessage]:
        stored = await self._store.aload(key, tenant=self.tenant)
        taken = _chosen(stored, ACTIVE)[: max(n, 0)]
        if not taken:
            return []
        if archive:
            marked = [_with_status(m, ARCHIVED) for m in taken]
            await self._store.aupdate_messages(key, marked, tenant=self.tenant)
        else:
            await self._store.adelete_messages(key, [m.id or "" for m in taken], tenant=self.tenant)
        return [to_llama_index(m) for m in taken]
