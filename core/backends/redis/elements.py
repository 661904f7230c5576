"""A message as one Redis list element, and back: a flag byte, the id, the creation time, then
the payload, the message's JSON without its id and time (both stored once, up front, where a
Lua script can read the id). The flag says how the element is laid out, so every kind coexists
in one thread and a reader never guesses:

- ``b``/``c``: a 16-byte binary id (for ids of 32 lower-case hex digits, as memfold assigns),
  the time, then UTF-8 JSON (``b``) or zstd-compressed UTF-8 JSON (``c``);
- ``t``/``u``: the id as UTF-8 and a NUL, the time, then JSON (``t``) or zstd JSON (``u``);
- ``B``/``C``/``T``/``U``: the same for a tool result (role ``tool`` or ``function``), so that a
  script capping a thread drops the results whose call it dropped;
- ``j``/``z`` (layout 1, still read): the id, a NUL, then JSON or zstd JSON with the time in it.

The time is 8 bytes, big-endian: microseconds since the epoch (UTC), or -2**63 when the JSON
holds it instead (a time in another zone keeps its offset that way). Payloads of at least
``compress_min_bytes`` are compressed when compression actually shrinks them.

Examples:
    >>> from datetime import UTC, datetime
    >>> from memfold import Message
    >>> m = Message(role="user", content="hi", id="m1", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    >>> codec = ElementCodec(compress_min_bytes=None)
    >>> element = codec.encode(m, json.dumps(m.to_dict(stored=True), separators=(",", ":")))
    >>> element
    b'tm1\\x00\\x00\\x06GHF @\\x00{"role":"user","content":"hi"}'
    >>> codec.decode(element) == m
    True
"""

from __future__ import annotations

import json
import re
import struct
import threading
from collections.abc import Iterable

import zstandard

from memfold.backends.bodies import stored_message, stored_time
from memfold.backends.checkpoint_dictionary import DICTIONARY
from memfold.compaction.units import TOOL_ROLES
from memfold.errors import BackendUnavailable, InvalidInput
from memfold.model import Message

__all__ = ["ElementCodec"]

PLAIN, ZSTD = ord("j"), ord("z")  # layout 1
BINARY_ID, BINARY_ID_ZSTD = ord("b"), ord("c")
TEXT_ID, TEXT_ID_ZSTD = ord("t"), ord("u")
_COMPRESSED = frozenset((ZSTD, BINARY_ID_ZSTD, TEXT_ID_ZSTD))
_TOOL_FLAGS = frozenset(f & ~0x20 for f in (BINARY_ID, BINARY_ID_ZSTD, TEXT_ID, TEXT_ID_ZSTD))
"""A tool result's flags: the others' in upper case."""
NO_TIME = -(2**63)
"""The time field's value when the JSON holds the time (or there is none)."""

