"""One memfold thread, written by LangChain and read by LlamaIndex, and the other way round."""

from __future__ import annotations

import base64

import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from llama_index.core.base.llms.types import (
    AudioBlock,
    DocumentBlock,
    ImageBlock,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import Memory

from memfold import open_store, ops
from memfold.encryption import Keyring
from memfold.integrations.langchain import MemfoldChatMessageHistory
from memfold.integrations.langchain import messages as lc
from memfold.integrations.llama_index import MemfoldChatStore, MemfoldDBChatStore
from memfold.integrations.llama_index import messages as li
from memfold.model import CONTENT_METADATA
from memfold.stores import BaseThreadStore

LANGCHAIN_THREAD: list[BaseMessage] = [
    SystemMessage("You are a calculator."),
    HumanMessage("What are 2 + 3 and 2 * 3?", name="ann"),
    AIMessage(
        "Let me compute.",
        tool_calls=[
            {"name": "add", "args": {"a": 2, "b": 3}, "id": "call-add"},
            {"name": "mul", "args": {"a": 2, "b": 3}, "id": "call-mul"},
        ],
    ),
    ToolMessage("5", tool_call_id="call-add", name="add"),
    ToolMessage("6", tool_call_id="call-mul", name="mul"),
    AIMessage("5 and 6."),
]

LLAMA_INDEX_THREAD = [
    ChatMessage(role="system", content="You are a calculator."),
    ChatMessage(role="user", content="What are 2 + 3 and 2 * 3?"),
    ChatMessage(
        role="assistant",
        blocks=[
            TextBlock(text="Let me compute."),
            ToolCallBlock(tool_call_id="call-add", tool_name="add", tool_kwargs={"a": 2, "b": 3}),
            ToolCallBlock(tool_call_id="call-mul", tool_name="mul", tool_kwargs={"a": 2, "b": 3}),
        ],
    ),
    ChatMessage(role="tool", content="5", additional_kwargs={"tool_call_id": "call-add"}),
    ChatMessage(role="tool", content="6", additional_kwargs={"tool_call_id": "call-mul"}),
    ChatMessage(role="assistant", content="5 and 6."),
]
TEXTS = ["You are a calculator.", "What are 2 + 3 and 2 * 3?", "Let me compute.", "5", "6"]


def check_llama_index_view(read: list[ChatMessage]) -> None:
    """The calculator thread as LlamaIndex sees it: roles, text, tool calls and results."""
    assert [m.role.value for m in read] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert [m.content for m in read] == [*TEXTS, "5 and 6."]
    calls = [b for b in read[2].blocks if isinstance(b, ToolCallBlock)]
    assert [(c.tool_call_id, c.tool_name, c.tool_kwargs) for c in calls] == [
        ("call-add", "add", {"a": 2, "b": 3}),
        ("call-mul", "mul", {"a": 2, "b": 3}),
    ]
    assert [m.additional_kwargs["tool_call_id"] for m in read[3:5]] == ["call-add", "call-mul"]


def check_langchain_view(read: list[BaseMessage]) -> None:
    """The calculator thread as LangChain sees it: types, text, tool calls and results."""
    assert [type(m) for m in read] == [
        SystemMessage,
        HumanMessage,
        AIMessage,
        ToolMessage,
        ToolMessage,
        AIMessage,
    ]
    assert [m.content for m in read] == [*TEXTS, "5 and 6."]
    assert isinstance(read[2], AIMessage)
    assert [(c["id"], c["name"], c["args"]) for c in read[2].tool_calls] == [
        ("call-add", "add", {"a": 2, "b": 3}),
        ("call-mul", "mul", {"a": 2, "b": 3}),
    ]
    assert [m.tool_call_id for m in read[3:5] if isinstance(m, ToolMessage)] == [
        "call-add",
        "call-mul",
    ]
    assert all(m.id for m in read)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_langchain_thread_reads_in_llama_index(
    store: BaseThreadStore, use_async: bool
) -> None:
    """A thread with parallel tool calls written through LangChain reads right in LlamaIndex."""
    history = MemfoldChatMessageHistory(store, "t1")
    chat_store = MemfoldChatStore(store)
    if use_async:
        await history.aadd_messages(LANGCHAIN_THREAD)
        read = await chat_store.aget_messages("t1")
    else:
        history.add_messages(LANGCHAIN_THREAD)
        read = chat_store.get_messages("t1")
    check_llama_index_view(read)
    assert read[1].additional_kwargs == {"name": "ann"}
    assert read[3].additional_kwargs == {"tool_call_id": "call-add", "name": "add"}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_llama_index_thread_reads_in_langchain(
    store: BaseThreadStore, use_async: bool
) -> None:
    """A thread with parallel tool calls written through LlamaIndex reads right in LangChain."""
    history = MemfoldChatMessageHistory(store, "t1")
    chat_store = MemfoldChatStore(store)
    if use_async:
        await chat_store.aset_messages("t1", LLAMA_INDEX_THREAD)
        read = await history.aget_messages()
    else:
        chat_store.set_messages("t1", LLAMA_INDEX_THREAD)
        read = history.messages
    check_langchain_view(read)


RAW_CALLS = ChatMessage(
    role="assistant",
    blocks=[
        ToolCallBlock(tool_call_id="c1", tool_name="weather", tool_kwargs='{"city": "Paris"}'),
        ToolCallBlock(tool_call_id="c2", tool_name="weather", tool_kwargs='{"city": "Par'),
    ],
)
"""Tool calls as LlamaIndex's OpenAI LLM gives them: the raw JSON text, here once cut short."""


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_raw_tool_call_arguments_cross_hosts(store: BaseThreadStore, use_async: bool) -> None:
    """Raw JSON tool arguments from LlamaIndex are LangChain tool-call args (or, not an object,
    an invalid tool call with the text); LlamaIndex reads its text back, LangChain's copy too."""
    history = MemfoldChatMessageHistory(store, "t1")
    chat_store = MemfoldChatStore(store)
    if use_async:
        await chat_store.async_add_message("t1", RAW_CALLS)
        [ai] = await history.aget_messages()
    else:
        chat_store.add_message("t1", RAW_CALLS)
        [ai] = history.messages
    assert isinstance(ai, AIMessage)
    assert [(c["id"], c["name"], c["args"]) for c in ai.tool_calls] == [
        ("c1", "weather", {"city": "Paris"})
    ]
    assert [(c["id"], c["name"], c["args"]) for c in ai.invalid_tool_calls] == [
        ("c2", "weather", '{"city": "Par')
    ]
    assert chat_store.get_messages("t1") == [RAW_CALLS]
    MemfoldChatMessageHistory(store, "t2").add_messages([ai])
    [again] = chat_store.get_messages("t2")
    assert [(b.tool_call_id, b.tool_kwargs) for b in again.blocks] == [("c1", {"city": "Paris"})]


def test_both_hosts_append_to_one_thread_without_disturbing_each_other(
    store: BaseThreadStore,
) -> None:
    """Each host's messages keep their host-only fields while the other host appends."""
    history = MemfoldChatMessageHistory(store, "t1")
    chat_store = MemfoldChatStore(store)
    history.add_messages(LANGCHAIN_THREAD)
    saved = history.messages
    chat_store.add_message("t1", ChatMessage(role="user", content="And 2 - 3?"))
    history.add_messages(
        [
            AIMessage(
                "-1.", usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
            )
        ]
    )
    read = history.messages
    assert read[:6] == saved
    assert [m.content for m in read[6:]] == ["And 2 - 3?", "-1."]
    assert [m.content for m in chat_store.get_messages("t1")[6:]] == ["And 2 - 3?", "-1."]


def test_images_cross_hosts(store: BaseThreadStore) -> None:
    """An image block by URL written in LangChain is an ImageBlock with that URL in LlamaIndex."""
    history = MemfoldChatMessageHistory(store, "t1")
    history.add_messages(
        [
            HumanMessage(
                [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "url": "https://example.com/cat.png"},
                ]
            )
        ]
    )
    [read] = MemfoldChatStore(store).get_messages("t1")
    assert isinstance(read.blocks[0], TextBlock)
    assert isinstance(read.blocks[1], ImageBlock)
    assert str(read.blocks[1].url) == "https://example.com/cat.png"
    assert read.blocks[1].image_mimetype == "image/png"


