"""Chat history: memfold's thread store and its adapters against the peers they replace.

One process run measures, for every system, the same three operations through its standard
interface on one 10,000-message thread: load all of it, load its last 20 messages, then append
one message to it (each append its own transaction). Appending to the long thread, not to a
new one, is what an agent does, and is where stores that rewrite a whole conversation per
append (LlamaIndex's Postgres chat store) pay for it. It prints the timings, memfold-vs-peer ratios,
the bytes each store keeps per message, and a PASS/MISS line per target, and exits 0 whatever
the outcome (a benchmark is not a test).

The PostgreSQL and Redis rows use the servers at MEMFOLD_PG_URL and MEMFOLD_REDIS_URL (loopback
defaults), each system in a schema, table or key prefix of its own, dropped at the end.

Run:
    .venv/bin/python benchmarks/chat_history.py            # full run, a few minutes
    .venv/bin/python benchmarks/chat_history.py --quick    # CI smoke run, well under a minute
    .venv/bin/python benchmarks/chat_history.py --json results.json
    .venv/bin/python benchmarks/chat_history.py --only "memfold sqlite" --only floor

Peers that are not installed, or cannot run here, are reported as skipped with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence, Sized
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Self, TypeAlias

from rich.console import Console
from rich.table import Table

from memfold import Message, open_store
from memfold.stores import BaseThreadStore

THREAD_SIZE = 10_000
LAST_N = 20
THREAD = "bench-thread"
APPEND_THREAD = THREAD
"""Appends go to the long thread (after the loads are measured)."""
BUSY_TIMEOUT_MS = 5_000
NOISE = 1.10
"""Slack allowed on the "adapter <= core + host objects" target."""

APPEND, LOAD_ALL, LOAD_LAST, BUILD = "append 1", "load 10k", f"last {LAST_N} of 10k", "build 10k"
OPS = (APPEND, LOAD_ALL, LOAD_LAST, BUILD)

CORE, LANGCHAIN, LLAMAINDEX, HOST, DIAG = (
    "core",
    "langchain",
    "llamaindex",
    "host objects",
    "diagnostic",
)

MEMFOLD_MEMORY = "memfold memory://"
MEMFOLD_SQLITE = "memfold sqlite"
FLOOR = "sqlite3 floor"
LC_MEMORY = "memfold LC adapter (memory://)"
LC_SQLITE = "memfold LC adapter (sqlite)"
LC_INMEMORY = "InMemoryChatMessageHistory"
LC_BUILD = "LangChain Human/AIMessage(...)"
LC_FROM_DICT = "LangChain messages_from_dict"
LC_CONVERT = "memfold to_langchain (adapter conversion)"
LI_MEMFOLD = "memfold LI MemfoldChatStore (sqlite)"
LI_DB_MEMFOLD = "memfold LI MemfoldDBChatStore (sqlite)"
LI_SIMPLE = "SimpleChatStore"
LI_SQLITE = "SQLiteChatStore (llama-index-storage-chat-store-sqlite)"
LI_SQLALCHEMY = "SQLAlchemyChatStore (sqlite+aiosqlite)"
LI_BUILD = "LlamaIndex ChatMessage(...)"
LI_CONVERT = "memfold to_llama_index (adapter conversion)"
DIAG_REPLAY = "sqlite3 replaying memfold's append SQL"
DIAG_MODEL = "sqlite3 floor + Message.from_json"
PG_FLOOR = "psycopg floor"
MEMFOLD_PG = "memfold postgresql"
REDIS_FLOOR = "redis-py floor"
MEMFOLD_REDIS = "memfold redis"
MEMFOLD_TIERED = "memfold tiered (redis + postgresql)"
LC_PG = "PostgresChatMessageHistory (langchain-postgres)"
LI_PG = "PostgresChatStore (llama-index-storage-chat-store-postgres)"
LI_REDIS = "RedisChatStore (llama-index-storage-chat-store-redis)"


@dataclass(frozen=True, slots=True)
class Config:
    """How many repetitions each operation gets, and how long it may take."""

    appends: int
    loads: int
    lasts: int
    builds: int
    warmup_appends: int
    warmup_loads: int
    warmup_lasts: int
    budget_s: float
    """Time allowed to one operation on one system: a slow peer gets fewer repetitions..."""
    min_reps: int
    """...but never fewer than this."""


FULL = Config(
    appends=2_000, loads=15, lasts=1_000, builds=15, warmup_appends=100, warmup_loads=1,
    warmup_lasts=50, budget_s=10.0, min_reps=5,
)  # fmt: skip
QUICK = Config(
    appends=150, loads=3, lasts=100, builds=3, warmup_appends=20, warmup_loads=0,
    warmup_lasts=2, budget_s=0.4, min_reps=2,
)  # fmt: skip


@dataclass(slots=True)
class Result:
    """The timings of one operation on one system."""

    level: str
    system: str
    op: str
    samples_ns: list[int]

    @property
    def median_ns(self) -> float:
        return float(statistics.median(self.samples_ns))

    @property
    def p90_ns(self) -> float:
        ordered = sorted(self.samples_ns)
        return float(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))])

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "system": self.system,
            "op": self.op,
            "n": len(self.samples_ns),
            "median_us": round(self.median_ns / 1e3, 3),
            "p90_us": round(self.p90_ns / 1e3, 3),
            "min_us": round(min(self.samples_ns) / 1e3, 3),
        }


@dataclass(slots=True)
class Subject:
    """One system under test: closures for the operations its interface offers."""

    level: str
    system: str
    append: Callable[[], object] | None = None
    load_all: Callable[[], Sized] | None = None
    load_last: Callable[[], Sized] | None = None
    close: Callable[[], object] = lambda: None
    size: Callable[[], int] | None = None
    """Bytes the seeded 10k-message thread added to the store (measured before any append)."""


@dataclass(slots=True)
class Run:
    """Everything one benchmark run measured."""

    config: Config
    results: dict[tuple[str, str], Result] = field(default_factory=dict)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    bytes_per_message: dict[str, float] = field(default_factory=dict)

    def add(self, result: Result) -> None:
        self.results[(result.system, result.op)] = result

    def median(self, system: str, op: str) -> float | None:
        result = self.results.get((system, op))
        return None if result is None else result.median_ns


# The workload: a deterministic conversation of plain-text turns, 5 to 80 words each.

_WORDS = (  # noqa: SIM905 (a sentence reads better than 61 quoted words)
    "the a to of and in is it you that for on with as this be are was have can will not your "
    "order refund shipping account password invoice delivery address payment card update status "
    "please thanks help question issue problem answer check details time today tomorrow week "
    "memory thread message agent tool result search summary context window token model store"
).split()


def conversation(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` ``(role, text)`` turns alternating user and assistant."""
    rng = random.Random(seed)
    return [
        (
            "user" if i % 2 == 0 else "assistant",
            " ".join(rng.choices(_WORDS, k=rng.randint(5, 80))).capitalize() + ".",
        )
        for i in range(n)
    ]


