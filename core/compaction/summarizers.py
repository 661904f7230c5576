"""What a running summary asks for (`SummarizeRequest`), the `Summarizer` protocol, the
default prompts, and an offline `ExtractiveSummarizer` that needs no model.

Model-backed summarizers live with their hosts:
`memfold.integrations.langchain.ChatModelSummarizer` and
`memfold.integrations.llama_index.LLMSummarizer`; both format requests with `render_prompt`.

Examples:
    >>> from memfold import Message
    >>> request = SummarizeRequest(
    ...     messages=(Message(role="user", content="I moved to Lisbon on 3 May 2021. Nice."),),
    ...     previous=None,
    ...     max_tokens=10,
    ... )
    >>> ExtractiveSummarizer().summarize(request)
    'user: I moved to Lisbon on 3 May 2021.'
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from memfold.compaction.tokens import check_ratio, json_line
from memfold.errors import InvalidInput
from memfold.model import Message, ensure_sequence

__all__ = [
    "CONDENSE_PROMPT",
    "EXTEND_PROMPT",
    "SUMMARIZE_PROMPT",
    "ExtractiveSummarizer",
    "SummarizeRequest",
    "Summarizer",
    "check_summarizer",
    "informativeness",
    "render_prompt",
    "render_transcript",
    "sentences_of",
]


@dataclass(frozen=True, slots=True)
class SummarizeRequest:
    """One call to a summarizer.

    With ``messages``, summarize them, extending ``previous`` (the summary so far) if there is
    one; with no messages, condense ``previous``. Either way the answer should take at most
    ``max_tokens`` tokens (a longer one is condensed, then cut).
    """

    messages: tuple[Message, ...]
    previous: str | None
    max_tokens: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", ensure_sequence(self.messages))
        if self.previous is not None and not isinstance(self.previous, str):
            raise InvalidInput(f"previous must be a str or None, got {self.previous!r}")
        tokens = self.max_tokens
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise InvalidInput(f"max_tokens must be a positive int, got {tokens!r}")

    @property
    def condense(self) -> bool:
        """Whether this asks to shorten ``previous`` rather than to add messages to it."""
        return not self.messages


@runtime_checkable
class Summarizer(Protocol):
    """Turns a `SummarizeRequest` into summary text, with sync and async twins."""

    def summarize(self, request: SummarizeRequest) -> str:
        """The summary text for ``request``."""
        ...

    async def asummarize(self, request: SummarizeRequest) -> str:
        """Async `summarize`."""
        ...


SUMMARIZE_PROMPT: Final = (
    "Summarize the conversation below for an assistant that will continue it without seeing "
    "it. Keep names, dates, numbers, decisions, open questions and the results of tool calls. "
    "Use at most {max_tokens} tokens. Reply with the summary only.\n\n"
    "<conversation>\n{messages}\n</conversation>"
)
"""The prompt for a first summary; ``{messages}`` and ``{max_tokens}`` are filled in."""

EXTEND_PROMPT: Final = (
    "Here is the summary of a conversation so far, and the messages that followed it. Write "
    "one updated summary that keeps what still matters from the old one and adds the new "
    "messages. Keep names, dates, numbers, decisions, open questions and the results of tool "
    "calls. Use at most {max_tokens} tokens. Reply with the summary only.\n\n"
    "<summary>\n{previous}\n</summary>\n\n<conversation>\n{messages}\n</conversation>"
)
"""The prompt that extends a summary; ``{previous}`` is the summary so far."""

CONDENSE_PROMPT: Final = (
    "Shorten this summary of a conversation to at most {max_tokens} tokens, keeping names, "
    "dates, numbers and decisions. Reply with the summary only.\n\n"
    "<summary>\n{previous}\n</summary>"
)
"""The prompt that condenses a summary grown over its budget."""


def render_transcript(messages: Sequence[Message]) -> str:
    """``role: text`` lines for ``messages``, tool calls as ``name(arguments)`` and tool results
    labelled with their call id."""
    lines = []
    for m in ensure_sequence(messages):
        who = f"{m.role} ({m.name})" if m.name else m.role
        if m.tool_call_id is not None:
            who = f"{who} [result of {m.tool_call_id}]"
        text = m.text
        for c in m.tool_calls:
            args = json_line(c.arguments, f"the arguments of tool call {c.id!r}")
            text += f"{chr(10) if text else ''}[call {c.id}] {c.name}({args})"
        lines.append(f"{who}: {text}")
    return "\n".join(lines)


def render_prompt(
    request: SummarizeRequest,
    *,
    summarize: str = SUMMARIZE_PROMPT,
    extend: str = EXTEND_PROMPT,
    condense: str = CONDENSE_PROMPT,
) -> str:
    """The prompt text for ``request``: one of the three templates, filled in.

    Raises:
        InvalidInput: ``request`` is not a `SummarizeRequest`, or the template used is not a
            str whose only fields are ``{messages}``, ``{previous}`` and ``{max_tokens}``
            (write a literal brace twice).
    """
    if not isinstance(request, SummarizeRequest):
        raise InvalidInput(f"expected a SummarizeRequest, got {type(request).__name__}")
    fields = {
        "messages": render_transcript(request.messages),
        "previous": request.previous or "",
        "max_tokens": request.max_tokens,
    }
    template = condense if request.condense else extend if request.previous else summarize
    if not isinstance(template, str):
        raise InvalidInput(f"a prompt template must be a str, got {type(template).__name__}")
    try:
        return template.format_map(fields)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        raise InvalidInput(
            f"the prompt template {template[:60]!r} does not fill in: use only {{messages}}, "
            f"{{previous}} and {{max_tokens}}, and write literal braces twice ({exc!r})"
        ) from exc


_SENTENCE: Final = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD: Final = re.compile(r"[A-Za-z][A-Za-z'\-]+|\d[\d,.:/\-]*")
_MONTHS: Final = frozenset(
    [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "today",
        "yesterday",
        "tomorrow",
    ]
)
_STOP: Final = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "me",
        "him",
        "her",
        "us",
        "them",
        "my",
        "your",
        "our",
        "their",
        "so",
        "do",
        "did",
        "does",
        "have",
        "has",
        "had",
        "not",
        "no",
        "yes",
        "just",
        "really",
        "very",
        "too",
        "also",
        "what",
        "how",
        "about",
        "can",
        "will",
        "would",
        "oh",
        "wow",
        "hey",
        "hi",
        "thanks",
        "thank",
        "great",
        "good",
        "nice",
        "that's",
        "it's",
        "i'm",
        "you're",
    ]
)


def informativeness(sentences: Sequence[str]) -> list[float]:
    """A score per ``"speaker: text"`` sentence: its words' rarity among ``sentences``, with
    names, numbers and dates weighted up, over the square root of its length."""
    words = [[w.lower() for w in _WORD.findall(s.split(": ", 1)[-1])] for s in sentences]
    df = Counter(w for ws in words for w in set(ws))
    n = len(sentences)
    scores = []
    for s, ws in zip(sentences, words, strict=True):
        raw = _WORD.findall(s.split(": ", 1)[-1])
        score = sum(math.log(1 + n / df[w]) for w in ws if w not in _STOP)
        score += 2.0 * sum(1 for w in raw[1:] if w[0].isupper())
        score += 2.5 * sum(1 for w in raw if w[0].isdigit() or w.lower() in _MONTHS)
        scores.append(score / math.sqrt(1 + len(ws)))
    return scores


def sentences_of(messages: Sequence[Message]) -> list[str]:
    """``"speaker: sentence"`` for every sentence of ``messages``' text, in order."""
    out = []
    for m in messages:
        who = m.name or m.role
        body = render_transcript([m]).split(": ", 1)[1]
        out += [f"{who}: {s}" for s in _SENTENCE.split(body) if s.strip()]
    return out


