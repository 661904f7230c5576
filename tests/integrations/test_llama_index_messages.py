"""LlamaIndex chat messages convert to memfold messages and back without loss."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_index.core.base.llms.types import (
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms import ChatMessage

from memfold import InvalidInput, Message, Part, ToolCall
from memfold.integrations.llama_index.messages import (
    ADDITIONAL_KWARGS,
    RAW_TOOL_KWARGS,
    ROLE,
    TOOL_CALL_POSITIONS,
    to_llama_index,
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
additional_kwargs = st.builds(
    lambda extra, name, call_id: {
        **extra,
        **({} if name is None else {"name": name}),
        **({} if call_id is None else {"tool_call_id": call_id}),
    },
    json_objects,
    st.none() | st.text(max_size=8),
    st.none() | st.text(max_size=8),
)
images = st.one_of(
    st.builds(
        ImageBlock,
        url=st.sampled_from(["https://example.com/cat.png", "https://example.com/x"]),
        detail=st.none() | st.sampled_from(["low", "high"]),
    ),
    st.builds(
        ImageBlock,
        image=st.binary(min_size=1, max_size=16),
        image_mimetype=st.none() | st.just("image/png"),
    ),
)
blocks = st.one_of(
    st.builds(TextBlock, text=st.text()),
    images,
    st.builds(
        ThinkingBlock,
        content=st.none() | st.text(),
        num_tokens=st.none() | st.integers(0, 99),
        additional_information=json_objects,
    ),
    st.builds(
        ToolCallBlock,
        tool_call_id=st.none() | st.text(min_size=1, max_size=8),
        tool_name=st.text(min_size=1, max_size=8),
        tool_kwargs=json_objects | st.text(max_size=8),
    ),
)
chat_messages = st.builds(
    ChatMessage,
    role=st.sampled_from(list(MessageRole)),
    blocks=st.lists(blocks, max_size=4),
    additional_kwargs=additional_kwargs,
)


def through_json(message: Message) -> Message:
    """The message as a store would give it back: encoded to JSON and decoded again."""
    return Message.from_json(message.to_json())


@given(chat_messages)
def test_any_chat_message_round_trips(message: ChatMessage) -> None:
    """LlamaIndex -> memfold -> JSON -> memfold -> LlamaIndex gives a message equal to the first."""
    assert to_llama_index(through_json(to_memfold(message))) == message


def test_text_message_has_plain_content() -> None:
    """A one-text-block message is plain string content with no host metadata."""
    m = to_memfold(ChatMessage(role="user", content="hello"))
    assert (m.role, m.content, m.metadata) == ("user", "hello", {})


def test_tool_calls_and_results_map_to_memfold_fields() -> None:
    """ToolCallBlocks become memfold ToolCalls; a tool result's call id and name are promoted."""
    call = ChatMessage(
        role="assistant",
        blocks=[
            TextBlock(text="Let me check."),
            ToolCallBlock(tool_call_id="c1", tool_name="add", tool_kwargs={"a": 1, "b": 2}),
            ToolCallBlock(tool_call_id="c2", tool_name="mul", tool_kwargs={"a": 3, "b": 4}),
        ],
    )
    m = to_memfold(call)
    assert (m.content, m.metadata) == ("Let me check.", {})
    assert m.tool_calls == (
        ToolCall("c1", "add", {"a": 1, "b": 2}),
        ToolCall("c2", "mul", {"a": 3, "b": 4}),
    )
    result = ChatMessage(
        role="tool", content="3", additional_kwargs={"tool_call_id": "c1", "name": "add", "x": 1}
    )
    r = to_memfold(result)
    assert (r.role, r.content, r.tool_call_id, r.name) == ("tool", "3", "c1", "add")
    assert r.metadata == {ADDITIONAL_KWARGS: {"x": 1}}
    assert to_llama_index(through_json(r)) == result


