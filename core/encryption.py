"""Encryption at rest: AES-256-GCM (the ``cryptography`` package, ``pip install
'memfold[encryption]'``) with key ids, so keys can rotate.

A `Keyring` maps key ids to 32-byte keys and names one active key: writes encrypt under it, reads
decrypt under whichever key a ciphertext names. A store opened with ``keyring=`` (or
``?keyring=env``, which reads `KEYS_ENV`) encrypts, in its base class and so on every backend:

- thread messages: the content (text or parts), the tool-call arguments and the metadata
  keys that hold content (`memfold.model.CONTENT_METADATA`: what the framework adapters keep
  beside it), together as one ciphertext in a single content part of type `ENCRYPTED_PART`
  (the arguments are emptied and those keys taken out of the metadata), and the compaction
  summary kept in thread metadata (`ENCRYPTED_METADATA`);
- long-term memories: the text and the value (the value becomes ``{ENCRYPTED_KEY: ...}``);
- checkpoints: the body, every channel value and every pending write (the tag gets
  `ENCRYPTED_TAG` appended);
- effect journal entries: the recorded result (its tag gets `ENCRYPTED_TAG` appended too).

These forms are memfold's own, on a store with or without a keyring: a message with a part of
type `ENCRYPTED_PART`, a memory value with the key `ENCRYPTED_KEY` or text starting with
``ENCRYPTED_TEXT``, and a compaction summary holding `ENCRYPTED_KEY` are refused with
`memfold.errors.InvalidInput` before anything is written. Reading, a memory value is taken for
encrypted only when `ENCRYPTED_KEY` is its only key (one an earlier release let in beside other
keys reads as the plain value it is).

Roles, names, ids, tool names, times, the other thread and message metadata (where redaction
counts go), checkpoint metadata and versions, memory namespaces, importance, TTLs and
embeddings stay as they are, so listing, paging, filters on checkpoint metadata and vector
search keep working.
Embeddings are made from the plaintext before it is encrypted and are stored unencrypted (a
vector leaks something about its text: keep vector search off an encrypted store if that
matters). Full-text search needs the words, so an encrypted store declares
``full_text_search=False`` and ``encrypted=True`` in its `memfold.Capabilities`; a memory
store's search then ranks by vectors alone (so it needs an embedder, or a ``vector=``), and
filters over memory values are refused.

Every ciphertext is ``version (1 byte) | key id length (1 byte) | key id | nonce (12 bytes) |
AES-GCM ciphertext and tag (16 bytes)``, authenticated together with what it is (a message, a
memory, a checkpoint value or journal entry of a given tag), so a ciphertext cannot be passed
off as another kind. Messages, memories and journal entries get a random nonce. Checkpoint
values are encrypted deterministically, with a synthetic IV: the nonce is HMAC-SHA256 of the
plaintext (and what it is) under a key derived from the data key, as in SIV mode. Equal
plaintexts then give equal ciphertexts, which is what keeps list values stored as deltas: a new
checkpoint's message list is matched item by item against its parent's by digest
(`memfold.checkpoint_deltas`), and random nonces would make every item new, turning every step
into a full snapshot. What it reveals is only which items are equal, which the delta layout
shows anyway; and since the nonce is a function of the plaintext, a nonce repeats only for the
same plaintext, so AES-GCM's nonce-reuse weakness does not apply. Each item costs `OVERHEAD`
bytes plus the key id.

A missing key, a wrong key or altered data raises `memfold.errors.EncryptionError`, naming
the key id needed. `rotate_key` on a store re-encrypts what it holds under the active key.

Examples:
    >>> keyring = Keyring({"k1": bytes(32)})
    >>> token = keyring.seal(b"hello", b"example")
    >>> key_id(token), keyring.open(token, b"example", "the example")
    ('k1', b'hello')
    >>> Keyring.parse(Keyring({"k2": bytes(32), "k1": bytes(32)}).to_text()).key_ids
    ('k2', 'k1')
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from memfold.checkpoint_model import Blob, ChannelValue, Checkpoint, PendingWrite, SequenceBlob
from memfold.errors import EncryptionError, InvalidInput
from memfold.limits import MAX_JSON_DEPTH, Limits, check_tree
from memfold.memory_model import MemoryHit, MemoryRecord
from memfold.model import (
    CONTENT_METADATA,
    JSON,
    Message,
    MessageHit,
    Part,
    ThreadInfo,
    ToolCall,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENCRYPTED_KEY",
    "ENCRYPTED_METADATA",
    "ENCRYPTED_PART",
    "ENCRYPTED_TAG",
    "KEYS_ENV",
    "KEY_BYTES",
    "OVERHEAD",
    "Keyring",
    "check_keyring",
    "checkpoint_key_ids",
    "effect_key_id",
    "key_id",
    "metadata_key_ids",
    "open_checkpoints",
    "open_effect",
    "open_hits",
    "open_infos",
    "open_memory_hits",
    "open_messages",
    "open_records",
    "record_key_ids",
    "reseal_message",
    "reseal_record",
    "seal_blob",
    "seal_effect",
    "seal_message",
    "seal_metadata",
    "seal_record",
    "seal_value",
    "seal_write",
    "sealed_key_ids",
    "take_keyring",
]

KEY_BYTES: Final = 32
"""The length of every key: AES-256."""
KEYS_ENV: Final = "MEMFOLD_KEYS"
"""The environment variable `Keyring.from_env` reads: ``id:base64key,...``, the first active."""
ENCRYPTED_PART: Final = "memfold.encrypted"
"""The part type holding an encrypted message's content and tool-call arguments."""
ENCRYPTED_KEY: Final = "memfold.encrypted"
"""The only key of an encrypted memory value (a value with other keys too is plain)."""
ENCRYPTED_TAG: Final = "+memfold.aes"
"""Appended to the type tag of an encrypted checkpoint body, value or write, or journal
entry's result."""
ENCRYPTED_METADATA: Final = frozenset({"memfold.compaction"})
"""Thread metadata keys whose values memfold derives from the messages (the compaction
summary of `memfold.compaction`): encrypted like the messages, as ``{ENCRYPTED_KEY: ...}``."""
ENCRYPTED_TEXT: Final = "\x01memfold.encrypted:"
"""Starts an encrypted memory text."""
OVERHEAD: Final = 1 + 1 + 12 + 16
"""Bytes every ciphertext adds to its plaintext, besides the key id's own length."""

