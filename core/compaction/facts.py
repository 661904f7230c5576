"""Facts kept as long-term memories when a running summary folds their messages away.

A summary keeps the gist of old turns, but a fact a user stated ("my flight is on 3 May") is
worth more on its own: found by meaning in every later conversation, not only in this thread's
summary. A `Compactor` given a memory store passes each fold's newly evicted messages to a
`FactExtractor` and writes the facts as memory records under a namespace of your choice, each
naming the thread and message it came from. Record ids are derived from that source, so a fold
that runs twice (two workers, a retry) writes the same records again instead of duplicates;
the facts are written before the fold's record is saved, so a failed write is retried by the
next view.

`ExtractiveFacts` needs no model: it keeps the user's sentences that carry a name, a number or a
date, the most informative first. A model-backed extractor is any object with ``extract`` and
``aextract``.

Examples:
    >>> from memfold import Message
    >>> ExtractiveFacts().extract([
    ...     Message(role="user", content="Hi there. My flight to Lisbon leaves on 3 May.", id="m1"),
    ...     Message(role="assistant", content="Noted: Lisbon on 3 May.", id="m2"),
    ... ])
    [Fact(text='My flight to Lisbon leaves on 3 May.', message_id='m1')]
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from memfold.compaction.summarizers import informativeness, sentences_of
from memfold.errors import InvalidInput
from memfold.limits import DEFAULT_LIMITS, Limits
from memfold.memories import storable_text
from memfold.memory_model import MemoryRecord, Namespace
from memfold.model import Message, ensure_sequence

__all__ = ["ExtractiveFacts", "Fact", "FactExtractor", "fact_records"]


@dataclass(frozen=True, slots=True)
class Fact:
    """A statement worth remembering and the id of the message it came from."""

    text: str
    message_id: str


@runtime_checkable
class FactExtractor(Protocol):
    """Turns messages about to leave the model's view into facts."""

    def extract(self, messages: Sequence[Message]) -> list[Fact]: ...
    async def aextract(self, messages: Sequence[Message]) -> list[Fact]: ...


class ExtractiveFacts:
    """The sentences of ``roles`` that name someone or something, or hold a number or a date,
    at most ``max_facts`` per call, most informative first; no model needed."""

    def __init__(self, *, roles: Sequence[str] = ("user",), max_facts: int = 5) -> None:
        if isinstance(roles, str) or not isinstance(roles, Collection):
            raise InvalidInput(f"roles must be a collection of role names, got {roles!r}")
        if not all(isinstance(role, str) for role in roles):
            raise InvalidInput(f"roles must be str, got {roles!r}")
        if isinstance(max_facts, bool) or not isinstance(max_facts, int) or max_facts < 0:
            raise InvalidInput(f"max_facts must be an int of at least 0, got {max_facts!r}")
        self.roles = frozenset(roles)
        self.max_facts = max_facts

    def extract(self, messages: Sequence[Message]) -> list[Fact]:
        """Facts from ``messages``, most informative first.

        Raises:
            InvalidInput: ``messages`` is not a sequence of `Message`.
        """
        found = [
            (sentence, m.id)
            for m in ensure_sequence(messages)
            if m.role in self.roles and m.id is not None
            for sentence in sentences_of([m])
        ]
        scores = informativeness([sentence for sentence, _ in found])
        best_first = sorted(range(len(found)), key=lambda i: -scores[i])
        texts = [(found[i][0].split(": ", 1)[1], found[i][1]) for i in best_first]
        facts = [Fact(text, message_id) for text, message_id in texts if _specific(text)]
        return facts[: self.max_facts]

    async def aextract(self, messages: Sequence[Message]) -> list[Fact]:
        """Async `extract` (pure computation, no I/O)."""
        return self.extract(messages)


def _specific(sentence: str) -> bool:
    """Whether a sentence of four words or more names something or holds a number or date."""
    words = sentence.split()
    return len(words) >= 4 and (
        any(w[0].isupper() for w in words[1:]) or any(c.isdigit() for c in sentence)
    )


def fact_records(
    facts: Sequence[Fact],
    namespace: Namespace,
    thread_id: str,
    tenant: str | None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[MemoryRecord]:
    """Memory records for ``facts`` from a thread, with ids derived from their source and
    text a store under ``limits`` accepts (`memfold.memories.storable_text`)."""
    records = []
    for fact in facts:
        source = "\x00".join((tenant or "", thread_id, fact.message_id, fact.text))
        records.append(
            MemoryRecord(
                namespace,
                id=hashlib.sha256(source.encode()).hexdigest()[:32],
                text=storable_text(fact.text, limits),
                value={
                    "source": "compaction",
                    "thread_id": thread_id,
                    "message_id": fact.message_id,
                },
            )
        )
    return records
