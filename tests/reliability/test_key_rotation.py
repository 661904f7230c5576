"""Key rotation at scale: 100,000 messages re-encrypted in one run, then read under the new key
alone."""

from __future__ import annotations

from pathlib import Path

from memfold import Message, open_store
from memfold.encryption import Keyring, sealed_key_ids
from memfold.ops import LoadThread

THREADS, PER_THREAD = 100, 1_000


def test_rotating_100000_messages_leaves_every_one_readable_under_the_new_key(
    tmp_path: Path,
) -> None:
    """100,000 messages on SQLite (100 threads of 1,000) encrypted under k1 are re-encrypted
    by one ``rotate_key``: afterwards a keyring holding only k2 reads every one of them back as
    written."""
    k1, k2 = Keyring.generate_key(), Keyring.generate_key()
    store = open_store(f"sqlite:///{tmp_path / 'rotation.db'}", keyring=Keyring({"k1": k1}))
    for n in range(THREADS):
        store.append(f"t{n}", [Message(role="user", content=f"{n}:{i}") for i in range(PER_THREAD)])
    store.keyring = Keyring({"k2": k2, "k1": k1})
    seen: list[int] = []
    rotated = store.rotate_key(batch_size=2_000, progress=lambda done, total: seen.append(done))
    assert rotated == THREADS * PER_THREAD
    assert seen[-1] == THREADS * PER_THREAD
    store.keyring = Keyring({"k2": k2})  # k1 is gone: a message still under it would raise
    for n in range(THREADS):
        loaded = store.load(f"t{n}")
        assert [m.content for m in loaded] == [f"{n}:{i}" for i in range(PER_THREAD)]
    assert sealed_key_ids(store.execute(LoadThread("default", f"t{THREADS - 1}"))) == {"k2"}
    store.close()