def body_json(role: str, text: str) -> str:
    """The JSON a natural hand-written store keeps per message."""
    return json.dumps({"role": role, "content": text}, ensure_ascii=False, separators=(",", ":"))


Captured: TypeAlias = tuple[str, Any, bool]
"""One statement a driver ran: its SQL, its parameters, and whether it ran once per row."""


def feeder(items: Sequence[Any]) -> Callable[[], Any]:
    """A callable that returns the next item each call (the items are built before timing)."""
    it: Iterator[Any] = iter(items)
    return lambda: next(it)


# Timing.


def sample(
    fn: Callable[[], object], reps: int, warmup: int, cfg: Config, *, collect: bool
) -> list[int]:
    """Up to ``reps`` wall-clock timings of ``fn`` in ns, after up to ``warmup`` untimed calls.

    Warm-up stops after a quarter of ``cfg.budget_s`` and timing after the whole of it (once
    ``cfg.min_reps`` samples are in), so a slow peer cannot stretch the run. The garbage
    collector stays on (callers pay for it too); with ``collect`` a full collection runs before
    each timed call so that one sample does not pay for the garbage of another.
    """
    clock = time.perf_counter_ns
    budget_ns = int(cfg.budget_s * 1e9)
    deadline = clock() + budget_ns // 4
    for _ in range(warmup):
        fn()
        if clock() > deadline:
            break
    samples: list[int] = []
    deadline = clock() + budget_ns
    for _ in range(reps):
        if collect:
            gc.collect()
        start = clock()
        fn()
        end = clock()
        samples.append(end - start)
        if end > deadline and len(samples) >= cfg.min_reps:
            break
    return samples


def measure(run: Run, subject: Subject) -> None:
    """Time every operation ``subject`` offers and add the results to ``run``."""
    cfg = run.config
    if subject.load_all is not None:
        got = len(subject.load_all())
        if got != THREAD_SIZE:
            raise RuntimeError(f"{subject.system} loaded {got} messages, not {THREAD_SIZE}")
    if subject.load_last is not None:
        got = len(subject.load_last())
        if got != LAST_N:
            raise RuntimeError(f"{subject.system} loaded {got} last messages, not {LAST_N}")
    if subject.size is not None:
        run.bytes_per_message[subject.system] = subject.size() / THREAD_SIZE
    plan = (  # loads first: the appends grow the thread
        (LOAD_ALL, subject.load_all, cfg.loads, cfg.warmup_loads, True),
        (LOAD_LAST, subject.load_last, cfg.lasts, cfg.warmup_lasts, False),
        (APPEND, subject.append, cfg.appends, cfg.warmup_appends, False),
    )
    for op, fn, reps, warmup, collect in plan:
        if fn is not None:
            run.add(
                Result(
                    subject.level,
                    subject.system,
                    op,
                    sample(fn, reps, warmup, cfg, collect=collect),
                )
            )


# Core level: memfold's stores and the raw-driver floor.


def _sqlite3(
    path: Path, factory: type[sqlite3.Connection] = sqlite3.Connection
) -> sqlite3.Connection:
    """A connection with the pragmas memfold's SQLite backend sets; transactions are explicit."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=factory)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def floor_subject(path: Path, seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """Raw ``sqlite3``: one row per message with a JSON body, read back with ``json.loads``."""
    conn = _sqlite3(path)
    conn.executescript(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "thread_id TEXT NOT NULL, body TEXT NOT NULL);"
        "CREATE INDEX messages_order ON messages (thread_id, seq);"
    )
    empty = _sqlite_bytes(path)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO messages (thread_id, body) VALUES (?, ?)",
        [(THREAD, body_json(role, text)) for role, text in seed],
    )
    conn.execute("COMMIT")
    nxt = feeder(extra)

    def append() -> None:
        role, text = nxt()
        body = body_json(role, text)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO messages (thread_id, body) VALUES (?, ?)", (APPEND_THREAD, body))
        conn.execute("COMMIT")

    def load_all() -> list[Any]:
        rows = conn.execute("SELECT body FROM messages WHERE thread_id = ? ORDER BY seq", (THREAD,))
        return [json.loads(body) for (body,) in rows]

    def load_last() -> list[Any]:
        rows = conn.execute(
            "SELECT body FROM messages WHERE thread_id = ? ORDER BY seq DESC LIMIT ?",
            (THREAD, LAST_N),
        ).fetchall()
        return [json.loads(body) for (body,) in reversed(rows)]

    return Subject(
        CORE, FLOOR, append, load_all, load_last, conn.close, lambda: _sqlite_bytes(path) - empty
    )


def _sqlite_bytes(path: Path) -> int:
    """The size of the SQLite file at ``path`` once its WAL is checkpointed into it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path.stat().st_size


def memfold_subject(
    system: str,
    url: str,
    seed: list[tuple[str, str]],
    extra: list[tuple[str, str]],
    *,
    size_of: Callable[[], int] | None = None,
    **options: Any,
) -> Subject:
    """memfold's core store: ``append`` one :class:`Message`, ``load`` all or ``last=20``.

    With ``size_of`` (the store's bytes), ``size`` is what the seeded thread added to it.
    """
    store = open_store(url, **options)
    empty = 0 if size_of is None else size_of()
    store.append(THREAD, [Message(role=role, content=text) for role, text in seed])
    nxt = feeder([Message(role=role, content=text) for role, text in extra])
    return Subject(
        CORE,
        system,
        append=lambda: store.append(APPEND_THREAD, nxt()),
        load_all=lambda: store.load(THREAD),
        load_last=lambda: store.load(THREAD, last=LAST_N),
        close=store.close,
        size=None if size_of is None else lambda: size_of() - empty,
    )


class _RecordingCursor(sqlite3.Cursor):
    """A cursor that notes each statement in its connection's ``log``."""

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        _record(self.connection, (sql, parameters, False))
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Self:
        rows = list(parameters)
        _record(self.connection, (sql, rows, True))
        return super().executemany(sql, rows)