def test_tool_call_oddities_are_kept() -> None:
    """Unparsed string tool kwargs and tool calls placed before text are restored as they were."""
    message = ChatMessage(
        role="assistant",
        blocks=[
            ToolCallBlock(tool_call_id=None, tool_name="f", tool_kwargs="{not json"),
            TextBlock(text="after"),
        ],
    )
    m = to_memfold(message)
    assert m.tool_calls == (ToolCall("", "f", {}),)
    assert m.metadata == {TOOL_CALL_POSITIONS: [0], RAW_TOOL_KWARGS: ["{not json"]}
    assert to_llama_index(through_json(m)) == message


def test_string_tool_kwargs_holding_an_object_are_the_arguments() -> None:
    """A JSON object in string tool kwargs is the call's arguments; other strings give none."""
    texts = [
        '{"city": "Paris", "days": [1, 2]}',
        "[1]",
        '{"a": NaN}',
        '{"a": 1e999}',
        '{"a": "\\ud800"}',
    ]
    message = ChatMessage(
        role="assistant",
        blocks=[ToolCallBlock(tool_call_id="c", tool_name="f", tool_kwargs=t) for t in texts],
    )
    m = to_memfold(message)
    assert [c.arguments for c in m.tool_calls] == [{"city": "Paris", "days": [1, 2]}, *[{}] * 4]
    assert m.metadata == {RAW_TOOL_KWARGS: texts}
    assert to_llama_index(through_json(m)) == message


def test_images_map_to_image_parts() -> None:
    """An image block by URL or by bytes becomes an image Part with url or base64 data."""
    by_url = ImageBlock(url="https://example.com/cat.png", detail="high")
    by_bytes = ImageBlock(image=b"\x89PNG\r\n\x1a\n0000", image_mimetype="image/png")
    m = to_memfold(ChatMessage(role="user", blocks=[TextBlock(text="see"), by_url, by_bytes]))
    assert isinstance(m.content, tuple)
    assert m.content[0] == Part(type="text", text="see")
    assert m.content[1] == Part(
        type="image",
        url="https://example.com/cat.png",
        mime_type="image/png",
        extra={"detail": "high"},
    )
    assert m.content[2] == Part(type="image", data="iVBORw0KGgowMDAw", mime_type="image/png")


def test_extra_roles_are_kept_as_assistant() -> None:
    """The chatbot and model roles are stored as assistant messages and restored."""
    for role in ("chatbot", "model"):
        m = to_memfold(ChatMessage(role=role, content="hi"))
        assert (m.role, m.metadata) == ("assistant", {ROLE: role})
        assert to_llama_index(m).role == MessageRole(role)


def test_foreign_parts_llama_index_cannot_show_are_left_out() -> None:
    """A part of a type LlamaIndex lacks is left out; text and images from other hosts convert."""
    m = Message(
        role="assistant",
        content=(
            Part(type="reasoning", extra={"reasoning": "hmm"}),
            Part(type="text", text="answer", extra={"langchain.str": True}),
            Part(type="image", data="iVBORw0KGgo=", mime_type="image/png", extra={"id": "b1"}),
        ),
        id="m1",
        name="bot",
    )
    out = to_llama_index(m)
    assert [type(b) for b in out.blocks] == [TextBlock, ImageBlock]
    assert out.content == "answer"
    assert out.additional_kwargs == {"name": "bot"}


def test_non_json_kwargs_are_rejected() -> None:
    """additional_kwargs that cannot become JSON raise InvalidInput."""
    with pytest.raises(InvalidInput, match="not JSON"):
        to_memfold(ChatMessage(role="user", content="x", additional_kwargs={"f": object()}))


def test_conversions_share_no_mutable_state() -> None:
    """Mutating a converted ChatMessage never changes the memfold message it came from."""
    m = Message(
        role="assistant",
        content="x",
        tool_calls=(ToolCall("c1", "f", {"q": ["a"]}),),
        metadata={ADDITIONAL_KWARGS: {"k": [1]}},
    )
    first = to_llama_index(m)
    first.additional_kwargs["k"].append(2)
    call = first.blocks[1]
    assert isinstance(call, ToolCallBlock)
    assert isinstance(call.tool_kwargs, dict)
    call.tool_kwargs["q"].append("b")
    first.blocks.insert(0, TextBlock(text="injected"))
    assert to_llama_index(m) == to_llama_index(through_json(m))
    assert m.tool_calls[0].arguments == {"q": ["a"]}
