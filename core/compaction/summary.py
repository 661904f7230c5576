"""The running summary: a sans-I/O algorithm that folds evicted messages into one summary.

`RunningSummary.fold` is a generator. It yields a `SummarizeRequest` whenever it needs a
summary and receives the text back, then returns a `Compacted` view; `run` and `arun` drive it
with a sync or an async `Summarizer` (the httpx ``auth_flow`` pattern). Each message is sent to
the summarizer at most once, and by default as an `excerpt` (its most informative sentences, up
to ``input_tokens`` a fold). A fold's summary is added to the record as a segment; only when one
more segment would not fit in the summary's budget does a fold send the summary so far with its
messages, to merge them into one segment. An answer over its budget is condensed (then cut, if
the summarizer cannot).

Examples:
    >>> from memfold import Message
    >>> from memfold.compaction import ApproximateCounter, ExtractiveSummarizer
    >>> thread = [Message(role="system", content="be brief")] + [
    ...     Message(role=r, content=f"Turn {i}: Ana paid 12 dollars.", id=f"{r}{i}")
    ...     for i in range(40) for r in ("user", "assistant")
    ... ]
    >>> strategy = RunningSummary(300, counter=ApproximateCounter())
    >>> out = run(strategy.fold(thread, None), ExtractiveSummarizer())
    >>> out.folded, out.view[0].role, out.record.first_id
    (True, 'system', 'user0')
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from memfold.compaction.excerpts import excerpt
from memfold.compaction.summarizers import Summarizer, SummarizeRequest
from memfold.compaction.tokens import REPLY_TOKENS, TokenCounter, check_counter, default_counter
from memfold.compaction.units import Unit, group, is_orphan, pinned_prefix, split
from memfold.compaction.window import fitting_suffix
from memfold.errors import InvalidInput
from memfold.model import JSON, Message, ensure_sequence

__all__ = [
    "SEGMENT_SEPARATOR",
    "SUMMARY_KEY",
    "Compacted",
    "CompactionRecord",
    "Fold",
    "RunningSummary",
    "arun",
    "run",
]

SUMMARY_KEY: Final = "memfold.compaction"
"""Metadata key of a summary message: the range it covers (``first_id``, ``last_id``)."""

SEGMENT_SEPARATOR: Final = "\n"
"""What joins a summary's segments into its text."""
MIN_SEGMENT: Final = 32
"""The smallest default segment budget: a quarter of a small summary holds no sentence."""
MIN_INPUT: Final = 64
"""The smallest default fold input: room for a few whole sentences."""


