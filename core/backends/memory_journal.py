"""The in-process effect journal, kept by the ``memory://`` checkpoint store beside its threads.

Examples:
    >>> from memfold.journal import open_journal
    >>> journal = open_journal("memory://")
    >>> journal.record("t", "c1", "done").result
    'done'
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memfold.errors import InvalidInput
from memfold.journal import (
    DeleteEffects,
    GetEffect,
    JournalEntry,
    ListEffects,
    ListJournalThreads,
    RecordEffect,
    ReplaceEffect,
    sort_key,
)
from memfold.ops import Op

__all__ = ["MemoryJournal"]


class MemoryJournal:
    """Entries by ``(tenant, thread)`` then ``(namespace, tool_call_id)``; the owning store
    runs it under its own lock."""

    def __init__(self) -> None:
        self._threads: dict[tuple[str, str], dict[tuple[str, str], JournalEntry]] = {}

    def run(self, op: Op[Any]) -> Any:
        """Run one journal operation."""
        match op:
            case RecordEffect(tenant, thread_id, namespace, tool_call_id):
                entries = self._threads.setdefault((tenant, thread_id), {})
                return entries.setdefault((namespace, tool_call_id), op.entry())
            case ReplaceEffect(tenant, thread_id, namespace, tool_call_id, value):
                entries = self._threads.get((tenant, thread_id), {})
                stored = entries.get((namespace, tool_call_id))
                if stored is not None:
                    entries[(namespace, tool_call_id)] = replace(stored, value=value)
                return stored is not None
            case GetEffect(tenant, thread_id, namespace, tool_call_id):
                return self._threads.get((tenant, thread_id), {}).get((namespace, tool_call_id))
            case ListEffects(tenant, thread_id, namespace, tool_call_id):
                found = self._threads.get((tenant, thread_id), {}).values()
                return sorted(
                    (
                        e
                        for e in found
                        if namespace in (None, e.namespace)
                        and tool_call_id in (None, e.tool_call_id)
                    ),
                    key=sort_key,
                )
            case ListJournalThreads(tenant):
                return sorted(
                    t for (k, t), entries in self._threads.items() if k == tenant and entries
                )
            case DeleteEffects(tenant, thread_id):
                return self.drop(tenant, thread_id)
        raise InvalidInput(f"the memory journal cannot run {type(op).__name__}")

    def copy(self, tenant: str, source: str, target: str) -> None:
        """Make ``target``'s journal a copy of ``source``'s (replacing what it held)."""
        self.drop(tenant, target)
        found = self._threads.get((tenant, source))
        if found:
            self._threads[(tenant, target)] = {
                key: replace(entry, thread_id=target) for key, entry in found.items()
            }

    def threads(self, tenant: str) -> set[tuple[str, str]]:
        """The keys of ``tenant``'s threads that have a journal."""
        return {key for key in self._threads if key[0] == tenant}

    def count(self, tenant: str, thread_id: str) -> int:
        """How many entries a thread's journal holds."""
        return len(self._threads.get((tenant, thread_id), {}))

    def drop(self, tenant: str, thread_id: str) -> int:
        """Forget a thread's journal; returns how many entries it held."""
        return len(self._threads.pop((tenant, thread_id), {}))
