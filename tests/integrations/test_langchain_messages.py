"""LangChain messages convert to memfold messages and back without loss."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)

from memfold import InvalidInput, Message, Part, ToolCall
from memfold.integrations.langchain.messages import (
    ADDITIONAL_KWARGS,
    ARTIFACT,
    CHAT_ROLE,
    INVALID_TOOL_CALLS,
    RESPONSE_METADATA,
    TOOL_STATUS,
    USAGE_METADATA,
    to_langchain,
    to_memfold,
)

keys = st.text(alphabet="abcdefgxyz_", min_size=1, max_size=6)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(keys, json_values, max_size=3)
ids = st.none() | st.text(min_size=1, max_size=12)
names = st.none() | st.text(max_size=8)

blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "audio", "file", "reasoning", "custom"])},
    optional={
        "text": st.text() | st.integers(),
        "url": st.just("https://example.com/cat.png"),
        "base64": st.just("iVBORw0KGgo="),
        "source_type": st.sampled_from(["base64", "url", "id"]),
        "data": st.just("iVBORw0KGgo=") | st.integers(),
        "mime_type": st.sampled_from(["image/png", "audio/wav"]),
        "id": st.text(min_size=1, max_size=8),
        "extras": json_objects,
    },
)
contents = st.text() | st.lists(st.text() | blocks, max_size=4)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {"name": st.text(min_size=1, max_size=8), "args": json_objects, "id": ids},
    ),
    max_size=3,
)
invalid_tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.none() | st.text(max_size=8),
            "args": st.none() | st.text(max_size=8),
            "id": ids,
            "error": st.none() | st.text(max_size=8),
            "type": st.just("invalid_tool_call"),
        }
    ),
    max_size=2,
)
usage = st.none() | st.builds(
    lambda i, o, details: {"input_tokens": i, "output_tokens": o, "total_tokens": i + o, **details},
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.just({}) | st.fixed_dictionaries({"input_token_details": st.just({"cache_read": 3})}),
)
common = {
    "content": contents,
    "id": ids,
    "name": names,
    "additional_kwargs": json_objects,
    "response_metadata": json_objects,
}

langchain_messages: st.SearchStrategy[BaseMessage] = st.one_of(
    st.builds(HumanMessage, **common),
    st.builds(SystemMessage, **common),
    st.builds(
        AIMessage,
        **common,
        tool_calls=tool_calls,
        invalid_tool_calls=invalid_tool_calls,
        usage_metadata=usage,
    ),
    st.builds(
        ToolMessage,
        **common,
        tool_call_id=st.text(max_size=12),
        status=st.sampled_from(["success", "error"]),
        artifact=json_values,
    ),
    st.builds(FunctionMessage, **{**common, "name": st.text(max_size=8)}),
    st.builds(ChatMessage, **common, role=st.sampled_from(["user", "assistant", "critic"])),
)


def through_json(message: Message) -> Message:
    """The message as a store would give it back: encoded to JSON and decoded again."""
    return Message.from_json(message.to_json())


@given(langchain_messages)
def test_any_langchain_message_round_trips(message: BaseMessage) -> None:
    """LangChain -> memfold -> JSON -> memfold -> LangChain gives a message equal to the first."""
    back = to_langchain(through_json(to_memfold(message)))
    assert back == message
    assert type(back) is type(message)


@pytest.mark.parametrize(
    ("message", "role"),
    [
        (HumanMessage("hi"), "user"),
        (AIMessage("hi"), "assistant"),
        (SystemMessage("hi"), "system"),
        (SystemMessage("hi", additional_kwargs={"__openai_role__": "developer"}), "developer"),
        (ToolMessage("hi", tool_call_id="c1"), "tool"),
        (FunctionMessage(content="hi", name="f"), "function"),
        (ChatMessage(content="hi", role="assistant"), "assistant"),
        (ChatMessage(content="hi", role="critic"), "user"),
    ],
)
def test_roles_map_to_memfold_roles(message: BaseMessage, role: str) -> None:
    """Each LangChain message type gets the memfold role of the same meaning."""
    assert to_memfold(message).role == role


def test_ai_message_with_parallel_tool_calls_maps_every_field() -> None:
    """Parallel tool calls become memfold ToolCalls in order; usage and metadata keep their keys."""
    ai = AIMessage(
        "calling",
        id="m1",
        name="bot",
        tool_calls=[
            {"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"},
            {"name": "mul", "args": {"a": 3, "b": 4}, "id": "c2"},
        ],
        usage_metadata={"input_tokens": 5, "output_tokens": 7, "total_tokens": 12},
        response_metadata={"model_name": "fake", "finish_reason": "tool_calls"},
        additional_kwargs={"refusal": None, "lc_source": "summarization"},
    )
    m = to_memfold(ai)
    assert (m.role, m.content, m.id, m.name) == ("assistant", "calling", "m1", "bot")
    assert m.tool_calls == (
        ToolCall("c1", "add", {"a": 1, "b": 2}),
        ToolCall("c2", "mul", {"a": 3, "b": 4}),
    )
    assert m.metadata == {
        ADDITIONAL_KWARGS: {"refusal": None, "lc_source": "summarization"},
        RESPONSE_METADATA: {"model_name": "fake", "finish_reason": "tool_calls"},
        USAGE_METADATA: {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12},
    }
    assert to_langchain(m) == ai


def test_tool_message_keeps_call_id_status_and_artifact() -> None:
    """A failed tool result keeps its tool_call_id, its error status and its JSON artifact."""
    result = ToolMessage("boom", tool_call_id="c1", status="error", artifact={"trace": [1, 2]})
    m = to_memfold(result)
    assert (m.role, m.tool_call_id) == ("tool", "c1")
    assert m.metadata == {TOOL_STATUS: "error", ARTIFACT: {"trace": [1, 2]}}
    assert to_langchain(through_json(m)) == result


def test_plain_messages_carry_no_metadata() -> None:
    """A message with only LangChain defaults adds no langchain.* keys to memfold metadata."""
    assert to_memfold(HumanMessage("hi")).metadata == {}
    assert to_memfold(ToolMessage("ok", tool_call_id="c1")).metadata == {}


def test_multi_part_content_maps_to_parts() -> None:
    """Text and image blocks become memfold Parts with text, url, data and mime type promoted."""
    human = HumanMessage(
        [
            "bare string",
            {"type": "text", "text": "look at this"},
            {"type": "image", "url": "https://example.com/cat.png"},
            {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png", "id": "b1"},
        ]
    )
    m = to_memfold(human)
    assert isinstance(m.content, tuple)
    assert [p.type for p in m.content] == ["text", "text", "image", "image"]
    assert m.content[1] == Part(type="text", text="look at this")
    assert m.content[2] == Part(type="image", url="https://example.com/cat.png")
    assert m.content[3] == Part(
        type="image", data="iVBORw0KGgo=", mime_type="image/png", extra={"id": "b1"}
    )
    assert m.text == "bare string\nlook at this"
    assert to_langchain(through_json(m)) == human


def test_older_base64_blocks_promote_their_data() -> None:
    """A block with source_type "base64" has its base64 under "data", which becomes Part.data."""
    human = HumanMessage(
        [
            {
                "type": "image",
                "source_type": "base64",
                "data": "iVBORw0KGgo=",
                "mime_type": "image/png",
            }
        ]
    )
    m = to_memfold(human)
    assert m.content == (
        Part(
            type="image",
            data="iVBORw0KGgo=",
            mime_type="image/png",
            extra={"source_type": "base64"},
        ),
    )
    assert to_langchain(through_json(m)) == human


def test_ids_and_names_map_to_memfold_fields() -> None:
    """LangChain's id and name are memfold's id and name."""
    m = to_memfold(HumanMessage("hi", id="msg-1", name="alice"))
    assert (m.id, m.name) == ("msg-1", "alice")


def test_chat_message_role_is_kept() -> None:
    """A free-form ChatMessage role is kept under langchain.chat_role and restored."""
    critic = ChatMessage(content="meh", role="critic")
    assert to_memfold(critic).metadata == {CHAT_ROLE: "critic"}
    assert to_langchain(to_memfold(critic)) == critic


def test_invalid_tool_calls_are_kept() -> None:
    """Unparsable tool calls survive under langchain.invalid_tool_calls."""
    bad = {"name": "f", "args": "{oops", "id": "c9", "error": "bad json"}
    ai = AIMessage("", invalid_tool_calls=[bad])
    assert to_memfold(ai).metadata[INVALID_TOOL_CALLS] == [{**bad, "type": "invalid_tool_call"}]
    assert to_langchain(to_memfold(ai)) == ai


def test_tool_call_without_id_is_stored_with_empty_id() -> None:
    """A tool call whose id is None is stored with id "" and comes back as None."""
    ai = AIMessage("", tool_calls=[{"name": "f", "args": {}, "id": None}])
    assert to_memfold(ai).tool_calls[0].id == ""
    assert to_langchain(to_memfold(ai)) == ai


def test_memfold_developer_message_becomes_tagged_system_message() -> None:
    """A memfold developer message from another host becomes a SystemMessage tagged developer."""
    lc = to_langchain(Message(role="developer", content="be terse"))
    assert isinstance(lc, SystemMessage)
    assert lc.additional_kwargs == {"__openai_role__": "developer"}


def test_chunks_are_stored_as_full_messages() -> None:
    """A streamed AIMessageChunk is stored as the AIMessage it stands for."""
    chunk = AIMessageChunk(content="partial", id="m1")
    back = to_langchain(to_memfold(chunk))
    assert type(back) is AIMessage
    assert (back.content, back.id) == ("partial", "m1")


def test_unstorable_messages_are_rejected() -> None:
    """A RemoveMessage and a content block without a type raise InvalidInput."""
    with pytest.raises(InvalidInput, match="RemoveMessage"):
        to_memfold(RemoveMessage(id="m1"))
    with pytest.raises(InvalidInput, match="'type'"):
        to_memfold(HumanMessage([{"text": "no type"}]))


def test_conversions_share_no_mutable_state() -> None:
    """Mutating a converted message never changes the memfold message it came from, or back."""
    args: dict[str, Any] = {"q": ["x"]}
    ai = AIMessage(
        [{"type": "text", "text": "t", "extras": {"k": [1]}}],
        tool_calls=[{"name": "f", "args": args, "id": "c1"}],
        additional_kwargs={"nested": {"a": [1]}},
    )
    m = to_memfold(ai)
    args["q"].append("y")
    ai.additional_kwargs["nested"]["a"].append(2)
    assert m.tool_calls[0].arguments == {"q": ["x"]}
    assert m.metadata[ADDITIONAL_KWARGS] == {"nested": {"a": [1]}}
    first = to_langchain(m)
    assert isinstance(first, AIMessage)
    first.additional_kwargs["nested"]["a"].append(3)
    first.tool_calls[0]["args"]["q"].append("z")
    assert isinstance(first.content[0], dict)
    first.content[0]["extras"]["k"].append(2)
    assert to_langchain(m) == to_langchain(through_json(m))
