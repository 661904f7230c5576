"""Hostile arguments, environment and input files to every ``memfold`` command: each exits 0, or
1 with one ``error:`` line, or 2 with click's usage message, never with a traceback, and the
canary data of the store it points at is unchanged.

Arguments are what a shell can pass: any text without NUL, including the lone surrogates
``\\udc80``-``\\udcff`` that undecodable bytes become. Commands run in a temporary working
directory, and file arguments are plain names in it, so nothing is written elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import typer.main
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from memfold import Message, open_store
from memfold.checkpoints import Blob, open_checkpoint_store
from memfold.cli import app
from memfold.memories import open_memory_store
from memfold.recall.embedders import HashingEmbedder
from tests.reliability.fuzzing import FUZZ_SLOW, INJECTIONS, ODD_UNICODE

DB = "memfold.db"
URL = f"sqlite:///{DB}"
CANARY_TENANT = "default"


def argv_text() -> st.SearchStrategy[str]:
    """Text a shell can pass as one argument: hostile strings and bytes decoded as the OS
    decodes argv (undecodable bytes become lone surrogates), never a NUL."""
    pieces = st.sampled_from([s for s in INJECTIONS + ODD_UNICODE if "\x00" not in s])
    raw = st.binary(max_size=24).map(os.fsdecode)
    numbers = st.sampled_from(
        ["-1", "0", "1", "2", "1e309", "nan", "inf", "-0", "9" * 30, "0x1", "\u00b2", "\u0663",
         "hashing:0", "hashing:\u00b2", "hashing:" + "9" * 30, "2026-02-30", "1970-01-01"]
    )  # fmt: skip
    return st.one_of(pieces, raw, numbers, st.lists(pieces | raw, max_size=3).map("".join)).map(
        lambda s: s.replace("\x00", "")
    )


def file_name() -> st.SearchStrategy[str]:
    """A hostile file name in the working directory (no separator, not ``.`` or ``..``)."""
    return argv_text().map(lambda s: "f-" + s.replace("/", "_"))


def urls() -> st.SearchStrategy[str]:
    """Store URLs a user might mistype: no scheme, unknown or odd schemes, SQLite files with
    hostile names and query options, memory URLs with hostile options."""
    text = argv_text()
    return st.one_of(
        text,
        text.map(lambda s: f"{s}://x"),
        file_name().map(lambda s: f"sqlite:///{s}"),
        text.map(lambda s: f"{URL}?{s}"),
        st.tuples(text, text).map(lambda kv: f"{URL}?{kv[0]}={kv[1]}"),
        st.tuples(text, text).map(lambda kv: f"memory://?{kv[0]}={kv[1]}"),
        st.sampled_from(["sqlite://", "sqlite:////", "sqlite:///.", "memory:", "chroma://", ""]),
    )


V = object()
"""Where a command's argument list takes the hostile value."""

# Each command with hostile slots, against the canary store at URL. Every command that writes
# is pointed at a tenant or namespace other than the canary's.
COMMANDS: dict[str, list[Any]] = {
    "threads --tenant": ["threads", "--url", URL, "--tenant", V],
    "threads --limit": ["threads", "--url", URL, "--limit", V, "--offset", V],
    "show": ["show", V, "--url", URL, "--json"],
    "show --last": ["show", "canary", "--url", URL, "--last", V],
    "search": ["search", V, "--url", URL],
    "search --thread": ["search", "keep", "--url", URL, "--thread", V, "--limit", V],
    "stats": ["stats", "--url", URL, "--tenant", V],
    "export --kind": ["export", "--url", URL, "--kind", V],
    "export --user": ["export", "--url", URL, "--user", V, "--thread", V],
    "export --since": ["export", "--url", URL, "--since", V, "--until", V],
    "export --tenant": ["export", "--url", URL, "--tenant", V, "-o", "out.jsonl"],
    "import": ["import", V, "--url", URL, "--tenant", "fuzz"],
    "import --kind": ["import", "export.jsonl", "--url", URL, "--tenant", V, "--kind", V],
    "import --since": ["import", "export.jsonl", "--url", URL, "--tenant", "fuzz", "--user", V,
                       "--since", V],
    "migrate": ["migrate", URL, "sqlite:///copy.db", "--thread", V],
    "migrate --batch-size": ["migrate", URL, "sqlite:///copy.db", "--tenant", V,
                             "--batch-size", V],
    "prune": ["prune", "--url", URL, "--tenant", V, "--keep-last", "1"],
    "prune --keep-last": ["prune", "--url", URL, "--tenant", "fuzz", "--keep-last", V,
                          "--max-age", V, "--ttl", V],
    "reembed": ["reembed", "fuzz", V, "--url", URL, "--embedder", "hashing:8"],
    "reembed --embedder": ["reembed", "fuzz", "--url", URL, "--embedder", V, "--batch-size", V],
    "rotate-key --keys-file": ["rotate-key", "--url", URL, "--tenant", "fuzz", "--keys-file", V],
    "rotate-key --tenant": ["rotate-key", "--url", URL, "--tenant", V, "--keys-file", "keys.txt",
                            "--batch-size", V],
    "erase --user": ["erase", "--url", URL, "--tenant", "fuzz", "--user", V, "--thread", V],
    "erase --tenant": ["erase", "--url", URL, "--tenant", V, "--whole-tenant", "--tombstone-ttl",
                       V, "--json"],
    "db status": ["db", "status", "--url", URL, "--dimensions", V],
    "db upgrade": ["db", "upgrade", "--url", URL, "--dimensions", V, "--dry-run"],
}  # fmt: skip
"""Argument lists with hostile slots `V`, keyed by command and the options they fill."""