class _RecordingConnection(sqlite3.Connection):
    """An ``sqlite3`` connection whose cursors note the statements run while ``log`` is set."""

    log: list[Captured] | None = None

    def cursor(self, factory: Any = _RecordingCursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        cursor: sqlite3.Cursor = self.cursor()
        return cursor.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        cursor: sqlite3.Cursor = self.cursor()
        return cursor.executemany(sql, parameters)


def _record(connection: sqlite3.Connection, entry: Captured) -> None:
    log = getattr(connection, "log", None)
    if log is not None:
        log.append(entry)


def _captured_append(
    path: Path, seed: list[tuple[str, str]], message: Message
) -> tuple[Message, list[Captured]]:
    """Seed a memfold SQLite store at ``path``, then append ``message`` and record the SQL it ran.

    The store runs on an engine whose driver connections record their statements, so this
    follows whatever the core does, whether it executes through SQLAlchemy or on the driver.
    """
    from sqlalchemy import create_engine

    from memfold.backends.sql import SQLThreadStore

    connections: list[_RecordingConnection] = []

    def connect() -> _RecordingConnection:
        conn = _sqlite3(path, factory=_RecordingConnection)
        assert isinstance(conn, _RecordingConnection)
        connections.append(conn)
        return conn

    engine = create_engine("sqlite+pysqlite://", creator=connect)
    store = SQLThreadStore(engine)
    try:
        store.setup()
        store.append(THREAD, [Message(role=role, content=text) for role, text in seed])
        log: list[Captured] = []
        for conn in connections:
            conn.log = log
        stored = store.append(APPEND_THREAD, message)[0]
        for conn in connections:
            conn.log = None
    finally:
        store.close()
        engine.dispose()
    control = ("BEGIN", "COMMIT", "END", "ROLLBACK")
    return stored, [c for c in log if not c[0].lstrip().upper().startswith(control)]


def _swap(params: Any, swaps: dict[str, str]) -> Any:
    """``params`` (a tuple, dict or list of them) with each ``swaps`` key replaced in strings."""
    if isinstance(params, list):
        return [_swap(p, swaps) for p in params]
    if isinstance(params, dict):
        return {k: _swap(v, swaps) for k, v in params.items()}
    if isinstance(params, tuple):
        return tuple(_swap(v, swaps) for v in params)
    if isinstance(params, str):
        for old, new in swaps.items():
            params = params.replace(old, new)
    return params


def replay_diagnostic(
    path: Path, seed: list[tuple[str, str]], extra: list[tuple[str, str]]
) -> Subject:
    """memfold's own append SQL, replayed through raw ``sqlite3``: what its schema costs alone.

    The SQL is recorded from a real memfold append on a database memfold made and seeded with
    the same 10k-message thread, so it follows whatever the core does today. Each replay swaps
    in a new message id and text (prepared before timing). What is left between this and
    memfold's append is memfold's own Python: validation, encoding, plans and binding.
    """
    role, text = extra[0]
    stored, statements = _captured_append(path, seed, Message(role=role, content=text))
    if not statements:
        raise RuntimeError("recorded no SQL for memfold's append: nothing to replay")
    conn = _sqlite3(path)
    old_id = stored.id or ""
    batches = [
        [(sql, _swap(params, {old_id: uuid.uuid4().hex, text: new_text}), many)
         for sql, params, many in statements]
        for _, new_text in extra[1:]
    ]  # fmt: skip
    nxt = feeder(batches)

    def append() -> None:
        conn.execute("BEGIN IMMEDIATE")
        for sql, params, many in nxt():
            if many:
                conn.executemany(sql, params)
            else:
                conn.execute(sql, params)
        conn.execute("COMMIT")

    return Subject(DIAG, DIAG_REPLAY, append=append, close=conn.close)


def model_diagnostic(path: Path, seed: list[tuple[str, str]]) -> Subject:
    """The floor's reads, but building memfold :class:`Message` objects: the model's own cost."""
    conn = _sqlite3(path)
    conn.executescript(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "thread_id TEXT NOT NULL, body TEXT NOT NULL);"
        "CREATE INDEX messages_order ON messages (thread_id, seq);"
    )
    stored = open_store("memory://").append(
        THREAD, [Message(role=role, content=text) for role, text in seed]
    )
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO messages (thread_id, body) VALUES (?, ?)",
        [(THREAD, m.to_json()) for m in stored],
    )
    conn.execute("COMMIT")

    def load_all() -> list[Message]:
        rows = conn.execute("SELECT body FROM messages WHERE thread_id = ? ORDER BY seq", (THREAD,))
        return [Message.from_json(body) for (body,) in rows]

    def load_last() -> list[Message]:
        rows = conn.execute(
            "SELECT body FROM messages WHERE thread_id = ? ORDER BY seq DESC LIMIT ?",
            (THREAD, LAST_N),
        ).fetchall()
        return [Message.from_json(body) for (body,) in reversed(rows)]

    return Subject(DIAG, DIAG_MODEL, load_all=load_all, load_last=load_last, close=conn.close)


# LangChain.


def _lc_messages(turns: list[tuple[str, str]]) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage

    return [HumanMessage(text) if role == "user" else AIMessage(text) for role, text in turns]


