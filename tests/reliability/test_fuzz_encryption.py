"""Hostile input to encryption at rest (`memfold.encryption`): keyrings built from hostile keys,
ids, key text, files, environment variables and URL options build or raise a `memfold.errors`
error; everything sealed (bytes, text, messages, thread metadata, memories, checkpoint bodies,
values and writes) opens to exactly what was sealed, under the same keyring and after a key
rotation, or is refused; and damaged, foreign or wrongly-keyed ciphertexts raise
`EncryptionError`, never something else."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memfold import EncryptionError, InvalidInput, MemfoldError, Message, ThreadInfo
from memfold.checkpoint_model import Blob, Checkpoint, PendingWrite, SequenceBlob
from memfold.encryption import (
    ENCRYPTED_KEY,
    ENCRYPTED_PART,
    ENCRYPTED_TAG,
    ENCRYPTED_TEXT,
    KEY_BYTES,
    Keyring,
    check_keyring,
    checkpoint_key_ids,
    effect_key_id,
    key_id,
    metadata_key_ids,
    open_checkpoints,
    open_effect,
    open_hits,
    open_infos,
    open_memory_hits,
    open_messages,
    open_records,
    record_key_ids,
    reseal_message,
    reseal_record,
    seal_blob,
    seal_effect,
    seal_message,
    seal_metadata,
    seal_record,
    seal_value,
    seal_write,
    sealed_key_ids,
    take_keyring,
)
from memfold.memory_model import MemoryHit, MemoryRecord
from memfold.model import MessageHit, Part, ToolCall
from tests.reliability.fuzzing import (
    FUZZ,
    as_json,
    hostile_ids,
    hostile_keys,
    hostile_text,
    json_objects,
    json_values,
    messages,
)

OLD = Keyring({"old": b"o" * KEY_BYTES})
ROTATED = Keyring({"new": b"n" * KEY_BYTES, "old": b"o" * KEY_BYTES})
STRANGER = Keyring({"old": b"x" * KEY_BYTES})
"""A keyring with the right key id and the wrong key."""
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def key_material() -> st.SearchStrategy[Any]:
    """Keys: right-sized bytes, and wrong sizes, text and non-bytes."""
    return st.one_of(
        st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES),
        st.binary(max_size=64),
        st.sampled_from([None, "k" * KEY_BYTES, bytearray(KEY_BYTES), 0, [0] * KEY_BYTES]),
    )


def key_texts() -> st.SearchStrategy[Any]:
    """Keyring text as `Keyring.parse` reads it, made hostile: odd ids, bad base64, doubled
    ids, stray separators, and things that are not text."""
    good = Keyring({"k1": bytes(KEY_BYTES), "k2": b"\xff" * KEY_BYTES}).to_text()
    entry = st.tuples(hostile_ids(), st.sampled_from([":", "", "::"]), hostile_text()).map(
        lambda t: f"{t[0]}{t[1]}{t[2]}"
    )
    return st.one_of(
        st.just(good),
        st.lists(entry, min_size=1, max_size=3).map(",".join),
        st.sampled_from([good + "," + good, good.replace(":", "", 1), good + ",", " , ", ""]),
        st.sampled_from(["k1:" + "A" * 43 + "=", "k1:!!!!", "k1:" + "A" * 44 + "A", "k1:\x00"]),
        hostile_text(),
        st.sampled_from([None, b"k1:AAAA", 1, ["k1:AAAA"]]),
    )


def tokens() -> st.SearchStrategy[Any]:
    """Ciphertexts: real ones cut, extended or flipped, and arbitrary bytes or non-bytes."""
    real = OLD.seal(b"payload", b"fuzz")

    def damage(spec: tuple[int, int]) -> bytes:
        at, flip = spec[0] % len(real), spec[1] or 1
        return real[:at] + bytes([real[at] ^ flip]) + real[at + 1 :]

    return st.one_of(
        st.binary(max_size=80),
        st.integers(0, len(real)).map(lambda n: real[:n]),
        st.tuples(st.integers(0, 10**6), st.integers(0, 255)).map(damage),
        st.binary(max_size=8).map(lambda extra: real + extra),
        st.just(real),
        st.just(bytes((1, 200)) + b"k" * 230),
        st.sampled_from([None, "text", 1, bytearray(real)]),
    )


@FUZZ
@given(
    how=st.sampled_from(["init", "parse", "env", "file", "option", "generate", "with_active"]),
    keys=st.dictionaries(hostile_keys(), key_material(), max_size=3)
    | st.sampled_from([None, [], "k1", {"k1": b"x"}]),
    active=st.none() | hostile_ids(),
    text=key_texts(),
)
def test_keyrings_build_or_refuse(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    how: str,
    keys: Any,
    active: Any,
    text: Any,
) -> None:
    """A keyring built from hostile keys, ids, text, a file (hostile contents or names), an
    environment variable (hostile contents or names) or a URL option holds exactly the keys
    given, or raises a memfold error."""
    try:
        if how == "init":
            keyring = Keyring(keys, active)
            assert keyring.key_ids == tuple(keys)
            assert keyring.active == (next(iter(keys)) if active is None else active)
        elif how == "parse":
            keyring = Keyring.parse(text)
        elif how == "env":
            if isinstance(text, str) and "\x00" not in text and text.isprintable():
                monkeypatch.setenv("MEMFOLD_FUZZ_KEYS", text)
            keyring = Keyring.from_env("MEMFOLD_FUZZ_KEYS" if active is None else active)
            monkeypatch.delenv("MEMFOLD_FUZZ_KEYS", raising=False)
        elif how == "file":
            path: Any = tmp_path / "keys"
            if isinstance(text, str):
                path.write_bytes(text.encode("utf-8", "surrogatepass"))
            elif isinstance(active, str):  # a hostile name, kept inside tmp_path
                path = f"{tmp_path}/{active}"
            else:
                path = active
            keyring = Keyring.from_file(path)
        elif how == "option":
            option = text if isinstance(text, str) else active
            keyring_or_none = Keyring.from_option(option)
            assert keyring_or_none is None or isinstance(keyring_or_none, Keyring)
            url, rest, taken = take_keyring("memory://", {"keyring": option})
            assert (url, rest) == ("memory://", {})
            assert taken == keyring_or_none or taken.to_text() == keyring_or_none.to_text()
            return
        elif how == "generate":
            keyring = Keyring.generate(active)
            assert keyring.key_ids == (active,)
        else:
            keyring = Keyring({"k1": bytes(KEY_BYTES), "k2": bytes(KEY_BYTES)}).with_active(active)
            assert keyring.active == active
    except MemfoldError:
        return
    assert check_keyring(keyring) is keyring
    again = Keyring.parse(keyring.to_text())
    assert again.key_ids[0] == keyring.active
    assert sorted(again.key_ids) == sorted(keyring.key_ids)


@FUZZ
@given(
    value=st.sampled_from([None, OLD, "env", "off", b"k", 1, object(), {"k1": bytes(32)}]),
    option=hostile_ids(),
)
def test_keyring_arguments_are_keyrings_or_refused(value: Any, option: Any) -> None:
    """check_keyring passes a Keyring or None and refuses anything else; take_keyring reads a
    hostile ``keyring=`` URL option or keyword as a keyring, or refuses it."""
    try:
        assert check_keyring(value) is value
    except InvalidInput:
        assert value is not None
        assert not isinstance(value, Keyring)
    for url, options in (
        (f"memory://?keyring={option}", {}),
        ("memory://", {"keyring": option}),
    ):
        try:
            _, rest, found = take_keyring(url, options)
        except MemfoldError:
            continue
        assert "keyring" not in rest
        assert found is None or isinstance(found, Keyring)


@FUZZ
@given(
    data=st.binary(max_size=200) | st.sampled_from(["text", None, 1, bytearray(b"x")]),
    purpose=st.binary(max_size=20) | st.sampled_from(["text", None]),
    other=st.binary(max_size=20),
    deterministic=st.booleans(),
    token=tokens(),
    text=hostile_text() | st.sampled_from([None, b"AAAA"]),
)
def test_seal_and_open_round_trip_or_refuse(
    data: Any, purpose: Any, other: bytes, deterministic: bool, token: Any, text: Any
) -> None:
    """Bytes and text sealed under a keyring open to exactly what went in, under that keyring
    and after rotation (reseal_text), and to nothing under another purpose, another key or
    none; any damaged, cut, foreign or non-bytes token raises EncryptionError or InvalidInput."""
    try:
        sealed = OLD.seal(data, purpose, deterministic=deterministic)
    except InvalidInput:
        assert not (isinstance(data, bytes) and isinstance(purpose, bytes))
    else:
        assert key_id(sealed) == "old"
        assert OLD.open(sealed, purpose, "fuzz") == data
        assert ROTATED.open(sealed, purpose, "fuzz") == data
        if other != purpose:
            with pytest.raises(EncryptionError):
                OLD.open(sealed, other, "fuzz")
        with pytest.raises(EncryptionError):
            STRANGER.open(sealed, purpose, "fuzz")
        with pytest.raises(EncryptionError, match="'old'"):
            Keyring({"new": bytes(KEY_BYTES)}).open(sealed, purpose, "fuzz")
        as_text = OLD.seal_text(data, purpose)
        assert OLD.open_text(as_text, purpose, "fuzz") == data
        resealed = ROTATED.reseal_text(as_text, purpose, "fuzz")
        assert key_id(base64.b64decode(resealed)) == "new"
        assert ROTATED.open_text(resealed, purpose, "fuzz") == data
    try:
        opened = OLD.open(token, b"fuzz", "fuzz")
    except (EncryptionError, InvalidInput):
        pass
    else:
        assert opened == b"payload"
    for reader in (lambda: key_id(token), lambda: OLD.open_text(text, b"fuzz", "fuzz")):
        with contextlib.suppress(EncryptionError, InvalidInput):
            reader()


def records() -> st.SearchStrategy[MemoryRecord]:
    """Memory records with hostile text and values."""
    return st.builds(
        MemoryRecord,
        namespace=st.just(("fuzz",)),
        id=hostile_text(max_size=10),
        text=hostile_text(max_size=60),
        value=json_objects(max_leaves=6).filter(lambda v: isinstance(v, dict)),
    )


def channel_values() -> st.SearchStrategy[Blob | SequenceBlob]:
    """Checkpoint channel values with hostile tags and any bytes."""
    tag = hostile_text(max_size=10)
    return st.one_of(
        st.builds(Blob, tag, st.binary(max_size=40)),
        st.builds(SequenceBlob, tag, st.lists(st.binary(max_size=10), max_size=4).map(tuple)),
    )


def checkpoints() -> st.SearchStrategy[Checkpoint]:
    """Checkpoints with hostile tags, channel names and bytes in body, values and writes."""
    write = st.builds(
        PendingWrite,
        task_id=hostile_text(max_size=8),
        idx=st.integers(-3, 3),
        channel=hostile_text(max_size=8),
        value=st.builds(Blob, hostile_text(max_size=10), st.binary(max_size=20)),
    )
    return st.builds(
        Checkpoint,
        thread_id=hostile_text(max_size=8),
        namespace=st.just(""),
        checkpoint_id=hostile_text(max_size=8),
        parent_id=st.none(),
        created_at=st.just(NOW),
        metadata=st.just({}),
        body=st.builds(Blob, hostile_text(max_size=10), st.binary(max_size=40)),
        versions=st.just({}),
        values=st.dictionaries(hostile_text(max_size=8), channel_values(), max_size=3),
        writes=st.lists(write, max_size=2).map(tuple),
    )


def same(opened: list[Message], written: list[Message]) -> bool:
    """Whether ``opened`` are the messages ``written``, field for field (metadata is never
    sealed: it must be the very same object)."""
    return all(o.metadata is w.metadata for o, w in zip(opened, written, strict=True)) and [
        dataclasses.replace(m, metadata={}).to_dict() for m in opened
    ] == [as_json(dataclasses.replace(m, metadata={}).to_dict()) for m in written]


@FUZZ
@given(message=messages(), summary=json_values(max_leaves=6), info_metadata=json_objects())
def test_messages_and_thread_metadata_open_exactly_or_refuse(
    message: Message, summary: Any, info_metadata: Any
) -> None:
    """A hostile message sealed, resealed under a rotated keyring and opened is the message
    written, and its search hit too; one that cannot be sealed raises InvalidInput. Thread
    metadata with a hostile compaction summary seals and opens the same way."""
    try:
        sealed = seal_message(OLD, message)
    except InvalidInput:
        sealed = None
    if sealed is not None:
        assert sealed.content[0].type == ENCRYPTED_PART
        assert sealed_key_ids([sealed, message]) >= {"old"}
        assert same(open_messages(OLD, [sealed]), [message])
        rotated = reseal_message(ROTATED, sealed)
        assert sealed_key_ids([rotated]) == {"new"}
        assert same(open_messages(ROTATED, [rotated]), [message])
        hit = open_hits(ROTATED, [MessageHit("t", rotated, 1.0)])
        assert same([hit[0].message], [message])
        for keyring in (None, STRANGER, OLD):
            with pytest.raises(EncryptionError):
                open_messages(keyring, [rotated])
    metadata = {"memfold.compaction": summary, "topic": "kept"}
    try:
        sealed_metadata = seal_metadata(OLD, metadata)
    except InvalidInput:
        return
    assert sealed_metadata["topic"] == "kept"
    assert metadata_key_ids(sealed_metadata) == {"old"}
    resealed = seal_metadata(ROTATED, sealed_metadata)
    assert metadata_key_ids(resealed) == {"new"}
    info = ThreadInfo("t", "default", NOW, NOW, 0, resealed)
    assert as_json(open_infos(ROTATED, [info])[0].metadata) == as_json(metadata)
    with pytest.raises(EncryptionError):
        open_infos(None, [info])
    if isinstance(info_metadata, dict):
        plain = ThreadInfo("t", "default", NOW, NOW, 0, info_metadata)
        try:
            assert open_infos(OLD, [plain])[0].metadata is not None
        except EncryptionError:
            assert "memfold.compaction" in info_metadata


@FUZZ
@given(record=records())
def test_memories_open_exactly_or_refuse(record: MemoryRecord) -> None:
    """A memory with hostile text and value seals, reseals under a rotated keyring and opens
    to exactly what was written, as a record and as a search hit, or raises InvalidInput."""
    try:
        sealed = seal_record(OLD, record)
    except InvalidInput:
        return
    assert not record.text or sealed.text.startswith(ENCRYPTED_TEXT)
    assert record_key_ids(sealed) <= {"old"}
    rotated = reseal_record(ROTATED, sealed)
    assert record_key_ids(rotated) <= {"new"}
    for keyring, stored in ((OLD, sealed), (ROTATED, rotated)):
        (opened,) = open_records(keyring, [stored])
        assert (opened.text, opened.value) == (record.text, as_json(dict(record.value)))
    (hit,) = open_memory_hits(ROTATED, [MemoryHit(rotated, 0.5)])
    assert hit.record.text == record.text
    if record.text or record.value:
        with pytest.raises(EncryptionError):
            open_records(None, [rotated])
        with pytest.raises(EncryptionError):
            open_records(STRANGER, [sealed])
    (plain,) = open_records(ROTATED, [reseal_record(ROTATED, record)])
    assert (plain.text, plain.value) == (record.text, as_json(dict(record.value)))


@FUZZ
@given(checkpoint=checkpoints())
def test_checkpoints_open_exactly_or_refuse(checkpoint: Checkpoint) -> None:
    """A checkpoint with hostile tags and bytes in its body, channel values and pending writes
    seals and opens to exactly what was written; under no keyring or the wrong key it raises
    EncryptionError."""
    sealed = dataclasses.replace(
        checkpoint,
        body=seal_blob(OLD, checkpoint.body),
        values={ch: seal_value(OLD, v) for ch, v in checkpoint.values.items()},
        writes=tuple(seal_write(OLD, w) for w in checkpoint.writes),
    )
    assert seal_value(OLD, None) is None
    assert sealed.body.tag == checkpoint.body.tag + ENCRYPTED_TAG
    assert checkpoint_key_ids(sealed) <= {"old"}
    assert open_checkpoints(ROTATED, [sealed]) == [checkpoint]
    with pytest.raises(EncryptionError):
        open_checkpoints(None, [sealed])
    with pytest.raises(EncryptionError):
        open_checkpoints(STRANGER, [sealed])


@FUZZ
@given(result=st.builds(Blob, hostile_text(max_size=10), st.binary(max_size=40)))
def test_journal_results_open_exactly_or_refuse(result: Blob) -> None:
    """A recorded result with a hostile tag and bytes seals and opens to exactly what was
    recorded, names its key, and raises EncryptionError under no keyring or the wrong key; a
    plain result opens as it is."""
    sealed = seal_effect(OLD, result)
    assert sealed.tag == result.tag + ENCRYPTED_TAG
    assert effect_key_id(sealed) == "old"
    assert open_effect(ROTATED, sealed, "fuzz") == result
    for keyring in (None, STRANGER):
        with pytest.raises(EncryptionError):
            open_effect(keyring, sealed, "fuzz")
    if not result.tag.endswith(ENCRYPTED_TAG):
        assert effect_key_id(result) is None
        assert open_effect(None, result, "fuzz") is result


@FUZZ
@given(
    token=hostile_text() | st.sampled_from(["", "AAAA", "!!"]),
    raw=tokens(),
    which=st.sampled_from(["message", "record text", "record value", "metadata", "blob"]),
)
def test_damaged_ciphertexts_raise_encryption_error(token: str, raw: Any, which: str) -> None:
    """Stored data that claims to be encrypted but holds hostile base64, damaged or foreign
    bytes raises EncryptionError (or reads as the plain data it is), never a raw error."""
    try:
        if which == "message":
            message = Message("user", (Part(ENCRYPTED_PART, data=token),))
            sealed_key_ids([message])
            open_messages(OLD, [message])
        elif which == "record text":
            record = MemoryRecord(("fuzz",), "r", ENCRYPTED_TEXT + token)
            record_key_ids(record)
            open_records(OLD, [record])
        elif which == "record value":
            record = MemoryRecord(("fuzz",), "r", "", {ENCRYPTED_KEY: token})
            record_key_ids(record)
            open_records(OLD, [record])
        elif which == "metadata":
            metadata = {"memfold.compaction": {ENCRYPTED_KEY: token}}
            metadata_key_ids(metadata)
            open_infos(OLD, [ThreadInfo("t", "default", NOW, NOW, 0, metadata)])
        else:
            data = raw if isinstance(raw, bytes) else b""
            body = Blob("json" + ENCRYPTED_TAG, data)
            checkpoint = Checkpoint("t", "", "c", None, NOW, {}, body, {})
            checkpoint_key_ids(checkpoint)
            open_checkpoints(OLD, [checkpoint])
    except EncryptionError:
        pass


@pytest.mark.parametrize(
    "call",
    [
        lambda: OLD.seal("text", b"fuzz"),  # type: ignore[arg-type]
        lambda: OLD.seal(b"data", "purpose"),  # type: ignore[arg-type]
        lambda: OLD.open(b"x" * 64, None, "fuzz"),  # type: ignore[arg-type]
        lambda: key_id(None),  # type: ignore[arg-type]
        lambda: OLD.with_active(None),  # type: ignore[arg-type]
        lambda: Keyring.generate(["t"]),  # type: ignore[arg-type]
        lambda: Keyring.from_file("/nonexistent/memfold-keys"),
        lambda: Keyring.from_file("a" * 300),
        lambda: Keyring.from_file(0),  # type: ignore[arg-type]
        lambda: Keyring.from_env(None),  # type: ignore[arg-type]
        lambda: Keyring.from_env("\ud800"),
        lambda: Keyring.from_option(None),  # type: ignore[arg-type]
        lambda: take_keyring(None, {}),  # type: ignore[arg-type]
        lambda: take_keyring("memory://", None),  # type: ignore[arg-type]
        lambda: OLD.open_text(None, b"fuzz", "fuzz"),  # type: ignore[arg-type]
        lambda: seal_record(OLD, MemoryRecord(("fuzz",), "r", "\ud800")),
        lambda: seal_record(OLD, MemoryRecord(("fuzz",), "r", "", {"a": {1: "int key"}})),
        lambda: seal_message(OLD, Message("user", "", tool_calls=(ToolCall("c", "f", {1: 2}),))),
        lambda: seal_metadata(OLD, {"memfold.compaction": {1: "int key"}}),
    ],
)
def test_found_bugs_raise_invalid_input(call: Any) -> None:
    """Regressions from the fuzzing: non-bytes data, purposes and tokens, bad key ids, key
    files that cannot be read (an OSError; an int read a file descriptor), a lone surrogate in
    a memory's text, and non-str JSON keys (which JSON would have turned into str ones, so the
    value opened would differ from the one sealed) raised TypeError, UnicodeEncodeError or
    were changed silently; each now raises InvalidInput."""
    with pytest.raises(InvalidInput):
        call()
