"""The keyring and the ciphertext format on their own, and the ``memfold rotate-key`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from memfold import EncryptionError, InvalidInput, Message, open_store
from memfold.checkpoints import Blob, SequenceBlob, open_checkpoint_store
from memfold.cli import app
from memfold.encryption import KEYS_ENV, OVERHEAD, Keyring, key_id, sealed_key_ids
from memfold.memories import open_memory_store
from memfold.ops import LoadThread


def test_seal_and_open_round_trip_under_the_key_the_token_names() -> None:
    """A ciphertext names its key; any keyring holding that key opens it, bound to its
    purpose, and it is as long as the data plus the overhead and the key id."""
    old, new = Keyring.generate_key(), Keyring.generate_key()
    writer = Keyring({"old": old})
    token = writer.seal(b"secret", b"purpose")
    assert key_id(token) == "old"
    assert len(token) == len(b"secret") + OVERHEAD + len("old")
    reader = Keyring({"new": new, "old": old})
    assert reader.active == "new"
    assert reader.open(token, b"purpose", "x") == b"secret"
    with pytest.raises(EncryptionError, match="does not decrypt"):
        reader.open(token, b"another purpose", "x")
    altered = token[:-1] + bytes([token[-1] ^ 1])
    with pytest.raises(EncryptionError, match="altered"):
        reader.open(altered, b"purpose", "x")
    with pytest.raises(EncryptionError, match="lacks"):
        Keyring({"new": new}).open(token, b"purpose", "x")
    with pytest.raises(EncryptionError, match="not a memfold ciphertext"):
        reader.open(b"\x07garbage", b"purpose", "x")


def test_random_and_deterministic_sealing() -> None:
    """By default equal data gives different ciphertexts; deterministic sealing gives equal
    ones for equal data (and purpose) only."""
    keyring = Keyring.generate()
    assert keyring.seal(b"a", b"p") != keyring.seal(b"a", b"p")
    same = keyring.seal(b"a", b"p", deterministic=True)
    assert same == keyring.seal(b"a", b"p", deterministic=True)
    assert same != keyring.seal(b"b", b"p", deterministic=True)
    assert same != keyring.seal(b"a", b"q", deterministic=True)
    assert same != Keyring.generate().seal(b"a", b"p", deterministic=True)


def test_keyrings_parse_from_text_env_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``id:base64key,...`` (the first active) round-trips through text, the environment and
    a file; the repr shows ids, never keys."""
    keyring = Keyring({"b": Keyring.generate_key(), "a": Keyring.generate_key()}, active="a")
    text = keyring.to_text()
    assert text.startswith("a:")
    parsed = Keyring.parse(text)
    assert (parsed.active, parsed.key_ids) == ("a", ("a", "b"))
    token = keyring.seal(b"x", b"p")
    assert parsed.open(token, b"p", "x") == b"x"
    monkeypatch.setenv(KEYS_ENV, text)
    assert Keyring.from_env().active == "a"
    assert Keyring.from_option("env").key_ids == ("a", "b")  # type: ignore[union-attr]
    monkeypatch.setenv("OTHER_KEYS", text)
    assert Keyring.from_option("env:OTHER_KEYS") is not None
    assert Keyring.from_option("off") is None
    (tmp_path / "keys.txt").write_text(text + "\n")
    assert Keyring.from_file(tmp_path / "keys.txt").key_ids == ("a", "b")
    assert text.split(":")[1][:8] not in repr(keyring)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Keyring({}),
        lambda: Keyring({"k": b"short"}),
        lambda: Keyring({"bad id!": bytes(32)}),
        lambda: Keyring({"k": bytes(32)}, active="other"),
        lambda: Keyring.parse("no-colon"),
        lambda: Keyring.parse("k:not base64!"),
        lambda: Keyring.parse(f"k:{'A' * 44},k:{'A' * 44}"),
        lambda: Keyring.from_option("raw:secret"),
        lambda: Keyring.from_env("MEMFOLD_TEST_UNSET_VARIABLE"),
    ],
)
def test_bad_keyrings_are_refused(build: object) -> None:
    """No keys, short keys, bad ids, an unknown active id, malformed text, keys in a URL
    option and an unset variable raise InvalidInput."""
    with pytest.raises(InvalidInput):
        build()  # type: ignore[operator]


def test_a_store_refuses_a_keyring_that_is_not_one() -> None:
    """Setting anything but a Keyring (or None) is refused."""
    store = open_store("memory://")
    with pytest.raises(InvalidInput):
        store.keyring = "k1:..."  # type: ignore[assignment]


def test_rotate_key_command_reencrypts_every_store_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``memfold rotate-key`` reads $MEMFOLD_KEYS (or --keys-file) and re-encrypts the
    tenant's messages, checkpoints and memories at the URL; the new key alone then reads
    them, and a second run rewrites nothing."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    old, new = Keyring.generate_key(), Keyring.generate_key()
    with open_store(url, keyring=Keyring({"old": old})) as threads:
        threads.append("t", [Message(role="user", content=f"m{i}") for i in range(7)])
    with open_checkpoint_store(url) as checkpoints:  # plain: encrypted by the rotation
        checkpoints.put("t", "c1", Blob("json", b"{}"), versions={"m": 1},
                        values={"m": SequenceBlob("json", (b"1", b"2"))})  # fmt: skip
    with open_memory_store(url, keyring=Keyring({"old": old})) as memories:
        memories.put(("default", "u"), "likes tea")
    both = Keyring({"new": new, "old": old}).to_text()
    monkeypatch.setenv(KEYS_ENV, both)
    result = CliRunner().invoke(app, ["rotate-key", "--url", url, "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert "7 messages, 1 checkpoint, 1 memory of tenant 'default' under key 'new'" in (
        result.output
    )
    (tmp_path / "keys.txt").write_text(both)
    monkeypatch.delenv(KEYS_ENV)
    keys = str(tmp_path / "keys.txt")
    again = CliRunner().invoke(app, ["rotate-key", "--url", url, "--keys-file", keys])
    assert "0 messages, 0 checkpoints, 0 memories" in again.output
    only_new = Keyring({"new": new})
    with open_store(url, keyring=only_new) as threads:
        assert len(threads.load("t")) == 7
        assert sealed_key_ids(threads.execute(LoadThread("default", "t"))) == {"new"}
    with open_checkpoint_store(url, keyring=only_new) as checkpoints:
        assert checkpoints.get("t").values["m"].items == (b"1", b"2")  # type: ignore[union-attr]
    with open_memory_store(url, keyring=only_new) as memories:
        assert memories.list_records(("default",))[0].text == "likes tea"


def test_rotate_key_without_keys_fails_with_one_line(tmp_path: Path) -> None:
    """Without $MEMFOLD_KEYS or a readable key file the command fails cleanly."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    result = CliRunner().invoke(app, ["rotate-key", "--url", url], env={KEYS_ENV: None})
    assert result.exit_code == 1
    assert "MEMFOLD_KEYS is not set" in result.output
    missing = CliRunner().invoke(app, ["rotate-key", "--url", url, "--keys-file", "nope.txt"])
    assert missing.exit_code == 1
    assert "error:" in missing.output