@dataclass(frozen=True, slots=True)
class CompactionRecord:
    """A running summary and the messages it covers: from ``first_id`` to ``last_id``
    inclusive, ``end`` being the position just after ``last_id`` in the thread.

    The summary is kept in ``segments``, oldest first: one per fold since the last merge, the
    first of them possibly the merge of all that came before."""

    segments: tuple[str, ...]
    first_id: str
    last_id: str
    end: int
    covered: int
    folds: tuple[tuple[str, str], ...] = field(default=())
    """The range each fold added, oldest first."""

    @property
    def summary(self) -> str:
        """The summary text: the segments, one per line."""
        return SEGMENT_SEPARATOR.join(self.segments)

    def to_dict(self) -> dict[str, JSON]:
        """The record as a JSON object."""
        return {
            "version": 2,
            "segments": list(self.segments),
            "first_id": self.first_id,
            "last_id": self.last_id,
            "end": self.end,
            "covered": self.covered,
            "folds": [list(f) for f in self.folds],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompactionRecord:
        """Rebuild a record from `to_dict` output (a version 1 record's ``summary`` becomes
        its one segment).

        Raises:
            InvalidInput: ``data`` is not a compaction record.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput(f"not a memfold compaction record: {type(data).__name__}")
        try:
            found = data["segments"] if "segments" in data else [data["summary"]]
            folds = data.get("folds", [])
            record = cls(
                tuple(found), data["first_id"], data["last_id"], data["end"], data["covered"],
                tuple(tuple(f) for f in folds) if isinstance(folds, list | tuple) else folds,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a memfold compaction record: {exc!r}") from exc
        if not (
            isinstance(found, list | tuple)
            and all(isinstance(s, str) for s in record.segments)
            and isinstance(record.first_id, str)
            and isinstance(record.last_id, str)
            and all(_count(n) for n in (record.end, record.covered))
            and isinstance(folds, list | tuple)
            and all(len(f) == 2 and all(isinstance(i, str) for i in f) for f in record.folds)
        ):
            raise InvalidInput(
                "not a memfold compaction record: segments must be a list of str, first_id and "
                "last_id str, end and covered ints of at least 0, folds pairs of str"
            )
        return record


@dataclass(frozen=True, slots=True)
class Compacted:
    """A view and the record it was built from; ``folded`` tells whether this call made a new
    record (which then needs saving)."""

    view: list[Message]
    record: CompactionRecord | None
    folded: bool


Fold = Generator[SummarizeRequest, str, Compacted]
"""What `RunningSummary.fold` returns: send it summary texts, get a `Compacted`."""


def _check_record(record: object) -> None:
    if record is not None and not isinstance(record, CompactionRecord):
        raise InvalidInput(f"expected a CompactionRecord or None, got {type(record).__name__}")


class _Default(enum.Enum):
    TOKEN = 0


_DEFAULT: Final = _Default.TOKEN


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tokens(value: object, what: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInput(f"{what} must be an int of at least {low}, got {value!r}")


def _answer(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"a summarizer must return a str, got {type(text).__name__}")
    return text.strip()


def _flat(units: Sequence[Unit]) -> list[Message]:
    return [m for u in units for m in u]


def _covered_end(messages: Sequence[Message], record: CompactionRecord) -> int | None:
    """The index just after ``record.last_id`` in ``messages``; None if a message the record
    covers was deleted. Messages are only appended after the covered ones, so ``last_id`` still
    at ``end - 1`` means none before it was deleted; if it moved, ``first_id`` to ``last_id``
    must still span ``covered`` messages (only messages before them were deleted)."""
    at = record.end - 1
    if 0 <= at < len(messages) and messages[at].id == record.last_id:
        return record.end
    ids = [m.id for m in messages]
    if record.first_id not in ids or record.last_id not in ids:
        return None
    first, last = ids.index(record.first_id), ids.index(record.last_id)
    return last + 1 if last - first + 1 == record.covered else None


class RunningSummary:
    """Fold older messages into a summary once the view passes ``max_tokens``.

    Args:
        max_tokens: the budget of the view (the request, reply header included); passing it
            triggers a fold.
        keep_tokens: how many tokens of the newest messages a fold keeps verbatim
            (default 40% of ``max_tokens``); the gap to ``max_tokens`` makes folds rare.
        summary_tokens: the summary's own budget (default 20% of ``max_tokens``).
        segment_tokens: the budget of one fold's summary (default a quarter of
            ``summary_tokens``, at least 32 tokens or all of it), added to the summary as a
            new segment; when it would not fit, the fold sends the summary so far with its
            messages instead and gets one merged segment of this size.
        input_tokens: the most tokens of messages one fold sends the summarizer (default
            three quarters of ``summary_tokens``, at least 64): past it the evicted messages
            are cut to their most informative sentences (`excerpt`); None sends every word.
        counter: the `TokenCounter` (default: `default_counter`).
        role: the role of the summary message; ``"user"`` is accepted by every provider
            after a system message, ``"system"`` suits those that allow several.
        prefix: the text before the summary in its message.
    """

    def __init__(
        self,
        max_tokens: int,
        *,
        keep_tokens: int | None = None,
        summary_tokens: int | None = None,
        segment_tokens: int | None = None,
        input_tokens: int | _Default | None = _DEFAULT,
        counter: TokenCounter | None = None,
        role: str = "user",
        prefix: str = "Summary of the conversation so far:\n",
    ) -> None:
        _tokens(max_tokens, "max_tokens", 1)
        for name, value, low in (
            ("keep_tokens", keep_tokens, 0), ("summary_tokens", summary_tokens, 1),
            ("segment_tokens", segment_tokens, 1),
            ("input_tokens", None if input_tokens is _DEFAULT else input_tokens, 1),
        ):  # fmt: skip
            if value is not None:
                _tokens(value, name, low)
        if counter is not None:
            check_counter(counter)
        if not isinstance(prefix, str):
            raise InvalidInput(f"prefix must be a str, got {type(prefix).__name__}")
        self.max_tokens = max_tokens
        self.keep_tokens = int(max_tokens * 0.4) if keep_tokens is None else keep_tokens
        self.summary_tokens = int(max_tokens * 0.2) if summary_tokens is None else summary_tokens
        if self.keep_tokens < 0 or self.summary_tokens < 1:
            raise InvalidInput("keep_tokens must be >= 0 and summary_tokens >= 1")
        if segment_tokens is None:
            segment_tokens = max(self.summary_tokens // 4, min(self.summary_tokens, MIN_SEGMENT))
        if not 1 <= segment_tokens <= self.summary_tokens:
            raise InvalidInput("segment_tokens must be between 1 and summary_tokens")
        self.segment_tokens = segment_tokens
        if isinstance(input_tokens, _Default):
            input_tokens = max(self.summary_tokens * 3 // 4, MIN_INPUT)
        if input_tokens is not None and input_tokens < 1:
            raise InvalidInput("input_tokens must be >= 1, or None to send every word")
        self.input_tokens = input_tokens
        self.counter = default_counter() if counter is None else counter
        self.role = role
        self.prefix = prefix
        overhead = self.counter.count_message(self._summary_message("", "x", "x"))
        if self.keep_tokens + self.summary_tokens + overhead + REPLY_TOKENS > max_tokens:
            raise InvalidInput(
                f"keep_tokens ({self.keep_tokens}) + summary_tokens ({self.summary_tokens}) "
                f"+ the summary message's {overhead} tokens of overhead must fit in "
                f"max_tokens ({max_tokens}): lower one of them"
            )

    def _summary_message(self, text: str, first_id: str, last_id: str) -> Message:
        return Message(
            role=self.role,
            content=self.prefix + text,
            id=f"memfold-summary-{last_id}",
            metadata={SUMMARY_KEY: {"first_id": first_id, "last_id": last_id}},
        )

    def summary_message(self, record: CompactionRecord) -> Message:
        """The message that stands for the messages ``record`` covers.

        Raises:
            InvalidInput: ``record`` is not a `CompactionRecord`.
        """
        _check_record(record)
        return self._summary_message(record.summary, record.first_id, record.last_id)

    def _size(self, messages: Sequence[Message]) -> int:
        count = self.counter.count_message
        return sum(count(m) for m in messages)

    def _tail(
        self, messages: Sequence[Message], record: CompactionRecord | None
    ) -> tuple[tuple[Message, ...], list[Unit], CompactionRecord | None, int]:
        _check_record(record)
        if record is None:
            pinned, units = split(messages)
            return pinned, units, None, len(pinned)
        messages = ensure_sequence(messages)
        end = _covered_end(messages, record)
        if end is None:  # a covered message was deleted: start again
            pinned = pinned_prefix(messages)
            return pinned, group(messages[len(pinned) :]), None, len(pinned)
        pinned = pinned_prefix(messages[: end - 1])  # a covered system message is not pinned
        return pinned, group(messages[end:]), replace(record, end=end), end

    def view(self, messages: Sequence[Message], record: CompactionRecord | None) -> list[Message]:
        """The view of ``messages`` under ``record`` as it stands, without folding (it may be
        over budget if a fold is due: call `fold` first)."""
        pinned, units, record, _ = self._tail(messages, record)
        shown = units[1:] if units and is_orphan(units[0]) else units
        return [*pinned, *([self.summary_message(record)] if record else []), *_flat(shown)]

    def fold(self, messages: Sequence[Message], record: CompactionRecord | None) -> Fold:
        """Build the view of ``messages`` (the thread, or its pinned system messages followed
        by the tail that starts at ``record.last_id``, ``record.end`` then being the index just
        after it), folding if it is over budget.

        A fold asks for a summary of the evicted messages (or of their `excerpt`) alone and
        adds it to the record as a segment; when the segment would not fit beside the summary
        so far, it asks for one summary of both instead. If a message the record covers was
        deleted, the summary is rebuilt from scratch: the result's record is then a new one,
        or None if nothing needs folding.

        A summary over its budget that leaves nothing to evict (one saved under a larger
        ``max_tokens``) is condensed.

        Raises:
            InvalidInput: the system messages, a summary and the newest message group cannot
                fit in ``max_tokens`` together (or the system messages alone, with no other
                message).
        """
        pinned, units, record, start = self._tail(messages, record)
        shown = units[1:] if units and is_orphan(units[0]) else units
        head = [*pinned] + ([self.summary_message(record)] if record else [])
        view = head + _flat(shown)
        if REPLY_TOKENS + self._size(view) <= self.max_tokens:
            return Compacted(view, record, False)
        if not units and record is None:
            raise InvalidInput(
                f"the system messages alone take {REPLY_TOKENS + self._size(pinned)} tokens, "
                f"over max_tokens={self.max_tokens}: raise max_tokens or shorten them"
            )
        fixed = REPLY_TOKENS + self._size(pinned) + self.summary_tokens
        fixed += self.counter.count_message(self._summary_message("", "x", "x"))
        newest = self._size(units[-1]) if units else 0
        if fixed + newest > self.max_tokens:
            raise InvalidInput(
                f"the system messages, a {self.summary_tokens}-token summary and the newest "
                f"message group ({newest} tokens) exceed max_tokens={self.max_tokens}: raise "
                "max_tokens, lower summary_tokens, or shorten the newest message"
            )
        keep = min(self.keep_tokens, self.max_tokens - fixed)
        cut = min(fitting_suffix(units, keep, self.counter), len(units) - 1) if units else 0
        if units and is_orphan(units[cut]):  # only the first unit can be: it is summarized
            cut += 1
        evicted = _flat(units[:cut])
        if not evicted and record is not None:  # only the summary, from a larger budget, is over
            request = SummarizeRequest((), record.summary, self.segment_tokens)
            record = replace(record, segments=((yield from self._ask(request)),))
            return Compacted([*pinned, self.summary_message(record), *_flat(units)], record, True)
        if not evicted:  # only an oversized newest group is left: it fits with a summary
            return Compacted(head + _flat(units[cut:]), record, False)
        first, last = evicted[0].id, evicted[-1].id
        if first is None or last is None:
            raise InvalidInput("a running summary needs message ids: append to a store first")
        segments = yield from self._segments(record.segments if record else (), evicted)
        new = CompactionRecord(
            segments=segments,
            first_id=record.first_id if record else first,
            last_id=last,
            end=start + len(evicted),
            covered=(record.covered if record else 0) + len(evicted),
            folds=(record.folds if record else ()) + ((first, last),),
        )
        return Compacted([*pinned, self.summary_message(new), *_flat(units[cut:])], new, True)

    def _segments(
        self, segments: tuple[str, ...], evicted: list[Message]
    ) -> Generator[SummarizeRequest, str, tuple[str, ...]]:
        """The summary's segments once ``evicted`` is folded in."""
        sent = tuple(
            evicted
            if self.input_tokens is None
            else excerpt(evicted, self.input_tokens, self.counter)
        )
        so_far = SEGMENT_SEPARATOR.join(segments)
        room = self.summary_tokens - self.counter.count_text(so_far + SEGMENT_SEPARATOR)
        if segments and self.segment_tokens > room:
            merged = yield from self._ask(SummarizeRequest(sent, so_far, self.segment_tokens))
            segments = (merged,)
        elif sent:
            text = yield from self._ask(SummarizeRequest(sent, None, self.segment_tokens))
            segments = (*segments, text)
        if self.counter.count_text(SEGMENT_SEPARATOR.join(segments)) > self.summary_tokens:
            request = SummarizeRequest((), SEGMENT_SEPARATOR.join(segments), self.segment_tokens)
            segments = ((yield from self._ask(request)),)
        return segments

    def _ask(self, request: SummarizeRequest) -> Generator[SummarizeRequest, str, str]:
        """The summarizer's answer to ``request``, condensed (then cut) if over its budget;
        `InvalidInput` if it is not a str."""
        text = _answer((yield request))
        if self.counter.count_text(text) > request.max_tokens:
            text = _answer((yield SummarizeRequest((), text, request.max_tokens)))
            text = self._cut(text, request.max_tokens)
        return text

    def _cut(self, text: str, max_tokens: int) -> str:
        """``text`` cut to fit ``max_tokens``: after its last whole sentence that fits, or
        at a word boundary if not even the first sentence does (a broken sentence would
        otherwise be carried into every later summary)."""
        words = text.split(" ")
        low, high = 0, len(words)
        while low < high:
            mid = (low + high + 1) // 2
            if self.counter.count_text(" ".join(words[:mid])) <= max_tokens:
                low = mid
            else:
                high = mid - 1
        cut = " ".join(words[:low])
        if low == len(words) or cut.endswith((".", "!", "?")):
            return cut
        end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "), cut.rfind("\n"))
        return cut[: end + 1].rstrip() if end > 0 else cut


def run(flow: Fold, summarizer: Summarizer) -> Compacted:
    """Drive a fold with a sync summarizer."""
    try:
        request = next(flow)
        while True:
            request = flow.send(summarizer.summarize(request))
    except StopIteration as done:
        result: Compacted = done.value
        return result


async def arun(flow: Fold, summarizer: Summarizer) -> Compacted:
    """Drive a fold with an async summarizer."""
    try:
        request = next(flow)
        while True:
            request = flow.send(await summarizer.asummarize(request))
    except StopIteration as done:
        result: Compacted = done.value
        return result
