"""Redaction: personal data and secrets replaced by labels before anything is stored or embedded.

A `Redactor` runs its rules over text, one after the other, and replaces each match with its
label in brackets (``[email]``). The default rules find e-mail addresses, phone numbers, card
numbers (only those passing the Luhn check), API keys and tokens (``sk-...``, GitHub
``ghp_...``, Slack ``xox...-``, Google ``AIza...``), AWS access key ids (``AKIA...``), JWTs and
bearer tokens; add your own as labelled regular expressions or plain callables.

Stores apply it on write when opened with ``redactor=`` (or the URL option ``redact=default``,
or ``redact=email,phone`` for some default rules only): thread messages (text, text parts,
tool-call arguments and the metadata that holds content, `memfold.model.CONTENT_METADATA`) and
long-term memories (text and the strings of the value; not the bytes of a key-value entry,
`memfold.memory_model.BYTES_KEY`), before the store embeds or encrypts anything. What was
removed is never kept: the message's metadata (a memory's value) records only the labels and
counts, under `REDACTED_KEY`. Redaction is off unless asked for.

Examples:
    >>> r = Redactor()
    >>> found = r.redact("mail jane.doe@example.com or call +1 415 555 0100")
    >>> found.text, dict(found.counts)
    ('mail [email] or call [phone]', {'email': 1, 'phone': 1})
    >>> Redactor({"ticket": r"TCK-\\d+"}, defaults=False).redact("see TCK-42").text
    'see [ticket]'
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeAlias

from memfold.errors import InvalidInput
from memfold.memory_model import BYTES_KEY, MemoryRecord
from memfold.model import CONTENT_METADATA, JSON, Message, Part, ToolCall
from memfold.urls import take_option

__all__ = [
    "DEFAULT_LABELS",
    "REDACTED_KEY",
    "Redacted",
    "RedactionFunction",
    "Redactor",
    "check_redactor",
    "take_redactor",
]

REDACTED_KEY: Final = "redacted"
"""The metadata key (for a memory: the value key) holding ``{label: count}`` of what was
redacted."""

RedactionFunction: TypeAlias = Callable[[str], "str | tuple[str, int]"]
"""A custom rule: takes text, returns it redacted, optionally with how many things it removed
(a bare str counts as one redaction when it differs from the input)."""


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if position % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and _luhn(digits)


_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def _phone(match: str) -> bool:
    digits = sum(c.isdigit() for c in match)
    # 9 digits at least, so dates (2026-01-15) and times stay; dotted quads are addresses.
    return 9 <= digits <= 15 and not _DOTTED_QUAD.fullmatch(match)


@dataclass(frozen=True, slots=True)
class _Rule:
    label: str
    pattern: re.Pattern[str] | None = None
    valid: Callable[[str], bool] | None = None
    function: RedactionFunction | None = None

    def apply(self, text: str, mask: str) -> tuple[str, int]:
        if self.function is not None:
            return _called(self.label, self.function, text)
        assert self.pattern is not None
        count = 0

        def masked(match: re.Match[str]) -> str:
            nonlocal count
            if self.valid is not None and not self.valid(match.group()):
                return match.group()
            count += 1
            return mask

        return self.pattern.sub(masked, text), count


def _called(label: str, function: RedactionFunction, text: str) -> tuple[str, int]:
    result = function(text)
    if isinstance(result, str):
        return result, int(result != text)
    if (
        isinstance(result, tuple)
        and len(result) == 2
        and isinstance(result[0], str)
        and isinstance(result[1], int)
    ):
        return result
    raise InvalidInput(
        f"redaction function {label!r} must return a str or a (str, int) tuple, "
        f"got {type(result).__name__}"
    )


_DEFAULTS: Final = (
    _Rule("bearer", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{8,}=*")),
    _Rule("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")),
    _Rule(
        "api_key",
        re.compile(
            r"\b(?:sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{16,}"
            r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})"
        ),
    ),
    _Rule("aws_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    _Rule(
        "email",
        re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    ),
    _Rule("card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card),
    _Rule(
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?"
            r"\d{2,4}(?:[ .-]\d{2,4}){1,4}(?!\w)"
            r"|(?<![\w+])\+\d{8,15}(?!\w)"
        ),
        _phone,
    ),
)

DEFAULT_LABELS: Final = tuple(rule.label for rule in _DEFAULTS)
"""The default rules' labels, in the order they run."""


@dataclass(frozen=True, slots=True)
class Redacted:
    """Text after redaction, and how many matches of each label it lost."""

    text: str
    counts: Mapping[str, int] = field(default_factory=dict)


