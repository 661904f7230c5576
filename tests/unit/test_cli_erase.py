"""``memfold erase``, run through typer's CliRunner against real SQLite files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memfold import Erased, Message, open_store
from memfold.checkpoints import Blob, open_checkpoint_store
from memfold.journal import EffectJournal
from memfold.memories import open_memory_store
from tests.unit.test_cli import assert_failed_cleanly, run, sqlite_url

SECRET = "annsecret"


def fill(url: str, *, threads: bool = True, memories: bool = True) -> None:
    """Ann's and Bob's threads, checkpoints, journal entries and memories of tenant acme, and
    one thread of tenant globex."""
    if threads:
        with open_store(url) as store:
            for user in ("ann", "bob"):
                store.append(
                    f"{user}-chat",
                    [Message(role="user", content=f"{user}secret {i}") for i in range(3)],
                    tenant="acme",
                )
                store.set_thread_metadata(f"{user}-chat", {"user_id": user}, tenant="acme")
            store.append("other", Message(role="user", content="globex"), tenant="globex")
        with open_checkpoint_store(url) as checkpoints:
            for user in ("ann", "bob"):
                checkpoints.put(
                    f"{user}-graph", "c1", Blob("json", f'"{user}secret"'.encode()),
                    metadata={"user_id": user}, tenant="acme",
                )  # fmt: skip
                EffectJournal(checkpoints).record(
                    f"{user}-graph", "call-1", f"{user}secret", tenant="acme"
                )
    if memories:
        with open_memory_store(url) as store:
            for user in ("ann", "bob"):
                store.put(("acme", user, "prefs"), f"{user}secret prefers tea")
                store.put(("acme", user), f"{user}secret lives here")


def holds(path: Path, needle: str) -> bool:
    """Whether the database file (or its write-ahead log) still holds ``needle``."""
    return any(needle.encode() in file.read_bytes() for file in path.parent.glob(path.name + "*"))


def test_erase_a_user_dry_run_then_for_real(tmp_path: Path) -> None:
    """--dry-run prints what would go per store kind and changes nothing; the erasure then
    removes Ann from threads, checkpoints, journal and memories, to the bytes of the file,
    leaves Bob alone, refuses a late write, and a second run finds nothing."""
    path = tmp_path / "people.db"
    url = sqlite_url(path)
    fill(url)
    dry = run("erase", "--url", url, "--tenant", "acme", "--user", "ann", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        "Would erase user 'ann' of tenant 'acme' (dry run: nothing changed):",
        "  threads: 1 thread, 3 messages",
        "  checkpoints: 1 thread, 1 checkpoint, 0 values, 0 pending writes, 1 journal entry",
        "  memories: 2 records",
        "Threads: ann-chat, ann-graph.",
    ]
    assert holds(path, SECRET)
    result = run("erase", "--url", url, "--tenant", "acme", "--user", "ann")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Erased user 'ann' of tenant 'acme':"
    assert lines[1:5] == dry.output.splitlines()[1:5]
    assert lines[5] == (
        "Placed 3 tombstones: writes to what was erased are refused until lifted "
        "(memfold.lift_erasure)."
    )  # the two threads' and the user's, in the table the file's store kinds share
    assert not holds(path, SECRET)
    assert holds(path, "bobsecret")
    with open_store(url) as store:
        assert store.load("ann-chat", tenant="acme") == []
        assert len(store.load("bob-chat", tenant="acme")) == 3
        with pytest.raises(Erased):
            store.append("ann-chat", Message(role="user", content="late"), tenant="acme")
    again = run("erase", "--url", url, "--tenant", "acme", "--user", "ann", "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.output)
    assert (report["tenant"], report["user_id"], report["dry_run"]) == ("acme", "ann", False)
    assert set(report["counts"].values()) == {0}


def test_erase_a_whole_tenant_across_urls_and_named_threads(tmp_path: Path) -> None:
    """--url repeats: threads in one file and memories in another are erased in one run;
    --whole-tenant takes every user of the tenant and no other tenant; --thread erases only the
    threads named, with a tombstone TTL."""
    chats, minds = tmp_path / "chats.db", tmp_path / "minds.db"
    fill(sqlite_url(chats), memories=False)
    fill(sqlite_url(minds), threads=False)
    result = run(
        "erase", "--url", sqlite_url(chats), "--url", sqlite_url(minds), "--tenant", "acme",
        "--thread", "bob-chat", "--thread", "bob-graph", "--tombstone-ttl", "60",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:4] == [
        "Erased threads 'bob-chat', 'bob-graph' of tenant 'acme':",
        "  threads: 1 thread, 3 messages",
        "  checkpoints: 1 thread, 1 checkpoint, 0 values, 0 pending writes, 1 journal entry",
        "  memories: 0 records",
    ]
    assert "refused until lifted or 60 s pass." in result.output
    assert holds(chats, "annsecret")
    assert not holds(chats, "bobsecret")
    assert holds(minds, "bobsecret")  # a threads-only erasure leaves memories
    result = run(
        "erase", "--url", sqlite_url(chats), "--url", sqlite_url(minds), "--tenant", "acme",
        "--whole-tenant",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:4] == [
        "Erased all of tenant 'acme':",
        "  threads: 1 thread, 3 messages",
        "  checkpoints: 1 thread, 1 checkpoint, 0 values, 0 pending writes, 1 journal entry",
        "  memories: 4 records",
    ]
    for path in (chats, minds):
        assert not holds(path, "annsecret")
        assert not holds(path, "bobsecret")
    with open_store(sqlite_url(chats)) as store:
        assert [m.content for m in store.load("other", tenant="globex")] == ["globex"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--tenant", "acme"], "say what to erase of tenant 'acme'"),
        (["--tenant", "acme", "--whole-tenant", "--user", "ann"], "leave out --user"),
        (["--tenant", "acme", "--user", "ann", "--tombstone-ttl", "0"], "tombstone_ttl"),
        (["--tenant", "", "--user", "ann"], "tenant must not be empty"),
        (["--tenant", "acme", "--thread", "a\x00b"], "NUL"),
    ],
)
def test_erase_refuses_bad_input(tmp_path: Path, args: list[str], fragment: str) -> None:
    """Bad input exits with status 1 and one error line, before anything is erased."""
    path = tmp_path / "people.db"
    fill(sqlite_url(path))
    assert_failed_cleanly(run("erase", "--url", sqlite_url(path), *args), fragment)
    assert holds(path, SECRET)


def test_erase_needs_a_tenant_and_a_known_url(tmp_path: Path) -> None:
    """Without --tenant the command is a usage error (status 2); a URL no backend opens is a
    clean error."""
    missing = run("erase", "--url", sqlite_url(tmp_path / "x.db"), "--user", "ann")
    assert missing.exit_code == 2
    assert "--tenant" in missing.output
    assert_failed_cleanly(
        run("erase", "--url", "bogus://x", "--tenant", "acme", "--user", "ann"),
        "unknown store URL",
    )
