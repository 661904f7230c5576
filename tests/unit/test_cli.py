"""The memfold command line, run through typer's CliRunner against real SQLite files."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from memfold import Message, ThreadInfo, ToolCall, open_store
from memfold.checkpoints import Blob, open_checkpoint_store
from memfold.cli import app
from memfold.export import iter_threads

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)

Snapshot = list[tuple[ThreadInfo, list[dict[str, Any]]]]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite file with two threads for the default tenant and one for tenant 'acme'."""
    url = sqlite_url(tmp_path / "source.db")
    with open_store(url) as store:
        store.append(
            "chat",
            [
                Message(role="user", content="hello world", id="m1", created_at=T0),
                Message(role="assistant", id="m0", created_at=T0),
                Message(
                    role="assistant",
                    content="let me look",
                    id="m2",
                    tool_calls=(ToolCall(id="c1", name="lookup", arguments={"q": "weather"}),),
                    created_at=T0 + timedelta(seconds=1),
                ),
                Message(
                    role="tool",
                    content="sunny [bold]and[/bold] warm",
                    tool_call_id="c1",
                    id="m3",
                    created_at=T0 + timedelta(seconds=2),
                    metadata={"source": "api"},
                ),
            ],
        )
        store.set_thread_metadata("chat", {"topic": "greeting"})
        store.append("notes", Message(role="user", content="remember the milk", id="n1"))
        store.append("secret", Message(role="user", content="acme only", id="s1"), tenant="acme")
    return url


def run(*args: str, stdin: str | None = None, env: dict[str, str | None] | None = None) -> Result:
    """Invoke the CLI with a wide terminal, so tables are not cut."""
    runner = CliRunner()
    return runner.invoke(
        app, list(args), input=stdin, env={"COLUMNS": "200", "MEMFOLD_URL": None, **(env or {})}
    )


def snapshot(url: str, tenant: str = "default") -> Snapshot:
    """Everything a tenant holds, thread times included (so any write shows)."""
    with open_store(url) as store:
        return [
            (info, [m.to_dict() for m in store.load(info.thread_id, tenant=tenant)])
            for info in iter_threads(store, tenant=tenant)
        ]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a rich table, as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def assert_failed_cleanly(result: Result, fragment: str) -> None:
    """Exit status 1, one red error line naming the problem, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.output


# threads


def test_threads_lists_each_thread_with_its_count_and_metadata(db: str) -> None:
    """`threads` prints a row per thread: id, message count, update time and metadata."""
    result = run("threads", "--url", db)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.split("┃")[1:-1]] == [
        "Thread",
        "Messages",
        "Updated",
        "Metadata",
    ]
    with open_store(db) as store:
        chat, notes = store.get_thread("chat"), store.get_thread("notes")
    assert table_rows(result.stdout) == [
        ["notes", "1", notes.updated_at.isoformat(sep=" ", timespec="seconds"), ""],
        [
            "chat",
            "4",
            chat.updated_at.isoformat(sep=" ", timespec="seconds"),
            '{"topic": "greeting"}',
        ],
    ]


def test_threads_pages_with_limit_and_offset(db: str) -> None:
    """--limit and --offset page through threads, most recently updated first."""
    first = run("threads", "--url", db, "--limit", "1")
    second = run("threads", "--url", db, "--limit", "1", "--offset", "1")
    assert "notes" in first.stdout
    assert "chat" not in first.stdout
    assert "chat" in second.stdout
    assert "notes" not in second.stdout


def test_threads_is_scoped_to_the_tenant(db: str) -> None:
    """--tenant lists that tenant's threads only."""
    result = run("threads", "--url", db, "--tenant", "acme")
    assert "secret" in result.stdout
    assert "chat" not in result.stdout


def test_threads_on_an_empty_store_says_so(tmp_path: Path) -> None:
    """A store without threads prints a short notice instead of an empty table."""
    result = run("threads", "--url", sqlite_url(tmp_path / "empty.db"))
    assert result.exit_code == 0
    assert result.stdout.strip() == "No threads for tenant 'default'."


def test_url_comes_from_memfold_url(db: str) -> None:
    """Without --url the MEMFOLD_URL environment variable names the store."""
    result = run("threads", env={"MEMFOLD_URL": db})
    assert result.exit_code == 0
    assert "chat" in result.stdout