def test_openai_image_url_blocks_cross_hosts(store: BaseThreadStore) -> None:
    """LangChain's OpenAI-style ``image_url`` blocks (by URL with a detail, by data URL, as a
    bare string) are ImageBlocks in LlamaIndex (they were left out), and LangChain reads its
    message back unchanged."""
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    message = HumanMessage(
        [
            {"type": "text", "text": "Compare these."},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            {"type": "image_url", "image_url": "https://x.test/b.jpg"},
            {"type": "image_url", "image_url": {"detail": "high"}},
        ]
    )
    history = MemfoldChatMessageHistory(store, "t1")
    history.add_messages([message])
    [read] = MemfoldChatStore(store).get_messages("t1")
    _, by_url, by_data, bare = read.blocks
    assert isinstance(by_url, ImageBlock)
    assert (str(by_url.url), by_url.detail) == ("https://x.test/a.png", "low")
    assert isinstance(by_data, ImageBlock)
    assert by_data.resolve_image().read() == b"\x89PNG\r\n\x1a\n"
    assert isinstance(bare, ImageBlock)
    assert str(bare.url) == "https://x.test/b.jpg"
    assert history.messages[0].content == message.content


WAV, PNG, PDF = b"RIFF$\x00\x00\x00WAVE", b"\x89PNG\r\n\x1a\n", b"%PDF-1.4\n"
MEDIA = HumanMessage(
    [
        {"type": "text", "text": "What is in these?"},
        {"type": "audio", "base64": base64.b64encode(WAV).decode(), "mime_type": "audio/wav"},
        {"type": "audio", "url": "https://example.com/a.wav"},
        {"type": "image", "source_type": "base64", "data": base64.b64encode(PNG).decode()},
        {"type": "file", "base64": base64.b64encode(PDF).decode(), "mime_type": "application/pdf"},
        {"type": "image", "file_id": "file-123"},
    ]
)
"""LangChain media blocks: audio by data and by URL, an older base64 image, a PDF, and an image
known only by a provider's file id."""


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_media_blocks_cross_hosts(store: BaseThreadStore, use_async: bool) -> None:
    """LangChain's audio, older base64 image and file blocks are LlamaIndex blocks that resolve
    to their data; one with no data or URL is left out; LangChain reads them back unchanged."""
    history = MemfoldChatMessageHistory(store, "t1")
    chat_store = MemfoldChatStore(store)
    if use_async:
        await history.aadd_messages([MEDIA])
        [read] = await chat_store.aget_messages("t1")
    else:
        history.add_messages([MEDIA])
        [read] = chat_store.get_messages("t1")
    text, audio, by_url, image, document = read.blocks
    assert isinstance(text, TextBlock)
    assert isinstance(audio, AudioBlock)
    assert (audio.resolve_audio().read(), audio.format) == (WAV, "wav")
    assert isinstance(by_url, AudioBlock)
    assert (str(by_url.url), by_url.format) == ("https://example.com/a.wav", "wav")
    assert isinstance(image, ImageBlock)
    assert (image.resolve_image().read(), image.image_mimetype) == (PNG, "image/png")
    assert isinstance(document, DocumentBlock)
    assert document.resolve_document().read() == PDF
    assert document.document_mimetype == "application/pdf"
    chat_store.add_message("t1", ChatMessage(role="assistant", content="A sound, a picture."))
    assert [m.content for m in history.messages] == [MEDIA.content, "A sound, a picture."]


