"""The stored form of a message, for backends that keep its id and time beside its JSON.

A *stored body* is the message's JSON (`memfold.Message.to_dict` with ``stored=True``) without
its id, and without its time when that is UTC: `stored_time` gives that time as microseconds
since the epoch, for a column or a fixed-size field. `stored_message` puts the three together
again. Bodies written whole (before SQL schema step 2, Redis layout 1) still read back.

Examples:
    >>> import json
    >>> from datetime import UTC, datetime
    >>> from memfold import Message
    >>> m = Message(role="user", content="hi", id="m1", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    >>> body, micros = json.dumps(m.to_dict(stored=True)), stored_time(m)
    >>> body, micros
    ('{"role": "user", "content": "hi"}', 1767225600000000)
    >>> stored_message(json.loads(body), "m1", micros) == m
    True
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from memfold.errors import InvalidInput
from memfold.model import Message, Part, ToolCall

__all__ = ["micros", "stored_message", "stored_time"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(when: datetime | None) -> int | None:
    """``when`` as microseconds since the epoch (None stays None)."""
    return None if when is None else (when - _EPOCH) // _MICROSECOND


def stored_time(message: Message) -> int | None:
    """The time a stored body leaves out, in microseconds since the epoch (None: the body
    keeps its time, in a zone other than UTC, or the message has none)."""
    created = message.created_at
    return (
        (created - _EPOCH) // _MICROSECOND
        if created is not None and created.tzinfo is UTC
        else None
    )


def stored_message(data: dict[str, Any], message_id: str, micros: int | None) -> Message:
    """The message whose stored body decoded to ``data``, with its id and `stored_time`
    (``micros`` None: the body keeps its time, or it has none): what `Message.from_dict` gives
    for the whole JSON, built in one step for the loads of long threads.

    Raises:
        InvalidInput: ``data`` is not a message body.
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