def test_url_defaults_to_memfold_db_in_the_working_directory(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --url or MEMFOLD_URL the store is sqlite:///memfold.db."""
    (tmp_path / "source.db").rename(tmp_path / "memfold.db")
    monkeypatch.chdir(tmp_path)
    result = run("threads")
    assert result.exit_code == 0
    assert "chat" in result.stdout


# show


def test_show_prints_each_message_with_role_time_and_text(db: str) -> None:
    """`show` prints one entry per message: time, role and text, plus tool calls."""
    result = run("show", "chat", "--url", db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines == [
        "2026-03-04 05:06:07+00:00  user: hello world",
        "2026-03-04 05:06:07+00:00  assistant:",
        "2026-03-04 05:06:08+00:00  assistant: let me look",
        '    -> lookup({"q": "weather"}) (call c1)',
        "2026-03-04 05:06:09+00:00  tool (result of c1): sunny [bold]and[/bold] warm",
    ]


def test_show_last_prints_only_the_newest_messages(db: str) -> None:
    """--last N shows only the N newest messages."""
    result = run("show", "chat", "--url", db, "--last", "1")
    assert result.stdout.splitlines() == [
        "2026-03-04 05:06:09+00:00  tool (result of c1): sunny [bold]and[/bold] warm"
    ]


def test_show_json_prints_the_stored_messages_as_json_lines(db: str) -> None:
    """--json prints one JSON message per line, equal to what the store holds."""
    result = run("show", "chat", "--url", db, "--json")
    assert result.exit_code == 0
    printed = [Message.from_json(line) for line in result.stdout.splitlines()]
    with open_store(db) as store:
        assert printed == store.load("chat")


def test_show_of_an_unknown_thread_fails(db: str) -> None:
    """An unknown thread exits 1 with a red line naming it."""
    assert_failed_cleanly(run("show", "nope", "--url", db), "no thread 'nope'")


# search


def test_search_shows_matching_messages(db: str) -> None:
    """`search` lists the messages containing every word, with their thread."""
    result = run("search", "sunny warm", "--url", db)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert len(rows) == 1
    assert rows[0][:2] == ["chat", "tool"]
    assert rows[0][2] == "2026-03-04 05:06:09+00:00"
    assert rows[0][4] == "sunny [bold]and[/bold] warm"


def test_search_can_be_limited_to_one_thread(db: str) -> None:
    """--thread restricts the search to that thread."""
    assert "milk" in run("search", "milk", "--url", db).stdout
    result = run("search", "milk", "--url", db, "--thread", "chat")
    assert result.exit_code == 0
    assert result.stdout.strip() == "No messages match 'milk'."


def test_search_limit_caps_the_hits(db: str) -> None:
    """--limit caps how many hits are shown."""
    with open_store(db) as store:
        store.append("more", [Message(role="user", content=f"milk {i}") for i in range(5)])
    result = run("search", "milk", "--url", db, "--limit", "2")
    assert len(table_rows(result.stdout)) == 2


# stats


def test_stats_counts_threads_and_messages_and_names_the_backend(db: str) -> None:
    """`stats` reports thread and message counts, the backend and its capabilities."""
    result = run("stats", "--url", db)
    assert result.exit_code == 0
    fields = dict(line.split(maxsplit=1) for line in result.stdout.strip().splitlines())
    assert {k: v.strip() for k, v in fields.items()} == {
        "tenant": "default",
        "threads": "2",
        "messages": "5",
        "backend": "sqlite",
        "capabilities": "persistent, shared, transactions, full_text_search, ttl",
    }


# export and import


def test_export_then_import_copies_every_thread_message_for_message(
    db: str, tmp_path: Path
) -> None:
    """An export imported into a fresh database gives the same threads, metadata and messages."""
    backup = tmp_path / "backup.jsonl"
    exported = run("export", "--url", db, "--output", str(backup))
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.strip() == (
        f"Exported 2 threads (5 messages), 0 checkpoints (0 journal entries) and 0 memories "
        f"to {backup}."
    )
    copy = sqlite_url(tmp_path / "copy.db")
    imported = run("import", str(backup), "--url", copy)
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.strip() == (
        "Imported 2 threads (5 messages), 0 checkpoints (0 journal entries) and 0 memories."
    )
    assert snapshot(copy) == snapshot(db)  # thread times included
    assert snapshot(copy, tenant="acme") == []


def test_export_of_another_tenant_and_import_into_a_chosen_tenant(db: str, tmp_path: Path) -> None:
    """--tenant picks what is exported, and on import where it goes."""
    backup = tmp_path / "acme.jsonl"
    assert run("export", "--url", db, "--tenant", "acme", "-o", str(backup)).exit_code == 0
    copy = sqlite_url(tmp_path / "copy.db")
    assert run("import", str(backup), "--url", copy, "--tenant", "beta").exit_code == 0
    assert [(i.thread_id, m) for i, m in snapshot(copy, "beta")] == [
        (i.thread_id, m) for i, m in snapshot(db, "acme")
    ]
    assert snapshot(copy, "acme") == []


def test_export_to_stdout_writes_only_json_lines(db: str) -> None:
    """With the default output `-`, stdout is the JSON-lines export and the summary is on stderr."""
    result = run("export", "--url", db)
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["format"] == "memfold"
    types = ["thread", "message", "thread", *["message"] * 4, "end"]
    assert [r["type"] for r in records[1:]] == types
    assert result.stderr.strip() == (
        "Exported 2 threads (5 messages), 0 checkpoints (0 journal entries) and 0 memories."
    )


def test_export_of_chosen_threads_with_repeated_thread_option(db: str) -> None:
    """--thread may be repeated; only those threads are exported."""
    result = run("export", "--url", db, "--thread", "notes", "--thread", "chat")
    threads = [
        json.loads(line)["thread_id"] for line in result.stdout.splitlines() if '"thread"' in line
    ]
    assert threads == ["notes", "chat"]


def test_export_of_an_unknown_thread_fails_and_writes_no_file(db: str, tmp_path: Path) -> None:
    """An unknown --thread exits 1 and leaves no output file behind."""
    backup = tmp_path / "backup.jsonl"
    result = run("export", "--url", db, "--thread", "nope", "-o", str(backup))
    assert_failed_cleanly(result, "no thread 'nope'")
    assert not backup.exists()
    assert not [p for p in tmp_path.iterdir() if "backup" in p.name]


def test_export_of_a_thread_only_the_checkpoint_store_holds(db: str) -> None:
    """--thread of a LangGraph run (checkpoints, no chat thread) exports its checkpoints."""
    with open_checkpoint_store(db) as checkpoints:
        checkpoints.put("run-7", "c1", Blob("json", b"{}"), metadata={"user_id": "ann"})
    result = run("export", "--url", db, "--thread", "run-7", "--thread", "notes")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r.get("type"), r.get("thread_id")) for r in lines[1:]] == [
        ("thread", "notes"),
        ("message", "notes"),
        ("checkpoint", "run-7"),
        ("end", None),
    ]


