"""Convert LangChain messages to memfold messages and back, without loss.

``human``/``ai``/``system``/``tool``/``function`` become memfold roles ``user``/``assistant``/
``system``/``tool``/``function`` (``developer`` for a system message tagged
``__openai_role__="developer"``); ``id``, ``name``, ``tool_calls`` and ``tool_call_id`` map to
the same memfold fields (a tool call id ``None`` is stored as ``""``). List content becomes
memfold ``Part`` objects: ``text``, ``url``, ``base64`` (as ``data``; in an older
``source_type="base64"`` block, ``data`` itself) and ``mime_type`` are promoted, other block keys
stay in ``Part.extra``. LangChain-only fields go into
``Message.metadata`` under the ``langchain.*`` keys below. Chunks are stored as full messages.
A tool call LlamaIndex stored with raw arguments that are not a JSON object reads back as an
``invalid_tool_calls`` entry holding that text.

Examples:
    >>> from langchain_core.messages import AIMessage
    >>> ai = AIMessage("", id="m1", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c1"}])
    >>> m = to_memfold(ai)
    >>> (m.role, m.tool_calls[0].name, to_langchain(m) == ai)
    ('assistant', 'add', True)
"""

from __future__ import annotations

import copy
from typing import Any, Final

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    BaseMessageChunk,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_chunk_to_message,
)

from memfold import InvalidInput, Message, Part, ToolCall
from memfold.integrations._convert import json_object
from memfold.model import JSON, ROLES

__all__ = [
    "ADDITIONAL_KWARGS",
    "ARTIFACT",
    "CHAT_ROLE",
    "INVALID_TOOL_CALLS",
    "RESPONSE_METADATA",
    "TOOL_STATUS",
    "USAGE_METADATA",
    "to_langchain",
    "to_memfold",
]

ADDITIONAL_KWARGS: Final = "langchain.additional_kwargs"
RESPONSE_METADATA: Final = "langchain.response_metadata"
USAGE_METADATA: Final = "langchain.usage_metadata"
INVALID_TOOL_CALLS: Final = "langchain.invalid_tool_calls"
TOOL_STATUS: Final = "langchain.status"  # stored only when not "success"
ARTIFACT: Final = "langchain.artifact"
CHAT_ROLE: Final = "langchain.chat_role"  # a ChatMessage's free-form role; marks a ChatMessage
BARE_STRING: Final = "langchain.str"  # in Part.extra: the item was a plain str, not a block

_ROLES: Final = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_PROMOTED: Final = {"text": "text", "url": "url", "base64": "data", "mime_type": "mime_type"}
_PROMOTED_V0: Final = {"text": "text", "url": "url", "data": "data", "mime_type": "mime_type"}
"""What a block with ``source_type="base64"`` (LangChain's older form) promotes."""
_OPENAI_ROLE: Final = "__openai_role__"
_NOT_AN_OBJECT: Final = "the arguments are not a JSON object"
_RAW_ARGUMENTS: Final = "llama_index.raw_tool_kwargs"  # per call: its raw JSON text, or None


def _to_part(item: str | dict[Any, Any]) -> Part:
    if isinstance(item, str):
        return Part(type="text", text=item, extra={BARE_STRING: True})
    if not isinstance(item.get("type"), str):
        raise InvalidInput(f"a LangChain content block needs a str 'type', got {item!r}")
    keys = _PROMOTED_V0 if item.get("source_type") == "base64" else _PROMOTED
    promoted = {k: v for k, v in item.items() if k in keys and isinstance(v, str)}
    extra = {k: copy.deepcopy(v) for k, v in item.items() if k != "type" and k not in promoted}
    return Part(type=item["type"], extra=extra, **{keys[k]: v for k, v in promoted.items()})


def _from_part(part: Part) -> str | dict[str, Any]:
    if part.type == "text" and part.text is not None and part.extra.get(BARE_STRING) is True:
        return part.text
    block: dict[str, Any] = {"type": part.type}
    keys = _PROMOTED_V0 if part.extra.get("source_type") == "base64" else _PROMOTED
    block.update({k: getattr(part, f) for k, f in keys.items() if getattr(part, f) is not None})
    block.update(copy.deepcopy(dict(part.extra)))
    return block


def _add_tool_calls(common: dict[str, Any], calls: tuple[ToolCall, ...], raw: JSON) -> None:
    """Put ``calls`` in ``common`` as tool calls, or as invalid ones where ``raw`` holds their
    arguments as text that is not a JSON object."""
    texts = raw if isinstance(raw, list) else []
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for i, call in enumerate(calls):
        text = texts[i] if i < len(texts) else None
        if isinstance(text, str) and json_object(text) is None:
            invalid.append(
                {"id": call.id or None, "name": call.name, "args": text, "error": _NOT_AN_OBJECT}
            )
        else:
            valid.append(
                {
                    "id": call.id or None,
                    "name": call.name,
                    "args": copy.deepcopy(dict(call.arguments)),
                }
            )
    if valid:
        common["tool_calls"] = valid
    if invalid:
        common["invalid_tool_calls"] = [*common.get("invalid_tool_calls", ()), *invalid]