class ExtractiveSummarizer:
    """A summary made of the conversation's own most informative sentences; no model needed.

    Sentences score by their rare words, with names, numbers and dates weighted up; the best
    are kept, in their original order, until the token budget (estimated at
    ``chars_per_token``) is spent. The summary so far competes with the new sentences, so
    each fold stays within budget and condensing is the same operation.
    """

    def __init__(self, chars_per_token: float = 4.0) -> None:
        self.chars_per_token = check_ratio(chars_per_token)

    def summarize(self, request: SummarizeRequest) -> str:
        """The most informative sentences of ``request``, within its budget.

        Raises:
            InvalidInput: ``request`` is not a `SummarizeRequest`.
        """
        if not isinstance(request, SummarizeRequest):
            raise InvalidInput(f"expected a SummarizeRequest, got {type(request).__name__}")
        sentences = [s for s in _SENTENCE.split(request.previous or "") if s.strip()]
        return self._select(sentences + sentences_of(request.messages), request.max_tokens)

    async def asummarize(self, request: SummarizeRequest) -> str:
        """Async `summarize` (pure computation, no I/O)."""
        return self.summarize(request)

    def _select(self, sentences: list[str], max_tokens: int) -> str:
        scored = sorted(((score, i) for i, score in enumerate(informativeness(sentences))))
        budget = max_tokens * self.chars_per_token
        chosen: list[int] = []
        spent = 0.0
        for _, i in reversed(scored):
            cost = len(sentences[i]) + 1
            if spent + cost <= budget:
                chosen.append(i)
                spent += cost
        if not chosen and scored:  # no whole sentence fits: the best one, cut at a word
            words = sentences[scored[-1][1]].split()
            while words and len(" ".join(words)) + 1 > budget:
                words.pop()
            return " ".join(words)
        return " ".join(sentences[i] for i in sorted(chosen))


def check_summarizer(summarizer: object) -> Summarizer:
    """``summarizer`` if it is a `Summarizer` (an `ExtractiveSummarizer` if None), else
    `InvalidInput` saying what to pass."""
    if summarizer is None:
        return ExtractiveSummarizer()
    if not isinstance(summarizer, Summarizer):
        raise InvalidInput(
            f"summarizer must be a Summarizer (summarize and asummarize methods), got "
            f"{type(summarizer).__name__}: wrap a LangChain chat model in "
            "memfold.integrations.langchain.ChatModelSummarizer, a LlamaIndex LLM in "
            "memfold.integrations.llama_index.LLMSummarizer"
        )
    return summarizer
