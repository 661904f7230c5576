"""Checkpoints: memfold's `MemfoldSaver` against LangGraph's own savers, on one real graph.

One process run drives the same LangGraph graph (a ``messages`` channel, a deterministic node that
appends an AI message with a tool call, the tool's message and a final AI answer to each user
message: 4 messages of 200-400 characters a turn) through every saver: LangGraph's
``InMemorySaver`` (the runtime baseline), ``SqliteSaver``/``AsyncSqliteSaver`` and
``PostgresSaver``/``AsyncPostgresSaver`` (each with the default ``add_messages`` reducer and with
LangGraph's beta ``DeltaChannel``), and memfold on memory, SQLite and PostgreSQL. A raw-driver
floor (sqlite3 / psycopg) writes only the new messages of each step.

Per saver it reports the time per turn, the saver's own cost per turn (minus ``InMemorySaver``'s
on the same graph, sync or async), bytes stored per thread, ``get_state``, listing 250
checkpoints, and direct calls (no graph) of ``put`` + ``put_writes`` + ``get_tuple`` per step
against the floor's insert-the-new-messages + read-the-thread; then PASS/MISS per target of
issue 4. It exits 0 whatever it finds (a benchmark is not a test).

Run:
    .venv/bin/python benchmarks/checkpoints.py            # 20 threads x 50 turns, a few minutes
    .venv/bin/python benchmarks/checkpoints.py --quick    # 4 threads x 10 turns, under a minute
    .venv/bin/python benchmarks/checkpoints.py --json results.json
    .venv/bin/python benchmarks/checkpoints.py --split --only sqlite   # CPU per saver method

PostgreSQL rows use the server at MEMFOLD_PG_URL (loopback default), each saver in a schema of its
own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from rich.console import Console
from rich.table import Table

from memfold.checkpoints import open_checkpoint_store
from memfold.integrations.langgraph import MemfoldSaver

try:  # LangGraph's beta delta channel (langgraph >= 1.2)
    from langgraph.channels.delta import DeltaChannel
    from langgraph.graph.message import _messages_delta_reducer

    HAS_DELTA = True
except ImportError:  # pragma: no cover - older langgraph
    HAS_DELTA = False

PG_URL = os.environ.get("MEMFOLD_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RUN_TAG = uuid.uuid4().hex[:8]
LIST_N = 250
WORDS = [
    *("order refund shipping invoice account password reset weather booking flight hotel",),
    *("payment card balance schedule meeting report summary policy customer ticket status",),
    *("delivery address update cancel confirm review product warranty return exchange",),
    *("the a of to and in for on with is was are be this that it by from at as",),
]
WORDS = " ".join(WORDS).split(" ")

console = Console(width=150)

CLOCK = time.perf_counter
"""What every time column measures: wall time, or (``--cpu``) the process's CPU time, every
thread included, which a machine busy with other work disturbs far less."""
STORE_QUERY = ""
"""``--store-options``: URL query options for every memfold store (``min_growth=8``)."""


# The workload.


def _text(rng: random.Random, low: int = 200, high: int = 400) -> str:
    size = rng.randint(low, high)
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def turn_messages(thread: int, turn: int) -> tuple[HumanMessage, list[AnyMessage]]:
    """The user message of one turn and the 3 messages the node appends (deterministic)."""
    rng = random.Random(thread * 100_003 + turn)
    tag = f"{thread}-{turn}"
    call = {"name": "lookup_order", "args": {"query": _text(rng, 40, 80)}, "id": f"call-{tag}"}
    human = HumanMessage(_text(rng), id=f"h-{tag}")
    node: list[AnyMessage] = [
        AIMessage(_text(rng, 100, 200), id=f"a-{tag}", tool_calls=[call]),
        ToolMessage(_text(rng), id=f"t-{tag}", tool_call_id=f"call-{tag}", name="lookup_order"),
        AIMessage(_text(rng), id=f"f-{tag}"),
    ]
    return human, node


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


if HAS_DELTA:

    class DeltaState(TypedDict):
        messages: Annotated[list[Any], DeltaChannel(_messages_delta_reducer)]


def build_graph(delta: bool) -> StateGraph[Any]:
    """The benchmark graph: START -> agent, with the default reducer or the delta channel."""
    state: Any = DeltaState if delta else State

    def agent(state: Any, config: RunnableConfig) -> dict[str, Any]:
        conf = config["configurable"]
        return {"messages": conf["bench_node"]}

    builder = StateGraph(state)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    return builder


# Storage size.


def sqlite_used_bytes(path: Path) -> int:
    """Pages in use (WAL folded in first), times the page size."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)
    finally:
        conn.close()


