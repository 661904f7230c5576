"""What every ``memfold`` command shares: the app, its common options, output and errors."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.text import Text

from memfold.errors import MemfoldError

__all__ = [
    "DEFAULT_URL",
    "Tally",
    "Tenant",
    "Url",
    "app",
    "err",
    "errors",
    "fail",
    "input_file",
    "out",
    "output_file",
    "plural",
    "tally",
    "when",
]

DEFAULT_URL = "sqlite:///memfold.db"

app = typer.Typer(
    name="memfold",
    help="Look into memfold stores, search them, move, prune and maintain their data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Url = Annotated[
    str, typer.Option("--url", envvar="MEMFOLD_URL", help="Store URL.", show_envvar=True)
]
Tenant = Annotated[str, typer.Option("--tenant", help="Tenant whose threads to use.")]

_ROLE_STYLES = {"user": "green", "assistant": "cyan", "system": "magenta", "tool": "yellow"}


def out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str) -> NoReturn:
    err().print(Text(f"error: {message}", style="red"))
    raise typer.Exit(1)


@contextmanager
def errors() -> Iterator[None]:
    """End the command with one red line, not a traceback, on a memfold or file error."""
    try:
        yield
    except MemfoldError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))


def _file_name(path: str) -> str:
    """``path`` if the OS can name a file with it (no NUL, encodable), else `fail`."""
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        fail(f"{path!r} is not a file name this system can encode")
    if "\x00" in path:
        fail(f"{path!r} is not a file name: it holds a NUL character")
    return path


@contextmanager
def output_file(path: str) -> Iterator[IO[str]]:
    """stdout for ``-``; else a temporary file beside ``path``, moved there only on success."""
    if path == "-":
        stdout = typer.get_text_stream("stdout", encoding="utf-8")
        yield stdout
        stdout.flush()
        return
    target = Path(_file_name(path))
    if target.is_dir():
        fail(f"{path}: is a directory; name a file to write")
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as out:
            yield out
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def input_file(path: str) -> Iterator[IO[str]]:
    """stdin for ``-``, else the file at ``path``, read as UTF-8."""
    if path == "-":
        yield typer.get_text_stream("stdin", encoding="utf-8")
        return
    with open(_file_name(path), encoding="utf-8") as source:
        yield source


def plural(n: int, what: str) -> str:
    return f"{n} {what if n == 1 else what + 's'}"


def when(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(sep=" ", timespec="seconds")


class Tally:
    """A ``progress(kind, n)`` callback that counts records and advances a rich progress bar if
    given."""

    def __init__(self, bar: Progress | None) -> None:
        self.records = 0
        self._bar = bar
        self._task = None if bar is None else bar.add_task("", total=None)

    def __call__(self, kind: str, n: int) -> None:
        self.records += n
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)


@contextmanager
def tally(label: str, *, show: bool) -> Iterator[Tally]:
    if not show:
        yield Tally(None)
        return
    columns = (SpinnerColumn(), TextColumn(label), MofNCompleteColumn(), TextColumn("records"))
    with Progress(*columns, console=err(), transient=True) as bar:
        yield Tally(bar)