_TIME = struct.Struct(">q")
_decode = json.JSONDecoder().raw_decode
"""Parses JSON the store wrote itself (no surrounding whitespace to skip)."""
_HEX_ID = re.compile(r"[0-9a-f]{32}")
_PRESET = zstandard.ZstdCompressionDict(DICTIONARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
"""The checkpoint payloads' preset dictionary, as zstd takes it (raw content: no dictionary id
in the frames, whose ``d`` flag names it)."""


class ElementCodec:
    """Encodes and decodes list elements; thread-safe (each thread gets its own zstd context).

    Args:
        compress_min_bytes: compress payloads of at least this many bytes; None never compresses.
        level: the zstd compression level.
        preset_dictionary: `pack` compresses with the checkpoint payloads' preset dictionary
            (`memfold.backends.checkpoint_dictionary`; flag ``d``), which short payloads gain
            most from; `unpack` reads such payloads either way.
    """

    def __init__(
        self,
        *,
        compress_min_bytes: int | None = 1024,
        level: int = 3,
        preset_dictionary: bool = False,
    ) -> None:
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
        self.preset_dictionary = preset_dictionary
        self._local = threading.local()

    def _compressor(self) -> zstandard.ZstdCompressor:
        found: zstandard.ZstdCompressor | None = getattr(self._local, "compressor", None)
        if found is None:
            found = self._local.compressor = zstandard.ZstdCompressor(level=self.level)
        return found

    def _preset_compressor(self) -> zstandard.ZstdCompressor:
        found: zstandard.ZstdCompressor | None = getattr(self._local, "preset", None)
        if found is None:
            found = self._local.preset = zstandard.ZstdCompressor(
                level=self.level, dict_data=_PRESET
            )
        return found

    def _preset_decompressor(self) -> zstandard.ZstdDecompressor:
        found: zstandard.ZstdDecompressor | None = getattr(self._local, "unpreset", None)
        if found is None:
            found = self._local.unpreset = zstandard.ZstdDecompressor(dict_data=_PRESET)
        return found

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        found: zstandard.ZstdDecompressor | None = getattr(self._local, "decompressor", None)
        if found is None:
            found = self._local.decompressor = zstandard.ZstdDecompressor()
        return found

    def encode(self, message: Message, body: str) -> bytes:
        """The element for ``message``, whose stored body (`memfold.backends.bodies`) is
        ``body``."""
        message_id = message.id or ""
        time = stored_time(message)
        payload, micros = body.encode(), NO_TIME if time is None else time
        compressed = False
        if self.compress_min_bytes is not None and len(payload) >= self.compress_min_bytes:
            packed = self._compressor().compress(payload)
            if len(packed) < len(payload):
                payload, compressed = packed, True
        tool = ~0x20 if message.role in TOOL_ROLES else ~0
        if _HEX_ID.fullmatch(message_id):
            flag = (BINARY_ID_ZSTD if compressed else BINARY_ID) & tool
            return b"%c%s%s%s" % (flag, bytes.fromhex(message_id), _TIME.pack(micros), payload)
        flag = (TEXT_ID_ZSTD if compressed else TEXT_ID) & tool
        return b"%c%s\x00%s%s" % (flag, message_id.encode(), _TIME.pack(micros), payload)

    def pack(self, payload: bytes) -> bytes:
        """``payload`` behind a flag byte (``j`` or ``z``), zstd-compressed as `encode` would.

        Examples:
            >>> codec = ElementCodec(compress_min_bytes=8)
            >>> codec.unpack(codec.pack(b"x" * 100)) == b"x" * 100, codec.pack(b"hi")
            (True, b'jhi')
        """
        if self.compress_min_bytes is not None and len(payload) >= self.compress_min_bytes:
            if self.preset_dictionary:
                packed, flag = self._preset_compressor().compress(payload), b"d"
            else:
                packed, flag = self._compressor().compress(payload), b"z"
            if len(packed) < len(payload):
                return flag + packed
        return b"j" + payload

    def unpack(self, stored: bytes) -> bytes:
        """The payload that `pack` stored as ``stored``."""
        try:
            if stored[:1] == b"d":
                return self._preset_decompressor().decompress(stored[1:])
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
        micros = NO_TIME
        try:
            flag = element[0]
            if flag in _TOOL_FLAGS:
                flag |= 0x20
            if flag == BINARY_ID:  # what memfold writes for its own ids: skip the checks below
                message_id, micros, start = (
                    element[1:17].hex(),
                    _TIME.unpack_from(element, 17)[0],
                    25,
                )
            elif flag == BINARY_ID_ZSTD:
                message_id, start = element[1:17].hex(), 17
            else:
                cut = element.index(b"\x00", 1)
                message_id, start = element[1:cut].decode(), cut + 1
            if flag != BINARY_ID and flag != PLAIN and flag != ZSTD:
                if flag not in (BINARY_ID_ZSTD, TEXT_ID, TEXT_ID_ZSTD):
                    raise ValueError(f"unknown element flag {flag!r}")
                micros = _TIME.unpack_from(element, start)[0]
                start += 8
            payload = element[start:]
            if flag in _COMPRESSED:
                payload = self._decompressor().decompress(payload)
            data = _decode(payload.decode())[0]
        except (ValueError, TypeError, IndexError, struct.error, zstandard.ZstdError) as exc:
            raise BackendUnavailable(
                "a stored message is not in memfold's Redis format (written by a newer "
                f"memfold, or by something else under this key_prefix?): {exc}"
            ) from exc
        return stored_message(data, message_id, None if micros == NO_TIME else micros)

    def decode_all(self, elements: Iterable[bytes]) -> list[Message]:
        """The messages stored as ``elements``, in order."""
        decode = self.decode
        return [decode(element) for element in elements]
