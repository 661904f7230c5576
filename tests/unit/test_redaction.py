"""The redactor on its own: default rules, custom rules, messages and memory records."""

from __future__ import annotations

import re

import pytest

from memfold import InvalidInput, Message, Part, ToolCall
from memfold.memories import MemoryRecord
from memfold.redaction import DEFAULT_LABELS, REDACTED_KEY, Redactor


@pytest.mark.parametrize(
    ("text", "expected", "label"),
    [
        ("write to jane.doe+work@mail.example.co.uk today", "write to [email] today", "email"),
        ("call +1 415 555 0100 now", "call [phone] now", "phone"),
        ("call (415) 555-0100", "call [phone]", "phone"),
        ("ring +44 20 7946 0958", "ring [phone]", "phone"),
        ("ring +14155550100.", "ring [phone].", "phone"),
        ("pay with 4111 1111 1111 1111 please", "pay with [card] please", "card"),
        ("pay with 5500-0000-0000-0004", "pay with [card]", "card"),
        ("key sk-proj-abcdefghijklmnopqrstuvwx done", "key [api_key] done", "api_key"),
        ("token ghp_" + "a1B2" * 9, "token [api_key]", "api_key"),
        ("slack xoxb-1234567890-abcdefghij", "slack [api_key]", "api_key"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "aws [aws_key] here", "aws_key"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sflKxwRJSMeKKF2QT4fwpM",
            "jwt [jwt]",
            "jwt",
        ),
        ("Authorization: Bearer abc.def-ghi_jkl~mno", "Authorization: [bearer]", "bearer"),
    ],
)
def test_default_rules_replace_what_they_find_with_their_label(
    text: str, expected: str, label: str
) -> None:
    """Each default rule replaces its match with ``[label]`` and counts it."""
    found = Redactor().redact(text)
    assert found.text == expected
    assert dict(found.counts) == {label: 1}


@pytest.mark.parametrize(
    "text",
    [
        "order 123456789012 shipped",  # a long number without separators
        "on 2026-01-15 at 10:30",  # dates and times
        "server 192.168.100.200 is up",  # a dotted quad
        "card 4111 1111 1111 1112",  # fails the Luhn check
        "version 1.2.3, room 12 34 56, price 1,234,567.89",
        "ISBN 978-3-16-148410-0",
        "no secrets here: sk-short and ghp_short",
    ],
)
def test_default_rules_leave_ordinary_text_alone(text: str) -> None:
    """Numbers that are not phones or valid cards, and short lookalikes, stay as written."""
    found = Redactor().redact(text)
    assert (found.text, dict(found.counts)) == (text, {})


def test_custom_patterns_and_functions_run_after_the_defaults() -> None:
    """Labelled regexes and callables add rules; a callable may report its own count."""

    def names(text: str) -> tuple[str, int]:
        return text.replace("Alice", "[name]"), text.count("Alice")

    redactor = Redactor(
        {"ticket": r"TCK-\d+", "order": re.compile(r"ORD\d{4}")},
        functions={"names": names, "password": lambda text: text.replace("hunter2", "***")},
        mask="<{label}>",
    )
    found = redactor.redact("Alice and Alice: TCK-1, TCK-22, ORD1234, bob@example.com, hunter2")
    assert found.text == "[name] and [name]: <ticket>, <ticket>, <order>, <email>, ***"
    assert dict(found.counts) == {"email": 1, "ticket": 2, "order": 1, "names": 2, "password": 1}
    assert redactor.labels == (*DEFAULT_LABELS, "ticket", "order", "names", "password")


def test_defaults_can_be_chosen_by_label_or_turned_off() -> None:
    """``defaults`` takes a list of default labels, or False for custom rules only."""
    text = "bob@example.com +1 415 555 0100"
    assert Redactor(defaults=["phone"]).redact(text).text == "bob@example.com [phone]"
    assert Redactor(defaults=False).redact(text).text == text
    assert Redactor.from_option("email").labels == ("email",)
    assert Redactor.from_option("default").labels == DEFAULT_LABELS
    assert Redactor.from_option("off") is None


@pytest.mark.parametrize(
    "build",
    [
        lambda: Redactor(defaults=["emails"]),
        lambda: Redactor(defaults="email"),
        lambda: Redactor({"bad label!": "x"}),
        lambda: Redactor({"x": "("}),
        lambda: Redactor(functions={"x": 3}),  # type: ignore[dict-item]
        lambda: Redactor(mask=None),  # type: ignore[arg-type]
    ],
)
def test_bad_rules_are_refused(build: object) -> None:
    """Unknown default labels, bad labels, regexes or callables raise InvalidInput."""
    with pytest.raises(InvalidInput):
        build()  # type: ignore[operator]


def test_a_function_returning_something_else_is_refused() -> None:
    """A custom callable must return a str or a (str, int) pair."""
    redactor = Redactor(functions={"bad": lambda text: 42}, defaults=False)  # type: ignore[dict-item,return-value]
    with pytest.raises(InvalidInput, match="bad"):
        redactor.redact("x")


def test_messages_lose_secrets_in_text_parts_and_tool_arguments() -> None:
    """Text, text parts and tool-call arguments are redacted; counts go to the metadata."""
    message = Message(
        role="assistant",
        content=(
            Part(type="text", text="mail bob@example.com"),
            Part(type="image", url="http://x/bob@example.com.png"),
        ),
        tool_calls=(
            ToolCall("c1", "send", {"to": ["ann@example.org"], "card": "4111111111111111"}),
        ),
        metadata={"source": "test"},
    )
    redacted = Redactor().redact_message(message)
    assert redacted.content == (
        Part(type="text", text="mail [email]"),
        Part(type="image", url="http://x/bob@example.com.png"),  # only text is redacted
    )
    assert redacted.tool_calls[0].arguments == {"to": ["[email]"], "card": "[card]"}
    assert redacted.metadata == {"source": "test", REDACTED_KEY: {"card": 1, "email": 2}}
    clean = Message(role="user", content="nothing to see")
    assert Redactor().redact_message(clean) is clean


def test_redacting_again_adds_to_the_earlier_counts() -> None:
    """A message redacted before and written again with new secrets keeps both counts."""
    redactor = Redactor()
    first = redactor.redact_message(Message(role="user", content="bob@example.com"))
    again = redactor.redact_message(
        Message(role="user", content=f"{first.content} +1 415 555 0100", metadata=first.metadata)
    )
    assert again.metadata[REDACTED_KEY] == {"email": 1, "phone": 1}
    assert redactor.redact_message(first) is first  # nothing new: unchanged


def test_records_lose_secrets_in_text_and_value_strings() -> None:
    """A memory's text and the strings in its value are redacted; counts go to the value."""
    record = MemoryRecord(
        ("acme", "u1"),
        text="reach me at bob@example.com",
        value={"phone": "+1 415 555 0100", "nested": {"keys": ["sk-" + "x" * 20]}, "n": 3},
    )
    redacted = Redactor().redact_record(record)
    assert redacted.text == "reach me at [email]"
    assert redacted.value == {
        "phone": "[phone]",
        "nested": {"keys": ["[api_key]"]},
        "n": 3,
        REDACTED_KEY: {"api_key": 1, "email": 1, "phone": 1},
    }
