"""Convert LlamaIndex chat messages to memfold messages and back, without loss.

``TextBlock`` becomes a ``text`` `memfold.Part` (a lone text block becomes plain string
content), ``ImageBlock`` an ``image`` part (``url``, base64 ``image`` -> ``data``,
``image_mimetype`` -> ``mime_type``; ``detail`` and ``path`` in ``extra``), and any other block a
part of its ``block_type`` with its fields in ``extra``. Each ``ToolCallBlock`` becomes a
`memfold.ToolCall` (id ``None`` is stored as ``""``). String ``tool_kwargs`` (an LLM's raw
JSON) are kept as written, and are also the call's arguments if they hold a JSON object.
``additional_kwargs["name"]`` and ``["tool_call_id"]`` map to the memfold fields; the rest of
``additional_kwargs`` and the ``chatbot``/``model`` roles go into ``Message.metadata`` under the
``llama_index.*`` keys below. Another host's ``image``, ``audio``, ``video`` and ``file`` parts
become the matching blocks, their ``data``, ``url`` and ``mime_type`` mapped (an audio type as its
``format``, ``audio/wav`` -> ``wav``). Parts that LlamaIndex cannot represent (another host's
block types, or media with no data, URL or path) are left out of the ``ChatMessage``; LlamaIndex
has no message id or timestamp, so those are not carried.

Examples:
    >>> from llama_index.core.llms import ChatMessage
    >>> chat = ChatMessage(role="tool", content="3", additional_kwargs={"tool_call_id": "c1"})
    >>> m = to_memfold(chat)
    >>> (m.role, m.content, m.tool_call_id, to_llama_index(m) == chat)
    ('tool', '3', 'c1', True)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

import filetype  # type: ignore[import-untyped]  # LlamaIndex maps audio formats with it
from llama_index.core.base.llms.types import ContentBlock, TextBlock, ToolCallBlock
from llama_index.core.llms import ChatMessage
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from memfold import InvalidInput, Message, Part, ToolCall
from memfold.integrations._convert import json_object
from memfold.model import ROLES

__all__ = [
    "ADDITIONAL_KWARGS",
    "RAW_TOOL_KWARGS",
    "ROLE",
    "TOOL_CALL_POSITIONS",
    "to_llama_index",
    "to_memfold",
]

ADDITIONAL_KWARGS: Final = "llama_index.additional_kwargs"
ROLE: Final = "llama_index.role"
"""A role memfold has no name for (``chatbot``, ``model``); the message is an ``assistant``."""
TOOL_CALL_POSITIONS: Final = "llama_index.tool_call_positions"
"""Where the tool-call blocks sat among the blocks, kept only when not all at the end."""
RAW_TOOL_KWARGS: Final = "llama_index.raw_tool_kwargs"
"""Per tool call, its ``tool_kwargs`` when they were a string (else ``None``)."""

_BLOCK: TypeAdapter[Any] = TypeAdapter(ContentBlock)
_PROMOTED: Final = ("name", "tool_call_id")
_IMAGE: Final = {"url": "url", "image": "data", "image_mimetype": "mime_type"}
_DOCUMENT: Final = {"url": "url", "data": "data", "document_mimetype": "mime_type"}
_MEDIA: Final[dict[str, tuple[str, dict[str, str]]]] = {
    "image": ("image", _IMAGE),
    "audio": ("audio", {"url": "url", "audio": "data"}),
    "video": ("video", {"url": "url", "video": "data", "video_mimetype": "mime_type"}),
    "file": ("document", _DOCUMENT),
    "document": ("document", _DOCUMENT),
}
"""Per media part type: its LlamaIndex block type, and that block's fields for `Part` fields."""
_SOURCE: Final = {"image": "image", "audio": "audio", "video": "video", "document": "data"}
"""Per LlamaIndex media block type: its data field (``url`` and ``path`` are the others)."""


def _to_part(block: dict[str, Any]) -> Part:
    kind = block.pop("block_type")
    if kind == "text":
        return Part(type="text", text=block["text"])
    if kind == "image":
        fields = {f: block.pop(k) for k, f in _IMAGE.items()}
        return Part(type="image", extra={k: v for k, v in block.items() if v is not None}, **fields)
    return Part(type=kind, extra=block)


def _audio_format(mime_type: str) -> str | None:
    """The file extension LlamaIndex names an audio type by (``audio/wav`` -> ``wav``)."""
    subtype = mime_type.split(";")[0].strip().partition("/")[2].removeprefix("x-")
    known = filetype.get_type(mime=f"audio/{subtype}") or filetype.get_type(
        mime=f"audio/x-{subtype}"
    )
    return str(known.extension) if known else None


def _openai_image(part: Part) -> Part:
    """An OpenAI ``image_url`` part (``{"image_url": {"url", "detail"}}``, a form LangChain
    keeps) as an image part with that URL (a data URL too) and detail."""
    value = part.extra.get("image_url")
    found = value if isinstance(value, dict) else {"url": value}
    url, detail = found.get("url"), found.get("detail")
    return Part(
        type="image",
        url=url if isinstance(url, str) else None,
        extra={"detail": detail} if isinstance(detail, str) else {},
    )


