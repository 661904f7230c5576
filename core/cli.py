"""The ``memfold`` command line: look into a store, search it, export and import its threads.

Every command takes ``--url`` (default: ``$MEMFOLD_URL``, else ``sqlite:///memfold.db``) and
``--tenant``. A memfold error is printed as one red line and exits with status 1.

For example:

```console
$ memfold threads --url sqlite:///chat.db
$ memfold export --output backup.jsonl
$ memfold import backup.jsonl --url sqlite:///copy.db
$ memfold migrate sqlite:///chat.db postgresql://localhost/chat
```
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from memfold.checkpoints import RetentionPolicy, open_checkpoint_store
from memfold.errors import MemfoldError
from memfold.export import export_threads, import_threads, iter_threads
from memfold.memories import open_memory_store
from memfold.migrate import migrate
from memfold.model import Message
from memfold.open import open_store
from memfold.recall.embedders import Embedder, HashingEmbedder, LocalEmbedder
from memfold.stores import DEFAULT_TENANT

__all__ = ["app"]

DEFAULT_URL = "sqlite:///memfold.db"

app = typer.Typer(
    name="memfold",
    help="Look into a memfold store, search it, export and import its threads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Url = Annotated[
    str, typer.Option("--url", envvar="MEMFOLD_URL", help="Store URL.", show_envvar=True)
]
Tenant = Annotated[str, typer.Option("--tenant", help="Tenant whose threads to use.")]

_ROLE_STYLES = {"user": "green", "assistant": "cyan", "system": "magenta", "tool": "yellow"}


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str) -> NoReturn:
    _err().print(Text(f"error: {message}", style="red"))
    raise typer.Exit(1)


@contextmanager
def _errors() -> Iterator[None]:
    """End the command with one red line, not a traceback, on a memfold or file error."""
    try:
        yield
    except MemfoldError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))


@contextmanager
def _output(path: str) -> Iterator[IO[str]]:
    """stdout for ``-``; else a temporary file beside ``path``, moved there only on success."""
    if path == "-":
        stdout = typer.get_text_stream("stdout", encoding="utf-8")
        yield stdout
        stdout.flush()
        return
    target = Path(path)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def _input(path: str) -> Iterator[IO[str]]:
    """stdin for ``-``, else the file at ``path``, read as UTF-8."""
    if path == "-":
        yield typer.get_text_stream("stdin", encoding="utf-8")
        return
    with open(path, encoding="utf-8") as source:
        yield source


def _count(n: int, what: str) -> str:
    return f"{n} {what if n == 1 else what + 's'}"


def _time(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(sep=" ", timespec="seconds")


class _Tally:
    """A ``progress`` callback that counts messages and advances a rich progress bar if given."""

    def __init__(self, bar: Progress | None) -> None:
        self.messages = 0
        self._bar = bar
        self._task = None if bar is None else bar.add_task("", total=None)

    def __call__(self, n: int) -> None:
        self.messages += n
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)


@contextmanager
def _tally(label: str, *, show: bool) -> Iterator[_Tally]:
    if not show:
        yield _Tally(None)
        return
    columns = (SpinnerColumn(), TextColumn(label), MofNCompleteColumn(), TextColumn("messages"))
    with Progress(*columns, console=_err(), transient=True) as bar:
        yield _Tally(bar)


@app.command()
def threads(
    url: Url = DEFAULT_URL,
    tenant: Tenant = DEFAULT_TENANT,
    limit: Annotated[int, typer.Option(help="How many threads to list.")] = 50,
    offset: Annotated[int, typer.Option(help="How many threads to skip.")] = 0,
) -> None:
    """List threads, most recently updated first."""
    with _errors(), open_store(url) as store:
        infos = store.list_threads(tenant=tenant, limit=limit, offset=offset)
    if not infos:
        _out().print(f"No threads for tenant {tenant!r}.", markup=False)
        return
    table = Table("Thread", "Messages", "Updated", "Metadata")
    for info in infos:
        metadata = json.dumps(dict(info.metadata), ensure_ascii=False) if info.metadata else ""
        table.add_row(
            Text(info.thread_id), str(info.message_count), _time(info.updated_at), Text(metadata)
        )
    _out().print(table)


def _message_text(m: Message) -> Text:
    line = Text(f"{_time(m.created_at)}  ", style="dim")
    line.append(m.role if m.name is None else f"{m.role} ({m.name})", _ROLE_STYLES.get(m.role))
    if m.tool_call_id is not None:
        line.append(f" (result of {m.tool_call_id})", style="dim")
    line.append(f": {m.text}" if m.text else ":")
    for call in m.tool_calls:
        arguments = json.dumps(dict(call.arguments), ensure_ascii=False)
        line.append(f"\n    -> {call.name}({arguments}) (call {call.id})", style="yellow")
    return line


@app.command()
def show(
    thread: Annotated[str, typer.Argument(help="Thread id.")],
    url: Url = DEFAULT_URL,
    tenant: Tenant = DEFAULT_TENANT,
    last: Annotated[int | None, typer.Option(help="Show only the newest N messages.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Show a thread's messages, oldest first."""
    with _errors(), open_store(url) as store:
        store.get_thread(thread, tenant=tenant)
        messages = store.load(thread, last=last, tenant=tenant)
    if as_json:
        for m in messages:
            typer.echo(m.to_json())
        return
    console = _out()
    for m in messages:
        console.print(_message_text(m))


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="Words to find (all must match).")],
    url: Url = DEFAULT_URL,
    tenant: Tenant = DEFAULT_TENANT,
    thread: Annotated[str | None, typer.Option(help="Search only this thread.")] = None,
    limit: Annotated[int, typer.Option(help="Most hits to show.")] = 10,
) -> None:
    """Full-text search over a tenant's messages, best match first."""
    with _errors(), open_store(url) as store:
        hits = store.search(text, thread_id=thread, tenant=tenant, limit=limit)
    if not hits:
        _out().print(f"No messages match {text!r}.", markup=False)
        return
    table = Table("Thread", "Role", "Time", "Score", "Text")
    for hit in hits:
        m = hit.message
        table.add_row(
            Text(hit.thread_id), m.role, _time(m.created_at), f"{hit.score:.3f}", Text(m.text)
        )
    _out().print(table)


