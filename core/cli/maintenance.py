"""Maintenance commands: ``prune`` checkpoints and ``reembed`` long-term memories."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from memfold.checkpoints import RetentionPolicy, open_checkpoint_store
from memfold.cli.common import DEFAULT_URL, Url, app, err, errors, fail, out, plural
from memfold.memories import open_memory_store
from memfold.recall.embedders import Embedder, HashingEmbedder, LocalEmbedder

__all__ = ["prune", "reembed"]


@app.command()
def prune(
    url: Url = DEFAULT_URL,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Prune only this tenant (default: every one).")
    ] = None,
    keep_last: Annotated[
        int | None, typer.Option(help="Keep the newest N checkpoints of each thread namespace.")
    ] = None,
    max_age: Annotated[
        float | None,
        typer.Option(help="Drop checkpoints older than this many seconds (the newest stays)."),
    ] = None,
    ttl: Annotated[
        float | None,
        typer.Option(
            help="Delete threads not written for this many seconds (a thread's own TTL wins)."
        ),
    ] = None,
) -> None:
    """Sweep the checkpoints at URL by a retention policy (the store's own when no option is
    given), leaving no orphaned values or writes."""
    given = keep_last is not None or max_age is not None or ttl is not None
    policy = RetentionPolicy(keep_last, max_age, ttl) if given else None
    with errors(), open_checkpoint_store(url) as store:
        removed = store.sweep(policy, tenant=tenant)
    counts = (
        plural(removed.threads, "thread"),
        plural(removed.checkpoints, "checkpoint"),
        plural(removed.blobs, "value"),
        plural(removed.writes, "pending write"),
    )
    out().print("Removed {}, {}, {} and {}.".format(*counts), markup=False)


def _embedder(spec: str) -> Embedder:
    """``local`` (all-MiniLM-L6-v2, the embeddings extra) or ``hashing:<dimensions>``."""
    if spec == "local":
        return LocalEmbedder()
    kind, _, size = spec.partition(":")
    if kind == "hashing" and size.isdigit():
        return HashingEmbedder(int(size))
    fail(f"unknown embedder {spec!r}: use 'local' or 'hashing:<dimensions>'")


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
    model = _embedder(embedder)
    columns = (
        TextColumn("Re-embedding"), BarColumn(), MofNCompleteColumn(), TextColumn("memories"),
        TimeRemainingColumn(),
    )  # fmt: skip
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