def test_import_reads_stdin(db: str, tmp_path: Path) -> None:
    """`import -` reads the export from stdin."""
    export = run("export", "--url", db).stdout
    copy = sqlite_url(tmp_path / "copy.db")
    result = run("import", "-", "--url", copy, stdin=export)
    assert result.exit_code == 0, result.output
    assert {i.thread_id: m for i, m in snapshot(copy)} == {i.thread_id: m for i, m in snapshot(db)}


@pytest.fixture
def target(tmp_path: Path) -> str:
    """A database that already holds a thread, to show failed imports leave it unchanged."""
    url = sqlite_url(tmp_path / "target.db")
    with open_store(url) as store:
        store.append("existing", Message(role="user", content="keep me", id="k1"))
    return url


def test_import_of_a_malformed_line_fails_and_changes_nothing(
    db: str, target: str, tmp_path: Path
) -> None:
    """A malformed line exits 1 naming the line, and no thread before it is imported."""
    lines = run("export", "--url", db).stdout.splitlines()
    lines[-1] = lines[-1][:20]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = snapshot(target)
    result = run("import", str(bad), "--url", target)
    assert_failed_cleanly(result, f"line {len(lines)}: not valid JSON")
    assert snapshot(target) == before


def test_import_of_a_file_that_is_not_an_export_fails(target: str, tmp_path: Path) -> None:
    """A JSON-lines file without the memfold header is refused."""
    other = tmp_path / "other.jsonl"
    other.write_text('{"role": "user", "content": "hi"}\n', encoding="utf-8")
    before = snapshot(target)
    assert_failed_cleanly(run("import", str(other), "--url", target), "not a memfold export")
    assert snapshot(target) == before