def to_memfold(message: BaseMessage) -> Message:
    """The `memfold.Message` for a LangChain message.

    Raises:
        InvalidInput: a message type memfold cannot store (such as ``RemoveMessage``), or one
            nested too deeply to copy.
    """
    if not isinstance(message, BaseMessage):
        raise InvalidInput(f"to_memfold takes a LangChain message, got {type(message).__name__}")
    try:
        return _to_memfold(message)
    except RecursionError as exc:
        raise InvalidInput("the LangChain message nests too deeply to copy") from exc


def _to_memfold(message: BaseMessage) -> Message:
    if isinstance(message, BaseMessageChunk):
        message = message_chunk_to_message(message)
    meta: dict[str, Any] = {
        ADDITIONAL_KWARGS: message.additional_kwargs,
        RESPONSE_METADATA: message.response_metadata,
    }
    role = _ROLES.get(message.type)
    calls: tuple[ToolCall, ...] = ()
    if isinstance(message, AIMessage):
        calls = tuple(
            ToolCall(c["id"] or "", c["name"], copy.deepcopy(c["args"])) for c in message.tool_calls
        )
        meta[INVALID_TOOL_CALLS] = message.invalid_tool_calls
        meta[USAGE_METADATA] = message.usage_metadata
    elif isinstance(message, ToolMessage):
        meta[TOOL_STATUS] = None if message.status == "success" else message.status
    elif isinstance(message, ChatMessage):
        role, meta[CHAT_ROLE] = message.role if message.role in ROLES else "user", message.role
    elif isinstance(message, FunctionMessage):
        role = "function"
    elif (
        isinstance(message, SystemMessage)
        and message.additional_kwargs.get(_OPENAI_ROLE) == "developer"
    ):
        role = "developer"
    meta = {k: copy.deepcopy(v) for k, v in meta.items() if v not in ({}, [], None)}
    if isinstance(message, ToolMessage) and message.artifact is not None:
        meta[ARTIFACT] = copy.deepcopy(message.artifact)
    if role is None:
        raise InvalidInput(f"memfold cannot store a LangChain {type(message).__name__}")
    content = message.content
    return Message(
        role=role,
        content=content if isinstance(content, str) else tuple(_to_part(i) for i in content),
        name=message.name,
        id=message.id,
        tool_calls=calls,
        tool_call_id=message.tool_call_id if isinstance(message, ToolMessage) else None,
        metadata=meta,
    )


def to_langchain(message: Message) -> BaseMessage:
    """The LangChain message for a `memfold.Message` (a fresh object).

    Raises:
        InvalidInput: ``message`` is not a `memfold.Message`, or nests too deeply to copy.
    """
    if not isinstance(message, Message):
        raise InvalidInput(f"to_langchain takes a memfold Message, got {type(message).__name__}")
    try:
        return _to_langchain(message)
    except RecursionError as exc:
        raise InvalidInput("the message nests too deeply to copy") from exc


def _to_langchain(message: Message) -> BaseMessage:
    # Copy only what is there: building LangChain objects dominates a long thread's load.
    meta: dict[str, JSON] = copy.deepcopy(dict(message.metadata)) if message.metadata else {}
    content = message.content
    common: dict[str, Any] = {
        "content": content if isinstance(content, str) else [_from_part(p) for p in content]
    }
    if message.name is not None:
        common["name"] = message.name
    if message.id is not None:
        common["id"] = message.id
    for key, meta_key in (
        ("additional_kwargs", ADDITIONAL_KWARGS),
        ("response_metadata", RESPONSE_METADATA),
    ):
        if meta.get(meta_key):
            common[key] = meta[meta_key]
    if CHAT_ROLE in meta:
        return ChatMessage(role=str(meta[CHAT_ROLE]), **common)
    match message.role:
        case "user":
            return HumanMessage(**common)
        case "system" | "developer":
            if message.role == "developer":
                common.setdefault("additional_kwargs", {}).setdefault(_OPENAI_ROLE, "developer")
            return SystemMessage(**common)
        case "assistant":
            if INVALID_TOOL_CALLS in meta:
                common["invalid_tool_calls"] = meta[INVALID_TOOL_CALLS]
            if message.tool_calls:
                _add_tool_calls(common, message.tool_calls, meta.get(_RAW_ARGUMENTS))
            if USAGE_METADATA in meta:
                common["usage_metadata"] = meta[USAGE_METADATA]
            return AIMessage(**common)
        case "tool":
            return ToolMessage(
                tool_call_id=message.tool_call_id or "",
                status=meta.get(TOOL_STATUS) or "success",
                artifact=meta.get(ARTIFACT),
                **common,
            )
    return FunctionMessage(**(common | {"name": message.name or ""}))
