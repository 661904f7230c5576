"""Commands that move data: ``export``, ``import`` and ``migrate``."""

from __future__ import annotations

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
    input_file,
    out,
    output_file,
    plural,
    tally,
)
from memfold.export import export_threads, import_threads, iter_threads
from memfold.migrate import migrate
from memfold.open import open_store
from memfold.stores import DEFAULT_TENANT

__all__ = ["export_", "import_", "migrate_"]


@app.command("export")
def export_(
    url: Url = DEFAULT_URL,
    tenant: Tenant = DEFAULT_TENANT,
    output: Annotated[
        str, typer.Option("--output", "-o", help="File to write, or - for stdout.")
    ] = "-",
    thread: Annotated[
        list[str] | None, typer.Option(help="Export only this thread (repeatable).")
    ] = None,
) -> None:
    """Export threads as memfold JSON lines (the format is described in memfold.export)."""
    to_stdout = output == "-"
    with (
        errors(),
        open_store(url) as store,
        output_file(output) as sink,
        tally("Exporting", show=not to_stdout) as counter,
    ):
        written = export_threads(store, sink, tenant=tenant, thread_ids=thread, progress=counter)
    summary = f"Exported {plural(written, 'thread')} ({plural(counter.messages, 'message')})"
    if to_stdout:
        err().print(summary + ".", markup=False)
    else:
        out().print(f"{summary} to {output}.", markup=False)


@app.command("import")
def import_(
    file: Annotated[str, typer.Argument(help="Export file to read, or - for stdin.")],
    url: Url = DEFAULT_URL,
    tenant: Annotated[
        str | None,
        typer.Option(help="Import every thread into this tenant (default: as in the file)."),
    ] = None,
) -> None:
    """Import an export file; a bad line or a clashing message id imports nothing."""
    with (
        errors(),
        input_file(file) as source,
        open_store(url) as store,
        tally("Importing", show=True) as counter,
    ):
        imported = import_threads(store, source, tenant=tenant, progress=counter)
    summary = f"Imported {plural(imported, 'thread')} ({plural(counter.messages, 'message')})."
    out().print(summary, markup=False)


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
        with open_store(source_url) as source:
            if thread is None:
                total = sum(info.message_count for info in iter_threads(source, tenant=tenant))
            else:
                total = sum(source.count(t, tenant=tenant) for t in thread)
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
    out().print(
        f"Migrated {plural(result.messages_moved, 'message')} in "
        f"{plural(result.threads_moved, 'thread')}, "
        f"{plural(result.checkpoints_moved, 'checkpoint')} and "
        f"{result.memories_moved} {'memory' if result.memories_moved == 1 else 'memories'} "
        f"({result.duration:.1f} s).",
        markup=False,
    )
    if result.failed:
        raise typer.Exit(1)