def pg_schema_bytes(schema: str) -> int:
    """``pg_total_relation_size`` (heap, TOAST, indexes) summed over ``schema``'s tables."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute("VACUUM")  # the free space map and visibility map, as a settled db has
        row = conn.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size("
            "(quote_ident(schemaname) || '.' || quote_ident(tablename))::regclass)), 0) "
            "FROM pg_tables WHERE schemaname = %s",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def pg_new_schema(name: str) -> str:
    import psycopg

    schema = f"bench_cp_{name}_{RUN_TAG}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema


def pg_drop_run_schemas() -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        found = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"bench_cp_%_{RUN_TAG}",)
        ).fetchall()
        for (schema,) in found:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pg_conninfo(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


# Savers. Each factory yields (saver, bytes_used) inside its resources.

SaverCM = Callable[[Path], Any]


@dataclass(frozen=True)
class Subject:
    name: str
    backend: str  # memory | sqlite | postgresql
    family: str  # baseline | langgraph | memfold
    delta: bool
    is_async: bool
    open: SaverCM


@contextmanager
def inmemory(_: Path) -> Iterator[tuple[BaseCheckpointSaver[Any], Callable[[], int | None]]]:
    yield InMemorySaver(), lambda: None


@asynccontextmanager
async def ainmemory(
    _: Path,
) -> AsyncIterator[tuple[BaseCheckpointSaver[Any], Callable[[], int | None]]]:
    yield InMemorySaver(), lambda: None


@contextmanager
def lg_sqlite(tmp: Path) -> Iterator[tuple[BaseCheckpointSaver[Any], Callable[[], int | None]]]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = tmp / f"lg-{uuid.uuid4().hex}.db"
    conn = sqlite3.connect(path, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    empty = sqlite_used_bytes(path)
    try:
        yield saver, lambda: sqlite_used_bytes(path) - empty
    finally:
        conn.close()


@asynccontextmanager
async def alg_sqlite(
    tmp: Path,
) -> AsyncIterator[tuple[BaseCheckpointSaver[Any], Callable[[], int | None]]]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = tmp / f"alg-{uuid.uuid4().hex}.db"
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        empty = sqlite_used_bytes(path)
        yield saver, lambda: sqlite_used_bytes(path) - empty


@contextmanager
def lg_postgres(_: Path) -> Iterator[tuple[BaseCheckpointSaver[Any], Callable[[], int | None]]]:
    from langgraph.checkpoint.postgres import PostgresSaver

    schema = pg_new_schema("lg")
    with PostgresSaver.from_conn_string(pg_conninfo(schema)) as saver:
        saver.setup()
        empty = pg_schema_bytes(schema)
        yield saver, lambda: pg_schema_bytes(schema) - empty


@asynccontextmanager
async def alg_postgres(
    _: Path,
) -> AsyncIterator[tuple[BaseCheckpointSaver[Any], Callable[[], int | None]]]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    schema = pg_new_schema("alg")
    async with AsyncPostgresSaver.from_conn_string(pg_conninfo(schema)) as saver:
        await saver.setup()
        empty = pg_schema_bytes(schema)
        yield saver, lambda: pg_schema_bytes(schema) - empty


def _with_options(url: str) -> str:
    """``url`` with ``--store-options`` added to its query."""
    if not STORE_QUERY:
        return url
    return f"{url}{'&' if '?' in url else '?'}{STORE_QUERY}"


def _memfold_url(backend: str, tmp: Path) -> tuple[str, dict[str, Any], Callable[[], int]]:
    if backend == "memory":
        return _with_options("memory://"), {}, lambda: 0
    if backend == "sqlite":
        path = tmp / f"mf-{uuid.uuid4().hex}.db"
        return _with_options(f"sqlite:///{path}"), {}, lambda: sqlite_used_bytes(path)
    schema = pg_new_schema("mf")
    return _with_options(PG_URL), {"schema": schema}, lambda: pg_schema_bytes(schema)


def memfold(backend: str, **store_options: Any) -> SaverCM:
    @contextmanager
    def factory(tmp: Path) -> Iterator[tuple[BaseCheckpointSaver[Any], Callable[[], int | None]]]:
        url, options, used = _memfold_url(backend, tmp)
        store = open_checkpoint_store(url, **options, **store_options)
        empty = used()
        try:
            yield MemfoldSaver(store), (lambda: None if backend == "memory" else used() - empty)
        finally:
            store.close()

    return factory


def amemfold(backend: str, **store_options: Any) -> SaverCM:
    @asynccontextmanager
    async def factory(
        tmp: Path,
    ) -> AsyncIterator[tuple[BaseCheckpointSaver[Any], Callable[[], int | None]]]:
        url, options, used = _memfold_url(backend, tmp)
        store = open_checkpoint_store(url, **options, **store_options)
        empty = used()
        try:
            yield MemfoldSaver(store), (lambda: None if backend == "memory" else used() - empty)
        finally:
            await store.aclose()
            store.close()

    return factory


def subjects() -> list[Subject]:
    out: list[Subject] = []
    variants = [False, True] if HAS_DELTA else [False]
    for delta in variants:
        suffix = " +delta" if delta else ""
        out += [
            Subject(f"InMemorySaver{suffix}", "memory", "baseline", delta, False, inmemory),
            Subject(f"InMemorySaver async{suffix}", "memory", "baseline", delta, True, ainmemory),
            Subject(f"SqliteSaver{suffix}", "sqlite", "langgraph", delta, False, lg_sqlite),
            Subject(f"AsyncSqliteSaver{suffix}", "sqlite", "langgraph", delta, True, alg_sqlite),
            Subject(f"PostgresSaver{suffix}", "postgresql", "langgraph", delta, False, lg_postgres),
            Subject(
                f"AsyncPostgresSaver{suffix}", "postgresql", "langgraph", delta, True, alg_postgres
            ),
        ]
    out += [
        Subject("memfold memory", "memory", "memfold", False, False, memfold("memory")),
        Subject("memfold sqlite", "sqlite", "memfold", False, False, memfold("sqlite")),
        Subject("memfold sqlite async", "sqlite", "memfold", False, True, amemfold("sqlite")),
        Subject("memfold sqlite +delta", "sqlite", "memfold", True, False, memfold("sqlite")),
        Subject("memfold postgres", "postgresql", "memfold", False, False, memfold("postgresql")),
        Subject(
            "memfold postgres async", "postgresql", "memfold", False, True, amemfold("postgresql")
        ),
        Subject(
            "memfold postgres +delta", "postgresql", "memfold", True, False, memfold("postgresql")
        ),
        Subject(
            "memfold postgres statements",
            "postgresql",
            "memfold",
            False,
            False,
            memfold("postgresql", server_functions=False),
        ),
        Subject(
            "memfold postgres prepared",
            "postgresql",
            "memfold",
            False,
            False,
            memfold("postgresql", prepared_statements=True),
        ),
        Subject(
            "memfold postgres prepared async",
            "postgresql",
            "memfold",
            False,
            True,
            amemfold("postgresql", prepared_statements=True),
        ),
    ]
    return out


# Measuring.


@dataclass
class Result:
    name: str
    backend: str
    family: str
    delta: bool
    is_async: bool
    turn_ms: float = 0.0
    own_ms: float | None = None
    bytes_per_thread: float | None = None
    get_state_ms: float = 0.0
    list_ms: float = 0.0
    listed: int = 0
    direct_ms: float | None = None
    split: dict[str, float] | None = None
    """``--split``: CPU ms per turn in each timed saver method, and the process's in all."""
    error: str | None = None


