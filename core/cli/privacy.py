"""Privacy commands: ``erase`` deletes a user or a tenant everywhere (`memfold.erase`), and
``rotate-key`` re-encrypts what a store holds under a new key.

Keys come from ``$MEMFOLD_KEYS`` or a file (``id:base64key,...``, the first key active; see
`memfold.encryption.Keyring.parse`), never from the command line.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from memfold.checkpoints import BaseCheckpointStore
from memfold.cli.common import DEFAULT_URL, Tenant, Url, app, err, errors, fail, out, plural
from memfold.encryption import KEYS_ENV, Keyring
from memfold.erase import ErasureReport, Subject, erase
from memfold.open import AnyStore, open_stores
from memfold.stores import DEFAULT_TENANT, BaseThreadStore

__all__ = ["erase_command", "rotate_key"]


@app.command("erase")
def erase_command(
    tenant: Annotated[
        str, typer.Option("--tenant", help="The tenant to erase, or whose user or threads to.")
    ],
    url: Annotated[
        list[str] | None,
        typer.Option(
            "--url",
            envvar="MEMFOLD_URL",
            show_envvar=True,
            help=f"A store URL, repeatable: every store kind each URL opens is erased "
            f"[default: {DEFAULT_URL}]",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            help="Erase this user: the threads whose metadata (or checkpoints' metadata) has "
            "this user_id, and the memories under (tenant, user).",
        ),
    ] = None,
    thread: Annotated[
        list[str] | None,
        typer.Option("--thread", help="Erase this thread too (repeatable)."),
    ] = None,
    whole_tenant: Annotated[
        bool,
        typer.Option("--whole-tenant", help="Erase everything of the tenant, every user."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go and change nothing.")
    ] = False,
    tombstone_ttl: Annotated[
        float | None,
        typer.Option(
            help="Seconds the tombstones refuse writes to what was erased (default: until "
            "lifted with memfold.lift_erasure)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Erase a user (--user), some threads (--thread) or a whole tenant (--whole-tenant) from
    every store at each URL: threads, checkpoints with their pending writes and journals, and
    long-term memories; leave tombstones that refuse late writes; report what went."""
    threads = tuple(thread or ())
    if whole_tenant and (user is not None or threads):
        fail("--whole-tenant erases every user and thread of the tenant: leave out --user and "
             "--thread, or --whole-tenant")  # fmt: skip
    if not whole_tenant and user is None and not threads:
        fail(f"say what to erase of tenant {tenant!r}: --user ID, --thread ID, or "
             "--whole-tenant for all of it")  # fmt: skip
    stores: list[AnyStore] = []
    with errors():
        subject = Subject(tenant, user, threads)
        try:
            for one in url or [DEFAULT_URL]:
                stores += open_stores(one)
            report = erase(subject, stores, dry_run=dry_run, tombstone_ttl=tombstone_ttl)
        finally:
            for store in stores:
                store.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    _print_report(report, {_KINDS[_kind(store)] for store in stores}, tombstone_ttl)


_KINDS = {"messages": "threads", "checkpoints": "checkpoints", "memories": "memories"}
"""The store kind of each `_kind`."""

_COUNTS = {
    "threads": (("threads", "thread"), ("messages", "message")),
    "checkpoints": (
        ("checkpoint_threads", "thread"), ("checkpoints", "checkpoint"),
        ("checkpoint_blobs", "value"), ("checkpoint_writes", "pending write"),
        ("journal_entries", "journal entry"),
    ),
    "memories": (("memories", "record"),),
}  # fmt: skip
"""The counts of each store kind, and the singular of what they count."""


def _count(n: int, one: str) -> str:
    return (
        f"{n} journal entr{'y' if n == 1 else 'ies'}" if one == "journal entry" else plural(n, one)
    )


def _subject(subject: Subject) -> str:
    if subject.whole_tenant:
        return f"all of tenant {subject.tenant!r}"
    named = [] if subject.user_id is None else [f"user {subject.user_id!r}"]
    if subject.thread_ids:
        ids = ", ".join(repr(t) for t in subject.thread_ids)
        named.append(f"thread{'s' if len(subject.thread_ids) > 1 else ''} {ids}")
    return f"{' and '.join(named)} of tenant {subject.tenant!r}"


def _print_report(report: ErasureReport, kinds: set[str], ttl: float | None) -> None:
    console = out()
    what = _subject(report.subject)
    if report.dry_run:
        console.print(f"Would erase {what} (dry run: nothing changed):", markup=False)
    else:
        console.print(f"Erased {what}:", markup=False)
    for kind, counts in _COUNTS.items():
        if kind in kinds:
            parts = ", ".join(_count(getattr(report.counts, name), one) for name, one in counts)
            console.print(f"  {kind}: {parts}", markup=False)
    if report.thread_ids:
        console.print(f"Threads: {', '.join(report.thread_ids)}.", markup=False)
    if not report.dry_run:
        until = "lifted (memfold.lift_erasure)" if ttl is None else f"lifted or {ttl:g} s pass"
        console.print(
            f"Placed {plural(report.tombstones, 'tombstone')}: writes to what was erased are "
            f"refused until {until}.",
            markup=False,
        )


@app.command("rotate-key")
def rotate_key(
    url: Url = DEFAULT_URL,
    tenant: Tenant = DEFAULT_TENANT,
    batch_size: Annotated[int, typer.Option(help="Messages or memories per page.")] = 500,
    keys_file: Annotated[
        str | None,
        typer.Option(help=f"Read the keys from this file instead of ${KEYS_ENV}."),
    ] = None,
) -> None:
    """Re-encrypt the tenant's thread messages, checkpoints and long-term memories at URL (every
    kind it opens) under the first key of $MEMFOLD_KEYS (or --keys-file); keep the old keys
    listed after it until this finishes. Plain data is encrypted too; safe to run again."""
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(),
    )  # fmt: skip
    done: dict[str, int] = {}
    with errors():
        keyring = Keyring.from_env() if keys_file is None else Keyring.from_file(keys_file)
        stores = open_stores(url, keyring=keyring)
        try:
            with Progress(*columns, console=err(), transient=True) as bar:
                for store in stores:
                    kind, task = _kind(store), None

                    def show(n: int, total: int, kind: str = kind) -> None:
                        nonlocal task
                        if task is None:
                            task = bar.add_task(f"Rotating {kind}", total=total)
                        bar.update(task, completed=n, total=total)

                    if isinstance(store, BaseThreadStore):
                        done[kind] = store.rotate_key(
                            tenant=tenant, batch_size=batch_size, progress=show
                        )
                    elif isinstance(store, BaseCheckpointStore):
                        done[kind] = store.rotate_key(tenant=tenant, progress=show)
                    else:
                        done[kind] = store.rotate_key(
                            (tenant,), batch_size=batch_size, progress=show
                        )
        finally:
            for store in stores:
                store.close()
    parts = [f"{n} {kind}" if n != 1 else f"1 {_ONE[kind]}" for kind, n in done.items()]
    out().print(
        f"Re-encrypted {', '.join(parts)} of tenant {tenant!r} under key {keyring.active!r}.",
        markup=False,
    )


_ONE = {"messages": "message", "checkpoints": "checkpoint", "memories": "memory"}


def _kind(store: AnyStore) -> str:
    if isinstance(store, BaseThreadStore):
        return "messages"
    if isinstance(store, BaseCheckpointStore):
        return "checkpoints"
    return "memories"
