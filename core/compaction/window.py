"""Trimming strategies: pure functions from a thread to the view sent to the model.

Each keeps the leading system messages first, keeps or drops an assistant's tool calls together
with their results, and never starts the rest of the view with a tool result. They compose:
``token_budget(sliding_window(thread, 10), 2000, counter)``.

Examples:
    >>> from memfold import Message
    >>> thread = [Message(role="system", content="be brief")] + [
    ...     Message(role=r, content=f"{r} {i}") for i in range(3) for r in ("user", "assistant")
    ... ]
    >>> [m.content for m in sliding_window(thread, 1)]
    ['be brief', 'user 2', 'assistant 2']
"""

from __future__ import annotations

from collections.abc import Sequence

from memfold.compaction.tokens import REPLY_TOKENS, TokenCounter, check_counter
from memfold.compaction.units import Unit, is_orphan, split, turn_starts
from memfold.errors import InvalidInput
from memfold.model import Message

__all__ = ["fitting_suffix", "sliding_window", "token_budget"]


def _flat(units: Sequence[Unit]) -> list[Message]:
    return [m for u in units for m in u]


def sliding_window(messages: Sequence[Message], turns: int) -> list[Message]:
    """The system messages, then the last ``turns`` turns (a turn opens with a user message).

    A thread with fewer turns is returned whole, less any tool results it starts with.
    """
    if isinstance(turns, bool) or not isinstance(turns, int) or turns < 1:
        raise InvalidInput(f"turns must be an int of at least 1, got {turns!r}")
    pinned, units = split(messages)
    starts = turn_starts(units)
    if len(starts) >= turns:
        units = units[starts[-turns] :]
    elif units and is_orphan(units[0]):
        units = units[1:]
    return [*pinned, *_flat(units)]


def fitting_suffix(units: Sequence[Unit], budget: int, counter: TokenCounter) -> int:
    """The index of the first unit of the longest suffix of ``units`` whose messages cost at
    most ``budget`` tokens and that starts with no tool result (``len(units)`` if none fits)."""
    cut, spent = len(units), 0
    for i in range(len(units) - 1, -1, -1):
        spent += sum(counter.count_message(m) for m in units[i])
        if spent > budget:
            break
        if not is_orphan(units[i]):
            cut = i
    return cut


def token_budget(
    messages: Sequence[Message], max_tokens: int, counter: TokenCounter
) -> list[Message]:
    """The system messages, then the longest suffix of whole units that keeps the request
    (reply header included) within ``max_tokens``.

    Raises:
        InvalidInput: the system messages and the newest unit alone exceed ``max_tokens``:
            raise the budget, or summarize (`RunningSummary`) instead of trimming.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidInput(f"max_tokens must be a positive int, got {max_tokens!r}")
    check_counter(counter)
    pinned, units = split(messages)
    fixed = REPLY_TOKENS + sum(counter.count_message(m) for m in pinned)
    if fixed > max_tokens:
        raise InvalidInput(
            f"the system messages alone take {fixed} tokens, over max_tokens={max_tokens}"
        )
    cut = fitting_suffix(units, max_tokens - fixed, counter)
    if cut == len(units) and units and not (len(units) == 1 and is_orphan(units[0])):
        newest = sum(counter.count_message(m) for m in units[-1])
        raise InvalidInput(
            f"the system messages ({fixed} tokens with the reply header) and the newest "
            f"message group ({newest} tokens) exceed max_tokens={max_tokens}: raise the "
            "budget, or shorten the newest message"
        )
    return [*pinned, *_flat(units[cut:])]