@dataclass
class Settings:
    threads: int
    turns: int
    direct_steps: int
    repeats: int
    uuid_threads: bool = False
    split: bool = False

    def thread_id(self, th: int) -> str:
        """Thread ``th``'s id: ``t0``, ``t1``, ... or (``--uuid-threads``) a UUID, as apps use."""
        return str(uuid.uuid5(uuid.NAMESPACE_OID, f"t{th}")) if self.uuid_threads else f"t{th}"


@dataclass
class Report:
    settings: Settings
    results: list[Result] = field(default_factory=list)
    floors: dict[str, dict[str, float]] = field(default_factory=dict)


def _config(thread: str, node: list[AnyMessage] | None = None) -> RunnableConfig:
    conf: dict[str, Any] = {"thread_id": thread}
    if node is not None:
        conf["bench_node"] = node
    return {"configurable": conf}


def _workload(settings: Settings) -> list[list[tuple[HumanMessage, list[AnyMessage]]]]:
    return [
        [turn_messages(th, turn) for th in range(settings.threads)]
        for turn in range(settings.turns)
    ]


def _direct_steps(steps: int) -> list[list[AnyMessage]]:
    """The new messages of each direct step (4 a step, as in the graph)."""
    out: list[list[AnyMessage]] = []
    for step in range(steps):
        human, node = turn_messages(10_000, step)
        out.append([human, *node])
    return out


