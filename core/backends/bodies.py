"""A stored message body without its id, for backends that keep the id beside the body.

Examples:
    >>> from memfold import Message
    >>> m = Message(role="user", content="hi", id="m1")
    >>> without_id(m, m.to_json())
    '{"role":"user","content":"hi"}'
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from memfold.errors import InvalidInput
from memfold.model import Message, Part, ToolCall
from memfold.stores import encode_json

__all__ = ["split", "stored_message", "without_id", "without_id_and_time"]

_quote = json.JSONEncoder(ensure_ascii=False).encode
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def without_id(message: Message, body: str) -> str:
    """``body`` (the JSON of ``message``) without its top-level ``"id"`` member.

    With text content the first ``,"id":`` in the JSON is the top-level key: the role and text
    before it are JSON strings, in which every quote is escaped. Parts may hold an ``"id"`` key
    of their own, so their messages are encoded again instead.
    """
    if isinstance(message.content, str) and message.id is not None:
        pair = ',"id":' + _quote(message.id)
        at = body.find(pair)
        if at > 0:
            return body[:at] + body[at + len(pair) :]
    data = message.to_dict()
    data.pop("id", None)
    return encode_json(data, f"message {message.id!r}")


def without_id_and_time(message: Message, body: str) -> str:
    """``body`` without its top-level ``"id"`` and ``"created_at"`` members.

    With text content and no tool calls, the first ``,"created_at":"`` is the top-level key
    (inside a JSON string every quote is escaped, and ``metadata`` comes after it).

    Examples:
        >>> from datetime import UTC, datetime
        >>> when = datetime(2026, 1, 1, tzinfo=UTC)
        >>> m = Message(role="user", content="hi", id="m1", created_at=when)
        >>> without_id_and_time(m, m.to_json())
        '{"role":"user","content":"hi"}'
    """
    if message.created_at is None:
        return without_id(message, body)
    if isinstance(message.content, str) and not message.tool_calls:
        body = without_id(message, body)
        at = body.find(',"created_at":"')
        if at > 0:
            end = body.index('"', at + 15)
            return body[:at] + body[end + 1 :]
        return body
    data = message.to_dict()
    data.pop("id", None)
    data.pop("created_at", None)
    return encode_json(data, f"message {message.id!r}")


def split(message: Message, body: str) -> tuple[str, int | None]:
    """What a backend that keeps the id and the time beside the body stores: the body without
    its id, and, for a UTC time, without the time too, which is returned as microseconds
    since the epoch (None: the body keeps its time, with its own zone's offset).

    Examples:
        >>> when = datetime(2026, 1, 1, tzinfo=UTC)
        >>> m = Message(role="user", content="hi", id="m1", created_at=when)
        >>> body, micros = split(m, m.to_json())
        >>> body, stored_message(json.loads(body), "m1", micros).created_at == when
        ('{"role":"user","content":"hi"}', True)
    """
    created = message.created_at
    if created is not None and created.tzinfo is UTC:
        return without_id_and_time(message, body), (created - _EPOCH) // _MICROSECOND
    return without_id(message, body), None


def stored_message(data: dict[str, Any], message_id: str, micros: int | None) -> Message:
    """The message whose body decoded to ``data``, with the id and time `split` took out
    (``micros`` None: the body keeps its time, or it has none): what `Message.from_dict` gives
    for the whole JSON, built in one step for the loads of long threads.

    Raises:
        InvalidInput: ``data`` is not a message body.

    Examples:
        >>> when = datetime(2026, 1, 1, tzinfo=UTC)
        >>> m = Message(role="user", content="hi", id="m1", created_at=when)
        >>> body, micros = split(m, m.to_json())
        >>> stored_message(json.loads(body), "m1", micros) == m
        True
    """
    try:
        content = data.get("content", "")
        calls = data.get("tool_calls")
        if micros is not None:
            created: datetime | None = _EPOCH + micros * _MICROSECOND
        else:
            at = data.get("created_at")
            created = None if at is None else datetime.fromisoformat(at)
        return Message(
            data["role"],
            content if type(content) is str else tuple([Part.from_dict(p) for p in content]),
            data.get("name"),
            message_id,
            tuple([ToolCall.from_dict(c) for c in calls]) if calls else (),
            data.get("tool_call_id"),
            created,
            data.get("metadata") or {},
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"not a memfold message object: {exc!r}") from exc