def test_importing_the_same_export_twice_conflicts_and_changes_nothing(
    db: str, target: str, tmp_path: Path
) -> None:
    """Re-importing stored message ids exits 1 with a Conflict, leaving the database as it was."""
    backup = tmp_path / "backup.jsonl"
    run("export", "--url", db, "-o", str(backup))
    assert run("import", str(backup), "--url", target).exit_code == 0
    before = snapshot(target)
    result = run("import", str(backup), "--url", target)
    assert_failed_cleanly(result, "already holds message id(s)")
    assert snapshot(target) == before


def test_import_of_a_missing_file_fails_without_touching_the_database(tmp_path: Path) -> None:
    """A missing input file exits 1 naming it, and creates no database."""
    missing = tmp_path / "missing.jsonl"
    result = run("import", str(missing), "--url", sqlite_url(tmp_path / "new.db"))
    assert_failed_cleanly(result, str(missing))
    assert not (tmp_path / "new.db").exists()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("nosuch://nowhere/db", "unknown store URL 'nosuch://nowhere/db'"),
        ("sqlite:///", "needs a file path"),
        ("sqlite:////no/such/directory/x.db", "unable to open database file"),
    ],
)
@pytest.mark.parametrize("command", [["threads"], ["show", "t"], ["stats"], ["export"]])
def test_a_bad_url_fails_with_one_red_line(command: list[str], url: str, fragment: str) -> None:
    """Every command reports an unusable --url as one error line and exit status 1."""
    assert_failed_cleanly(run(*command, "--url", url), fragment)


def test_import_with_a_bad_url_fails_cleanly(db: str, tmp_path: Path) -> None:
    """`import` with an unusable --url exits 1 with the store's message."""
    backup = tmp_path / "backup.jsonl"
    run("export", "--url", db, "-o", str(backup))
    assert_failed_cleanly(run("import", str(backup), "--url", "nosuch://x"), "unknown store URL")


def test_invalid_option_values_are_reported_by_the_store(db: str) -> None:
    """Out-of-range paging values exit 1 with the store's explanation."""
    assert_failed_cleanly(run("threads", "--url", db, "--limit", "0"), "limit must be an int")
    assert_failed_cleanly(run("show", "chat", "--url", db, "--last", "-1"), "last must be an int")


def test_a_failed_export_keeps_an_existing_output_file(db: str, tmp_path: Path) -> None:
    """When an export fails, a file already at --output is left as it was."""
    backup = tmp_path / "backup.jsonl"
    backup.write_text("previous backup\n", encoding="utf-8")
    assert_failed_cleanly(
        run("export", "--url", db, "--thread", "nope", "-o", str(backup)), "no thread 'nope'"
    )
    assert backup.read_text(encoding="utf-8") == "previous backup\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.jsonl", "source.db"]


def test_export_into_a_missing_directory_fails_cleanly(db: str, tmp_path: Path) -> None:
    """An --output in a directory that does not exist exits 1 naming the directory."""
    result = run("export", "--url", db, "-o", str(tmp_path / "no" / "backup.jsonl"))
    assert_failed_cleanly(result, "No such file or directory")


def test_prune_keeps_the_newest_checkpoints_of_each_thread(tmp_path: Path) -> None:
    """``memfold prune --kind checkpoints --keep-last`` sweeps every tenant, or only
    ``--tenant``, and says what it removed."""
    from memfold.checkpoints import Blob, open_checkpoint_store

    url = sqlite_url(tmp_path / "graph.db")
    with open_checkpoint_store(url) as store:
        for tenant in ("default", "acme"):
            for step in range(4):
                parent = f"c{step - 1}" if step else None
                store.put("run", f"c{step}", Blob("json", b"{}"), parent_id=parent, tenant=tenant)
    result = run(
        "prune", "--url", url, "--kind", "checkpoints", "--keep-last", "3", "--tenant", "acme"
    )
    assert result.exit_code == 0, result.output
    assert "  checkpoints: 0 threads, 1 checkpoint, 0 values, 0 pending writes (" in result.output
    assert "messages" not in result.output
    result = run("prune", "--url", url, "--kind", "checkpoints", "--keep-last", "1")
    assert result.exit_code == 0, result.output
    assert "  checkpoints: 0 threads, 5 checkpoints," in result.output
    with open_checkpoint_store(url) as store:
        for tenant in ("default", "acme"):
            kept = [c.checkpoint_id for c in store.list_checkpoints("run", tenant=tenant)]
            assert kept == ["c3"], tenant