_VERSION: Final = 1
_NONCE: Final = 12
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MESSAGE: Final = b"message"
_METADATA: Final = b"thread metadata"
_MEMORY_TEXT: Final = b"memory text"
_MEMORY_VALUE: Final = b"memory value"
_DEEPEST: Final = Limits(max_json_depth=MAX_JSON_DEPTH)
"""What `_json_bytes` checks: the store checked its own (lower) limits before sealing."""
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _aesgcm() -> type[AESGCM]:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise ImportError(
            "memfold's encryption needs the cryptography package: pip install 'memfold[encryption]'"
        ) from exc
    return AESGCM


@dataclass(frozen=True, slots=True)
class _Key:
    header: bytes
    cipher: AESGCM
    mac: bytes


def _check_key_id(value: object) -> str:
    if not isinstance(value, str) or not _KEY_ID.fullmatch(value):
        raise InvalidInput(f"a key id must be 1-64 letters, digits, '.', '_' or '-', got {value!r}")
    return value


def _derive(key: bytes, label: bytes) -> bytes:
    return hmac.digest(key, b"memfold/" + label, "sha256")


class Keyring:
    """Key ids to 32-byte keys, with one active key that new data is encrypted under.

    Args:
        keys: key id to key (32 bytes); ids are 1-64 letters, digits, ``.``, ``_`` or ``-``.
        active: the id to encrypt under (default: the first of ``keys``).

    Raises:
        InvalidInput: no keys, a bad id, a key that is not 32 bytes, or an unknown ``active``.
        ImportError: the ``encryption`` extra (the cryptography package) is not installed.
    """

    def __init__(self, keys: Mapping[str, bytes], active: str | None = None) -> None:
        aesgcm = _aesgcm()
        if not isinstance(keys, Mapping) or not keys:
            raise InvalidInput("a Keyring needs at least one key: {key_id: 32 random bytes}")
        self._keys: dict[str, _Key] = {}
        for kid, key in keys.items():
            _check_key_id(kid)
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise InvalidInput(
                    f"key {kid!r} must be {KEY_BYTES} bytes (e.g. Keyring.generate_key()), "
                    f"got {len(key) if isinstance(key, bytes) else type(key).__name__}"
                )
            header = bytes((_VERSION, len(kid))) + kid.encode()
            self._keys[kid] = _Key(
                header, aesgcm(_derive(key, b"aes-256-gcm")), _derive(key, b"synthetic-iv")
            )
        self._secrets = dict(keys)
        self._active = next(iter(keys)) if active is None else _check_key_id(active)
        if self._active not in self._keys:
            raise InvalidInput(f"the active key {self._active!r} is not in the keyring")

    @property
    def active(self) -> str:
        """The id of the key new data is encrypted under."""
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, in the order given."""
        return tuple(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __repr__(self) -> str:
        return f"Keyring(active={self._active!r}, key_ids={list(self._keys)!r})"

    @staticmethod
    def generate_key() -> bytes:
        """A new random key."""
        return os.urandom(KEY_BYTES)

    @classmethod
    def generate(cls, key_id: str = "k1") -> Keyring:
        """A keyring holding one new random key, active.

        Raises:
            InvalidInput: ``key_id`` is not a valid key id.
        """
        return cls({_check_key_id(key_id): cls.generate_key()})

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """A keyring from ``id:base64key,id:base64key``; the first key is the active one.

        Raises:
            InvalidInput: the text is not in that form.
        """
        keys: dict[str, bytes] = {}
        for entry in str(text).split(","):
            kid, sep, encoded = entry.strip().partition(":")
            if not sep:
                raise InvalidInput(
                    "keys are written id:base64key, separated by commas (the first is active)"
                )
            try:
                key = base64.b64decode(encoded.strip().replace("-", "+").replace("_", "/"))
            except (binascii.Error, ValueError) as exc:
                raise InvalidInput(f"key {kid.strip()!r} is not valid base64") from exc
            if kid.strip() in keys:
                raise InvalidInput(f"key id {kid.strip()!r} appears twice")
            keys[kid.strip()] = key
        return cls(keys)

    @classmethod
    def from_env(cls, name: str = KEYS_ENV) -> Keyring:
        """The keyring in environment variable ``name`` (see `parse`).

        Raises:
            InvalidInput: the variable is unset or not in the form `parse` reads.
        """
        if not isinstance(name, str):
            raise InvalidInput(f"the keys' variable name must be a str, got {type(name).__name__}")
        try:
            text = os.environ.get(name)
        except UnicodeEncodeError as exc:  # a lone surrogate cannot name a variable
            raise InvalidInput(f"{name!r} cannot name an environment variable") from exc
        if not text:
            raise InvalidInput(
                f"${name} is not set: set it to id:base64key[,id:base64key...], the first key "
                'active (make one with: python -c "from memfold.encryption import Keyring; '
                'print(Keyring.generate().to_text())")'
            )
        return cls.parse(text)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Keyring:
        """The keyring in a text file (see `parse`; surrounding whitespace is ignored). Keep
        the file readable by its owner only.

        Raises:
            InvalidInput: the file cannot be read (missing, unreadable, not a file), is not
                UTF-8 text in the form `parse` reads, or ``path`` cannot name a file (a NUL
                character, a name too long, not a path).
        """
        if not isinstance(path, str | os.PathLike):  # open() would take an int as a descriptor
            raise InvalidInput(f"the key file must be a path, got {type(path).__name__}")
        try:
            with open(path, encoding="utf-8") as source:
                text = source.read()
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"the key file {path!s} is not UTF-8 text") from exc
        except ValueError as exc:  # a NUL, or a lone surrogate the file system cannot encode
            raise InvalidInput(f"{path!r} cannot name a key file: {exc}") from exc
        except OSError as exc:
            raise InvalidInput(f"cannot read the key file {path!s}: {exc.strerror}") from exc
        return cls.parse(text.strip())

    @classmethod
    def from_option(cls, value: str) -> Keyring | None:
        """The keyring a URL option names: ``env`` (`KEYS_ENV`), ``env:NAME`` (another
        variable) or ``off`` (None). Keys themselves never go in a URL."""
        if not isinstance(value, str):
            raise InvalidInput(f"keyring= must be env, env:NAME or off, got {value!r}")
        value = value.strip()
        if value in ("off", "none", ""):
            return None
        if value == "env":
            return cls.from_env()
        if value.startswith("env:"):
            return cls.from_env(value[4:])
        raise InvalidInput(
            f"keyring={value!r}: use keyring=env (reads ${KEYS_ENV}) or keyring=env:VARIABLE; "
            "keys never go in a URL"
        )

    def to_text(self) -> str:
        """The keyring in the form `parse` reads, active key first. It holds the keys: keep
        it as secret as they are."""
        order = [self._active, *(k for k in self._keys if k != self._active)]
        return ",".join(f"{k}:{base64.b64encode(self._secrets[k]).decode()}" for k in order)

    def with_active(self, key_id: str) -> Keyring:
        """The same keys with ``key_id`` active.

        Raises:
            InvalidInput: ``key_id`` is not one of the keyring's ids.
        """
        return Keyring(self._secrets, _check_key_id(key_id))

    # Bytes in, bytes out.

    def seal(self, data: bytes, purpose: bytes, *, deterministic: bool = False) -> bytes:
        """``data`` encrypted under the active key, bound to ``purpose``; with
        ``deterministic`` equal data gives an equal ciphertext (a synthetic IV).

        Raises:
            InvalidInput: ``data`` or ``purpose`` is not bytes.
        """
        _check_bytes(data, "the data to encrypt")
        _check_bytes(purpose, "purpose")
        key = self._keys[self._active]
        aad = key.header + b"\x00" + purpose
        if deterministic:
            nonce = hmac.digest(key.mac, aad + b"\x00" + data, "sha256")[:_NONCE]
        else:
            nonce = os.urandom(_NONCE)
        return key.header + nonce + key.cipher.encrypt(nonce, data, aad)

    def open(self, token: bytes, purpose: bytes, what: str) -> bytes:
        """The data `seal` encrypted into ``token`` for ``purpose``.

        Raises:
            EncryptionError: the key ``token`` names is not in this keyring, is not the key it
                was made with, or ``token`` was altered; ``what`` names the data in the message.
            InvalidInput: ``token`` or ``purpose`` is not bytes.
        """
        _check_bytes(purpose, "purpose")
        kid = key_id(token, what)
        key = self._keys.get(kid)
        if key is None:
            raise EncryptionError(
                f"{what} is encrypted with key {kid!r}, which this keyring lacks (it holds "
                f"{', '.join(map(repr, self._keys))}): add key {kid!r} to the keyring "
                f"(${KEYS_ENV})"
            )
        start = len(key.header)
        nonce = token[start : start + _NONCE]
        try:
            return key.cipher.decrypt(
                nonce, token[start + _NONCE :], key.header + b"\x00" + purpose
            )
        except Exception as exc:  # cryptography's InvalidTag (and ValueError for short data)
            raise EncryptionError(
                f"{what} does not decrypt with key {kid!r}: the keyring's key {kid!r} is not "
                "the one it was encrypted with, or the stored data was altered"
            ) from exc

    def seal_text(self, data: bytes, purpose: bytes) -> str:
        """`seal`, as base64 text."""
        return base64.b64encode(self.seal(data, purpose)).decode("ascii")

    def open_text(self, text: str, purpose: bytes, what: str) -> bytes:
        """`open` for `seal_text` output."""
        return self.open(_unbase64(text, what), purpose, what)

    def reseal_text(self, text: str, purpose: bytes, what: str) -> str:
        """`seal_text` output re-encrypted under the active key (key rotation)."""
        return self.seal_text(self.open_text(text, purpose, what), purpose)


def key_id(token: bytes, what: str = "the data") -> str:
    """The id of the key a ciphertext was made with.

    Raises:
        EncryptionError: ``token`` is not a memfold ciphertext.
        InvalidInput: ``token`` is not bytes.
    """
    _check_bytes(token, what)
    if len(token) < 2 or token[0] != _VERSION or len(token) < 2 + token[1] + _NONCE + 16:
        raise EncryptionError(f"{what} is not a memfold ciphertext (damaged, or a newer format)")
    try:
        return token[2 : 2 + token[1]].decode("ascii")
    except UnicodeDecodeError as exc:
        raise EncryptionError(f"{what} is not a memfold ciphertext (a bad key id)") from exc


def check_keyring(value: object) -> Keyring | None:
    """``value`` if it is a `Keyring` or None, else `InvalidInput`."""
    if value is not None and not isinstance(value, Keyring):
        raise InvalidInput(f"keyring must be a memfold Keyring or None, got {value!r}")
    return value


def take_keyring(
    url: str, options: Mapping[str, Any]
) -> tuple[str, dict[str, Any], Keyring | None]:
    """``url`` and ``options`` without ``keyring``, and the keyring they ask for: a
    ``keyring=`` keyword (a `Keyring`, or text as in `Keyring.from_option`), else the URL's
    ``keyring=`` option, else None."""
    from memfold.urls import take_option

    url, rest, found = take_option(url, options, "keyring", Keyring.from_option)
    if isinstance(found, str):
        found = Keyring.from_option(found)
    return url, rest, check_keyring(found)


def _unbase64(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EncryptionError(f"{what} is not a memfold ciphertext (bad base64)") from exc


def _check_bytes(value: object, what: str) -> None:
    if not isinstance(value, bytes | bytearray):
        raise InvalidInput(f"{what} must be bytes, got {type(value).__name__}")


def _json_bytes(value: object, what: str) -> bytes:
    check_tree(value, what, _DEEPEST)  # str keys only: JSON would turn 1 into "1"
    try:
        return _json(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} holds text that is not valid Unicode") from exc
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"{what} is not JSON-serialisable: {exc}") from exc


# Thread messages.


def _sealed(message: Message) -> str | None:
    """The base64 ciphertext of an encrypted message (None for a plain one)."""
    content = message.content
    if isinstance(content, str) or len(content) != 1 or content[0].type != ENCRYPTED_PART:
        return None
    return content[0].data or ""


def check_plain_parts(parts: Iterable[Part], what: str) -> None:
    """`InvalidInput` if a part of a message to write has type `ENCRYPTED_PART`, which
    memfold reserves: the message would read back as a ciphertext."""
    if any(p.type == ENCRYPTED_PART for p in parts):
        raise InvalidInput(
            f"{what} has a part of type {ENCRYPTED_PART!r}, which memfold reserves for "
            "encrypted messages: give the part another type"
        )


def seal_message(keyring: Keyring, message: Message) -> Message:
    """``message`` with its content, tool-call arguments and `CONTENT_METADATA` encrypted
    under the active key (as one ``[content, arguments, content metadata]`` payload, shorter
    when the last parts are empty)."""
    m = message
    content: JSON = m.content if isinstance(m.content, str) else [p.to_dict() for p in m.content]
    said = {k: v for k, v in m.metadata.items() if k in CONTENT_METADATA}
    payload: list[JSON] = [content, [dict(c.arguments) for c in m.tool_calls], said]
    payload = payload if said else payload[:2] if m.tool_calls else payload[:1]
    token = keyring.seal_text(_json_bytes(payload, f"message {m.id!r}"), _MESSAGE)
    calls = tuple(ToolCall(c.id, c.name) for c in m.tool_calls)
    metadata = {k: v for k, v in m.metadata.items() if k not in said} if said else m.metadata
    return Message(
        m.role, (Part(ENCRYPTED_PART, data=token),), m.name, m.id, calls, m.tool_call_id,
        m.created_at, metadata,
    )  # fmt: skip


def holds_plain_content(message: Message) -> bool:
    """Whether ``message``'s metadata holds `CONTENT_METADATA` keys as they are, which an
    encrypted store keeps only inside the ciphertext (an older memfold kept them outside)."""
    return not CONTENT_METADATA.isdisjoint(message.metadata)


def reseal_message(keyring: Keyring, message: Message) -> Message:
    """``message`` encrypted under the active key: an encrypted one re-encrypted as it is (not
    decoded), a plain one sealed, and one encrypted before `CONTENT_METADATA` was (its
    metadata holds such keys in plaintext) opened and sealed again, those keys with it."""
    token = _sealed(message)
    if token is None or holds_plain_content(message):
        return seal_message(keyring, _open_message(keyring, message))
    m = message
    sealed = keyring.reseal_text(token, _MESSAGE, f"message {m.id!r}")
    return Message(
        m.role, (Part(ENCRYPTED_PART, data=sealed),), m.name, m.id, m.tool_calls,
        m.tool_call_id, m.created_at, m.metadata,
    )  # fmt: skip


def _open_message(keyring: Keyring | None, message: Message) -> Message:
    token = _sealed(message)
    if token is None:
        return message
    m = message
    what = f"message {m.id!r}"
    if keyring is None:
        raise _no_keyring(what, key_id(_unbase64(token, what), what))
    try:
        payload = json.loads(keyring.open_text(token, _MESSAGE, what))
        content = payload[0]
        calls = tuple(
            ToolCall(c.id, c.name, arguments)
            for c, arguments in zip(m.tool_calls, payload[1] if m.tool_calls else (), strict=True)
        )
        metadata = {**m.metadata, **payload[2]} if len(payload) > 2 else m.metadata
        return Message(
            m.role,
            content if isinstance(content, str) else tuple(map(Part.from_dict, content)),
            m.name, m.id, calls, m.tool_call_id, m.created_at, metadata,
        )  # fmt: skip
    except (ValueError, TypeError, LookupError) as exc:
        raise EncryptionError(f"{what} decrypted to something that is not a message") from exc


def open_messages(keyring: Keyring | None, messages: list[Message]) -> list[Message]:
    """``messages`` as they were before `seal_message` (plain ones as they are).

    Raises:
        EncryptionError: a message is encrypted and ``keyring`` cannot decrypt it (or is None).
    """
    if keyring is None:
        for m in messages:
            if type(m.content) is not str:
                _open_message(None, m)
        return messages
    return [m if type(m.content) is str else _open_message(keyring, m) for m in messages]


def open_hits(keyring: Keyring | None, hits: list[MessageHit]) -> list[MessageHit]:
    """Search hits with their messages as `open_messages` returns them."""
    opened = open_messages(keyring, [h.message for h in hits])
    return [MessageHit(h.thread_id, m, h.score) for h, m in zip(hits, opened, strict=True)]


# Thread metadata.


def seal_metadata(keyring: Keyring, metadata: Mapping[str, JSON]) -> dict[str, JSON]:
    """Thread metadata with the values of `ENCRYPTED_METADATA` keys encrypted under the active
    key (or re-encrypted, if they already are); the other keys stay as they are."""
    out = dict(metadata)
    for key in ENCRYPTED_METADATA.intersection(metadata):
        value = metadata[key]
        what = f"thread metadata {key!r}"
        token = _sealed_value(value)
        out[key] = {
            ENCRYPTED_KEY: keyring.seal_text(_json_bytes(value, what), _METADATA)
            if token is None
            else keyring.reseal_text(token, _METADATA, what)
        }
    return out


def check_plain_metadata(metadata: Mapping[str, JSON]) -> None:
    """`InvalidInput` if thread metadata to write holds an `ENCRYPTED_METADATA` value with
    the key `ENCRYPTED_KEY`, which memfold reserves: it would read back as a ciphertext."""
    for key in ENCRYPTED_METADATA.intersection(metadata):
        value = metadata[key]
        if isinstance(value, Mapping) and ENCRYPTED_KEY in value:
            raise InvalidInput(
                f"thread metadata {key!r} has the key {ENCRYPTED_KEY!r}, which memfold "
                "reserves for encrypted values"
            )


def _sealed_value(value: object) -> str | None:
    """The base64 ciphertext of an encrypted JSON value (None for a plain one)."""
    if isinstance(value, dict) and len(value) == 1 and ENCRYPTED_KEY in value:
        return str(value[ENCRYPTED_KEY])
    return None


def open_infos(keyring: Keyring | None, infos: list[ThreadInfo]) -> list[ThreadInfo]:
    """Thread summaries with their metadata as it was before `seal_metadata`.

    Raises:
        EncryptionError: a value is encrypted and ``keyring`` cannot decrypt it (or is None).
    """
    opened = []
    for info in infos:
        found = {k: t for k in ENCRYPTED_METADATA if (t := _sealed_value(info.metadata.get(k)))}
        if not found:
            opened.append(info)
            continue
        metadata = dict(info.metadata)
        for key, token in found.items():
            what = f"thread metadata {key!r} of thread {info.thread_id!r}"
            if keyring is None:
                raise _no_keyring(what, key_id(_unbase64(token, what), what))
            metadata[key] = json.loads(keyring.open_text(token, _METADATA, what))
        opened.append(replace(info, metadata=metadata))
    return opened


def metadata_key_ids(metadata: Mapping[str, JSON]) -> set[str | None]:
    """The key ids the `ENCRYPTED_METADATA` values of thread metadata are encrypted with
    (None stands for a plain one)."""
    found: set[str | None] = set()
    for key in ENCRYPTED_METADATA.intersection(metadata):
        token = _sealed_value(metadata[key])
        what = f"thread metadata {key!r}"
        found.add(None if token is None else key_id(_unbase64(token, what), what))
    return found


# Long-term memories.


def check_plain_record(text: str, value: Mapping[str, JSON], what: str) -> None:
    """`InvalidInput` if a memory to write has text starting with `ENCRYPTED_TEXT` or a value
    with the key `ENCRYPTED_KEY`, which memfold reserves: it would read back as a ciphertext."""
    if text.startswith(ENCRYPTED_TEXT):
        raise InvalidInput(
            f"the text of {what} starts with {ENCRYPTED_TEXT!r}, which memfold reserves for "
            "encrypted texts"
        )
    if ENCRYPTED_KEY in value:
        raise InvalidInput(
            f"the value of {what} has the key {ENCRYPTED_KEY!r}, which memfold reserves for "
            "encrypted values: rename it"
        )


def seal_record(keyring: Keyring, record: MemoryRecord) -> MemoryRecord:
    """``record`` with its text and value encrypted under the active key (empty ones stay
    empty)."""
    what = f"memory {record.id!r}"
    text = record.text
    if text:
        text = ENCRYPTED_TEXT + keyring.seal_text(_text_bytes(text, what), _MEMORY_TEXT)
    value: dict[str, JSON] = {}
    if record.value:
        value[ENCRYPTED_KEY] = keyring.seal_text(
            _json_bytes(dict(record.value), f"the value of {what}"), _MEMORY_VALUE
        )
    return replace(record, text=text, value=value)


def reseal_record(keyring: Keyring, record: MemoryRecord) -> MemoryRecord:
    """``record`` encrypted under the active key: encrypted text and value re-encrypted as
    they are (not decoded), plain ones sealed."""
    what = f"memory {record.id!r}"
    text = record.text
    if text.startswith(ENCRYPTED_TEXT):
        sealed = keyring.reseal_text(text[len(ENCRYPTED_TEXT) :], _MEMORY_TEXT, what)
        text = ENCRYPTED_TEXT + sealed
    elif text:
        text = ENCRYPTED_TEXT + keyring.seal_text(_text_bytes(text, what), _MEMORY_TEXT)
    value: Mapping[str, JSON] = record.value
    token = _sealed_value(value)
    if token is not None:
        value = {ENCRYPTED_KEY: keyring.reseal_text(token, _MEMORY_VALUE, what)}
    elif value:
        value = {ENCRYPTED_KEY: keyring.seal_text(_json_bytes(dict(value), what), _MEMORY_VALUE)}
    return replace(record, text=text, value=value)


def _text_bytes(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"the text of {what} is not valid Unicode (a lone surrogate)") from exc


def _open_record(keyring: Keyring | None, record: MemoryRecord) -> MemoryRecord:
    sealed_text = record.text.startswith(ENCRYPTED_TEXT)
    sealed_value = _sealed_value(record.value)  # with other keys too, a value is plain
    if not sealed_text and sealed_value is None:
        return record
    what = f"memory {record.id!r}"
    if keyring is None:
        token = record.text[len(ENCRYPTED_TEXT) :] if sealed_text else sealed_value
        raise _no_keyring(what, key_id(_unbase64(str(token), what), what))
    text = record.text
    if sealed_text:
        text = keyring.open_text(text[len(ENCRYPTED_TEXT) :], _MEMORY_TEXT, what).decode()
    value = record.value
    if sealed_value is not None:
        value = json.loads(keyring.open_text(sealed_value, _MEMORY_VALUE, what))
    return replace(record, text=text, value=value)


def open_records(keyring: Keyring | None, records: list[MemoryRecord]) -> list[MemoryRecord]:
    """``records`` as they were before `seal_record` (plain ones as they are).

    Raises:
        EncryptionError: a record is encrypted and ``keyring`` cannot decrypt it (or is None).
    """
    return [_open_record(keyring, r) for r in records]


def open_memory_hits(keyring: Keyring | None, hits: list[MemoryHit]) -> list[MemoryHit]:
    """Memory search hits with their records as `open_records` returns them."""
    return [replace(h, record=_open_record(keyring, h.record)) for h in hits]


def record_key_ids(record: MemoryRecord) -> set[str | None]:
    """The key ids ``record`` is encrypted with (None stands for plain text or value)."""
    found: set[str | None] = set()
    what = f"memory {record.id!r}"
    if record.text:
        if record.text.startswith(ENCRYPTED_TEXT):
            found.add(key_id(_unbase64(record.text[len(ENCRYPTED_TEXT) :], what), what))
        else:
            found.add(None)
    if record.value:
        token = _sealed_value(record.value)
        found.add(None if token is None else key_id(_unbase64(token, what), what))
    return found


# Checkpoints.


def _blob_purpose(tag: str) -> bytes:
    return b"checkpoint " + tag.encode("utf-8", "surrogatepass")


def seal_blob(keyring: Keyring, blob: Blob) -> Blob:
    """A checkpoint body or pending write value encrypted under the active key,
    deterministically."""
    purpose = _blob_purpose(blob.tag)
    return Blob(blob.tag + ENCRYPTED_TAG, keyring.seal(blob.data, purpose, deterministic=True))


def seal_value(keyring: Keyring, value: ChannelValue) -> ChannelValue:
    """A channel value encrypted under the active key, deterministically (a list item by item,
    so equal items stay equal and deltas still match)."""
    if value is None:
        return None
    if isinstance(value, Blob):
        return seal_blob(keyring, value)
    purpose = _blob_purpose(value.tag)
    return SequenceBlob(
        value.tag + ENCRYPTED_TAG,
        tuple(keyring.seal(item, purpose, deterministic=True) for item in value.items),
    )


def seal_write(keyring: Keyring, write: PendingWrite) -> PendingWrite:
    """A pending write with its value encrypted under the active key."""
    return replace(write, value=seal_blob(keyring, write.value))


class _Opener:
    """Decrypts checkpoint bytes, each distinct ciphertext once (checkpoints of one list share
    most of their items)."""

    def __init__(self, keyring: Keyring | None) -> None:
        self.keyring = keyring
        self.seen: dict[bytes, bytes] = {}

    def _one(self, token: bytes, purpose: bytes, what: str) -> bytes:
        found = self.seen.get(token)
        if found is None:
            if self.keyring is None:
                raise _no_keyring(what, key_id(token, what))
            found = self.seen[token] = self.keyring.open(token, purpose, what)
        return found

    def blob(self, blob: Blob, what: str) -> Blob:
        if not blob.tag.endswith(ENCRYPTED_TAG):
            return blob
        tag = blob.tag[: -len(ENCRYPTED_TAG)]
        return Blob(tag, self._one(blob.data, _blob_purpose(tag), what))

    def value(self, value: Blob | SequenceBlob, what: str) -> Blob | SequenceBlob:
        if isinstance(value, Blob):
            return self.blob(value, what)
        if not value.tag.endswith(ENCRYPTED_TAG):
            return value
        tag = value.tag[: -len(ENCRYPTED_TAG)]
        purpose = _blob_purpose(tag)
        return SequenceBlob(tag, tuple(self._one(item, purpose, what) for item in value.items))

    def checkpoint(self, c: Checkpoint) -> Checkpoint:
        tags = [c.body.tag, *(v.tag for v in c.values.values()), *(w.value.tag for w in c.writes)]
        if not any(tag.endswith(ENCRYPTED_TAG) for tag in tags):
            return c  # nothing sealed: the common case of a store without a keyring
        what = f"checkpoint {c.checkpoint_id!r} of thread {c.thread_id!r}"
        return replace(
            c,
            body=self.blob(c.body, what),
            values={ch: self.value(v, f"channel {ch!r} of {what}") for ch, v in c.values.items()},
            writes=tuple(
                replace(w, value=self.blob(w.value, f"a pending write of {what}")) for w in c.writes
            ),
        )


def open_checkpoints(
    keyring: Keyring | None, checkpoints: Iterable[Checkpoint]
) -> list[Checkpoint]:
    """Checkpoints with their body, values and writes as they were before sealing.

    Raises:
        EncryptionError: something is encrypted and ``keyring`` cannot decrypt it (or is None).
    """
    opener = _Opener(keyring)
    return [opener.checkpoint(c) for c in checkpoints]


def checkpoint_key_ids(c: Checkpoint) -> set[str | None]:
    """The key ids a checkpoint's bytes are encrypted with (None stands for plain bytes)."""
    blobs: list[tuple[str, Iterable[bytes]]] = [(c.body.tag, (c.body.data,))]
    for v in c.values.values():
        blobs.append((v.tag, (v.data,) if isinstance(v, Blob) else v.items))
    blobs.extend((w.value.tag, (w.value.data,)) for w in c.writes)
    found: set[str | None] = set()
    for tag, data in blobs:
        if tag.endswith(ENCRYPTED_TAG):
            found.update(key_id(d, f"checkpoint {c.checkpoint_id!r}") for d in data)
        else:
            found.add(None)
    return found


