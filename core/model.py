"""The host-free data model: plain frozen dataclasses that round-trip through JSON without loss.

Examples:
    >>> m = Message(role="user", content="hi")
    >>> Message.from_dict(m.to_dict()) == m
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

from memfold.errors import InvalidInput
from memfold.limits import MAX_JSON_DEPTH, Limits, check_tree

__all__ = [
    "CONTENT_METADATA",
    "JSON",
    "ROLES",
    "Message",
    "MessageHit",
    "Part",
    "ThreadInfo",
    "ToolCall",
]

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
"""A value that survives ``json.dumps``/``json.loads`` unchanged."""

ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
"""The roles a message may have."""

CONTENT_METADATA: Final = frozenset(
    {
        "langchain.additional_kwargs",
        "langchain.artifact",
        "langchain.invalid_tool_calls",
        "langchain.response_metadata",
        "llama_index.additional_kwargs",
        "llama_index.raw_tool_kwargs",
    }
)
"""Message metadata keys whose values are part of what was said: the framework adapters keep
there what `Message` has no field for (tool-call arguments as the model wrote them, tool
artifacts, provider extras). Stores encrypt them with the content and redact every string in
them, as they do tool-call arguments."""


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


_DEEPEST: Final = Limits(max_json_depth=MAX_JSON_DEPTH)


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turn the errors of reading a malformed ``what`` object into `InvalidInput`."""
    try:
        yield
    except InvalidInput:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InvalidInput(f"not a memfold {what} object: {exc!r}") from exc


