"""Commands that move data: ``export``, ``import`` and ``migrate``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from memfold.cli.common import (
    DEFAULT_URL,
    Tenant,
    Url,
    app,
    err,
    errors,
    fail,
    input_file,
    out,
    output_file,
    plural,
    tally,
)
from memfold.errors import InvalidInput
from memfold.export import export_data, iter_threads
from memfold.export_format import Counts
from memfold.importer import import_data
from memfold.migrate import migrate
from memfold.open import open_store
from memfold.stores import DEFAULT_TENANT

__all__ = ["export_", "import_", "migrate_"]


Kinds = Annotated[
    str | None,
    typer.Option(
        "--kind",
        help="Store kinds, comma-separated: threads, checkpoints, memories (default: all the "
        "URL opens).",
    ),
]
User = Annotated[
    str | None,
    typer.Option(help="Only this user's records (metadata user_id; memory namespace label)."),
]
Since = Annotated[
    str | None, typer.Option(help="Only records from this ISO time or date on (UTC if no zone).")
]
Until = Annotated[
    str | None, typer.Option(help="Only records before this ISO time or date (UTC if no zone).")
]


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not an ISO date or time, e.g. 2026-01-31 or 2026-01-31T12:00")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _summary(counts: Counts) -> str:
    memories = "memory" if counts.memories == 1 else "memories"
    entries = "journal entry" if counts.journal_entries == 1 else "journal entries"
    return (
        f"{plural(counts.threads, 'thread')} ({plural(counts.messages, 'message')}), "
        f"{plural(counts.checkpoints, 'checkpoint')} ({counts.journal_entries} {entries}) "
        f"and {counts.memories} {memories}"
    )


@app.command("export")
def export_(
    url: Url = DEFAULT_URL,
    tenant: Tenant = DEFAULT_TENANT,
    output: Annotated[
        str, typer.Option("--output", "-o", help="File to write, or - for stdout.")
    ] = "-",
    kind: Kinds = None,
    user: User = None,
    since: Since = None,
    until: Until = None,
    thread: Annotated[
        list[str] | None,
        typer.Option(help="Export only this thread and its checkpoints (repeatable)."),
    ] = None,
) -> None:
    """Export a tenant's threads, checkpoints and memories as memfold JSON lines (the format is
    described in memfold.export_format)."""
    to_stdout = output == "-"
    first, last = _time(since, "--since"), _time(until, "--until")
    with errors(), output_file(output) as sink, tally("Exporting", show=not to_stdout) as counter:
        counts = export_data(
            url, sink, kinds=kind, tenant=tenant, user=user, since=first, until=last,
            thread_ids=thread, progress=counter,
        )  # fmt: skip
    if to_stdout:
        err().print(f"Exported {_summary(counts)}.", markup=False)
    else:
        out().print(f"Exported {_summary(counts)} to {output}.", markup=False)


@app.command("import")
def import_(
    file: Annotated[str, typer.Argument(help="Export file to read, or - for stdin.")],
    url: Url = DEFAULT_URL,
    tenant: Annotated[
        str | None,
        typer.Option(help="Import every record into this tenant (default: as in the file)."),
    ] = None,
    kind: Kinds = None,
    user: User = None,
    since: Since = None,
    until: Until = None,
) -> None:
    """Import an export file; a bad line or a record already stored imports nothing."""
    first, last = _time(since, "--since"), _time(until, "--until")
    with errors(), input_file(file) as source, tally("Importing", show=True) as counter:
        counts = import_data(
            url, source, kinds=kind, tenant=tenant, user=user, since=first, until=last,
            progress=counter,
        )  # fmt: skip
    out().print(f"Imported {_summary(counts)}.", markup=False)


def _messages(url: str, tenant: str, threads: list[str] | None) -> int | None:
    """How many messages a migrate from ``url`` copies, for its progress bar (None: the URL
    opens no thread store, as a Chroma URL does)."""
    try:
        source = open_store(url)
    except InvalidInput:
        return None
    with source:
        if threads is None:
            return sum(info.message_count for info in iter_threads(source, tenant=tenant))
        return sum(source.count(t, tenant=tenant) for t in threads)


@app.command("migrate")
def migrate_(
    source_url: Annotated[str, typer.Argument(metavar="SRC_URL", help="Store to copy from.")],
    target_url: Annotated[str, typer.Argument(metavar="DST_URL", help="Store to copy into.")],
    tenant: Tenant = DEFAULT_TENANT,
    thread: Annotated[
        list[str] | None, typer.Option(help="Migrate only this thread (repeatable).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Messages read and written at a time.")] = 500,
) -> None:
    """Copy threads, graph checkpoints and long-term memories from SRC_URL to DST_URL (every
    kind both URLs open); safe to re-run (what is already there is skipped)."""
    columns = (
        TextColumn("Migrating"), BarColumn(), MofNCompleteColumn(), TextColumn("messages"),
        TimeRemainingColumn(),
    )  # fmt: skip
    with errors():
        total = _messages(source_url, tenant, thread)
        with Progress(*columns, console=err(), transient=True) as bar:
            task = bar.add_task("migrate", total=total)

            def advance(key: str, moved: int) -> None:
                if not key.startswith(("checkpoints:", "memories:")):
                    bar.advance(task, moved)

            result = migrate(
                source_url, target_url, thread_ids=thread, tenant=tenant, batch_size=batch_size,
                progress=advance,
            )  # fmt: skip
    for key, error in result.failed.items():
        what = "memory namespace" if key.startswith("memories:") else "thread"
        err().print(Text(f"failed: {what} {key!r}: {error}", style="red"))
    for kind, why in result.kinds_not_moved.items():
        err().print(Text(f"not migrated: {kind}: {why}", style="red"))
    out().print(
        f"Migrated {plural(result.messages_moved, 'message')} in "
        f"{plural(result.threads_moved, 'thread')}, "
        f"{plural(result.checkpoints_moved, 'checkpoint')} and "
        f"{result.memories_moved} {'memory' if result.memories_moved == 1 else 'memories'} "
        f"({result.duration:.1f} s).",
        markup=False,
    )
    if result.failed or result.kinds_not_moved:
        raise typer.Exit(1)