def _to_block(part: Part) -> Any:
    if part.type == "text" and part.text is not None:
        return TextBlock(text=part.text)
    if part.type == "image_url":
        part = _openai_image(part)
    kind, fields = _MEDIA.get(part.type, (part.type, {}))
    data: dict[str, Any] = {"block_type": kind, **copy.deepcopy(dict(part.extra))}
    data.update({k: getattr(part, f) for k, f in fields.items() if getattr(part, f) is not None})
    if kind == "audio" and data.get("format") is None and part.mime_type:
        data["format"] = _audio_format(part.mime_type)
    try:
        block = _BLOCK.validate_python(data)
    except ValidationError:
        return None  # another host's block: LlamaIndex has no type for it
    source = _SOURCE.get(block.block_type)
    if source is not None and not (getattr(block, source) or block.url or block.path):
        return None  # no data, URL or path (a provider's file id, say): LlamaIndex cannot use it
    return block


def to_memfold(message: ChatMessage) -> Message:
    """The `memfold.Message` for a LlamaIndex ``ChatMessage``.

    Raises:
        InvalidInput: ``message`` is not a ``ChatMessage``, or its ``additional_kwargs`` or a
            block holds a value that is not JSON (or nests too deeply to copy).
    """
    if not isinstance(message, ChatMessage):
        raise InvalidInput(
            f"to_memfold takes a LlamaIndex ChatMessage, got {type(message).__name__}"
        )
    try:
        dumped = message.model_dump(mode="json")
    except (PydanticSerializationError, ValueError, RecursionError) as exc:  # depth, surrogates
        raise InvalidInput(f"a LlamaIndex message field is not JSON-serialisable: {exc}") from exc
    kwargs: dict[str, Any] = dumped["additional_kwargs"]
    promoted = {k: kwargs.pop(k) for k in _PROMOTED if isinstance(kwargs.get(k), str)}
    parts: list[Part] = []
    calls: list[ToolCall] = []
    positions: list[int] = []
    raw: list[str | None] = []
    for i, block in enumerate(dumped["blocks"]):
        if block["block_type"] != "tool_call":
            parts.append(_to_part(block))
            continue
        args = block["tool_kwargs"]
        arguments = (json_object(args) or {}) if isinstance(args, str) else args
        calls.append(ToolCall(block["tool_call_id"] or "", block["tool_name"], arguments))
        positions.append(i)
        raw.append(args if isinstance(args, str) else None)
    meta: dict[str, Any] = {ADDITIONAL_KWARGS: kwargs}
    if positions != list(range(len(parts), len(parts) + len(calls))):
        meta[TOOL_CALL_POSITIONS] = positions
    if any(r is not None for r in raw):
        meta[RAW_TOOL_KWARGS] = raw
    role = dumped["role"]
    if role not in ROLES:
        role, meta[ROLE] = "assistant", role
    single_text = len(parts) == 1 and parts[0].type == "text" and not parts[0].extra
    return Message(
        role=role,
        content=(parts[0].text or "") if single_text else tuple(parts),
        tool_calls=tuple(calls),
        metadata={k: v for k, v in meta.items() if v},
        **promoted,
    )


def to_llama_index(message: Message) -> ChatMessage:
    """The LlamaIndex ``ChatMessage`` for a `memfold.Message` (a fresh object).

    Raises:
        InvalidInput: ``message`` is not a `memfold.Message`, or nests too deeply to copy.
    """
    if not isinstance(message, Message):
        raise InvalidInput(f"to_llama_index takes a memfold Message, got {type(message).__name__}")
    try:
        return _to_llama_index(message)
    except RecursionError as exc:
        raise InvalidInput("the message nests too deeply to copy") from exc


def _to_llama_index(message: Message) -> ChatMessage:
    meta: Mapping[str, Any] = message.metadata
    extra = meta.get(ADDITIONAL_KWARGS)
    kwargs: dict[str, Any] = copy.deepcopy(dict(extra)) if extra else {}
    kwargs.update({k: getattr(message, k) for k in _PROMOTED if getattr(message, k) is not None})
    content = message.content
    if isinstance(content, str) and not message.tool_calls:  # the common case, kept cheap
        return ChatMessage(
            role=meta.get(ROLE, message.role), content=content, additional_kwargs=kwargs
        )
    blocks = (
        [TextBlock(text=content)] if isinstance(content, str) else [_to_block(p) for p in content]
    )
    blocks = [b for b in blocks if b is not None]
    raw = meta.get(RAW_TOOL_KWARGS) or [None] * len(message.tool_calls)
    calls = [
        ToolCallBlock(
            tool_call_id=c.id or None,
            tool_name=c.name,
            tool_kwargs=r if isinstance(r, str) else copy.deepcopy(dict(c.arguments)),
        )
        for c, r in zip(message.tool_calls, raw, strict=False)
    ]
    positions = meta.get(TOOL_CALL_POSITIONS) or range(len(blocks), len(blocks) + len(calls))
    for position, call in zip(positions, calls, strict=False):
        blocks.insert(position, call)
    return ChatMessage(role=meta.get(ROLE, message.role), blocks=blocks, additional_kwargs=kwargs)
