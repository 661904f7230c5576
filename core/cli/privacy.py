"""Privacy commands: ``rotate-key`` re-encrypts what a store holds under a new key.

Keys come from ``$MEMFOLD_KEYS`` or a file (``id:base64key,...``, the first key active; see
`memfold.encryption.Keyring.parse`), never from the command line.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from memfold.checkpoints import BaseCheckpointStore
from memfold.cli.common import DEFAULT_URL, Tenant, Url, app, err, errors, out
from memfold.encryption import KEYS_ENV, Keyring
from memfold.open import AnyStore, open_stores
from memfold.stores import DEFAULT_TENANT, BaseThreadStore

__all__ = ["rotate_key"]


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