URL_COMMANDS: dict[str, list[Any]] = {
    "threads": ["threads"],
    "show": ["show", "canary"],
    "search": ["search", "keep"],
    "stats": ["stats"],
    "export": ["export"],
    "import": ["import", "export.jsonl"],
    "prune": ["prune", "--tenant", "fuzz"],
    "reembed": ["reembed", "fuzz"],
    "rotate-key": ["rotate-key", "--tenant", "fuzz", "--keys-file", "keys.txt"],
    "erase": ["erase", "--tenant", "fuzz", "--user", "ann", "--dry-run"],
    "db status": ["db", "status"],
    "db upgrade": ["db", "upgrade", "--dry-run"],
    "migrate from": ["migrate", V, URL, "--tenant", "fuzz"],
    "migrate to": ["migrate", URL, V, "--tenant", "fuzz"],
}
"""Every command with the arguments besides ``--url`` it needs (`migrate` takes two URLs
instead, its slots `V`)."""


def command_names() -> set[str]:
    """Every leaf command of the ``memfold`` app, as typed: ``threads``, ``db status``, ..."""
    names: set[str] = set()

    def walk(command: Any, prefix: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            if getattr(sub, "commands", None):
                walk(sub, f"{prefix}{name} ")
            else:
                names.add(prefix + name)

    walk(typer.main.get_command(app), "")
    return names


def test_every_command_is_fuzzed() -> None:
    """COMMANDS, and URL_COMMANDS with `migrate`, name every command the app has, so a new
    command fails here until it is fuzzed."""
    assert {name.split(" --")[0] for name in COMMANDS} == command_names()
    assert {name.removesuffix(" from").removesuffix(" to") for name in URL_COMMANDS} == (
        command_names()
    )


class Canary:
    """A thread, checkpoints and memories of the default tenant at URL; `check` fails if any
    of them changed."""

    def __init__(self) -> None:
        with open_store(URL) as threads:
            threads.append("canary", [Message(role="user", content="keep me", metadata={"n": 1})])
            threads.set_thread_metadata("canary", {"topic": "canary"})
        with open_checkpoint_store(URL) as checkpoints:
            checkpoints.put("canary", "c1", Blob("json", b"{}"), metadata={"step": 1})
            checkpoints.put("canary", "c2", Blob("json", b"{}"), parent_id="c1")
        with open_memory_store(URL, embedder=HashingEmbedder(8)) as memories:
            memories.put((CANARY_TENANT, "ann"), "likes tea", {"k": 1}, id="m1")
            memories.put(("fuzz", "bob"), "likes coffee", id="m2")
        self.initial = self.snapshot()

    def snapshot(self) -> Any:
        with open_store(URL) as threads:
            thread = (threads.get_thread("canary"), threads.load("canary"))
        with open_checkpoint_store(URL) as checkpoints:
            saved = checkpoints.list_checkpoints("canary")
        with open_memory_store(URL, embedder=HashingEmbedder(8)) as memories:
            records = memories.list_records((CANARY_TENANT,), include_embedding=True)
        return thread, saved, records

    def check(self) -> None:
        assert self.snapshot() == self.initial


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Canary:
    """The canary store in a fresh working directory, with an export of tenant ``fuzz`` and a
    key file beside it."""
    monkeypatch.chdir(tmp_path)
    seeded = Canary()
    assert run("export", "--url", URL, "--tenant", "fuzz", "-o", "export.jsonl").exit_code == 0
    from memfold.encryption import Keyring

    (tmp_path / "keys.txt").write_text(Keyring.generate("k1").to_text())
    return seeded


def run(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Result:
    """The command's result through typer's runner, with MEMFOLD_* unset unless given."""
    environment = {"COLUMNS": "120", "MEMFOLD_URL": None, "MEMFOLD_KEYS": None, **(env or {})}
    return CliRunner().invoke(app, list(args), input=stdin, env=environment)


def assert_clean(result: Result) -> None:
    """Exit 0; or 1 with an ``error:`` (or migrate's ``failed:``) line; or 2 with click's usage
    message; and never a traceback or an escaped exception."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{result.exception!r} escaped: {result.output}"
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code == 1:
        assert result.stderr.lstrip().startswith(("error: ", "failed: ")), result.stderr
    if result.exit_code == 2:
        assert "Usage:" in result.stderr, result.stderr


@FUZZ_SLOW
@given(command=st.sampled_from(sorted(COMMANDS)), value=argv_text())
def test_every_command_exits_cleanly(canary: Canary, command: str, value: str) -> None:
    """Each command with a hostile argument or option value exits 0, or with a one-line
    error or a usage message, and leaves the default tenant's data as it was."""
    assert_clean(run(*(value if arg is V else arg for arg in COMMANDS[command])))
    canary.check()


@FUZZ_SLOW
@given(command=st.sampled_from(sorted(URL_COMMANDS)), url=urls(), via_env=st.booleans())
def test_bad_urls_exit_cleanly(canary: Canary, command: str, url: str, via_env: bool) -> None:
    """Each command with a hostile ``--url`` or ``$MEMFOLD_URL`` (`migrate` with a hostile
    source or target) exits cleanly, and the canary store is unchanged."""
    args = [url if arg is V else arg for arg in URL_COMMANDS[command]]
    if V in URL_COMMANDS[command]:
        assert_clean(run(*args))
    elif via_env:
        assert_clean(run(*args, env={"MEMFOLD_URL": url}))
    else:
        assert_clean(run(*args, "--url", url))
    canary.check()


@FUZZ_SLOW
@given(
    keys=argv_text() | st.sampled_from(["k1:", ":abc", "k1:" + "A" * 44, "k1:AAAA,k1:AAAA"]),
    via_env=st.booleans(),
)
def test_rotate_key_with_hostile_keys_exits_cleanly(
    canary: Canary, keys: str, via_env: bool
) -> None:
    """``rotate-key`` with a hostile ``$MEMFOLD_KEYS`` or key file exits cleanly and never
    touches the default tenant."""
    if via_env:
        result = run("rotate-key", "--url", URL, "--tenant", "fuzz", env={"MEMFOLD_KEYS": keys})
    else:
        Path("keys.txt").write_text(keys, encoding="utf-8", errors="surrogateescape")
        result = run("rotate-key", "--url", URL, "--tenant", "fuzz", "--keys-file", "keys.txt")
    assert_clean(result)
    canary.check()


@FUZZ_SLOW
@given(data=st.binary(max_size=300), via_stdin=st.booleans())
def test_import_of_any_bytes_exits_cleanly(canary: Canary, data: bytes, via_stdin: bool) -> None:
    """``import`` of arbitrary bytes, from a file or stdin, exits cleanly and imports nothing
    into the default tenant."""
    if via_stdin:
        assert_clean(run("import", "-", "--url", URL, stdin=data))
    else:
        Path("bytes.jsonl").write_bytes(data)
        assert_clean(run("import", "bytes.jsonl", "--url", URL))
    canary.check()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["prune", "--tenant", "fuzz", "--keep-last", "9" * 30], "keep_last must be an int"),
        (["reembed", "fuzz", "--embedder", "hashing:0"], "dimensions must be an int >= 2"),
        (["reembed", "fuzz", "--embedder", "hashing:\u00b2"], "unknown embedder"),
        (["reembed", "fuzz", "--embedder", "hashing:" + "9" * 30], "unknown embedder"),
        (["threads", "--url", f"{URL}?\udc80=1"], "not valid Unicode"),
        (["export", "--output", "."], "is a directory"),
        (["rotate-key", "--tenant", "fuzz", "--keys-file", "latin1.txt"], "not UTF-8 text"),
    ],
)
def test_inputs_that_used_to_escape_as_exceptions(
    canary: Canary, args: list[str], fragment: str
) -> None:
    """Regressions: a keep-last past 64 bits (OverflowError from SQLite), an embedder of 0 or
    ``²`` dimensions (InvalidInput and ValueError outside the error handler), a URL holding an
    undecodable byte (UnicodeEncodeError), a directory as the export file, and a key file
    that is not UTF-8 (UnicodeDecodeError) each end with one error line."""
    Path("latin1.txt").write_bytes(b"k1:\xe9")
    result = run(*args, env={"MEMFOLD_URL": URL})
    assert_clean(result)
    assert result.exit_code == 1
    assert fragment in result.stderr
    canary.check()
