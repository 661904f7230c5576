"""Token counting for chat messages: an exact counter on a bundled OpenAI tokenizer and an
approximate one that needs nothing.

Both count a message the way a chat model sees it, in memfold's ChatML-like rendering
(`render_chat`): ``<|im_start|>`` header ``<|im_sep|>`` body ``<|im_end|>``, where the header is
the role (with ``:name`` and, for a tool result, `` tool_call_id``) and the body is the text,
then one JSON line per tool call with its arguments. The three markers cost one token each, a
non-text part (image, audio, file) a flat `MEDIA_TOKENS`, and a request adds `REPLY_TOKENS` for
the model's reply header.

Examples:
    >>> from memfold import Message
    >>> counter = ApproximateCounter()
    >>> counter.count_messages([Message(role="user", content="hello there")])
    10
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Final, Protocol, runtime_checkable

from memfold.errors import InvalidInput
from memfold.model import Message, ensure_sequence

__all__ = [
    "MEDIA_TOKENS",
    "MESSAGE_TOKENS",
    "REPLY_TOKENS",
    "ApproximateCounter",
    "ExactCounter",
    "TokenCounter",
    "check_counter",
    "check_ratio",
    "default_counter",
    "render_chat",
    "render_message",
]

MESSAGE_TOKENS: Final = 3
"""The three markers around every message: ``<|im_start|>``, ``<|im_sep|>``, ``<|im_end|>``."""

REPLY_TOKENS: Final = 3
"""``<|im_start|>assistant<|im_sep|>``: the header a request adds for the model's reply."""

MEDIA_TOKENS: Final = 85
"""What one image, audio or file part costs (OpenAI's low-detail image price)."""

MIN_RATIO: Final = 0.01
"""The fewest characters per token an estimate may assume."""
MAX_RATIO: Final = 1000.0
"""The most characters per token an estimate may assume."""
_START, _SEP, _END = "<|im_start|>", "<|im_sep|>", "<|im_end|>"


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens of text and of chat messages, with the chat format's overhead."""

    def count_text(self, text: str) -> int:
        """Tokens of plain text."""
        ...

    def count_message(self, message: Message) -> int:
        """Tokens of one rendered message, its three markers and media parts included."""
        ...

    def count_messages(self, messages: Sequence[Message]) -> int:
        """Tokens of a request holding ``messages``: their sum plus `REPLY_TOKENS`."""
        ...


def check_ratio(chars_per_token: object) -> float:
    """``chars_per_token`` if it is a number from `MIN_RATIO` to `MAX_RATIO`, else
    `InvalidInput`."""
    if (
        isinstance(chars_per_token, bool)
        or not isinstance(chars_per_token, int | float)
        or not MIN_RATIO <= chars_per_token <= MAX_RATIO
    ):
        raise InvalidInput(
            f"chars_per_token must be a number from {MIN_RATIO} to {MAX_RATIO}, "
            f"got {chars_per_token!r}"
        )
    return float(chars_per_token)


def check_text(text: object) -> str:
    """``text`` if it is a str, else `InvalidInput`."""
    if not isinstance(text, str):
        raise InvalidInput(f"expected text (a str), got {type(text).__name__}")
    return text


def check_counter(counter: object) -> TokenCounter:
    """``counter`` if it is a `TokenCounter`, else `InvalidInput`."""
    if not isinstance(counter, TokenCounter):
        raise InvalidInput(f"counter must be a TokenCounter, got {type(counter).__name__}")
    return counter


def json_line(value: object, what: str) -> str:
    """``value`` as one line of compact JSON, as the model would see it.

    Raises:
        InvalidInput: ``value`` holds something JSON cannot (a set, bytes, a cycle, deep
            nesting).
    """
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"{what} is not JSON: {exc}") from exc


def render_message(message: Message) -> tuple[str, str, int]:
    """The header and body text of ``message`` in the chat rendering, and how many media parts
    it holds (counted at `MEDIA_TOKENS` each, outside the text).

    Raises:
        InvalidInput: ``message`` is not a `Message`, or its tool-call arguments are not JSON.
    """
    if not isinstance(message, Message):
        raise InvalidInput(f"expected a memfold.Message, got {type(message).__name__}")
    header = message.role
    if message.name:
        header += ":" + message.name
    if message.tool_call_id is not None:
        header += " " + message.tool_call_id
    if isinstance(message.content, str):
        body, media = message.content, 0
    else:
        texts = [p.text for p in message.content if p.text is not None]
        body, media = "\n".join(texts), sum(1 for p in message.content if p.text is None)
    for call in message.tool_calls:
        line = json_line(
            {"id": call.id, "name": call.name, "arguments": call.arguments},
            f"the arguments of tool call {call.id!r}",
        )
        body = f"{body}\n{line}" if body else line
    return header, body, media


