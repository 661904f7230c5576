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

from memfold.backends.bodies import without_id
from memfold.errors import BackendUnavailable, InvalidInput
from memfold.model import Message

__all__ = ["ElementCodec"]

PLAIN = ord("j")
ZSTD = ord("z")


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
        payload = without_id(message, body).encode()
        flag = PLAIN
        if self.compress_min_bytes is not None and len(payload) >= self.compress_min_bytes:
            packed = self._compressor().compress(payload)
            if len(packed) < len(payload):
                payload, flag = packed, ZSTD
        return b"%c%s\x00%s" % (flag, message_id.encode(), payload)

    def pack(self, payload: bytes) -> bytes:
        """``payload`` behind a flag byte (``j`` or ``z``), zstd-compressed as `encode` would.

        Examples:
            >>> codec = ElementCodec(compress_min_bytes=8)
            >>> codec.unpack(codec.pack(b"x" * 100)) == b"x" * 100, codec.pack(b"hi")
            (True, b'jhi')
        """
        if self.compress_min_bytes is not None and len(payload) >= self.compress_min_bytes:
            packed = self._compressor().compress(payload)
            if len(packed) < len(payload):
                return b"z" + packed
        return b"j" + payload

    def unpack(self, stored: bytes) -> bytes:
        """The payload that `pack` stored as ``stored``."""
        try:
            if stored[:1] == b"z":
                return self._decompressor().decompress(stored[1:])
            if stored[:1] == b"j":
                return stored[1:]
            raise ValueError(f"unknown payload flag {stored[:1]!r}")
        except (ValueError, zstandard.ZstdError) as exc:
            raise BackendUnavailable(
                "a stored value is not in memfold's Redis format (written by a newer memfold, "
                f"or by something else under this key_prefix?): {exc}"
            ) from exc

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
