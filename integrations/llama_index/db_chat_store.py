"""A LlamaIndex ``AsyncDBChatStore`` backed by memfold threads: the store behind ``Memory``.

A message's status lives in its memfold metadata: ``llama_index.status`` is ``"archived"`` for a
message ``Memory`` has flushed out of its short-term window, and absent while it is active. So
every status keeps one thread in order, and other hosts still read the whole conversation.

Reads of the active messages cost what those messages cost, not the whole thread:

- a thread whose metadata has no `ARCHIVES` mark has never had a message archived, so all of
  it is active: counts are the thread's count, pages are read from its end;
- archiving marks the oldest active messages `SETTLED` as well: every message before a settled
  one is archived, so a reader of the active messages reads back from the end of the thread
  and stops at the first settled message. Messages added already archived (``add_messages``
  with ``status=ARCHIVED``) are not settled: a reader steps over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from llama_index.core.llms import ChatMessage
from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus
from pydantic import PrivateAttr

from memfold import InvalidInput, Message, NotFound, ThreadInfo, ThreadStore, open_store
from memfold.integrations._convert import convert_all
from memfold.integrations.llama_index.chat_store import (
    all_threads,
    amessage_at,
    check_position,
    converted_messages,
)
from memfold.integrations.llama_index.messages import to_llama_index
from memfold.stores import check_id

__all__ = ["ARCHIVES", "SETTLED", "STATUS", "MemfoldDBChatStore"]

STATUS: Final = "llama_index.status"
SETTLED: Final = "llama_index.settled"
"""On an archived message: every message before it is archived too."""
ARCHIVES: Final = "llama_index.archives"
"""In thread metadata: the thread may hold archived messages (set before the first is written)."""
ACTIVE, ARCHIVED = MessageStatus.ACTIVE, MessageStatus.ARCHIVED
_FIRST_PAGE, _LAST_PAGE = 50, 1000
"""Messages read at a time from the end of a thread: the first page, doubled up to the last."""


def _status_of(message: Message) -> MessageStatus:
    """The LlamaIndex status recorded on a memfold message (active unless marked)."""
    return MessageStatus(message.metadata.get(STATUS, ACTIVE.value))


def _with_status(message: Message, status: MessageStatus, settled: bool = False) -> Message:
    """``message`` marked with ``status`` (and `SETTLED`, if ``settled``)."""
    metadata = {k: v for k, v in message.metadata.items() if k not in (STATUS, SETTLED)}
    if status is not ACTIVE:
        metadata[STATUS] = status.value
        if settled:
            metadata[SETTLED] = True
    return replace(message, metadata=metadata)


def _check_status(status: object) -> MessageStatus:
    """``status`` as a `MessageStatus` (its value, a str, is taken too), else `InvalidInput`."""
    if isinstance(status, str) and status in {s.value for s in MessageStatus}:
        return MessageStatus(status)
    raise InvalidInput(f"a message status must be a LlamaIndex MessageStatus, got {status!r:.100}")


def _check_any_status(status: object) -> MessageStatus | None:
    """`_check_status`, where None (any status) is taken too."""
    return None if status is None else _check_status(status)


def _check_page(value: object, what: str) -> int | None:
    """A page's ``limit`` or ``offset``: None or an int >= 0, else `InvalidInput`."""
    if value is None:
        return None
    checked = check_position(value, what)
    if checked < 0:
        raise InvalidInput(f"{what} must be >= 0, got {checked}")
    return checked


def _chosen(stored: Sequence[Message], status: MessageStatus | None) -> list[Message]:
    return [m for m in stored if status is None or _status_of(m) == status]