def render_chat(messages: Sequence[Message]) -> str:
    """The text a tokenizer with the three ChatML markers as special tokens counts exactly as
    `ExactCounter.count_messages` does (media parts aside)."""
    out = []
    for m in ensure_sequence(messages):
        header, body, _ = render_message(m)
        out.append(f"{_START}{header}{_SEP}{body}{_END}")
    return "".join(out) + f"{_START}assistant{_SEP}"


class _Counter:
    """The shared message arithmetic; subclasses say how text is counted."""

    def count_text(self, text: str) -> int:
        raise NotImplementedError

    def count_message(self, message: Message) -> int:
        header, body, media = render_message(message)
        return (
            MESSAGE_TOKENS + self.count_text(header) + self.count_text(body) + media * MEDIA_TOKENS
        )

    def count_messages(self, messages: Sequence[Message]) -> int:
        count = self.count_message
        return REPLY_TOKENS + sum(count(m) for m in ensure_sequence(messages))


class ApproximateCounter(_Counter):
    """``ceil(characters / chars_per_token)`` per text piece: no tokenizer needed.

    The default ratio, 4.2 characters per token, stays within 15% of ``o200k_base`` on English
    conversations (measured on LoCoMo by ``benchmarks/compaction.py``); lower it for code or
    other languages, which take more tokens per character.

    Args:
        chars_per_token: average characters per token of the target model's tokenizer (from
            `MIN_RATIO` to `MAX_RATIO`).
    """

    def __init__(self, chars_per_token: float = 4.2) -> None:
        self.chars_per_token = check_ratio(chars_per_token)

    def count_text(self, text: str) -> int:
        """Tokens of plain text, estimated from its length."""
        return math.ceil(len(check_text(text)) / self.chars_per_token)


class ExactCounter(_Counter):
    """Exact counts with an OpenAI tokenizer bundled by ``bpe-openai`` (works offline).

    Message counts are cached by message id and text, so a thread counted each turn costs
    only its new messages.

    Args:
        encoding: ``"o200k_base"`` (GPT-4o and later) or ``"cl100k_base"`` (GPT-4, GPT-3.5).

    Raises:
        ImportError: ``bpe-openai`` is missing: ``pip install 'memfold[tokens]'``.

    Examples:
        >>> ExactCounter().count_text("hello world")
        2
    """

    _CACHE_SIZE: Final = 100_000

    def __init__(self, encoding: str = "o200k_base") -> None:
        try:
            import bpe_openai  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ImportError(
                "ExactCounter needs bpe-openai: pip install 'memfold[tokens]'"
            ) from exc
        try:
            self._encode = bpe_openai.get_encoding(encoding).encode_ordinary
        except Exception as exc:  # the library raises its own error types for unknown names
            raise InvalidInput(
                f"unknown encoding {encoding!r}: use one of "
                f"{', '.join(bpe_openai.list_encoding_names())}"
            ) from exc
        self.encoding = encoding
        self._cache: dict[tuple[str, str, str], int] = {}

    @property
    def cache_size(self) -> int:
        """How many message counts the cache holds."""
        return len(self._cache)

    def clear_cache(self) -> int:
        """Forget every cached message count (`memfold.erase` calls it: the keys hold message
        text); returns how many there were."""
        dropped = len(self._cache)
        self._cache.clear()
        return dropped

    def count_text(self, text: str) -> int:
        """Tokens of plain text; special-token strings count as ordinary text."""
        return len(self._encode(text)) if check_text(text) else 0

    def count_message(self, message: Message) -> int:
        """Tokens of one rendered message (cached when it has an id)."""
        header, body, media = render_message(message)
        if message.id is None:
            return (
                MESSAGE_TOKENS
                + self.count_text(header)
                + self.count_text(body)
                + (media * MEDIA_TOKENS)
            )
        key = (message.id, header, body)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.clear()
            found = MESSAGE_TOKENS + self.count_text(header) + self.count_text(body)
            self._cache[key] = found
        return found + media * MEDIA_TOKENS


def default_counter() -> TokenCounter:
    """`ExactCounter` when ``bpe-openai`` is installed, else `ApproximateCounter`."""
    try:
        return ExactCounter()
    except ImportError:
        return ApproximateCounter()
