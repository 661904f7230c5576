"""Commands that read threads: ``threads``, ``show``, ``search`` and ``stats``."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from memfold.cli.common import DEFAULT_URL, Tenant, Url, app, errors, out, when
from memfold.export import iter_threads
from memfold.model import Message
from memfold.open import open_store
from memfold.stores import DEFAULT_TENANT

__all__ = ["search", "show", "stats", "threads"]

_ROLE_STYLES = {"user": "green", "assistant": "cyan", "system": "magenta", "tool": "yellow"}


@app.command()
def threads(
    url: Url = DEFAULT_URL,
    tenant: Tenant = DEFAULT_TENANT,
    limit: Annotated[int, typer.Option(help="How many threads to list.")] = 50,
    offset: Annotated[int, typer.Option(help="How many threads to skip.")] = 0,
) -> None:
    """List threads, most recently updated first."""
    with errors(), open_store(url) as store:
        infos = store.list_threads(tenant=tenant, limit=limit, offset=offset)
    if not infos:
        out().print(f"No threads for tenant {tenant!r}.", markup=False)
        return
    table = Table("Thread", "Messages", "Updated", "Metadata")
    for info in infos:
        metadata = json.dumps(dict(info.metadata), ensure_ascii=False) if info.metadata else ""
        table.add_row(
            Text(info.thread_id), str(info.message_count), when(info.updated_at), Text(metadata)
        )
    out().print(table)


def _message_text(m: Message) -> Text:
    line = Text(f"{when(m.created_at)}  ", style="dim")
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
    with errors(), open_store(url) as store:
        store.get_thread(thread, tenant=tenant)
        messages = store.load(thread, last=last, tenant=tenant)
    if as_json:
        for m in messages:
            typer.echo(m.to_json())
        return
    console = out()
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
    with errors(), open_store(url) as store:
        hits = store.search(text, thread_id=thread, tenant=tenant, limit=limit)
    if not hits:
        out().print(f"No messages match {text!r}.", markup=False)
        return
    table = Table("Thread", "Role", "Time", "Score", "Text")
    for hit in hits:
        m = hit.message
        table.add_row(
            Text(hit.thread_id), m.role, when(m.created_at), f"{hit.score:.3f}", Text(m.text)
        )
    out().print(table)


@app.command()
def stats(url: Url = DEFAULT_URL, tenant: Tenant = DEFAULT_TENANT) -> None:
    """Count a tenant's threads and messages; show the backend and its capabilities."""
    with errors(), open_store(url) as store:
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
    out().print(table)
