"""``memfold db status`` and ``memfold db upgrade``, run through typer's CliRunner on SQLite."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from typer.testing import CliRunner, Result

from memfold import open_store
from memfold.backends.sql.memory_schema import MEMORY_STEPS
from memfold.backends.sql.migrations import CHECKPOINT_STEPS, STEPS
from memfold.cli import app

LATEST = [str(steps[-1].version) for steps in (STEPS, CHECKPOINT_STEPS, MEMORY_STEPS)]
"""The latest SQL schema version of threads, checkpoints and memories."""
STEP_COUNT = sum(len(steps) for steps in (STEPS, CHECKPOINT_STEPS, MEMORY_STEPS))


def run(*args: str) -> Result:
    """Invoke the CLI with a wide terminal, so tables are not cut."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "MEMFOLD_URL": None})


def rows(text: str) -> list[list[str]]:
    """The body rows of a rich table, as lists of stripped cells."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "│" in line]


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [name for (name,) in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]


def test_status_dry_run_and_upgrade_of_a_new_database(tmp_path: Path) -> None:
    """status lists each kind's pending steps; --dry-run prints the steps and their SQL and
    creates nothing; upgrade applies them once; status then says all is up to date."""
    path = tmp_path / "new.db"
    url = f"sqlite:///{path}"
    status = run("db", "status", "--url", url)
    assert status.exit_code == 0, status.output
    assert [row[:4] for row in rows(status.stdout) if row[0]] == [
        ["threads", "sqlite", "0", LATEST[0]],
        ["checkpoints", "sqlite", "0", LATEST[1]],
        ["memories", "sqlite", "0", LATEST[2]],
    ]
    assert f"{STEP_COUNT} steps pending: run `memfold db upgrade`." in status.stdout

    dry = run("db", "upgrade", "--url", url, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would apply checkpoints step 2 on sqlite: the effect journal" in dry.stdout
    assert "CREATE TABLE IF NOT EXISTS memfold_cp_journal (" in dry.stdout
    assert f"Dry run: {STEP_COUNT} steps pending, nothing changed." in dry.stdout
    assert tables(path) == []

    applied = run("db", "upgrade", "--url", url)
    assert applied.exit_code == 0, applied.output
    assert "Applied threads step 2 on sqlite" in applied.stdout
    assert "CREATE TABLE" not in applied.stdout
    assert f"Applied {STEP_COUNT} steps; every schema is up to date." in applied.stdout
    assert {"memfold_messages", "memfold_cp_journal", "memfold_memories"} <= set(tables(path))
    assert run("db", "upgrade", "--url", url).stdout.strip() == (
        "Every schema was already up to date."
    )
    status = run("db", "status", "--url", url)
    assert [row[2:] for row in rows(status.stdout)] == [[v, v, ""] for v in LATEST]
    assert "Every schema is up to date." in status.stdout


def test_a_database_made_by_a_newer_memfold_fails_cleanly(tmp_path: Path) -> None:
    """Both commands refuse a schema newer than this memfold with one red line saying to
    upgrade memfold, and exit with status 1."""
    path, future = tmp_path / "future.db", int(LATEST[0]) + 1
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO memfold_schema_versions VALUES ('threads', ?, 'future', ?)",
            (future, time.time()),
        )
    for command in (["status"], ["upgrade"], ["upgrade", "--dry-run"]):
        result = run("db", *command, "--url", f"sqlite:///{path}")
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: the sqlite threads schema")
        assert f"at version {future}, newer than this memfold knows ({LATEST[0]}): upgrade" in line