# Effect journal entries.


def _effect_purpose(tag: str) -> bytes:
    return b"journal entry " + tag.encode("utf-8", "surrogatepass")


def seal_effect(keyring: Keyring, value: Blob) -> Blob:
    """A journal entry's recorded result encrypted under the active key."""
    return Blob(value.tag + ENCRYPTED_TAG, keyring.seal(value.data, _effect_purpose(value.tag)))


def open_effect(keyring: Keyring | None, value: Blob, what: str) -> Blob:
    """A recorded result as it was before `seal_effect` (a plain one as it is).

    Raises:
        EncryptionError: it is encrypted and ``keyring`` cannot decrypt it (or is None).
    """
    if not value.tag.endswith(ENCRYPTED_TAG):
        return value
    if keyring is None:
        raise _no_keyring(what, key_id(value.data, what))
    tag = value.tag[: -len(ENCRYPTED_TAG)]
    return Blob(tag, keyring.open(value.data, _effect_purpose(tag), what))


def effect_key_id(value: Blob) -> str | None:
    """The key id a recorded result is encrypted with (None for a plain one)."""
    if not value.tag.endswith(ENCRYPTED_TAG):
        return None
    return key_id(value.data, "a journal entry")


def sealed_key_ids(messages: Iterable[Message]) -> set[str | None]:
    """The key ids ``messages`` are encrypted with (None stands for plain messages)."""
    found: set[str | None] = set()
    for m in messages:
        token = _sealed(m)
        what = f"message {m.id!r}"
        found.add(None if token is None else key_id(_unbase64(token, what), what))
    return found


def _no_keyring(what: str, kid: str) -> EncryptionError:
    return EncryptionError(
        f"{what} is encrypted with key {kid!r}, but this store has no keyring: open it with "
        f"keyring=Keyring(...) or ?keyring=env (${KEYS_ENV}) holding key {kid!r}"
    )