def _parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class Part:
    """One typed piece of multi-part content.

    ``type`` is ``"text"``, ``"image"``, ``"audio"``, ``"file"`` or a host's own block type;
    ``text``, ``url``, ``data`` (base64) and ``mime_type`` hold the common fields and ``extra``
    keeps anything else so that host blocks survive a round trip.
    """

    type: str
    text: str | None = None
    url: str | None = None
    data: str | None = None
    mime_type: str | None = None
    extra: Mapping[str, JSON] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not all(
            value is None or isinstance(value, str)
            for value in (self.text, self.url, self.data, self.mime_type)
        ):
            raise InvalidInput("a Part's type must be a str, and its text, url, data and "
                               "mime_type each a str or None")  # fmt: skip
        if not isinstance(self.extra, Mapping):
            raise InvalidInput("a Part's extra must be a mapping of str to JSON values")

    def to_dict(self) -> dict[str, JSON]:
        """The part as a JSON object, leaving out empty fields."""
        out: dict[str, JSON] = {"type": self.type}
        for key in ("text", "url", "data", "mime_type"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Part:
        """Rebuild a part from `to_dict` output.

        Raises:
            InvalidInput: ``data`` is not a part object.
        """
        with _reading("part"):
            return cls(
                type=data["type"],
                text=data.get("text"),
                url=data.get("url"),
                data=data.get("data"),
                mime_type=data.get("mime_type"),
                extra=data.get("extra", {}),
            )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to run a tool."""

    id: str
    name: str
    arguments: Mapping[str, JSON] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not isinstance(self.name, str):
            raise InvalidInput("a ToolCall's id and name must be str")
        if not isinstance(self.arguments, Mapping):
            raise InvalidInput("a ToolCall's arguments must be a mapping of str to JSON values")

    def to_dict(self) -> dict[str, JSON]:
        """The call as a JSON object."""
        return {"id": self.id, "name": self.name, "arguments": dict(self.arguments)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        """Rebuild a call from `to_dict` output.

        Raises:
            InvalidInput: ``data`` is not a tool-call object.
        """
        with _reading("tool call"):
            return cls(id=data["id"], name=data["name"], arguments=data.get("arguments", {}))


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message.

    ``content`` is plain text or a tuple of `Part`. ``id`` and ``created_at`` may be left
    empty: a store fills them in when the message is appended. Treat ``metadata`` as read-only.
    """

    role: str
    content: str | tuple[Part, ...] = ""
    name: str | None = None
    id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    created_at: datetime | None = None
    metadata: Mapping[str, JSON] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Cheap checks only: this runs for every message loaded from a store.
        if self.role not in ROLES:
            raise InvalidInput(
                f"invalid message role {self.role!r}: use one of {', '.join(sorted(ROLES))}"
            )
        content: object = self.content
        if type(content) is not str:
            if isinstance(content, list):
                object.__setattr__(self, "content", content := tuple(content))
            if not (isinstance(content, tuple) and all(isinstance(p, Part) for p in content)):
                raise InvalidInput("message content must be a str or a sequence of memfold.Part")
        calls: object = self.tool_calls
        if calls:
            if isinstance(calls, list):
                object.__setattr__(self, "tool_calls", calls := tuple(calls))
            if not (isinstance(calls, tuple) and all(isinstance(c, ToolCall) for c in calls)):
                raise InvalidInput("tool_calls must be a sequence of memfold.ToolCall")
        elif type(calls) is not tuple:
            object.__setattr__(self, "tool_calls", ())
        if type(self.metadata) is not dict and not isinstance(self.metadata, Mapping):
            raise InvalidInput("message metadata must be a mapping of str to JSON values")
        for value in (self.name, self.id, self.tool_call_id):
            if value is not None and not isinstance(value, str):
                raise InvalidInput(
                    "a message's name, id and tool_call_id must each be a str or None"
                )
        if self.created_at is not None and self.created_at.tzinfo is None:
            raise InvalidInput("created_at must be timezone-aware: use datetime.now(UTC)")

    @property
    def text(self) -> str:
        """The message's text: the content itself, or its text parts joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.text)

    def to_dict(self, *, stored: bool = False) -> dict[str, JSON]:
        """The message as a JSON object, leaving out empty fields; with ``stored``, also its id
        and a UTC time, which backends keep beside it (see `memfold.backends.bodies`)."""
        out: dict[str, JSON] = {"role": self.role}
        if isinstance(self.content, str):
            out["content"] = self.content
        else:
            out["content"] = [p.to_dict() for p in self.content]
        if self.name is not None:
            out["name"] = self.name
        if self.id is not None and not stored:
            out["id"] = self.id
        if self.tool_calls:
            out["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.created_at is not None and not (stored and self.created_at.tzinfo is UTC):
            out["created_at"] = _ts(self.created_at)
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Rebuild a message from `to_dict` output.

        Raises:
            InvalidInput: ``data`` is not a message object.
        """
        try:
            content = data.get("content", "")
            calls = data.get("tool_calls")
            created = data.get("created_at")
            return cls(
                data["role"],
                content if type(content) is str else tuple([Part.from_dict(p) for p in content]),
                data.get("name"),
                data.get("id"),
                tuple([ToolCall.from_dict(c) for c in calls]) if calls else (),
                data.get("tool_call_id"),
                None if created is None else datetime.fromisoformat(created),
                data.get("metadata") or {},
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(f"not a memfold message object: {exc!r}") from exc

    def to_json(self) -> str:
        """The message as compact JSON text.

        Raises:
            InvalidInput: the message holds something JSON cannot keep exactly (a set, bytes,
                a key that is not a str, deep nesting).
        """
        data = self.to_dict()
        check_tree(data, f"message {self.id!r}", _DEEPEST)
        try:
            return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidInput(f"message {self.id!r} is not JSON-serialisable: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> Message:
        """Rebuild a message from `to_json` output."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError, RecursionError) as exc:
            raise InvalidInput(f"not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput("a message must be a JSON object")
        return cls.from_dict(data)


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    """What a store knows about one conversation thread."""

    thread_id: str
    tenant: str
    created_at: datetime
    updated_at: datetime
    message_count: int
    metadata: Mapping[str, JSON] = field(default_factory=dict)

    def to_dict(self) -> dict[str, JSON]:
        """The thread summary as a JSON object."""
        return {
            "thread_id": self.thread_id,
            "tenant": self.tenant,
            "created_at": _ts(self.created_at),
            "updated_at": _ts(self.updated_at),
            "message_count": self.message_count,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThreadInfo:
        """Rebuild a thread summary from `to_dict` output.

        Raises:
            InvalidInput: ``data`` is not a thread object.
        """
        with _reading("thread"):
            info = cls(
                thread_id=data["thread_id"],
                tenant=data["tenant"],
                created_at=datetime.fromisoformat(data["created_at"]),
                updated_at=datetime.fromisoformat(data["updated_at"]),
                message_count=data["message_count"],
                metadata=data.get("metadata", {}),
            )
        for name, value in (("tenant", info.tenant), ("thread id", info.thread_id)):
            if not isinstance(value, str):
                raise InvalidInput(f"{name} must be a str, got {type(value).__name__}")
        count = info.message_count
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInput(f"message_count must be an int >= 0, got {count!r}")
        if not isinstance(info.metadata, Mapping):
            raise InvalidInput(
                f"thread metadata must be an object, got {type(info.metadata).__name__}"
            )
        return info


@dataclass(frozen=True, slots=True)
class MessageHit:
    """A message found by full-text search; higher ``score`` ranks first."""

    thread_id: str
    message: Message
    score: float


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def ensure_sequence(messages: Message | Sequence[Message]) -> tuple[Message, ...]:
    """Accept one message or many; anything else is an `InvalidInput`."""
    if isinstance(messages, Message):
        return (messages,)
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidInput("expected a memfold.Message or a sequence of them")
    out = tuple(messages)
    for m in out:
        if not isinstance(m, Message):
            raise InvalidInput(f"expected memfold.Message, got {type(m).__name__}")
    return out


def stamped(message: Message, message_id: str, created_at: datetime) -> Message:
    """``message`` with ``id`` and ``created_at`` set, its fields not checked again: they were
    when ``message`` was made, and the caller checks the two it sets (every append copies its
    messages so, which makes this a hot path: the slots are set through their descriptors,
    about half the cost of ``object.__setattr__``)."""
    copy = _new(Message)
    _role(copy, message.role)
    _content(copy, message.content)
    _name(copy, message.name)
    _id(copy, message_id)
    _tool_calls(copy, message.tool_calls)
    _tool_call_id(copy, message.tool_call_id)
    _created_at(copy, created_at)
    _metadata(copy, message.metadata)
    return copy


def _setter(name: str) -> Callable[[Message, object], None]:
    """The ``__set__`` of `Message`'s slot ``name``."""
    setter: Callable[[Message, object], None] = vars(Message)[name].__set__
    return setter


_new = object.__new__
_role, _content, _name = _setter("role"), _setter("content"), _setter("name")
_id, _created_at, _metadata = _setter("id"), _setter("created_at"), _setter("metadata")
_tool_calls, _tool_call_id = _setter("tool_calls"), _setter("tool_call_id")