@app.command()
def stats(url: Url = DEFAULT_URL, tenant: Tenant = DEFAULT_TENANT) -> None:
    """Count a tenant's threads and messages; show the backend and its capabilities."""
    with _errors(), open_store(url) as store:
        thread_count = message_count = 0
        for info in iter_threads(store, tenant=tenant):
            thread_count += 1
            message_count += info.message_count
        capabilities = store.capabilities
        backend = store.name
    declared = [f.name for f in fields(capabilities) if getattr(capabilities, f.name)]
    table = Table(show_header=False, box=None)
    table.add_row("tenant", Text(tenant))
    table.add_row("threads", str(thread_count))
    table.add_row("messages", str(message_count))
    table.add_row("backend", backend)
    table.add_row("capabilities", ", ".join(declared) or "none")
    _out().print(table)


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
        _errors(),
        open_store(url) as store,
        _output(output) as out,
        _tally("Exporting", show=not to_stdout) as tally,
    ):
        written = export_threads(store, out, tenant=tenant, thread_ids=thread, progress=tally)
    summary = f"Exported {_count(written, 'thread')} ({_count(tally.messages, 'message')})"
    if to_stdout:
        _err().print(summary + ".", markup=False)
    else:
        _out().print(f"{summary} to {output}.", markup=False)


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
        _errors(),
        _input(file) as source,
        open_store(url) as store,
        _tally("Importing", show=True) as tally,
    ):
        imported = import_threads(store, source, tenant=tenant, progress=tally)
    summary = f"Imported {_count(imported, 'thread')} ({_count(tally.messages, 'message')})."
    _out().print(summary, markup=False)


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
    with _errors():
        with open_store(source_url) as source:
            if thread is None:
                total = sum(info.message_count for info in iter_threads(source, tenant=tenant))
            else:
                total = sum(source.count(t, tenant=tenant) for t in thread)
        with Progress(*columns, console=_err(), transient=True) as bar:
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
        _err().print(Text(f"failed: {what} {key!r}: {error}", style="red"))
    _out().print(
        f"Migrated {_count(result.messages_moved, 'message')} in "
        f"{_count(result.threads_moved, 'thread')}, "
        f"{_count(result.checkpoints_moved, 'checkpoint')} and "
        f"{result.memories_moved} {'memory' if result.memories_moved == 1 else 'memories'} "
        f"({result.duration:.1f} s).",
        markup=False,
    )
    if result.failed:
        raise typer.Exit(1)


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
    with _errors(), open_checkpoint_store(url) as store:
        removed = store.sweep(policy, tenant=tenant)
    counts = (
        _count(removed.threads, "thread"),
        _count(removed.checkpoints, "checkpoint"),
        _count(removed.blobs, "value"),
        _count(removed.writes, "pending write"),
    )
    _out().print("Removed {}, {}, {} and {}.".format(*counts), markup=False)


def _embedder(spec: str) -> Embedder:
    """``local`` (all-MiniLM-L6-v2, the embeddings extra) or ``hashing:<dimensions>``."""
    if spec == "local":
        return LocalEmbedder()
    kind, _, size = spec.partition(":")
    if kind == "hashing" and size.isdigit():
        return HashingEmbedder(int(size))
    _fail(f"unknown embedder {spec!r}: use 'local' or 'hashing:<dimensions>'")


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
        _errors(),
        open_memory_store(url, embedder=model) as store,
        Progress(*columns, console=_err(), transient=True) as bar,
    ):
        task = bar.add_task("reembed", total=None)
        done = store.reembed(
            tuple(namespace), batch_size=batch_size, force=force,
            progress=lambda n, total: bar.update(task, completed=n, total=total),
        )  # fmt: skip
    _out().print(f"Re-embedded {_count(done, 'record')} with {model.model}.", markup=False)
