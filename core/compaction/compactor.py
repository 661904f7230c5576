"""`Compactor`: running-summary views of stored threads, with the summary persisted.

The raw thread is never changed. The latest `CompactionRecord` is saved in the thread's
metadata under the reserved key `RECORD_KEY` (through ``set_thread_metadata``, so every thread
backend stores it with no schema change), and the next view reads only the pinned system
messages and the messages after the record's ``last_id``. `expand` returns the original
messages a summary stands for.

Thread stores have no compare-and-set on metadata, so saving a record re-reads the metadata
once the summarizer has returned and writes it back with the record added: a metadata change
made while the summarizer runs is kept; one made by another writer between that read and the
write (one store round trip) is lost. Of two concurrent folds of one thread, the record that
covers more messages is kept. If a message a record covers is deleted, the next view rebuilds
the summary from scratch and saves it in place of the old record (or removes the old record
if nothing needs folding).

Examples:
    >>> from memfold import Message, open_store
    >>> from memfold.compaction import ApproximateCounter, RunningSummary
    >>> store = open_store("memory://")
    >>> _ = store.append("t1", [
    ...     Message(role="user" if i % 2 == 0 else "assistant", content=f"Fact {i}: Bo is {i}.")
    ...     for i in range(60)
    ... ])
    >>> compactor = Compactor(store, RunningSummary(200, counter=ApproximateCounter()))
    >>> view = compactor.view("t1")
    >>> covered = compactor.expand(view[0], "t1")
    >>> covered[0].content, len(covered) + len(view) - 1
    ('Fact 0: Bo is 0.', 60)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from memfold.compaction.facts import ExtractiveFacts, FactExtractor, fact_records
from memfold.compaction.summarizers import Summarizer, check_summarizer
from memfold.compaction.summary import (
    SUMMARY_KEY,
    Compacted,
    CompactionRecord,
    RunningSummary,
    arun,
    run,
)
from memfold.errors import InvalidInput, NotFound
from memfold.memories import MemoryStore, check_namespace
from memfold.memory_model import Namespace
from memfold.model import JSON, Message, ThreadInfo
from memfold.stores import ThreadStore

__all__ = ["RECORD_KEY", "Compactor"]

RECORD_KEY: Final = "memfold.compaction"
"""The thread-metadata key that holds a thread's compaction record (reserved)."""


def _record(info: ThreadInfo | None) -> CompactionRecord | None:
    found = None if info is None else info.metadata.get(RECORD_KEY)
    return CompactionRecord.from_dict(found) if isinstance(found, Mapping) else None


def _covered_range(summary: Message | CompactionRecord) -> tuple[str, str]:
    if isinstance(summary, CompactionRecord):
        return summary.first_id, summary.last_id
    if not isinstance(summary, Message):
        raise InvalidInput("not a memfold summary message: pass a message from a Compactor view")
    found = summary.metadata.get(SUMMARY_KEY)
    if not isinstance(found, Mapping) or not {"first_id", "last_id"} <= found.keys():
        raise InvalidInput("not a memfold summary message: pass a message from a Compactor view")
    return str(found["first_id"]), str(found["last_id"])


def _slice(messages: list[Message], first_id: str, last_id: str) -> list[Message]:
    ids = [m.id for m in messages]
    if first_id not in ids or last_id not in ids:
        raise NotFound("the messages this summary covers are no longer in the thread")
    return messages[ids.index(first_id) : ids.index(last_id) + 1]


def _with_record(
    fresh: ThreadInfo | None, new: CompactionRecord | None, old: CompactionRecord | None
) -> dict[str, JSON] | None:
    """The thread's current metadata with ``new`` in place of ``old`` (removed if None); None
    if ``new`` is saved already, or a concurrent fold saved a record covering at least as many
    messages (keep that one)."""
    current = _record(fresh)
    if current == new or (
        current not in (None, old) and (new is None or current.covered >= new.covered)
    ):
        return None
    kept = {k: v for k, v in (fresh.metadata if fresh else {}).items() if k != RECORD_KEY}
    return kept if new is None else {**kept, RECORD_KEY: new.to_dict()}