def _checkpoint(step: int, messages: list[AnyMessage]) -> Any:
    cp = empty_checkpoint()
    cp["id"] = str(uuid6(clock_seq=step))
    cp["channel_values"] = {"messages": messages}
    cp["channel_versions"] = {"messages": step + 1}
    cp["versions_seen"] = {"agent": {"messages": step}}
    cp["updated_channels"] = ["messages"]
    return cp


def direct_sync(saver: BaseCheckpointSaver[Any], steps: list[list[AnyMessage]]) -> float:
    """ms per step of put + put_writes + get_tuple, carrying the read-back messages forward."""
    thread = f"direct-{uuid.uuid4().hex[:8]}"
    config: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    messages: list[AnyMessage] = []
    start = CLOCK()
    for step, new in enumerate(steps):
        cp = _checkpoint(step, [*messages, *new])
        meta: Any = {"source": "loop", "step": step, "parents": {}}
        saved = saver.put(config, cp, meta, {"messages": step + 1})
        nxt = steps[(step + 1) % len(steps)]
        saver.put_writes(saved, [("messages", nxt)], f"task-{step}", "~__pregel_pull, agent")
        found = saver.get_tuple(_config(thread))
        assert found is not None
        messages = found.checkpoint["channel_values"]["messages"]
        config = found.config
    return (CLOCK() - start) * 1000 / len(steps)


async def direct_async(saver: BaseCheckpointSaver[Any], steps: list[list[AnyMessage]]) -> float:
    """Async `direct_sync`."""
    thread = f"direct-{uuid.uuid4().hex[:8]}"
    config: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    messages: list[AnyMessage] = []
    start = CLOCK()
    for step, new in enumerate(steps):
        cp = _checkpoint(step, [*messages, *new])
        meta: Any = {"source": "loop", "step": step, "parents": {}}
        saved = await saver.aput(config, cp, meta, {"messages": step + 1})
        nxt = steps[(step + 1) % len(steps)]
        await saver.aput_writes(saved, [("messages", nxt)], f"task-{step}", "~__pregel_pull, agent")
        found = await saver.aget_tuple(_config(thread))
        assert found is not None
        messages = found.checkpoint["channel_values"]["messages"]
        config = found.config
    return (CLOCK() - start) * 1000 / len(steps)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


