"""Hostile input to redaction (`memfold.redaction`): redactors built from hostile patterns,
labels, masks, defaults and URL options build or raise a `memfold.errors` error, and redacting
hostile text, JSON, messages and memory records returns text with every match masked, the rest
kept, and counts that add up, or raises one."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memfold import InvalidInput, MemfoldError, Message
from memfold.memory_model import MemoryRecord
from memfold.redaction import DEFAULT_LABELS, REDACTED_KEY, Redactor, check_redactor, take_redactor
from tests.reliability.fuzzing import (
    FUZZ,
    INJECTIONS,
    hostile_ids,
    hostile_keys,
    hostile_text,
    json_objects,
    json_values,
    messages,
)

SECRETS = ["ana@example.com", "+1 415 555 0100", "4111 1111 1111 1111", "sk-" + "a" * 40]


def texts() -> st.SearchStrategy[Any]:
    """Hostile text with personal data mixed in, and things that are not text."""
    mixed = st.lists(st.sampled_from(SECRETS) | hostile_text(max_size=20), max_size=4).map(" ".join)
    return st.one_of(mixed, mixed, hostile_text(), st.sampled_from([None, b"ana@example.com", 1]))


@FUZZ
@given(
    patterns=st.none()
    | st.dictionaries(hostile_keys(), st.sampled_from(["x+", "(", "[a-", r"\d{3}"]) | hostile_ids(),
                      max_size=2)
    | st.sampled_from(["email", ["x"]]),
    defaults=st.sampled_from([True, False, None, 3, "email"])
    | st.lists(st.sampled_from(DEFAULT_LABELS) | hostile_keys(), max_size=2),
    mask=st.sampled_from(["[{label}]", "***", "{x}", "{", "{0}", "}"]) | hostile_ids(),
    option=st.sampled_from(["default", "off", "email,phone", "email,nope", ""]) | hostile_ids(),
)  # fmt: skip
def test_redactors_build_or_refuse(patterns: Any, defaults: Any, mask: Any, option: Any) -> None:
    """Redactor, Redactor.from_option, check_redactor and take_redactor with hostile patterns,
    labels, defaults, masks and options build a redactor or raise a memfold error."""
    try:
        redactor = Redactor(patterns, defaults=defaults, mask=mask)
        assert check_redactor(redactor) is redactor
    except MemfoldError:
        pass
    try:
        found = Redactor.from_option(option)
        assert found is None or isinstance(found, Redactor)
    except MemfoldError:
        pass
    with pytest.raises(InvalidInput):
        check_redactor(option)
    try:
        url, rest, taken = take_redactor("memory://", {"redact": option, "schema": "s"})
        assert (url, rest) == ("memory://", {"schema": "s"})
        assert taken is None or isinstance(taken, Redactor)
    except MemfoldError:
        pass


@FUZZ
@given(
    text=texts(),
    value=json_values(),
    message=messages(),
    record_text=hostile_text(max_size=40),
    record_value=json_objects(max_leaves=6),
)
def test_redaction_masks_or_refuses(
    text: Any, value: Any, message: Message, record_text: str, record_value: Any
) -> None:
    """redact, redact_json, redact_message and redact_record of hostile text, JSON, messages
    and records mask every secret, count what they masked, and keep text without secrets as
    it was, or raise a memfold error."""
    redactor = Redactor()
    try:
        found = redactor.redact(text)
    except InvalidInput:
        assert not isinstance(text, str)
    else:
        assert not any(secret in found.text for secret in SECRETS)
        assert (found.text == text) == (not found.counts)
        assert all(n > 0 for n in found.counts.values())
    counts: Counter[str] = Counter()
    with contextlib.suppress(InvalidInput):
        redactor.redact_json(value, counts)
    try:
        redacted = redactor.redact_message(message)
        assert (redacted is message) == (REDACTED_KEY not in redacted.metadata or
                                         redacted.metadata == message.metadata)  # fmt: skip
    except InvalidInput:
        pass
    try:
        record = MemoryRecord(("fuzz",), "r", record_text, record_value)
        redacted_record = redactor.redact_record(record)
        assert redacted_record.namespace == record.namespace
    except InvalidInput:
        pass


@pytest.mark.parametrize(
    "call",
    [
        lambda: Redactor(mask="{x}"),
        lambda: Redactor(mask="{"),
        lambda: Redactor(defaults=3),  # type: ignore[arg-type]
        lambda: Redactor(defaults=[["email"]]),  # type: ignore[list-item]
        lambda: Redactor("email"),  # type: ignore[arg-type]
        lambda: Redactor.from_option(None),  # type: ignore[arg-type]
        lambda: Redactor().redact(None),  # type: ignore[arg-type]
        lambda: Redactor().redact_json({"a": {1, 2}}, None),  # type: ignore[arg-type]
        lambda: Redactor().redact_message("ana@example.com"),  # type: ignore[arg-type]
        lambda: Redactor().redact_record("ana@example.com"),  # type: ignore[arg-type]
        lambda: take_redactor(None, {}),  # type: ignore[arg-type]
        lambda: Redactor().redact_record(MemoryRecord(("n",), "r", "", [])),  # type: ignore[arg-type]
    ],
)
def test_found_bugs_raise_invalid_input(call: Any) -> None:
    """Regressions from the fuzzing: each raised a raw KeyError, ValueError, TypeError or
    AttributeError; each now raises InvalidInput."""
    with pytest.raises(InvalidInput):
        call()


def test_injections_are_kept_as_text() -> None:
    """Query and key-pattern injections hold no personal data: redaction leaves them as they
    are."""
    for text in INJECTIONS:
        assert Redactor().redact(text).text == text