def _shifted(record: CompactionRecord | None, shift: int) -> CompactionRecord | None:
    return None if record is None else replace(record, end=record.end + shift)


class Compactor:
    """Views of a store's threads under a `RunningSummary`, persisting each new summary.

    Args:
        store: the thread store holding the raw threads.
        strategy: the running summary's budgets and token counter.
        summarizer: what writes summaries (default: `ExtractiveSummarizer`, no model).
        memories: a long-term memory store to keep facts from folded messages in (see
            `memfold.compaction.facts`); None keeps none.
        namespace: where those facts go, e.g. ``(tenant, user_id, "facts")``; needed with
            ``memories``.
        facts: what finds the facts (default: `ExtractiveFacts`, no model).

    Raises:
        InvalidInput: an argument is not of its kind (a chat model passed as ``summarizer``
            must be wrapped, e.g. in `memfold.integrations.langchain.ChatModelSummarizer`).

    Saving a record re-reads the thread's metadata after summarizing and writes it back with
    the record added (see the module notes on concurrent metadata writes).
    """

    def __init__(
        self,
        store: ThreadStore,
        strategy: RunningSummary,
        summarizer: Summarizer | None = None,
        *,
        memories: MemoryStore | None = None,
        namespace: Namespace | None = None,
        facts: FactExtractor | None = None,
    ) -> None:
        if not isinstance(strategy, RunningSummary):
            raise InvalidInput(f"strategy must be a RunningSummary, got {type(strategy).__name__}")
        self.store = store
        self.strategy = strategy
        self.summarizer = check_summarizer(summarizer)
        if memories is not None and not isinstance(memories, MemoryStore):
            raise InvalidInput(
                f"memories must be a memfold memory store (open_memory_store), got "
                f"{type(memories).__name__}"
            )
        if memories is not None and namespace is None:
            raise InvalidInput("pass namespace= with memories=, e.g. (tenant, user_id, 'facts')")
        self.memories = memories
        self.namespace = None if namespace is None else check_namespace(namespace)
        if facts is not None and not isinstance(facts, FactExtractor):
            raise InvalidInput(
                f"facts must be a FactExtractor (extract and aextract methods), got "
                f"{type(facts).__name__}"
            )
        self.facts: FactExtractor = facts or ExtractiveFacts()

    def _evicted(
        self, messages: list[Message], old: CompactionRecord | None, new: CompactionRecord
    ) -> list[Message]:
        """The messages the folds after ``old`` added to ``new``'s summary (all of its folds
        if ``new`` was rebuilt from scratch)."""
        if self.memories is None:
            return []
        known = len(old.folds) if old and new.folds[: len(old.folds)] == old.folds else 0
        ranges = new.folds[known:]
        return [m for first, last in ranges for m in _slice(messages, first, last)]

    # Sync API.

    def _info(self, thread_id: str, tenant: str | None) -> ThreadInfo | None:
        try:
            return self.store.get_thread(thread_id, tenant=tenant)
        except NotFound:
            return None

    def record(self, thread_id: str, *, tenant: str | None = None) -> CompactionRecord | None:
        """The thread's saved compaction record, if it has been folded."""
        return _record(self._info(thread_id, tenant))

    def _load(
        self,
        thread_id: str,
        tenant: str | None,
        info: ThreadInfo | None,
        record: CompactionRecord | None,
    ) -> tuple[list[Message], int]:
        if record is not None and info is not None and info.message_count >= record.end:
            tail = self.store.load(
                thread_id, last=info.message_count - record.end + 1, tenant=tenant
            )
            if tail and tail[0].id == record.last_id:
                pinned = self.store.load(thread_id, before=record.first_id, tenant=tenant)
                return pinned + tail, record.end - 1 - len(pinned)
        return self.store.load(thread_id, tenant=tenant), 0

    def compact(self, thread_id: str, *, tenant: str | None = None) -> Compacted:
        """Build the thread's view, folding (and saving the new record) if it is due."""
        info = self._info(thread_id, tenant)
        record = _record(info)
        messages, shift = self._load(thread_id, tenant, info, record)
        done = run(self.strategy.fold(messages, _shifted(record, -shift)), self.summarizer)
        new = _shifted(done.record, shift)
        if done.folded and new is not None:  # facts first: if they fail, the fold is redone
            evicted = self._evicted(messages, record, new)
            if evicted and self.memories is not None and self.namespace is not None:
                found = self.facts.extract(evicted)
                limits = self.memories.limits
                records = fact_records(found, self.namespace, thread_id, tenant, limits)
                self.memories.put_many(records)
        if new != record:  # a fold, or a rebuild after covered messages were deleted
            meta = _with_record(self._info(thread_id, tenant), new, record)  # re-read
            if meta is not None:
                self.store.set_thread_metadata(thread_id, meta, tenant=tenant)
        return replace(done, record=new)

    def view(self, thread_id: str, *, tenant: str | None = None) -> list[Message]:
        """The messages to send to the model for this thread (see `compact`)."""
        return self.compact(thread_id, tenant=tenant).view

    def expand(
        self,
        summary: Message | CompactionRecord,
        thread_id: str,
        *,
        tenant: str | None = None,
    ) -> list[Message]:
        """The original messages a summary message (or record) covers, oldest first.

        Raises:
            InvalidInput: ``summary`` is not a summary message.
            NotFound: the covered messages were deleted from the thread.
        """
        first_id, last_id = _covered_range(summary)
        return _slice(self.store.load(thread_id, tenant=tenant), first_id, last_id)

    # Async API: the same steps, awaited.

    async def _ainfo(self, thread_id: str, tenant: str | None) -> ThreadInfo | None:
        try:
            return await self.store.aget_thread(thread_id, tenant=tenant)
        except NotFound:
            return None

    async def arecord(
        self, thread_id: str, *, tenant: str | None = None
    ) -> CompactionRecord | None:
        """Async `record`."""
        return _record(await self._ainfo(thread_id, tenant))

    async def _aload(
        self,
        thread_id: str,
        tenant: str | None,
        info: ThreadInfo | None,
        record: CompactionRecord | None,
    ) -> tuple[list[Message], int]:
        store = self.store
        if record is not None and info is not None and info.message_count >= record.end:
            last = info.message_count - record.end + 1
            tail = await store.aload(thread_id, last=last, tenant=tenant)
            if tail and tail[0].id == record.last_id:
                pinned = await store.aload(thread_id, before=record.first_id, tenant=tenant)
                return pinned + tail, record.end - 1 - len(pinned)
        return await store.aload(thread_id, tenant=tenant), 0

    async def acompact(self, thread_id: str, *, tenant: str | None = None) -> Compacted:
        """Async `compact`."""
        info = await self._ainfo(thread_id, tenant)
        record = _record(info)
        messages, shift = await self._aload(thread_id, tenant, info, record)
        done = await arun(self.strategy.fold(messages, _shifted(record, -shift)), self.summarizer)
        new = _shifted(done.record, shift)
        if done.folded and new is not None:
            evicted = self._evicted(messages, record, new)
            if evicted and self.memories is not None and self.namespace is not None:
                found = await self.facts.aextract(evicted)
                limits = self.memories.limits
                records = fact_records(found, self.namespace, thread_id, tenant, limits)
                await self.memories.aput_many(records)
        if new != record:
            meta = _with_record(await self._ainfo(thread_id, tenant), new, record)
            if meta is not None:
                await self.store.aset_thread_metadata(thread_id, meta, tenant=tenant)
        return replace(done, record=new)

    async def aview(self, thread_id: str, *, tenant: str | None = None) -> list[Message]:
        """Async `view`."""
        return (await self.acompact(thread_id, tenant=tenant)).view

    async def aexpand(
        self,
        summary: Message | CompactionRecord,
        thread_id: str,
        *,
        tenant: str | None = None,
    ) -> list[Message]:
        """Async `expand`."""
        first_id, last_id = _covered_range(summary)
        return _slice(await self.store.aload(thread_id, tenant=tenant), first_id, last_id)