class MethodClock:
    """The CPU time a saver's sync methods take in the threads that call them (``--split``).

    LangGraph calls a saver from its loop and from a background thread at once, so a method's
    wall time would count the other thread's work too; its thread's CPU time does not. A
    ``+delta`` graph also reads its messages through ``get_delta_channel_history``.
    """

    METHODS = ("put", "put_writes", "get_tuple", "get_delta_channel_history")

    def __init__(self, saver: BaseCheckpointSaver[Any]) -> None:
        self.saver = saver
        self.cpu = {name: 0.0 for name in self.METHODS if hasattr(saver, name)}
        self._lock = threading.Lock()

    def __enter__(self) -> MethodClock:
        for name in self.cpu:
            setattr(self.saver, name, self._timed(name, getattr(self.saver, name)))
        return self

    def __exit__(self, *_: object) -> None:
        for name in self.cpu:
            delattr(self.saver, name)

    def _timed(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.thread_time() - start
                with self._lock:
                    self.cpu[name] += spent

        return timed


def run_sync(subject: Subject, settings: Settings, tmp: Path, result: Result) -> None:
    work = _workload(settings)
    with subject.open(tmp) as (saver, used):
        graph = build_graph(subject.delta).compile(checkpointer=saver)
        turns = settings.threads * settings.turns
        clock = MethodClock(saver)
        with clock if settings.split else nullcontext():
            cpu, start = time.process_time(), CLOCK()
            for turn in work:
                for th, (human, node) in enumerate(turn):
                    graph.invoke({"messages": [human]}, _config(settings.thread_id(th), node))
            elapsed, cpu = CLOCK() - start, time.process_time() - cpu
        result.turn_ms = elapsed * 1000 / turns
        if settings.split:
            result.split = {k: v * 1000 / turns for k, v in clock.cpu.items()}
            result.split["process"] = cpu * 1000 / turns
        size = used()
        result.bytes_per_thread = None if size is None else size / settings.threads
        samples = []
        for _ in range(settings.repeats):
            for th in range(settings.threads):
                t0 = CLOCK()
                state = graph.get_state(_config(settings.thread_id(th)))
                samples.append(CLOCK() - t0)
                assert len(state.values["messages"]) == 4 * settings.turns
        result.get_state_ms = _median_ms(samples)
        samples = []
        list(saver.list(None, limit=LIST_N))  # warm-up: statement caches, first imports
        for _ in range(settings.repeats):
            gc.collect()  # no saver pays for garbage an earlier one left
            t0 = CLOCK()
            listed = list(saver.list(None, limit=LIST_N))
            samples.append(CLOCK() - t0)
        result.listed = len(listed)
        result.list_ms = _median_ms(samples)
        if not subject.delta:
            result.direct_ms = direct_sync(saver, _direct_steps(settings.direct_steps))


async def run_async(subject: Subject, settings: Settings, tmp: Path, result: Result) -> None:
    work = _workload(settings)
    async with subject.open(tmp) as (saver, used):
        graph = build_graph(subject.delta).compile(checkpointer=saver)
        start = CLOCK()
        for turn in work:
            for th, (human, node) in enumerate(turn):
                await graph.ainvoke({"messages": [human]}, _config(settings.thread_id(th), node))
        elapsed = CLOCK() - start
        result.turn_ms = elapsed * 1000 / (settings.threads * settings.turns)
        size = used()
        result.bytes_per_thread = None if size is None else size / settings.threads
        samples = []
        for _ in range(settings.repeats):
            for th in range(settings.threads):
                t0 = CLOCK()
                state = await graph.aget_state(_config(settings.thread_id(th)))
                samples.append(CLOCK() - t0)
                assert len(state.values["messages"]) == 4 * settings.turns
        result.get_state_ms = _median_ms(samples)
        samples = []
        _ = [c async for c in saver.alist(None, limit=LIST_N)]  # warm-up, as in run_sync
        for _ in range(settings.repeats):
            gc.collect()
            t0 = CLOCK()
            listed = [c async for c in saver.alist(None, limit=LIST_N)]
            samples.append(CLOCK() - t0)
        result.listed = len(listed)
        result.list_ms = _median_ms(samples)
        if not subject.delta:
            result.direct_ms = await direct_async(saver, _direct_steps(settings.direct_steps))


# The raw floors: only the new messages of each step, serialized like the savers do.

SERDE = JsonPlusSerializer()


def floor_sqlite(settings: Settings, tmp: Path) -> dict[str, float]:
    path = tmp / "floor.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE messages (thread_id TEXT NOT NULL, seq INTEGER NOT NULL, tag TEXT NOT NULL,"
        " data BLOB NOT NULL, PRIMARY KEY (thread_id, seq))"
    )
    empty = sqlite_used_bytes(path)
    insert = "INSERT INTO messages VALUES (?, ?, ?, ?)"
    select = "SELECT tag, data FROM messages WHERE thread_id = ? ORDER BY seq"

    def write(thread: str, start: int, new: list[AnyMessage]) -> None:
        rows = [(thread, start + i, *SERDE.dumps_typed(m)) for i, m in enumerate(new)]
        conn.execute("BEGIN")
        conn.executemany(insert, rows)
        conn.execute("COMMIT")

    for turn, row in enumerate(_workload(settings)):
        for th, (human, node) in enumerate(row):
            write(settings.thread_id(th), 4 * turn, [human, *node])
    size = (sqlite_used_bytes(path) - empty) / settings.threads
    steps = _direct_steps(settings.direct_steps)
    start = CLOCK()
    for step, new in enumerate(steps):
        write("direct", 4 * step, new)
        loaded = [SERDE.loads_typed(r) for r in conn.execute(select, ("direct",)).fetchall()]
        assert len(loaded) == 4 * (step + 1)
    direct = (CLOCK() - start) * 1000 / len(steps)
    conn.close()
    return {"bytes_per_thread": size, "direct_ms": direct}


