"""A stored message body without its id, for backends that keep the id beside the body.

Examples:
    >>> from memfold import Message
    >>> m = Message(role="user", content="hi", id="m1")
    >>> without_id(m, m.to_json())
    '{"role":"user","content":"hi"}'
"""

from __future__ import annotations

import json

from memfold.model import Message
from memfold.stores import encode_json

__all__ = ["without_id"]

_quote = json.JSONEncoder(ensure_ascii=False).encode


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
