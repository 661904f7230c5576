"""Excerpts: the most informative sentences of some messages, within a token budget.

A running summary sends its summarizer an excerpt of the messages it evicts rather than every
word (`RunningSummary` ``input_tokens``): sentences with names, dates and numbers come first
(`informativeness`), and what is kept stays in its original order and with its speaker.

Examples:
    >>> from memfold import Message
    >>> from memfold.compaction import ApproximateCounter
    >>> chat = [
    ...     Message(role="user", content="Hi there! I moved to Lisbon on 3 May 2021."),
    ...     Message(role="assistant", content="Oh wow, that sounds lovely."),
    ... ]
    >>> [m.content for m in excerpt(chat, 12, ApproximateCounter())]
    ['I moved to Lisbon on 3 May 2021.']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from memfold.compaction.summarizers import informativeness, render_transcript, sentences_of
from memfold.compaction.tokens import TokenCounter, check_counter
from memfold.errors import InvalidInput
from memfold.model import Message, ensure_sequence

__all__ = ["excerpt"]


def excerpt(messages: Sequence[Message], max_tokens: int, counter: TokenCounter) -> list[Message]:
    """The most informative sentences of ``messages`` whose transcript (`render_transcript`)
    takes at most ``max_tokens``, as messages in their original order.

    A message with some sentences kept is returned as text holding just those, with its
    role, name, id and tool call id (each of its tool calls is one sentence,
    ``[call id] name(arguments)``); one with none is left out. If every message fits, they
    are returned unchanged.

    Raises:
        InvalidInput: ``messages`` is not a sequence of `Message`, ``max_tokens`` not an int
            of at least 0, or ``counter`` not a `TokenCounter`.
    """
    check_counter(counter)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise InvalidInput(f"max_tokens must be an int of at least 0, got {max_tokens!r}")
    messages = ensure_sequence(messages)
    if counter.count_text(render_transcript(messages)) <= max_tokens:
        return list(messages)
    owners: list[int] = []
    sentences: list[str] = []  # "speaker: sentence", as `informativeness` scores them
    texts: list[str] = []
    for i, m in enumerate(messages):
        found = sentences_of([m])
        owners += [i] * len(found)
        sentences += found
        texts += [s[len(m.name or m.role) + 2 :] for s in found]
    heads = [
        counter.count_text(render_transcript([replace(m, content="", tool_calls=())]))
        for m in messages
    ]
    chosen: dict[int, list[int]] = {}
    spent = 0
    ranked = sorted(range(len(sentences)), key=informativeness(sentences).__getitem__)
    for s in reversed(ranked):
        owner = owners[s]
        cost = counter.count_text(texts[s]) + 1 + (0 if owner in chosen else heads[owner])
        if spent + cost <= max_tokens:
            chosen.setdefault(owner, []).append(s)
            spent += cost
    return [
        replace(messages[i], content=" ".join(texts[s] for s in sorted(kept)), tool_calls=())
        for i, kept in sorted(chosen.items())
    ]