def _every_kind(url: str) -> None:
    """Five messages in a thread, four checkpoints of one graph run and three memories."""
    from memfold.checkpoints import Blob, open_checkpoint_store
    from memfold.memories import open_memory_store

    with open_store(url) as threads:
        threads.append("chat", [Message(role="user", content=f"m{i}") for i in range(5)])
        threads.append("other", Message(role="user", content="hi"))
    with open_checkpoint_store(url) as checkpoints:
        for step in range(4):
            parent = f"c{step - 1}" if step else None
            checkpoints.put("run", f"c{step}", Blob("json", b"{}"), parent_id=parent)
    with open_memory_store(url) as memories:
        for i in range(3):
            memories.put(("default", "u1"), f"fact {i}")


def _sizes(url: str) -> tuple[int, int, int]:
    from memfold.checkpoints import open_checkpoint_store
    from memfold.memories import open_memory_store

    with (
        open_store(url) as threads,
        open_checkpoint_store(url) as checkpoints,
        open_memory_store(url) as memories,
    ):
        return (
            threads.count("chat"),
            len(checkpoints.list_checkpoints("run")),
            memories.count(("default",)),
        )


def test_prune_sweeps_every_kind_the_url_opens_and_a_dry_run_changes_nothing(
    tmp_path: Path,
) -> None:
    """``memfold prune`` sweeps threads, checkpoints and memories alike; ``--dry-run`` prints
    what would go, per kind, and leaves it all; ``--kind`` limits the kinds."""
    url = sqlite_url(tmp_path / "all.db")
    _every_kind(url)
    result = run("prune", "--url", url, "--keep-last", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Would remove (dry run):"
    assert lines[1].startswith("  threads: 0 threads, 3 messages (")
    assert lines[2].startswith("  checkpoints: 0 threads, 2 checkpoints, 0 values, 0 pending ")
    assert lines[3].startswith("  memories: 1 record (")
    assert re.fullmatch(r"Took \d+\.\d{3} s\.", lines[4])
    assert _sizes(url) == (5, 4, 3)
    result = run("prune", "--url", url, "--keep-last", "2", "--kind", "threads", "--kind",
                 "memories")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Removed:\n  threads: 0 threads, 3 messages (")
    assert "checkpoints" not in result.output
    assert _sizes(url) == (2, 4, 2)
    result = run("prune", "--url", url, "--max-threads", "1", "--kind", "threads")
    assert result.exit_code == 0, result.output
    assert "  threads: 1 thread, 2 messages (" in result.output


def test_prune_json_reports_counts_and_times_per_kind(tmp_path: Path) -> None:
    """``--json`` prints one JSON object: dry_run, seconds, and per kind its counts and
    seconds; the counts match what the sweep then removes."""
    url = sqlite_url(tmp_path / "all.db")
    _every_kind(url)
    planned = run("prune", "--url", url, "--keep-last", "1", "--dry-run", "--json")
    assert planned.exit_code == 0, planned.output
    report = json.loads(planned.output)
    assert report["dry_run"] is True
    assert report["seconds"] >= sum(k["seconds"] for k in report["kinds"].values()) > 0
    counts = {kind: {k: v for k, v in c.items() if k != "seconds"}
              for kind, c in report["kinds"].items()}  # fmt: skip
    assert counts == {
        "threads": {"threads": 0, "messages": 4},
        "checkpoints": {"threads": 0, "checkpoints": 3, "values": 0, "writes": 0},
        "memories": {"records": 2},
    }
    done = json.loads(run("prune", "--url", url, "--keep-last", "1", "--json").output)
    assert done["dry_run"] is False
    assert {kind: {k: v for k, v in c.items() if k != "seconds"}
            for kind, c in done["kinds"].items()} == counts  # fmt: skip
    assert _sizes(url) == (1, 1, 1)


def test_prune_refuses_an_unknown_kind(tmp_path: Path) -> None:
    """An unknown ``--kind`` ends the command with one red line naming the kinds."""
    result = run("prune", "--url", sqlite_url(tmp_path / "x.db"), "--kind", "caches")
    assert result.exit_code == 1
    assert "unknown store kind 'caches': use threads, checkpoints, memories" in result.output


def test_prune_refuses_a_bad_policy(tmp_path: Path) -> None:
    """A retention value the store refuses ends the command with one red line."""
    result = run("prune", "--url", sqlite_url(tmp_path / "graph.db"), "--keep-last", "0")
    assert result.exit_code == 1
    assert "keep_last must be an int >= 1" in result.output