def lc_inmemory_subject(seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """LangChain's own in-process history (a list; ``messages`` returns it without copying)."""
    from langchain_core.chat_history import InMemoryChatMessageHistory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated since langchain-core 1.6.4
        history = InMemoryChatMessageHistory()
    history.add_messages(_lc_messages(seed))
    nxt = feeder(_lc_messages(extra))
    return Subject(
        LANGCHAIN,
        LC_INMEMORY,
        append=lambda: history.add_message(nxt()),
        load_all=lambda: history.messages,
        load_last=lambda: history.messages[-LAST_N:],
    )


def lc_memfold_subject(
    system: str, store: BaseThreadStore, seed: list[tuple[str, str]], extra: list[tuple[str, str]]
) -> Subject:
    """memfold's LangChain adapter over a core store.

    ``BaseChatMessageHistory`` has no "last n" read, so that operation is left out here.
    """
    from memfold.integrations.langchain import MemfoldChatMessageHistory

    history = MemfoldChatMessageHistory(store, THREAD)
    history.add_messages(_lc_messages(seed))
    appender = MemfoldChatMessageHistory(store, APPEND_THREAD)
    nxt = feeder(_lc_messages(extra))
    return Subject(
        LANGCHAIN,
        system,
        append=lambda: appender.add_message(nxt()),
        load_all=lambda: history.messages,
        close=store.close,
    )


def lc_builders(memfold_messages: list[Message]) -> dict[str, Callable[[], object]]:
    """Building the LangChain objects of a 10k thread, with no store: by hand, from dicts, and
    through memfold's converter."""
    from langchain_core.messages import AIMessage, HumanMessage, message_to_dict, messages_from_dict

    def build() -> list[Any]:
        return [
            HumanMessage(content=m.text, id=m.id)
            if m.role == "user"
            else AIMessage(content=m.text, id=m.id)
            for m in memfold_messages
        ]

    dicts = [message_to_dict(m) for m in build()]
    builders: dict[str, Callable[[], object]] = {
        LC_BUILD: build,
        LC_FROM_DICT: lambda: messages_from_dict(dicts),
    }
    try:
        from memfold.integrations.langchain import to_langchain
    except ImportError:
        return builders
    builders[LC_CONVERT] = lambda: [to_langchain(m) for m in memfold_messages]
    return builders


# LlamaIndex.


def _li_messages(turns: list[tuple[str, str]]) -> list[Any]:
    from llama_index.core.llms import ChatMessage

    return [ChatMessage(role=role, content=text) for role, text in turns]


def _li_subject(
    system: str,
    chat_store: Any,
    seed: list[tuple[str, str]],
    extra: list[tuple[str, str]],
    *,
    close: Callable[[], object] = lambda: None,
    aclose: Callable[[], Awaitable[object]] | None = None,
    keys: tuple[str, str] = (THREAD, APPEND_THREAD),
) -> Subject:
    """Drive a LlamaIndex chat store through whichever interface it implements.

    A ``BaseChatStore`` is sync and has no "last n" read; an ``AsyncDBChatStore`` (the store
    behind ``Memory``) is async-only and reads the last n as ``count`` then ``limit``/``offset``,
    each call run to completion on one private event loop.
    """
    thread, append_thread = keys
    if not inspect.iscoroutinefunction(type(chat_store).get_messages):
        chat_store.set_messages(thread, _li_messages(seed))
        nxt = feeder(_li_messages(extra))
        return Subject(
            LLAMAINDEX,
            system,
            append=lambda: chat_store.add_message(append_thread, nxt()),
            load_all=lambda: chat_store.get_messages(thread),
            close=close,
        )
    loop = asyncio.new_event_loop()
    loop.run_until_complete(chat_store.add_messages(THREAD, _li_messages(seed)))
    anxt = feeder(_li_messages(extra))

    async def last() -> list[Any]:
        total = await chat_store.count_messages(THREAD)
        result: list[Any] = await chat_store.get_messages(
            THREAD, limit=LAST_N, offset=max(0, total - LAST_N)
        )
        return result

    def shutdown() -> None:
        if aclose is not None:
            loop.run_until_complete(aclose())
        close()
        engine = getattr(chat_store, "_async_engine", None)  # SQLAlchemyChatStore's own engine
        if engine is not None:
            loop.run_until_complete(engine.dispose())
        loop.close()

    return Subject(
        LLAMAINDEX,
        system,
        append=lambda: loop.run_until_complete(chat_store.add_message(APPEND_THREAD, anxt())),
        load_all=lambda: loop.run_until_complete(chat_store.get_messages(THREAD)),
        load_last=lambda: loop.run_until_complete(last()),
        close=shutdown,
    )


def li_simple_subject(seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """LlamaIndex's in-process store (``get_messages`` returns its list without copying)."""
    from llama_index.core.storage.chat_store import SimpleChatStore

    return _li_subject(LI_SIMPLE, SimpleChatStore(), seed, extra)


def li_sqlite_subject(
    path: Path, seed: list[tuple[str, str]], extra: list[tuple[str, str]]
) -> Subject:
    """``llama-index-storage-chat-store-sqlite``: a sync ``BaseChatStore`` on the SQLAlchemy ORM."""
    from llama_index.storage.chat_store.sqlite import SQLiteChatStore

    chat_store = SQLiteChatStore.from_params(database=str(path))
    return _li_subject(LI_SQLITE, chat_store, seed, extra)


def li_sqlalchemy_subject(
    path: Path, seed: list[tuple[str, str]], extra: list[tuple[str, str]]
) -> Subject:
    """llama-index-core's ``SQLAlchemyChatStore`` (the ``Memory`` default) on an SQLite file."""
    from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore

    chat_store = SQLAlchemyChatStore(
        table_name="chat_messages", async_database_uri=f"sqlite+aiosqlite:///{path}"
    )
    return _li_subject(LI_SQLALCHEMY, chat_store, seed, extra)


def li_memfold_subject(
    path: Path, seed: list[tuple[str, str]], extra: list[tuple[str, str]]
) -> Subject:
    """memfold's ``BaseChatStore`` adapter over the SQLite core store."""
    from memfold.integrations.llama_index import MemfoldChatStore

    store = open_store(f"sqlite:///{path}")
    return _li_subject(LI_MEMFOLD, MemfoldChatStore(store), seed, extra, close=store.close)


def li_db_memfold_subject(
    path: Path, seed: list[tuple[str, str]], extra: list[tuple[str, str]]
) -> Subject:
    """memfold's ``AsyncDBChatStore`` adapter (for ``Memory``) over the SQLite core store."""
    from memfold.integrations.llama_index import MemfoldDBChatStore

    store = open_store(f"sqlite:///{path}")
    chat_store = MemfoldDBChatStore(store)
    return _li_subject(LI_DB_MEMFOLD, chat_store, seed, extra, aclose=store.aclose)


def li_builders(
    seed: list[tuple[str, str]], memfold_messages: list[Message]
) -> dict[str, Callable[[], object]]:
    """Building the LlamaIndex objects of a 10k thread, with no store: by hand and through
    memfold's converter."""
    builders: dict[str, Callable[[], object]] = {LI_BUILD: lambda: _li_messages(seed)}
    try:
        from memfold.integrations.llama_index import to_llama_index
    except ImportError:
        return builders
    builders[LI_CONVERT] = lambda: [to_llama_index(m) for m in memfold_messages]
    return builders


# PostgreSQL and Redis: memfold's core stores, the raw-driver floors, and the peers.
# Every system gets its own schema, table or key prefix (unique per run), dropped at close.

PG_URL = os.environ.get("MEMFOLD_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MEMFOLD_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_TAG = uuid.uuid4().hex[:10]


def _pg_connect() -> Any:
    import psycopg

    return psycopg.connect(PG_URL)


def _pg_schema_bytes(schema: str) -> int:
    """``pg_total_relation_size`` (heap, TOAST and indexes) summed over ``schema``'s tables."""
    with _pg_connect() as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size("
            "(quote_ident(schemaname) || '.' || quote_ident(tablename))::regclass)), 0) "
            "FROM pg_tables WHERE schemaname = %s",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def _pg_drop_schema(schema: str) -> None:
    with _pg_connect() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _redis_client() -> Any:
    import redis

    return redis.Redis.from_url(REDIS_URL)


def _redis_bytes(client: Any, pattern: str) -> int:
    """``MEMORY USAGE`` (exact: ``SAMPLES 0``) summed over the keys matching ``pattern``."""
    return sum(
        int(client.memory_usage(key, samples=0) or 0) for key in client.scan_iter(match=pattern)
    )


def _redis_drop(client: Any, pattern: str) -> None:
    keys = list(client.scan_iter(match=pattern))
    if keys:
        client.delete(*keys)


def cleanup_servers() -> None:
    """Drop whatever this run left on the servers (a subject whose setup failed never closes)."""
    try:
        with _pg_connect() as conn:
            found = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"bench_%_{RUN_TAG}",)
            ).fetchall()
            for (schema,) in found:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'DROP TABLE IF EXISTS "bench_lc_{RUN_TAG}"')
    except Exception:
        pass
    try:
        client = _redis_client()
        _redis_drop(client, f"bench:{RUN_TAG}:*")
        client.close()
    except Exception:
        pass


def pg_floor_subject(seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """Raw psycopg 3: one row per message with a ``jsonb`` body; bodies come back through
    psycopg's ``jsonb`` loader, which is ``json.loads``."""
    schema = f"bench_floor_{RUN_TAG}"
    conn = _pg_connect()
    conn.execute(f'CREATE SCHEMA "{schema}"')
    conn.execute(
        f'CREATE TABLE "{schema}".messages (seq bigserial PRIMARY KEY, '
        "thread_id text NOT NULL, body jsonb NOT NULL)"
    )
    conn.execute(f'CREATE INDEX messages_order ON "{schema}".messages (thread_id, seq)')
    conn.commit()
    empty = _pg_schema_bytes(schema)
    insert = f'INSERT INTO "{schema}".messages (thread_id, body) VALUES (%s, %s::jsonb)'
    with conn.cursor() as cur:
        cur.executemany(insert, [(THREAD, body_json(role, text)) for role, text in seed])
    conn.commit()
    nxt = feeder(extra)

    def append() -> None:
        role, text = nxt()
        conn.execute(insert, (APPEND_THREAD, body_json(role, text)))
        conn.commit()

    def load_all() -> list[Any]:
        rows = conn.execute(
            f'SELECT body FROM "{schema}".messages WHERE thread_id = %s ORDER BY seq', (THREAD,)
        ).fetchall()
        conn.commit()
        return [body for (body,) in rows]

    def load_last() -> list[Any]:
        rows = conn.execute(
            f'SELECT body FROM "{schema}".messages WHERE thread_id = %s ORDER BY seq DESC LIMIT %s',
            (THREAD, LAST_N),
        ).fetchall()
        conn.commit()
        return [body for (body,) in reversed(rows)]

    def close() -> None:
        conn.close()
        _pg_drop_schema(schema)

    return Subject(
        CORE,
        PG_FLOOR,
        append,
        load_all,
        load_last,
        close,
        size=lambda: _pg_schema_bytes(schema) - empty,
    )


def memfold_pg_subject(seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """memfold's core store on PostgreSQL, in a schema of its own."""
    schema = f"bench_memfold_{RUN_TAG}"
    subject = memfold_subject(
        MEMFOLD_PG, PG_URL, seed, extra, size_of=lambda: _pg_schema_bytes(schema), schema=schema
    )
    close = subject.close

    def shutdown() -> None:
        close()
        _pg_drop_schema(schema)

    subject.close = shutdown
    return subject


def redis_floor_subject(seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """Raw redis-py: ``RPUSH`` a JSON body per message; ``LRANGE`` and ``json.loads``."""
    client = _redis_client()
    base = f"bench:{RUN_TAG}:floor:"
    thread, append_thread = base + THREAD, base + APPEND_THREAD
    bodies = [body_json(role, text) for role, text in seed]
    for i in range(0, len(bodies), 1_000):
        client.rpush(thread, *bodies[i : i + 1_000])
    nxt = feeder(extra)

    def append() -> None:
        role, text = nxt()
        client.rpush(append_thread, body_json(role, text))

    def close() -> None:
        _redis_drop(client, base + "*")
        client.close()

    return Subject(
        CORE,
        REDIS_FLOOR,
        append=append,
        load_all=lambda: [json.loads(b) for b in client.lrange(thread, 0, -1)],
        load_last=lambda: [json.loads(b) for b in client.lrange(thread, -LAST_N, -1)],
        close=close,
        size=lambda: int(client.memory_usage(thread, samples=0) or 0),
    )


def memfold_redis_subject(seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """memfold's core store on Redis, under a key prefix of its own (default options:
    messages of 1 KiB or more are zstd-compressed)."""
    prefix = f"bench:{RUN_TAG}:memfold:"
    client = _redis_client()
    subject = memfold_subject(
        MEMFOLD_REDIS,
        REDIS_URL,
        seed,
        extra,
        size_of=lambda: _redis_bytes(client, prefix + "*"),
        key_prefix=prefix,
    )
    close = subject.close

    def shutdown() -> None:
        close()
        _redis_drop(client, prefix + "*")
        client.close()

    subject.close = shutdown
    return subject


def li_postgres_subject(seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """``llama-index-storage-chat-store-postgres``: a ``BaseChatStore``, one row per key
    holding the whole conversation as a JSON array."""
    from llama_index.storage.chat_store.postgres import PostgresChatStore
    from sqlalchemy import make_url

    schema = f"bench_li_{RUN_TAG}"
    url = make_url(PG_URL)
    chat_store = PostgresChatStore.from_params(
        connection_string=url.set(drivername="postgresql+psycopg").render_as_string(False),
        async_connection_string=url.set(drivername="postgresql+asyncpg").render_as_string(False),
        table_name="chatstore",
        schema_name=schema,
    )
    empty = _pg_schema_bytes(schema)

    def close() -> None:
        for session in (chat_store._session, chat_store._async_session):
            bind = None if session is None else session.kw.get("bind")
            if bind is not None and hasattr(bind, "sync_engine"):
                asyncio.run(bind.dispose())
            elif bind is not None:
                bind.dispose()
        _pg_drop_schema(schema)

    subject = _li_subject(LI_PG, chat_store, seed, extra, close=close)
    subject.size = lambda: _pg_schema_bytes(schema) - empty
    return subject


def li_redis_subject(seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """``llama-index-storage-chat-store-redis``: a ``BaseChatStore`` on one Redis list per key
    (plain ``RPUSH``/``LRANGE``: no Redis Stack needed)."""
    from llama_index.storage.chat_store.redis import RedisChatStore

    base = f"bench:{RUN_TAG}:li:"
    chat_store = RedisChatStore(redis_url=REDIS_URL)
    client = _redis_client()

    def close() -> None:
        _redis_drop(client, base + "*")
        client.close()

    subject = _li_subject(
        LI_REDIS, chat_store, seed, extra, close=close, keys=(base + THREAD, base + APPEND_THREAD)
    )
    subject.size = lambda: int(client.memory_usage(base + THREAD, samples=0) or 0)
    return subject


def lc_postgres_subject(seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """``langchain-postgres``'s ``PostgresChatMessageHistory`` on one psycopg connection, in a
    table of its own (its ``messages`` returns the whole thread; there is no "last n")."""
    from langchain_postgres import PostgresChatMessageHistory

    table = f"bench_lc_{RUN_TAG}"
    conn = _pg_connect()

    def table_bytes() -> int:
        row = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
        conn.commit()
        return int(row[0]) if row else 0

    PostgresChatMessageHistory.create_tables(conn, table)
    empty = table_bytes()
    history = PostgresChatMessageHistory(table, str(uuid.uuid4()), sync_connection=conn)
    history.add_messages(_lc_messages(seed))
    nxt = feeder(_lc_messages(extra))

    def close() -> None:
        PostgresChatMessageHistory.drop_table(conn, table)
        conn.close()

    return Subject(
        LANGCHAIN,
        LC_PG,
        append=lambda: history.add_message(nxt()),
        load_all=lambda: history.messages,
        close=close,
        size=lambda: table_bytes() - empty,
    )


def tiered_subject(seed: list[tuple[str, str]], extra: list[tuple[str, str]]) -> Subject:
    """memfold's tiered store: Redis in front of PostgreSQL, write-through (a write commits to
    PostgreSQL, then Redis); reads come from Redis when it is warm."""
    try:
        from memfold.backends.tiered import TieredThreadStore
    except ImportError as exc:
        raise ImportError(f"memfold has no tiered backend in this build ({exc})") from exc
    schema, prefix = f"bench_tiered_{RUN_TAG}", f"bench:{RUN_TAG}:tiered:"
    hot = open_store(REDIS_URL, key_prefix=prefix)
    durable = open_store(PG_URL, schema=schema)
    store = TieredThreadStore(hot, durable)
    store.setup()
    store.append(THREAD, [Message(role=role, content=text) for role, text in seed])
    nxt = feeder([Message(role=role, content=text) for role, text in extra])
    client = _redis_client()

    def close() -> None:
        store.close()
        hot.close()
        durable.close()
        _pg_drop_schema(schema)
        _redis_drop(client, prefix + "*")
        client.close()

    return Subject(
        CORE,
        MEMFOLD_TIERED,
        append=lambda: store.append(APPEND_THREAD, nxt()),
        load_all=lambda: store.load(THREAD),
        load_last=lambda: store.load(THREAD, last=LAST_N),
        close=close,
    )


# Reporting.


def fmt(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:,.1f} ms" if ns < 1e8 else f"{ns / 1e6:,.0f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:,.1f} µs"
    return f"{ns:,.0f} ns"


def results_table(run: Run) -> Table:
    table = Table(title=f"chat history: {THREAD_SIZE:,}-message thread, median (p90)")
    table.add_column("level")
    table.add_column("system")
    for op in OPS:
        table.add_column(op, justify="right")
    seen: list[tuple[str, str]] = []
    for result in run.results.values():
        if (result.level, result.system) not in seen:
            seen.append((result.level, result.system))
    for level, system in seen:
        cells = []
        for op in OPS:
            found = run.results.get((system, op))
            cells.append("" if found is None else f"{fmt(found.median_ns)} ({fmt(found.p90_ns)})")
        table.add_row(level, system, *cells)
    return table


RATIO_PAIRS = (
    (MEMFOLD_SQLITE, FLOOR),
    (MEMFOLD_MEMORY, FLOOR),
    (LC_MEMORY, LC_INMEMORY),
    (LC_SQLITE, LC_INMEMORY),
    (LI_MEMFOLD, LI_SIMPLE),
    (LI_MEMFOLD, LI_SQLITE),
    (LI_DB_MEMFOLD, LI_SQLALCHEMY),
    (MEMFOLD_PG, PG_FLOOR),
    (MEMFOLD_PG, LI_PG),
    (MEMFOLD_PG, LC_PG),
    (MEMFOLD_TIERED, PG_FLOOR),
    (MEMFOLD_REDIS, REDIS_FLOOR),
    (MEMFOLD_REDIS, LI_REDIS),
)


def ratios(run: Run) -> list[dict[str, Any]]:
    """peer time / memfold time per shared operation: above 1, memfold is faster."""
    out = []
    for mine, peer in RATIO_PAIRS:
        for op in (APPEND, LOAD_ALL, LOAD_LAST):
            a, b = run.median(mine, op), run.median(peer, op)
            if a is not None and b is not None:
                out.append({"memfold": mine, "peer": peer, "op": op, "peer_over_memfold": b / a})
    return out


def ratios_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="memfold vs each peer, medians from this run")
    for name in ("memfold", "peer", "op"):
        table.add_column(name)
    table.add_column("peer / memfold", justify="right")
    table.add_column("memfold is", justify="right")
    for row in rows:
        r = row["peer_over_memfold"]
        verdict = f"[green]{r:,.2f}x faster[/]" if r >= 1 else f"[red]{1 / r:,.1f}x slower[/]"
        table.add_row(row["memfold"], row["peer"], row["op"], f"{r:,.3g}", verdict)
    table.caption = (
        f"{LC_INMEMORY} and {LI_SIMPLE} hand back their own list (no copy, no new objects); "
        "memfold's adapters build fresh host objects on every read."
    )
    return table


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    status: str  # PASS, MISS or SKIP
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


def _at_most(name: str, value: float | None, limit: float | None, what: str) -> Target:
    if value is None or limit is None:
        return Target(name, "SKIP", "not measured in this run")
    status = "PASS" if value <= limit else "MISS"
    return Target(name, status, f"{fmt(value)} vs {what} {fmt(limit)}")


def targets(run: Run) -> list[Target]:
    m = run.median
    out: list[Target] = []

    def scaled(value: float | None, factor: float) -> float | None:
        return None if value is None else value * factor

    out.append(
        _at_most(
            "sqlite core append <= 2x sqlite3 floor",
            m(MEMFOLD_SQLITE, APPEND),
            scaled(m(FLOOR, APPEND), 2),
            "2x floor",
        )
    )
    for system in (MEMFOLD_SQLITE, MEMFOLD_MEMORY):
        out.append(
            _at_most(f"{system}: last {LAST_N} of 10k < 1 ms", m(system, LOAD_LAST), 1e6, "limit")
        )
    out.append(
        _at_most(
            "sqlite core full load <= 3x sqlite3 floor",
            m(MEMFOLD_SQLITE, LOAD_ALL),
            scaled(m(FLOOR, LOAD_ALL), 3),
            "3x floor",
        )
    )
    # Each LlamaIndex adapter against the SQLite store with the same interface.
    for mine, peer in ((LI_MEMFOLD, LI_SQLITE), (LI_DB_MEMFOLD, LI_SQLALCHEMY)):
        for op, factor in ((APPEND, 4), (LOAD_ALL, 2)):
            out.append(
                _at_most(
                    f"{mine} {op} >= {factor}x faster than {peer}",
                    m(mine, op),
                    scaled(m(peer, op), 1 / factor),
                    f"peer/{factor} =",
                )
            )
    out.append(
        _at_most(
            "postgresql core append <= 2x psycopg floor",
            m(MEMFOLD_PG, APPEND),
            scaled(m(PG_FLOOR, APPEND), 2),
            "2x floor",
        )
    )
    out.append(
        _at_most(
            f"postgresql core append >= 5x faster than {LI_PG}",
            m(MEMFOLD_PG, APPEND),
            scaled(m(LI_PG, APPEND), 1 / 5),
            "peer/5 =",
        )
    )
    for mine, floor in ((MEMFOLD_PG, PG_FLOOR), (MEMFOLD_REDIS, REDIS_FLOOR)):
        out.append(
            _at_most(
                f"{mine} full load (10k) <= 2x {floor}",
                m(mine, LOAD_ALL),
                scaled(m(floor, LOAD_ALL), 2),
                "2x floor",
            )
        )
    out.append(
        _at_most(
            "redis core append <= 1.5x redis-py floor",
            m(MEMFOLD_REDIS, APPEND),
            scaled(m(REDIS_FLOOR, APPEND), 1.5),
            "1.5x floor",
        )
    )
    sizes = run.bytes_per_message
    for mine, floor in (
        (MEMFOLD_SQLITE, FLOOR),
        (MEMFOLD_PG, PG_FLOOR),
        (MEMFOLD_REDIS, REDIS_FLOOR),
    ):
        mine_b, floor_b = sizes.get(mine), sizes.get(floor)
        name = f"{mine} bytes/message <= 1.5x {floor}"
        if mine_b is None or floor_b is None:
            out.append(Target(name, "SKIP", "not measured in this run"))
        else:
            status = "PASS" if mine_b <= 1.5 * floor_b else "MISS"
            detail = (
                f"{mine_b:,.0f} B vs 1.5x floor {1.5 * floor_b:,.0f} B ({mine_b / floor_b:.2f}x)"
            )
            out.append(Target(name, status, detail))
    build = m(LC_BUILD, BUILD)
    for adapter, core in ((LC_SQLITE, MEMFOLD_SQLITE), (LC_MEMORY, MEMFOLD_MEMORY)):
        core_load = m(core, LOAD_ALL)
        budget = None if core_load is None or build is None else (core_load + build) * NOISE
        out.append(
            _at_most(
                f"{adapter} full load <= core load + LC objects (+10%)",
                m(adapter, LOAD_ALL),
                budget,
                "budget",
            )
        )
    return out


def bytes_table(run: Run) -> Table:
    table = Table(title=f"bytes stored per message ({THREAD_SIZE:,}-message thread)")
    table.add_column("system")
    table.add_column("bytes/message", justify="right")
    table.add_column("how measured")
    how = {
        FLOOR: "file growth, WAL checkpointed",
        MEMFOLD_SQLITE: "file growth, WAL checkpointed",
        PG_FLOOR: "pg_total_relation_size growth",
        MEMFOLD_PG: "pg_total_relation_size growth, all tables",
        LI_PG: "pg_total_relation_size growth",
        LC_PG: "pg_total_relation_size growth",
        REDIS_FLOOR: "MEMORY USAGE SAMPLES 0",
        MEMFOLD_REDIS: "MEMORY USAGE SAMPLES 0, all keys",
        LI_REDIS: "MEMORY USAGE SAMPLES 0",
    }
    for system, value in run.bytes_per_message.items():
        table.add_row(system, f"{value:,.0f}", how.get(system, ""))
    return table


def targets_table(rows: list[Target]) -> Table:
    table = Table(title="targets")
    table.add_column("target")
    table.add_column("result")
    table.add_column("detail")
    colour = {"PASS": "green", "MISS": "red", "SKIP": "yellow"}
    for row in rows:
        table.add_row(row.name, f"[{colour[row.status]}]{row.status}[/]", row.detail)
    return table


def environment() -> dict[str, str]:
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "load average (1 min)": f"{os.getloadavg()[0]:.2f}",
        "sqlite": sqlite3.sqlite_version,
    }
    for dist in (
        "memfold",
        "SQLAlchemy",
        "aiosqlite",
        "langchain-core",
        "llama-index-core",
        "llama-index-storage-chat-store-sqlite",
        "psycopg",
        "redis",
        "langchain-postgres",
        "llama-index-storage-chat-store-postgres",
        "llama-index-storage-chat-store-redis",
    ):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = "not installed"
    return env


# Main.


def collect(run: Run, workdir: Path, console: Console, only: Sequence[str] = ()) -> None:
    """Build each subject, measure it and close it, one at a time (with ``only``, just the
    systems whose name holds one of its strings, case-insensitive)."""
    cfg = run.config
    seed = conversation(THREAD_SIZE, seed=1)
    extra = conversation(cfg.appends + cfg.warmup_appends + 1, seed=2)  # +1: replay's sample
    builders: list[tuple[str, str, Callable[[], Subject]]] = [
        (CORE, FLOOR, lambda: floor_subject(workdir / "floor.db", seed, extra)),
        (CORE, MEMFOLD_MEMORY, lambda: memfold_subject(MEMFOLD_MEMORY, "memory://", seed, extra)),
        (
            CORE,
            MEMFOLD_SQLITE,
            lambda: memfold_subject(
                MEMFOLD_SQLITE,
                f"sqlite:///{workdir / 'core.db'}",
                seed,
                extra,
                size_of=lambda: _sqlite_bytes(workdir / "core.db"),
            ),
        ),
        (CORE, PG_FLOOR, lambda: pg_floor_subject(seed, extra)),
        (CORE, MEMFOLD_PG, lambda: memfold_pg_subject(seed, extra)),
        (CORE, REDIS_FLOOR, lambda: redis_floor_subject(seed, extra)),
        (CORE, MEMFOLD_REDIS, lambda: memfold_redis_subject(seed, extra)),
        (CORE, MEMFOLD_TIERED, lambda: tiered_subject(seed, extra)),
        (DIAG, DIAG_REPLAY, lambda: replay_diagnostic(workdir / "replay.db", seed, extra)),
        (DIAG, DIAG_MODEL, lambda: model_diagnostic(workdir / "model.db", seed)),
        (LANGCHAIN, LC_INMEMORY, lambda: lc_inmemory_subject(seed, extra)),
        (
            LANGCHAIN,
            LC_MEMORY,
            lambda: lc_memfold_subject(LC_MEMORY, open_store("memory://"), seed, extra),
        ),
        (
            LANGCHAIN,
            LC_SQLITE,
            lambda: lc_memfold_subject(
                LC_SQLITE, open_store(f"sqlite:///{workdir / 'lc.db'}"), seed, extra
            ),
        ),
        (LANGCHAIN, LC_PG, lambda: lc_postgres_subject(seed, extra)),
        (LLAMAINDEX, LI_SIMPLE, lambda: li_simple_subject(seed, extra)),
        (LLAMAINDEX, LI_SQLITE, lambda: li_sqlite_subject(workdir / "li_sqlite.db", seed, extra)),
        (
            LLAMAINDEX,
            LI_SQLALCHEMY,
            lambda: li_sqlalchemy_subject(workdir / "li_sqlalchemy.db", seed, extra),
        ),
        (
            LLAMAINDEX,
            LI_MEMFOLD,
            lambda: li_memfold_subject(workdir / "li_memfold.db", seed, extra),
        ),
        (
            LLAMAINDEX,
            LI_DB_MEMFOLD,
            lambda: li_db_memfold_subject(workdir / "li_db_memfold.db", seed, extra),
        ),
        (LLAMAINDEX, LI_PG, lambda: li_postgres_subject(seed, extra)),
        (LLAMAINDEX, LI_REDIS, lambda: li_redis_subject(seed, extra)),
    ]
    wanted = [word.lower() for word in only]
    for level, system, build in builders:
        if wanted and not any(word in system.lower() for word in wanted):
            continue
        started = time.perf_counter()
        try:
            subject = build()
        except ImportError as exc:
            run.skipped.append((level, system, f"not runnable here: not installed ({exc})"))
            console.print(f"[yellow]skip[/] {system}: not runnable here: not installed ({exc})")
            continue
        except Exception as exc:  # a peer or an adapter that breaks must not stop the others
            run.skipped.append((level, system, f"not runnable here: setup failed: {exc!r}"))
            console.print(f"[red]fail[/] {system}: not runnable here: setup failed: {exc!r}")
            continue
        try:
            measure(run, subject)
        except Exception as exc:
            run.skipped.append((level, system, f"failed: {exc!r}"))
            console.print(f"[red]fail[/] {system}: {exc!r}")
        finally:
            subject.close()
        console.print(f"[dim]done {system} in {time.perf_counter() - started:.1f} s[/]")
    core_messages = open_store("memory://").append(
        THREAD, [Message(role=role, content=text) for role, text in seed]
    )
    hosts: list[tuple[str, Callable[[], dict[str, Callable[[], object]]]]] = [
        ("LangChain objects", lambda: lc_builders(core_messages)),
        ("LlamaIndex objects", lambda: li_builders(seed, core_messages)),
    ]
    for name, host_builders in hosts:
        if wanted and not any(word in name.lower() for word in wanted):
            continue
        try:
            found = host_builders()
        except ImportError as exc:
            run.skipped.append((HOST, name, f"not installed: {exc}"))
            continue
        for system, construct in found.items():
            samples = sample(construct, cfg.builds, cfg.warmup_loads, cfg, collect=True)
            run.add(Result(HOST, system, BUILD, samples))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few repetitions (CI smoke run)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the systems whose name contains TEXT (case-insensitive; repeatable), "
        "e.g. --only sqlite --only floor",
    )
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    run = Run(QUICK if args.quick else FULL)
    env = environment()
    console.print(
        f"memfold chat-history benchmark ({'quick' if args.quick else 'full'}): "
        + ", ".join(f"{k} {v}" for k, v in env.items())
    )
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        console.print(
            "[yellow]warning:[/] the machine is busy (load average above its CPU count): "
            "timings will be noisy, so rerun on a quiet machine before drawing conclusions"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memfold-bench-") as tmp:
        try:
            collect(run, Path(tmp), console, args.only)
        finally:
            cleanup_servers()
    elapsed = time.perf_counter() - started
    ratio_rows = ratios(run)
    target_rows = targets(run)
    console.print(results_table(run))
    console.print(ratios_table(ratio_rows))
    console.print(bytes_table(run))
    console.print(targets_table(target_rows))
    for level, system, reason in run.skipped:
        console.print(f"[yellow]skipped[/] {level} / {system}: {reason}")
    console.print(f"measured in {elapsed:.1f} s; load average now {os.getloadavg()[0]:.2f}")
    if args.json is not None:
        payload = {
            "benchmark": "chat_history",
            "mode": "quick" if args.quick else "full",
            "thread_size": THREAD_SIZE,
            "last_n": LAST_N,
            "config": asdict(run.config),
            "environment": env,
            "seconds": round(elapsed, 1),
            "results": [r.to_dict() for r in run.results.values()],
            "ratios": [
                {**r, "peer_over_memfold": round(r["peer_over_memfold"], 3)} for r in ratio_rows
            ],
            "targets": [t.to_dict() for t in target_rows],
            "bytes_per_message": {k: round(v, 1) for k, v in run.bytes_per_message.items()},
            "skipped": [{"level": a, "system": b, "reason": c} for a, b, c in run.skipped],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