def floor_postgres(settings: Settings) -> dict[str, float]:
    import psycopg

    schema = pg_new_schema("floor")
    with psycopg.connect(pg_conninfo(schema), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE messages (thread_id text NOT NULL, seq int NOT NULL, tag text NOT NULL,"
            " data bytea NOT NULL, PRIMARY KEY (thread_id, seq))"
        )
        empty = pg_schema_bytes(schema)
        insert = "INSERT INTO messages VALUES (%s, %s, %s, %s)"
        select = "SELECT tag, data FROM messages WHERE thread_id = %s ORDER BY seq"

        def write(thread: str, start: int, new: list[AnyMessage]) -> None:
            rows = [(thread, start + i, *SERDE.dumps_typed(m)) for i, m in enumerate(new)]
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(insert, rows)

        for turn, row in enumerate(_workload(settings)):
            for th, (human, node) in enumerate(row):
                write(settings.thread_id(th), 4 * turn, [human, *node])
        size = (pg_schema_bytes(schema) - empty) / settings.threads
        steps = _direct_steps(settings.direct_steps)
        start = CLOCK()
        for step, new in enumerate(steps):
            write("direct", 4 * step, new)
            found = conn.execute(select, ("direct",)).fetchall()
            loaded = [SERDE.loads_typed((tag, bytes(data))) for tag, data in found]
            assert len(loaded) == 4 * (step + 1)
        direct = (CLOCK() - start) * 1000 / len(steps)
    return {"bytes_per_thread": size, "direct_ms": direct}


# Reporting.


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(report: Report) -> None:
    table = Table(title="checkpoint savers (per turn = one graph.invoke of 4 new messages)")
    for col in (
        "saver",
        "ms/turn",
        "own ms/turn",
        "KB/thread",
        "get_state ms",
        f"list {LIST_N} ms",
        "direct ms/step",
    ):
        table.add_column(col, justify="left" if col == "saver" else "right")
    for r in report.results:
        if r.error:
            table.add_row(r.name, f"[red]{r.error[:80]}[/red]", "", "", "", "", "")
            continue
        kb = None if r.bytes_per_thread is None else r.bytes_per_thread / 1024
        table.add_row(
            r.name,
            _fmt(r.turn_ms),
            _fmt(r.own_ms),
            _fmt(kb, 1),
            _fmt(r.get_state_ms),
            f"{_fmt(r.list_ms)} ({r.listed})",
            _fmt(r.direct_ms),
        )
    for backend, floor in report.floors.items():
        table.add_row(
            f"raw floor ({backend})",
            "",
            "",
            _fmt(floor["bytes_per_thread"] / 1024, 1),
            "",
            "",
            _fmt(floor["direct_ms"]),
        )
    console.print(table)
    split = [r for r in report.results if r.split is not None]
    if split:
        table = Table(title="--split: CPU ms per turn in each saver method, sync savers")
        for col in ("saver", "put", "put_writes", "get_tuple", "delta history", "saver total"):
            table.add_column(col, justify="left" if col == "saver" else "right")
        table.add_column("process", justify="right")
        for r in split:
            assert r.split is not None
            spent = [r.split.get(name) for name in MethodClock.METHODS]
            total = sum(t for t in spent if t is not None)
            table.add_row(r.name, *map(_fmt, spent), _fmt(total), _fmt(r.split["process"]))
        console.print(table)


def _find(report: Report, **want: Any) -> list[Result]:
    return [
        r
        for r in report.results
        if r.error is None and all(getattr(r, k) == v for k, v in want.items())
    ]


def targets(report: Report) -> list[str]:
    lines: list[str] = []

    def check(label: str, ok: bool, detail: str) -> None:
        lines.append(f"{'PASS' if ok else 'MISS'}  {label}: {detail}")

    for backend in ("sqlite", "postgresql"):
        floor = report.floors.get(backend)
        for is_async in (False, True):
            mine = _find(report, backend=backend, family="memfold", is_async=is_async, delta=False)
            peers = _find(report, backend=backend, family="langgraph", is_async=is_async)
            for me in mine:
                for peer in peers:
                    if me.own_ms is not None and peer.own_ms is not None and peer.own_ms > 0:
                        check(
                            f"{me.name} own cost <= 1/3 of {peer.name}",
                            me.own_ms * 3 <= peer.own_ms,
                            f"{me.own_ms:.2f} vs {peer.own_ms:.2f} ms/turn "
                            f"(ratio {me.own_ms / peer.own_ms:.2f}, target <= 0.33)",
                        )
                if floor and me.direct_ms is not None:
                    ratio = me.direct_ms / floor["direct_ms"]
                    check(
                        f"{me.name} put+put_writes+get_tuple within 2.5x of the raw floor",
                        ratio <= 2.5,
                        f"{me.direct_ms:.2f} vs {floor['direct_ms']:.2f} ms/step ({ratio:.2f}x)",
                    )
                if peers:
                    best_get = min(p.get_state_ms for p in peers)
                    best_list = min(p.list_ms for p in peers)
                    check(
                        f"{me.name} get_state no slower than LangGraph's best",
                        me.get_state_ms <= best_get,
                        f"{me.get_state_ms:.2f} vs {best_get:.2f} ms",
                    )
                    check(
                        f"{me.name} list {LIST_N} no slower than LangGraph's best",
                        me.list_ms <= best_list,
                        f"{me.list_ms:.2f} vs {best_list:.2f} ms",
                    )
                if me.bytes_per_thread is None:
                    continue
                if floor:
                    ratio = me.bytes_per_thread / floor["bytes_per_thread"]
                    check(
                        f"{me.name} bytes within 2x of the raw floor",
                        ratio <= 2.0,
                        f"{me.bytes_per_thread / 1024:.1f} vs "
                        f"{floor['bytes_per_thread'] / 1024:.1f} KB/thread ({ratio:.2f}x)",
                    )
                for peer in peers:
                    if peer.bytes_per_thread is None:
                        continue
                    need = 3.0 if peer.delta else 10.0
                    ratio = peer.bytes_per_thread / me.bytes_per_thread
                    check(
                        f"{me.name} bytes {need:.0f}x smaller than {peer.name}",
                        ratio >= need,
                        f"{me.bytes_per_thread / 1024:.1f} vs "
                        f"{peer.bytes_per_thread / 1024:.1f} KB/thread ({ratio:.1f}x smaller)",
                    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 threads x 10 turns")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time columns in process CPU time (all threads) instead of wall time",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="also report the CPU time sync savers spend in put, put_writes and get_tuple",
    )
    parser.add_argument(
        "--uuid-threads",
        action="store_true",
        help="UUID thread ids (36 characters, as apps use) instead of t0, t1, ...",
    )
    parser.add_argument(
        "--only",
        action="append",
        help="run only savers whose name contains this text (any case; repeatable)",
    )
    parser.add_argument(
        "--store-options",
        default="",
        metavar="QUERY",
        help="URL query options for every memfold store, e.g. 'min_growth=8&snapshot_every=32'",
    )
    args = parser.parse_args()
    global CLOCK, STORE_QUERY
    if args.cpu:
        CLOCK = time.process_time
    STORE_QUERY = args.store_options.lstrip("?")
    settings = (
        Settings(
            4, 10, direct_steps=20, repeats=5, uuid_threads=args.uuid_threads, split=args.split
        )
        if args.quick
        else Settings(
            20, 50, direct_steps=50, repeats=3, uuid_threads=args.uuid_threads, split=args.split
        )
    )
    report = Report(settings)
    console.print(
        f"{settings.threads} threads x {settings.turns} turns, 4 messages a turn; "
        f"{'UUID' if settings.uuid_threads else 'short (t0, t1, ...)'} thread ids; "
        f"{'process CPU' if args.cpu else 'wall'} time; "
        f"LangGraph DeltaChannel: {'found' if HAS_DELTA else 'NOT in the installed langgraph'}"
        + (f"; memfold stores opened with ?{STORE_QUERY}" if STORE_QUERY else "")
    )
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            report.floors["sqlite"] = floor_sqlite(settings, tmp)
            try:
                report.floors["postgresql"] = floor_postgres(settings)
            except Exception as exc:  # a missing server is reported, not fatal
                console.print(f"[red]PostgreSQL floor not runnable: {exc}[/red]")
            for subject in subjects():
                wanted = [w.lower() for w in args.only or []]
                name = subject.name.lower()
                if wanted and subject.family != "baseline" and not any(w in name for w in wanted):
                    continue
                result = Result(
                    subject.name, subject.backend, subject.family, subject.delta, subject.is_async
                )
                console.print(f"running {subject.name} ...")
                try:
                    if subject.is_async:
                        asyncio.run(run_async(subject, settings, tmp, result))
                    else:
                        run_sync(subject, settings, tmp, result)
                except Exception as exc:
                    result.error = f"{type(exc).__name__}: {exc}"
                report.results.append(result)
    finally:
        with suppress(Exception):
            pg_drop_run_schemas()
    for r in report.results:
        base = _find(report, family="baseline", delta=r.delta, is_async=r.is_async)
        if base and r.error is None:
            r.own_ms = r.turn_ms - base[0].turn_ms
    print_table(report)
    for line in targets(report):
        console.print(line)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "settings": asdict(settings),
                    "results": [asdict(r) for r in report.results],
                    "floors": report.floors,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
