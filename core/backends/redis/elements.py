"""A message as one Redis list element, and back: ``flag``, the id, a NUL, then the payload.

The payload is the message's JSON without its ``id`` (the id is stored once, up front, where a
Lua script can read it). The flag says how the payload is stored, so both kinds coexist in one
thread and a reader never guesses:

- ``j``: UTF-8 JSON;
- ``z``: zstd-compressed UTF-8 JSON, used when the JSON is at least ``compress_min_bytes`` long
  and compression actually shrinks it.

Examples:
    >>> from memfold import Message
    >>> m = Message(role="user", content="hi", id="m1")
    >>> codec = ElementCodec(compress_min_bytes=None)
    >>> element = codec.encode(m, m.to_json())
    >>> element
    b'jm1\\x00{"role":"user","content":"hi"}'
    >>> codec.decode(element) == m
    True
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

import zstandard

from memfold.errors import BackendUnavailable, InvalidInput
from memfold.model import Message
from memfold.stores import encode_json

__all__ = ["ElementCodec"]

PLAIN = ord("j")
ZSTD = ord("z")

_quote = json.JSONEncoder(ensure_ascii=False).encode


class ElementCodec:
    """Encodes and decodes list elements; thread-safe (each thread gets its own zstd context).

    Args:
        compress_min_bytes: compress payloads of at least this many bytes; None never compresses.
        level: the zstd compression level.
    """

    def __init__(self, *, compress_min_bytes: int | None = 1024, level: int = 3) -> None:
        if compress_min_bytes is not None and (
            isinstance(compress_min_bytes, bool)
            or not isinstance(compress_min_bytes, int)
            or compress_min_bytes < 1
        ):
            raise InvalidInput(
                f"compress_min_bytes must be a positive int or None, got {compress_min_bytes!r}"
            )
        self.compress_min_bytes = compress_min_bytes
        self.level = level
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        found: zstandard.ZstdCompressor | None = getattr(self._local, "compressor", None)
        if found is None:
            found = self._local.compressor = zstandard.ZstdCompressor(level=self.level)
        return found

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        found: zstandard.ZstdDecompressor | None = getattr(self._local, "decompressor", None)
        if found is None:
            found = self._local.decompressor = zstandard.ZstdDecompressor()
        return found

    def encode(self, message: Message, body: str) -> bytes:
        """The element for ``message``, whose JSON (with its id) is ``body``."""
        message_id = message.id or ""
        payload = _without_id(message, body).encode()
        flag = PLAIN
        if self.compress_min_bytes is not None and len(payload) >= self.compress_min_bytes:
            packed = self._compressor().compress(payload)
            if len(packed) < len(payload):
                payload, flag = packed, ZSTD
        return b"%c%s\x00%s" % (flag, message_id.encode(), payload)

    def decode(self, element: bytes) -> Message:
        """The message stored as ``element``."""
        try:
            cut = element.index(b"\x00", 1)
            flag, payload = element[0], element[cut + 1 :]
            if flag == ZSTD:
                payload = self._decompressor().decompress(payload)
            elif flag != PLAIN:
                raise ValueError(f"unknown element flag {flag!r}")
            data = json.loads(payload)
            data["id"] = element[1:cut].decode()
        except (ValueError, TypeError, zstandard.ZstdError) as exc:
            raise BackendUnavailable(
                "a stored message is not in memfold's Redis format (written by a newer "
                f"memfold, or by something else under this key_prefix?): {exc}"
            ) from exc
        return Message.from_dict(data)

    def decode_all(self, elements: Iterable[bytes]) -> list[Message]:
        """The messages stored as ``elements``, in order."""
        decode = self.decode
        return [decode(element) for element in elements]


def _without_id(message: Message, body: str) -> str:
    """``body`` without its top-level ``"id"`` member.

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
