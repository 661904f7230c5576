"""Schema commands: ``db status`` and ``db upgrade`` (see `memfold.schema`)."""

from __future__ import annotations

from textwrap import indent
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from memfold import schema
from memfold.cli.common import DEFAULT_URL, Url, app, errors, out, plural

__all__ = ["db", "status", "upgrade"]

db = typer.Typer(
    help="Show and upgrade the schema of every store kind at a URL.", no_args_is_help=True
)
app.add_typer(db, name="db")

Dimensions = Annotated[
    int | None,
    typer.Option(
        help="Vector length of a new PostgreSQL or Chroma memory store (an existing "
        "PostgreSQL memory table's is read from it)."
    ),
]


@db.command()
def status(url: Url = DEFAULT_URL, dimensions: Dimensions = None) -> None:
    """Show each store kind's schema version at URL and the steps still to apply (reads only)."""
    with errors():
        found = schema.status(url, dimensions=dimensions)
    table = Table("Kind", "Backend", "Version", "Latest", "Pending steps")
    for kind in found:
        pending = "\n".join(f"{p.version}: {p.description}" for p in kind.pending)
        table.add_row(kind.kind, kind.backend, str(kind.version), str(kind.latest), Text(pending))
    out().print(table)
    waiting = sum(len(kind.pending) for kind in found)
    if waiting:
        out().print(f"{plural(waiting, 'step')} pending: run `memfold db upgrade`.", markup=False)
    else:
        out().print("Every schema is up to date.")


@db.command()
def upgrade(
    url: Url = DEFAULT_URL,
    dimensions: Dimensions = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the steps and SQL an upgrade would run.")
    ] = False,
) -> None:
    """Apply the pending schema steps of each store kind at URL, each kind in one transaction
    under its backend's lock (safe while other processes run setup or upgrade too)."""
    with errors():
        found = schema.upgrade(url, dry_run=dry_run, dimensions=dimensions)
    verb = "Would apply" if dry_run else "Applied"
    for kind in found:
        for step in kind.pending:
            out().print(
                f"{verb} {kind.kind} step {step.version} on {kind.backend}: {step.description}",
                markup=False,
            )
            for statement in step.statements if dry_run else ():
                out().print(Text(indent(f"{statement.strip()};", "    "), style="dim"))
    applied = sum(len(kind.pending) for kind in found)
    if dry_run:
        out().print(f"Dry run: {plural(applied, 'step')} pending, nothing changed.", markup=False)
    elif applied:
        out().print(f"Applied {plural(applied, 'step')}; every schema is up to date.")
    else:
        out().print("Every schema was already up to date.")
