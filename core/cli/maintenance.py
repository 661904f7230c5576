"""Maintenance commands: ``prune`` every store kind by a retention policy, and ``reembed``
long-term memories."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import memfold.retention
from memfold.cli.common import DEFAULT_URL, Url, app, err, errors, fail, out, plural
from memfold.limits import MAX_VECTOR_DIMENSIONS
from memfold.memories import open_memory_store
from memfold.recall.embedders import Embedder, HashingEmbedder, LocalEmbedder
from memfold.retention import RetentionPolicy

__all__ = ["prune", "reembed"]


@app.command()
def prune(
    url: Url = DEFAULT_URL,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            help="Sweep only this store kind: threads, checkpoints or memories (repeatable; "
            "default: every kind the URL opens).",
        ),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Prune only this tenant (default: every one).")
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option(
            help="Keep the newest N messages of each thread, checkpoints of each thread "
            "namespace and memories of each namespace."
        ),
    ] = None,
    max_age: Annotated[
        float | None,
        typer.Option(
            help="Drop messages, checkpoints (the newest stays) and memories older than this "
            "many seconds."
        ),
    ] = None,
    ttl: Annotated[
        float | None,
        typer.Option(
            help="Delete threads not written for this many seconds (a thread's own TTL wins)."
        ),
    ] = None,
    max_threads: Annotated[
        int | None,
        typer.Option(help="Keep the N most recently updated threads of each tenant."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go and change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Sweep every store kind at URL (threads, graph checkpoints, long-term memories) by a
    retention policy (each store's own when no option is given), and report what went."""
    given = (keep_last, max_age, ttl, max_threads)
    policy = None
    if any(value is not None for value in given):
        policy = RetentionPolicy(keep_last, max_age, ttl, max_threads)
    with errors():
        report = memfold.retention.prune(url, policy, kinds=kind, tenant=tenant, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    console = out()
    console.print("Would remove (dry run):" if dry_run else "Removed:", markup=False)
    for name, result in report.kinds.items():
        counts = result.counts(name)
        parts = ", ".join(plural(n, _ONE[what]) for what, n in counts.items())
        took = report.kind_seconds.get(name, 0.0)
        console.print(f"  {name}: {parts} ({took:.3f} s)", markup=False)
    console.print(f"Took {report.seconds:.3f} s.", markup=False)


_ONE = {
    "threads": "thread",
    "messages": "message",
    "checkpoints": "checkpoint",
    "values": "value",
    "writes": "pending write",
    "records": "record",
}
"""The singular of each count's name, as the report prints it."""


def _embedder(spec: str) -> Embedder:
    """``local`` (all-MiniLM-L6-v2, the embeddings extra) or ``hashing:<dimensions>``."""
    if spec == "local":
        return LocalEmbedder()
    kind, _, size = spec.partition(":")
    if kind == "hashing" and size.isdecimal() and int(size) <= MAX_VECTOR_DIMENSIONS:
        return HashingEmbedder(int(size))
    fail(
        f"unknown embedder {spec!r}: use 'local' or 'hashing:<dimensions>' (2 to "
        f"{MAX_VECTOR_DIMENSIONS:,})"
    )


@app.command()
def reembed(
    namespace: Annotated[
        list[str], typer.Argument(help="Namespace prefix, label by label (tenant first).")
    ],
    url: Url = DEFAULT_URL,
    embedder: Annotated[
        str, typer.Option(help="The model to embed with: 'local' or 'hashing:<dimensions>'.")
    ] = "local",
    force: Annotated[
        bool, typer.Option(help="Re-embed every record, not only stale ones.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Records embedded at a time.")] = 64,
) -> None:
    """Re-embed the long-term memories under NAMESPACE whose vectors are missing or were made
    by another model (the store records which model made each vector)."""
    columns = (
        TextColumn("Re-embedding"), BarColumn(), MofNCompleteColumn(), TextColumn("memories"),
        TimeRemainingColumn(),
    )  # fmt: skip
    with errors():
        model = _embedder(embedder)
    with (
        errors(),
        open_memory_store(url, embedder=model) as store,
        Progress(*columns, console=err(), transient=True) as bar,
    ):
        task = bar.add_task("reembed", total=None)
        done = store.reembed(
            tuple(namespace), batch_size=batch_size, force=force,
            progress=lambda n, total: bar.update(task, completed=n, total=total),
        )  # fmt: skip
    out().print(f"Re-embedded {plural(done, 'record')} with {model.model}.", markup=False)