def _page(messages: list[Message], offset: int | None, limit: int | None) -> list[Message]:
    start = offset or 0
    return messages[start : None if limit is None else start + limit]


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
        if tenant is not None:
            check_id(tenant, "tenant")
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
        status = _check_any_status(status)
        limit, offset = _check_page(limit, "limit"), _check_page(offset, "offset")
        info = await self._thread(key)
        if info is None:
            return []
        archives = info.metadata.get(ARCHIVES) is True
        if status is None or (status is ACTIVE and not archives):
            chosen = await self._every(key, info.message_count, offset, limit)
        elif not archives:
            chosen = []
        elif status is ACTIVE:
            chosen = _page(await self._active(key), offset, limit)
        else:
            stored = await self._store.aload(key, tenant=self.tenant)
            chosen = _page(_chosen(stored, status), offset, limit)
        return convert_all(chosen, to_llama_index)

    async def count_messages(self, key: str, status: MessageStatus | None = ACTIVE) -> int:
        """How many messages of ``key`` have ``status`` (None: any)."""
        status = _check_any_status(status)
        info = await self._thread(key)
        if info is None:
            return 0
        if status is None or info.metadata.get(ARCHIVES) is not True:
            return info.message_count if status is not ARCHIVED else 0
        active = len(await self._active(key))
        return active if status is ACTIVE else max(info.message_count - active, 0)

    async def add_message(
        self, key: str, message: ChatMessage, status: MessageStatus = ACTIVE
    ) -> None:
        """Append one message with ``status``."""
        await self.add_messages(key, [message], status)

    async def add_messages(
        self, key: str, messages: list[ChatMessage], status: MessageStatus = ACTIVE
    ) -> None:
        """Append messages with ``status`` in one store call."""
        status = _check_status(status)
        if converted := converted_messages(messages):
            if status is not ACTIVE:
                await self._mark_archives(key)
            converted = [_with_status(m, status) for m in converted]
            await self._store.aappend(key, converted, tenant=self.tenant)

    async def set_messages(
        self, key: str, messages: list[ChatMessage], status: MessageStatus = ACTIVE
    ) -> None:
        """Replace every message of ``key`` with ``messages``, all with ``status``."""
        status = _check_status(status)
        converted = converted_messages(messages)
        if not converted:  # a key without messages is no key, as in SQLAlchemyChatStore
            await self._store.adelete_thread(key, tenant=self.tenant)
            return
        if status is not ACTIVE:
            await self._mark_archives(key)
        # All one status: an archived message has only archived ones before it.
        marked = [_with_status(m, status, settled=True) for m in converted]
        await self._store.areplace(key, marked, tenant=self.tenant)

    async def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Delete and return the message at position ``idx`` (None if out of range)."""
        found = await amessage_at(self._store, key, idx, self.tenant)
        if found is None:
            return None
        removed = await self._store.adelete_messages(key, [found.id or ""], tenant=self.tenant)
        return to_llama_index(removed[0]) if removed else None

    async def delete_messages(self, key: str, status: MessageStatus | None = None) -> None:
        """Delete the messages of ``key`` with ``status`` (None: the whole key)."""
        status = _check_any_status(status)
        if status is None:
            await self._store.adelete_thread(key, tenant=self.tenant)
            return
        if not await self._archives(key):
            if status is ACTIVE:
                await self._store.aclear(key, tenant=self.tenant)
            return
        if status is ACTIVE:
            doomed = await self._active(key)
        else:
            doomed = _chosen(await self._store.aload(key, tenant=self.tenant), status)
        await self._store.adelete_messages(key, [m.id or "" for m in doomed], tenant=self.tenant)

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
        if check_position(n, "a message count") <= 0:
            return []
        if await self._archives(key):
            taken = (await self._active(key))[:n]
        else:
            taken = _chosen(await self._store.aload(key, tenant=self.tenant), ACTIVE)[:n]
        if not taken:
            return []
        if archive:
            await self._mark_archives(key)
            # The oldest active messages: every message before each of them is archived.
            marked = [_with_status(m, ARCHIVED, settled=True) for m in taken]
            await self._store.aupdate_messages(key, marked, tenant=self.tenant)
        else:
            await self._store.adelete_messages(key, [m.id or "" for m in taken], tenant=self.tenant)
        return [to_llama_index(m) for m in taken]

    async def _thread(self, key: str) -> ThreadInfo | None:
        """The thread of ``key`` (None: there is none)."""
        try:
            return await self._store.aget_thread(key, tenant=self.tenant)
        except NotFound:
            return None

    async def _archives(self, key: str) -> bool:
        """Whether ``key`` may hold archived messages (its thread has the `ARCHIVES` mark)."""
        info = await self._thread(key)
        return info is not None and info.metadata.get(ARCHIVES) is True

    async def _mark_archives(self, key: str) -> None:
        """Give the thread of ``key`` the `ARCHIVES` mark (created if missing), before any of
        its messages is archived."""
        info = await self._thread(key)
        metadata = {} if info is None else dict(info.metadata)
        if metadata.get(ARCHIVES) is not True:
            metadata[ARCHIVES] = True
            await self._store.aset_thread_metadata(key, metadata, tenant=self.tenant)

    async def _every(
        self, key: str, total: int, offset: int | None, limit: int | None
    ) -> list[Message]:
        """The messages of ``key`` (``total`` of them) from position ``offset``, at most
        ``limit``, whatever their status: read from the end of the thread, so a page near it
        costs only that page."""
        start = offset or 0
        if start == 0 and limit is None:
            return await self._store.aload(key, tenant=self.tenant)
        if total - start <= 0 or limit == 0:
            return []
        found = await self._store.aload(key, last=total - start, tenant=self.tenant)
        return found if limit is None else found[:limit]

    async def _active(self, key: str) -> list[Message]:
        """The active messages of ``key`` (on a thread with the `ARCHIVES` mark), oldest first:
        read back from the end of the thread down to the first `SETTLED` message."""
        pages: list[list[Message]] = []
        before: str | None = None
        size = _FIRST_PAGE
        while True:
            try:
                page = await self._store.aload(key, last=size, before=before, tenant=self.tenant)
            except NotFound:  # the message read up to was deleted meanwhile: start again
                pages, before, size = [], None, _FIRST_PAGE
                continue
            settled = next(
                (i for i in range(len(page) - 1, -1, -1) if page[i].metadata.get(SETTLED) is True),
                None,
            )
            pages.append(page if settled is None else page[settled + 1 :])
            if settled is not None or len(page) < size:
                break
            before, size = page[0].id, min(size * 2, _LAST_PAGE)
        return _chosen([m for page in reversed(pages) for m in page], ACTIVE)
