"""The data model: validation and lossless JSON round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memfold import InvalidInput, LimitExceeded, Limits, Message, Part, ThreadInfo, ToolCall, ops
from memfold.backends.bodies import stored_message, stored_time
from memfold.model import ROLES, stamped
from memfold.stores import check_message, encode_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=4)
parts = st.builds(
    Part,
    type=st.sampled_from(["text", "image", "audio", "file", "custom"]),
    text=st.none() | st.text(),
    url=st.none() | st.text(),
    data=st.none() | st.text(),
    mime_type=st.none() | st.text(),
    extra=json_objects,
)
tool_calls = st.builds(
    ToolCall, id=st.text(min_size=1), name=st.text(min_size=1), arguments=json_objects
)
times = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]))
messages = st.builds(
    Message,
    role=st.sampled_from(sorted(ROLES)),
    content=st.text() | st.lists(parts, max_size=3).map(tuple),
    name=st.none() | st.text(),
    id=st.none() | st.text(min_size=1),
    tool_calls=st.lists(tool_calls, max_size=3).map(tuple),
    tool_call_id=st.none() | st.text(),
    created_at=st.none() | times,
    metadata=json_objects,
)


@given(messages)
def test_messages_round_trip_through_json(message: Message) -> None:
    """Any message survives to_json/from_json unchanged."""
    assert Message.from_json(message.to_json()) == message
    assert Message.from_dict(message.to_dict()) == message


@given(messages.filter(lambda m: m.id is not None))
def test_messages_round_trip_through_their_stored_form(message: Message) -> None:
    """A stored body, the id and the stored time give the message back; the limit on a
    message's size counts its whole JSON, id and time included, to the byte."""
    size = len(message.to_json().encode("utf-8"))
    body = check_message(message, "m", Limits(max_message_bytes=size))
    assert json.loads(body) == message.to_dict(stored=True)
    assert stored_message(json.loads(body), message.id or "", stored_time(message)) == message
    with pytest.raises(LimitExceeded):
        check_message(message, "m", Limits(max_message_bytes=size - 1))


plain_messages = st.builds(
    Message,
    role=st.sampled_from(sorted(ROLES)),
    content=st.text(),
    id=st.none() | st.text(min_size=1),
    created_at=st.none() | st.datetimes(timezones=st.just(UTC)),
)


@given(plain_messages | messages)
def test_a_stored_body_is_the_compact_json_of_the_stored_dict(message: Message) -> None:
    """Plain messages (role, text and a UTC time: most appends) take a shorter way to their
    body; it is byte for byte what the encoder writes for any message, limits counted alike."""
    expected = json.dumps(message.to_dict(stored=True), ensure_ascii=False, separators=(",", ":"))
    assert check_message(message, "m", Limits()) == expected
    size = len(message.to_json().encode("utf-8"))
    check_message(message, "m", Limits(max_message_bytes=size))
    with pytest.raises(LimitExceeded, match=r"bytes of JSON|bytes or more"):
        check_message(message, "m", Limits(max_message_bytes=size - 1))


@pytest.mark.parametrize("content", ["\ud800", "caf\u00e9 \udfff", ("x" * 10) + "\ud83d"])
def test_a_lone_surrogate_is_invalid_input(content: str) -> None:
    """Text UTF-8 cannot hold is refused, in plain messages and in others."""
    for message in (
        Message(role="user", content=content),
        Message(role="user", content=content, metadata={"k": 1}),
        Message(role="user", content="ok", name=content),
    ):
        with pytest.raises(InvalidInput, match="not valid Unicode"):
            check_message(message, "m", Limits())


@given(json_values)
def test_stored_json_is_compact_json(value: object) -> None:
    """What memfold writes is exactly the standard library's compact JSON of the value."""
    assert encode_json(value, "v") == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"x": object()}, {1j: 1}])
def test_what_json_cannot_hold_is_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInput, match="not JSON-serialisable"):
        encode_json(value, "v")


@given(messages, st.text(min_size=1), times)
def test_a_stamped_copy_is_the_message_with_its_id_and_time(
    message: Message, message_id: str, when: datetime
) -> None:
    copy = stamped(message, message_id, when)
    assert type(copy) is Message
    assert copy == Message(
        message.role, message.content, message.name, message_id, message.tool_calls,
        message.tool_call_id, when, message.metadata,
    )  # fmt: skip


def test_thread_info_round_trips() -> None:
    """A ThreadInfo survives to_dict/from_dict unchanged."""
    now = datetime.now(UTC)
    info = ThreadInfo("t", "tenant", now, now, 3, {"a": [1]})
    assert ThreadInfo.from_dict(info.to_dict()) == info


def test_lists_become_tuples() -> None:
    """Content parts and tool calls given as lists are stored as tuples (the model is frozen)."""
    m = Message(
        role="assistant", content=[Part(type="text", text="a")], tool_calls=[ToolCall("1", "f")]
    )
    assert isinstance(m.content, tuple)
    assert isinstance(m.tool_calls, tuple)
    with pytest.raises(AttributeError):
        m.role = "user"  # type: ignore[misc]


def test_text_joins_text_parts() -> None:
    """A message's text is its text parts joined by newlines."""
    m = Message(
        role="user",
        content=(Part("text", text="a"), Part("image", url="u"), Part("text", text="b")),
    )
    assert m.text == "a\nb"


def test_naive_times_are_refused() -> None:
    """created_at must carry a timezone."""
    with pytest.raises(InvalidInput, match="timezone"):
        Message(role="user", created_at=datetime(2026, 1, 1))


@pytest.mark.parametrize("text", ["not json", "[1]", '{"content": "no role"}', '{"role": "alien"}'])
def test_from_json_refuses_non_messages(text: str) -> None:
    """Malformed JSON or objects that are not messages raise InvalidInput."""
    with pytest.raises(InvalidInput):
        Message.from_json(text)


@given(st.lists(messages, max_size=2).map(tuple), st.text(min_size=1), st.text(min_size=1))
def test_an_appended_op_is_the_one_its_constructor_builds(
    found: tuple[Message, ...], tenant: str, thread_id: str
) -> None:
    """`ops.appended` (the hot path's way to build an append) sets every field."""
    bodies = tuple(m.to_json() for m in found)
    op = ops.appended(tenant, thread_id, found, bodies)
    assert type(op) is ops.AppendMessages
    assert op == ops.AppendMessages(tenant, thread_id, found, bodies)