async def test_memory_reads_a_langchain_thread(store: BaseThreadStore) -> None:
    """LlamaIndex Memory over a thread LangChain wrote sees every message as active history."""
    await MemfoldChatMessageHistory(store, "s1").aadd_messages(LANGCHAIN_THREAD)
    memory = Memory.from_defaults(session_id="s1", chat_store=MemfoldDBChatStore(store))
    check_llama_index_view(await memory.aget())


def test_what_the_adapters_keep_in_metadata_is_encrypted_and_redacted() -> None:
    """The raw tool-call arguments LlamaIndex's OpenAI LLM gives, LangChain's unparsable tool
    calls and tool artifacts sit in message metadata, which stores keep readable; on a store
    opened with a keyring and redaction they were stored in plaintext and unredacted, and the
    unredacted text went back to the model (found by fuzzing encryption). Every metadata key
    an adapter writes content to is in `memfold.model.CONTENT_METADATA`."""
    store = open_store("memory://?redact=default", keyring=Keyring({"k1": bytes(32)}))
    secret = "ann@example.com"
    MemfoldChatStore(store).add_message(
        "t",
        ChatMessage(
            role="assistant",
            blocks=[
                ToolCallBlock(
                    tool_call_id="c1", tool_name="send", tool_kwargs=f'{{"to": "{secret}"}}'
                )
            ],
        ),
    )
    MemfoldChatMessageHistory(store, "t").add_messages(
        [
            AIMessage(
                "",
                invalid_tool_calls=[
                    {
                        "id": "c2",
                        "name": "send",
                        "args": f'{{"to": "{secret}"',
                        "error": "bad json",
                        "type": "invalid_tool_call",
                    }
                ],
                additional_kwargs={"refusal": secret},
            ),
            ToolMessage("sent", tool_call_id="c2", artifact={"to": secret}),
        ]
    )
    stored = store.execute(ops.LoadThread("default", "t"))
    assert not any(secret in m.to_json() or "[email]" in m.to_json() for m in stored)
    read = MemfoldChatMessageHistory(store, "t").messages
    assert read[1].invalid_tool_calls[0]["args"] == '{"to": "[email]"'  # type: ignore[attr-defined]
    assert read[1].additional_kwargs == {"refusal": "[email]"}
    assert read[2].artifact == {"to": "[email]"}  # type: ignore[attr-defined]
    block = MemfoldChatStore(store).get_messages("t")[0].blocks[0]
    assert isinstance(block, ToolCallBlock)
    assert block.tool_kwargs == '{"to": "[email]"}'
    written = {lc.ADDITIONAL_KWARGS, lc.ARTIFACT, lc.INVALID_TOOL_CALLS, lc.RESPONSE_METADATA}
    assert written | {li.ADDITIONAL_KWARGS, li.RAW_TOOL_KWARGS} <= CONTENT_METADATA