class Redactor:
    """Replaces personal data and secrets in text with ``[label]``.

    Args:
        patterns: your own rules, label to regular expression (text or compiled); they run
            after the default ones.
        functions: your own rules, label to a callable (see `RedactionFunction`); they run
            last.
        defaults: run every default rule (True), none (False), or only those labelled (see
            `DEFAULT_LABELS`).
        mask: what replaces a match; ``{label}`` is filled in.

    Raises:
        InvalidInput: an unknown default label, a bad regular expression or label, or a mask
            that is not a str.
    """

    def __init__(
        self,
        patterns: Mapping[str, str | re.Pattern[str]] | None = None,
        *,
        functions: Mapping[str, RedactionFunction] | None = None,
        defaults: bool | Iterable[str] = True,
        mask: str = "[{label}]",
    ) -> None:
        if not isinstance(mask, str):
            raise InvalidInput(f"mask must be a str, got {type(mask).__name__}")
        try:
            mask.format(label="label")
        except (KeyError, IndexError, ValueError) as exc:
            raise InvalidInput(
                f"mask {mask!r} may use only {{label}} (write a literal brace twice): {exc!r}"
            ) from exc
        for name, rules_given in (("patterns", patterns), ("functions", functions)):
            if rules_given is not None and not isinstance(rules_given, Mapping):
                raise InvalidInput(f"{name} must map labels to rules, got {rules_given!r}")
        self.mask = mask
        rules: list[_Rule] = []
        if defaults is True:
            rules.extend(_DEFAULTS)
        elif defaults is not False:
            if isinstance(defaults, str) or not isinstance(defaults, Iterable):
                raise InvalidInput("defaults takes True, False or a list of labels")
            wanted = list(defaults)
            unknown = [label for label in wanted if label not in DEFAULT_LABELS]
            if unknown:
                raise InvalidInput(
                    f"unknown default redaction labels {unknown!r}: use some of "
                    f"{', '.join(DEFAULT_LABELS)}"
                )
            rules.extend(rule for rule in _DEFAULTS if rule.label in wanted)
        for label, pattern in (patterns or {}).items():
            try:
                compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
            except (re.error, TypeError) as exc:
                raise InvalidInput(f"redaction pattern {label!r} is not a regex: {exc}") from exc
            rules.append(_Rule(_check_label(label), compiled))
        for label, function in (functions or {}).items():
            if not callable(function):
                raise InvalidInput(f"redaction function {label!r} is not callable")
            rules.append(_Rule(_check_label(label), function=function))
        self._rules = tuple(rules)
        self._masks = {rule.label: mask.format(label=rule.label) for rule in rules}

    @classmethod
    def from_option(cls, value: str) -> Redactor | None:
        """The redactor a URL option names: ``default`` (every default rule), a comma list of
        default labels (``email,phone``), or ``off``/``none`` (None: no redaction)."""
        if not isinstance(value, str):
            raise InvalidInput(f"redact= must be default, off or a list of labels, got {value!r}")
        value = value.strip()
        if value in ("off", "none", ""):
            return None
        if value in ("default", "on", "all"):
            return cls()
        return cls(defaults=[label.strip() for label in value.split(",")])

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels of the rules this redactor runs, in order."""
        return tuple(rule.label for rule in self._rules)

    def redact(self, text: str) -> Redacted:
        """``text`` with every match replaced, and the counts per label.

        Raises:
            InvalidInput: ``text`` is not a str.
        """
        if not isinstance(text, str):
            raise InvalidInput(f"only text can be redacted, got {type(text).__name__}")
        counts: dict[str, int] = {}
        for rule in self._rules:
            text, n = rule.apply(text, self._masks[rule.label])
            if n:
                counts[rule.label] = counts.get(rule.label, 0) + n
        return Redacted(text, counts)

    def redact_json(self, value: JSON, counts: Counter[str]) -> JSON:
        """``value`` with every string in it redacted (object keys are kept); adds what was
        found to ``counts``.

        Raises:
            InvalidInput: ``counts`` is not a Counter, or ``value`` nests too deeply.
        """
        if not isinstance(counts, Counter):
            raise InvalidInput(f"counts must be a collections.Counter, got {counts!r}")
        try:
            return self._json(value, counts)
        except RecursionError as exc:
            raise InvalidInput("the value nests too deeply to redact") from exc

    def _json(self, value: JSON, counts: Counter[str]) -> JSON:
        if isinstance(value, str):
            found = self.redact(value)
            counts.update(found.counts)
            return found.text
        if isinstance(value, list):
            return [self._json(v, counts) for v in value]
        if isinstance(value, dict):
            return {k: self._json(v, counts) for k, v in value.items()}
        return value

    def redact_message(self, message: Message) -> Message:
        """``message`` with its text, text parts, tool-call arguments and the strings of its
        `memfold.model.CONTENT_METADATA` redacted, and the counts added to its metadata under
        `REDACTED_KEY` (unchanged if nothing matched).

        Raises:
            InvalidInput: ``message`` is not a `Message`, or its arguments nest too deeply.
        """
        if not isinstance(message, Message):
            raise InvalidInput(f"expected a memfold.Message, got {type(message).__name__}")
        counts: Counter[str] = Counter()
        content: str | tuple[Part, ...]
        if isinstance(message.content, str):
            found = self.redact(message.content)
            counts.update(found.counts)
            content = found.text
        else:
            content = tuple(self._part(p, counts) for p in message.content)
        calls = tuple(
            ToolCall(c.id, c.name, self._arguments(c.arguments, counts)) for c in message.tool_calls
        )
        said = {
            k: self.redact_json(v, counts)
            for k, v in message.metadata.items()
            if k in CONTENT_METADATA
        }
        if not counts:
            return message
        metadata = {**message.metadata, **said, REDACTED_KEY: _merged(message.metadata, counts)}
        return replace(message, content=content, tool_calls=calls, metadata=metadata)

    def redact_record(self, record: MemoryRecord) -> MemoryRecord:
        """``record`` with its text and the strings of its value redacted, and the counts
        added to its value under `REDACTED_KEY` (unchanged if nothing matched, or if it is a
        key-value entry: no text, and `memfold.memory_model.BYTES_KEY` alone in its value).

        Raises:
            InvalidInput: ``record`` is not a `MemoryRecord`, its value is not a mapping or
                nests too deeply.
        """
        if not isinstance(record, MemoryRecord) or not isinstance(record.value, Mapping):
            raise InvalidInput("expected a MemoryRecord with a mapping as its value")
        if not record.text and record.value.keys() == {BYTES_KEY}:
            return record  # bytes, base64-encoded: not text, and redacting would corrupt them
        counts: Counter[str] = Counter()
        found = self.redact(record.text)
        counts.update(found.counts)
        value = {
            k: v if k == REDACTED_KEY else self.redact_json(v, counts)
            for k, v in record.value.items()
        }
        if not counts:
            return record
        value[REDACTED_KEY] = _merged(record.value, counts)
        return replace(record, text=found.text, value=value)

    def _part(self, part: Part, counts: Counter[str]) -> Part:
        if part.text is None:
            return part
        found = self.redact(part.text)
        counts.update(found.counts)
        return part if not found.counts else replace(part, text=found.text)

    def _arguments(self, arguments: Mapping[str, JSON], counts: Counter[str]) -> dict[str, JSON]:
        return {k: self.redact_json(v, counts) for k, v in arguments.items()}

    def __repr__(self) -> str:
        return f"Redactor(labels={list(self.labels)!r})"


def check_redactor(value: object) -> Redactor | None:
    """``value`` if it is a `Redactor` or None, else `InvalidInput`."""
    if value is not None and not isinstance(value, Redactor):
        raise InvalidInput(f"redactor must be a memfold Redactor or None, got {value!r}")
    return value


def take_redactor(
    url: str, options: Mapping[str, Any]
) -> tuple[str, dict[str, Any], Redactor | None]:
    """``url`` and ``options`` without the redaction settings, and the redactor they ask for:
    a ``redactor=`` keyword, else ``redact=`` (a keyword or a URL option, see
    `Redactor.from_option`), else None.

    Examples:
        >>> url, rest, redactor = take_redactor("sqlite:///x.db?redact=email", {"schema": "s"})
        >>> url, rest, redactor.labels
        ('sqlite:///x.db', {'schema': 's'}, ('email',))
    """
    url, rest, option = take_option(url, options, "redact", Redactor.from_option)
    if isinstance(option, str):
        option = Redactor.from_option(option)
    return url, rest, check_redactor(rest.pop("redactor", option))


def _check_label(label: object) -> str:
    if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", label):
        raise InvalidInput(
            f"a redaction label must be 1-64 letters, digits, '_', '.' or '-', got {label!r}"
        )
    return label


def _merged(metadata: Mapping[str, JSON], counts: Counter[str]) -> dict[str, JSON]:
    """Earlier counts (a message redacted before, written again) plus the new ones."""
    earlier = metadata.get(REDACTED_KEY)
    merged: Counter[str] = Counter()
    if isinstance(earlier, dict):
        merged.update({k: v for k, v in earlier.items() if isinstance(v, int)})
    merged.update(counts)
    return dict(sorted(merged.items()))
