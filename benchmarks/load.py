"""Load: a mixed agent workload from many concurrent clients against PostgreSQL and Redis.

Each client is an asyncio task that loops for a bounded time, picking one operation at a time
by weight: append a message to its own thread (40%), load the last 20 messages of a random
thread (30%), put the next checkpoint of its own graph thread (20%, a growing message channel,
so only the new message is stored), and search long-term memories (10%; hybrid search on
PostgreSQL, a namespace listing on Redis, which has no search index). Clients are spread over
worker processes (one per core by default), each with its own stores and connection pools, as
in a deployment. The run ramps the number of clients (1, 4, 8, 16, 32, 64 by default) and
prints, per step and operation, throughput and p50/p99/p999 latency, then the step where
latency degrades: the first one whose append p99 exceeds five times the one-client p99, or
whose throughput grows by less than 10% over the previous step.

Target (issue 8): with 32 clients, the p99 of appends stays under 5x their p50.

Run:
    .venv/bin/python benchmarks/load.py                 # full ramp, 5 s per step (~2 min)
    .venv/bin/python benchmarks/load.py --quick         # 1 s per step, 1/8/32 clients
    .venv/bin/python benchmarks/load.py --clients 32 --seconds 10 --backend postgresql
    .venv/bin/python benchmarks/load.py --json load.json

The servers are MEMFOLD_PG_URL and MEMFOLD_REDIS_URL (loopback defaults); each run works in a
fresh PostgreSQL schema and Redis key prefix, dropped at the end. A benchmark, not a test: it
exits 0 whatever it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from memfold import Message, open_store
from memfold.checkpoints import Blob, SequenceBlob, open_checkpoint_store
from memfold.memories import MemoryRecord, open_memory_store
from memfold.recall.embedders import HashingEmbedder

PG_URL = os.environ.get("MEMFOLD_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MEMFOLD_REDIS_URL", "redis://127.0.0.1:6379/0")

APPEND, LOAD, CHECKPOINT, MEMORY = "append", "load last 20", "checkpoint put", "memory search"
WEIGHTS = {APPEND: 40, LOAD: 30, CHECKPOINT: 20, MEMORY: 10}
SEED_THREADS = 64
SEED_MESSAGES = 50
SEED_MEMORIES = 2_000
DIMS = 64
TAIL_LIMIT = 5.0
"""The target: append p99 under this many times append p50 at 32 clients."""
WORDS = (
    "the", "user", "asked", "about", "a", "flight", "to", "Lisbon", "on", "March", "3rd", "and",
    "hotel", "booking", "for", "two", "nights", "near", "river", "with", "breakfast", "late",
)  # fmt: skip


def _text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(8, 40)))


@dataclass(frozen=True)
class Target:
    """Where one run's data lives: the backend and its private schema or key prefix."""

    backend: str
    tag: str

    @property
    def options(self) -> dict[str, Any]:
        if self.backend == "postgresql":
            return {"schema": f"memfold_load_{self.tag}", "pool_size": 8, "max_overflow": 8}
        return {"key_prefix": f"memfold-load:{self.tag}:"}

    @property
    def url(self) -> str:
        return PG_URL if self.backend == "postgresql" else REDIS_URL


def _memories(target: Target) -> Any:
    return open_memory_store(target.url, embedder=HashingEmbedder(DIMS), **target.options)


def seed(target: Target) -> None:
    """Create the schema or prefix and the threads and memories every step reads."""
    if target.backend == "postgresql":
        import psycopg
        from psycopg import sql

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            schema = sql.Identifier(target.options["schema"])
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    rng = random.Random(7)
    with open_store(target.url, **target.options) as threads:
        for t in range(SEED_THREADS):
            batch = [
                Message(role="user" if i % 2 == 0 else "assistant", content=_text(rng))
                for i in range(SEED_MESSAGES)
            ]
            threads.append(f"seed-{t}", batch)
    with open_checkpoint_store(target.url, **target.options) as checkpoints:
        checkpoints.setup()
    with _memories(target) as memories:
        records = [
            MemoryRecord(namespace=("load", f"user-{i % 16}"), text=_text(rng))
            for i in range(SEED_MEMORIES)
        ]
        for start in range(0, len(records), 500):
            memories.put_many(records[start : start + 500])


def drop(target: Target) -> None:
    """Delete everything the run made."""
    if target.backend == "postgresql":
        import psycopg
        from psycopg import sql

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            statement = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
            conn.execute(statement.format(sql.Identifier(target.options["schema"])))
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{target.options['key_prefix']}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


async def _clients(
    target: Target, worker: int, clients: int, seconds: float
) -> dict[str, list[int]]:
    """Run ``clients`` tasks for ``seconds``; return each operation's latencies in ns."""
    latencies: dict[str, list[int]] = {op: [] for op in WEIGHTS}
    threads = open_store(target.url, **target.options)
    checkpoints = open_checkpoint_store(target.url, **target.options)
    memories = _memories(target)
    searchable = memories.capabilities.vector_search
    run = uuid.uuid4().hex[:8]

    async def client(n: int) -> None:
        rng = random.Random(f"{run}-{worker}-{n}")
        own = f"client-{run}-{worker}-{n}"
        items: tuple[bytes, ...] = ()
        parent: str | None = None
        step = 0
        ops, weights = list(WEIGHTS), list(WEIGHTS.values())
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            op = rng.choices(ops, weights)[0]
            call: Awaitable[Any]  # a coroutine starts only when awaited, inside the timing
            if op == APPEND:
                call = threads.aappend(own, Message(role="user", content=_text(rng)))
            elif op == LOAD:
                call = threads.aload(f"seed-{rng.randrange(SEED_THREADS)}", last=20)
            elif op == CHECKPOINT:
                step += 1
                items = (*items, json.dumps({"role": "user", "content": _text(rng)}).encode())
                checkpoint_id, previous, parent = f"{step:08d}", parent, f"{step:08d}"
                call = checkpoints.aput(
                    own, checkpoint_id, Blob("json", b"{}"), parent_id=previous,
                    versions={"messages": step}, values={"messages": SequenceBlob("json", items)},
                )  # fmt: skip
            elif searchable:
                call = memories.asearch(("load", f"user-{rng.randrange(16)}"), _text(rng), k=5)
            else:
                call = memories.alist_records(("load", f"user-{rng.randrange(16)}"), limit=5)
            start = time.perf_counter_ns()
            await call
            latencies[op].append(time.perf_counter_ns() - start)

    try:
        await asyncio.gather(*(client(n) for n in range(clients)))
    finally:
        await threads.aclose()
        await checkpoints.aclose()
        await memories.aclose()
    return latencies


def _worker(target: Target, worker: int, clients: int, seconds: float) -> dict[str, list[int]]:
    return asyncio.run(_clients(target, worker, clients, seconds))


@dataclass
class Step:
    """One ramp step's measurements."""

    clients: int
    seconds: float
    latencies: dict[str, list[int]]

    @property
    def throughput(self) -> float:
        return sum(len(v) for v in self.latencies.values()) / self.seconds

    def percentile(self, op: str, q: float) -> float:
        """Latency of ``op`` at percentile ``q``, in milliseconds (NaN when it never ran)."""
        values = self.latencies[op]
        return float(np.percentile(values, q)) / 1e6 if values else float("nan")


def run_step(target: Target, clients: int, seconds: float, processes: int) -> Step:
    """Spread ``clients`` over ``processes`` workers and collect their latencies."""
    base, extra = divmod(clients, processes)
    shares = [base + (1 if i < extra else 0) for i in range(processes)]
    jobs = [(target, i, share, seconds) for i, share in enumerate(shares) if share]
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(jobs)) as pool:
        results = pool.starmap(_worker, jobs)
    merged: dict[str, list[int]] = {op: [] for op in WEIGHTS}
    for result in results:
        for op, values in result.items():
            merged[op].extend(values)
    return Step(clients, seconds, merged)


def degradation(steps: list[Step]) -> Step | None:
    """The first step whose append p99 exceeds 5x the first step's, or whose throughput grew by
    less than 10% over the previous step's."""
    base = steps[0].percentile(APPEND, 99)
    for previous, step in pairwise(steps):
        if step.percentile(APPEND, 99) > TAIL_LIMIT * base:
            return step
        if step.throughput < 1.10 * previous.throughput:
            return step
    return None


def report(console: Console, backend: str, steps: list[Step]) -> dict[str, Any]:
    """Print one backend's table and verdict; return its figures."""
    table = Table(title=f"{backend}: mixed workload", title_justify="left")
    for column in ("clients", "ops/s", "operation", "n", "p50 ms", "p99 ms", "p999 ms", "p99/p50"):
        table.add_column(column, justify="right" if column != "operation" else "left")
    figures: dict[str, Any] = {"steps": []}
    for step in steps:
        row: dict[str, Any] = {"clients": step.clients, "ops_per_s": step.throughput, "ops": {}}
        for i, op in enumerate(WEIGHTS):
            p50, p99, p999 = (step.percentile(op, q) for q in (50, 99, 99.9))
            row["ops"][op] = {"n": len(step.latencies[op]), "p50_ms": p50, "p99_ms": p99,
                              "p999_ms": p999}  # fmt: skip
            table.add_row(
                str(step.clients) if i == 0 else "",
                f"{step.throughput:,.0f}" if i == 0 else "",
                op, str(len(step.latencies[op])), f"{p50:.2f}", f"{p99:.2f}", f"{p999:.2f}",
                f"{p99 / p50:.1f}x",
                end_section=i == len(WEIGHTS) - 1,
            )  # fmt: skip
        figures["steps"].append(row)
    console.print(table)
    if backend == "redis":
        console.print("(on Redis 'memory search' lists a namespace: plain Redis has no index)")
    worst = degradation(steps)
    figures["degrades_at"] = None if worst is None else worst.clients
    console.print(
        f"{backend}: latency degrades at {worst.clients} clients"
        if worst
        else f"{backend}: no degradation up to {steps[-1].clients} clients"
    )
    at32 = next((s for s in steps if s.clients == 32), None)
    if at32 is not None:
        ratio = at32.percentile(APPEND, 99) / at32.percentile(APPEND, 50)
        verdict = "PASS" if ratio < TAIL_LIMIT else "MISS"
        console.print(f"{verdict} {backend}: append p99/p50 at 32 clients = {ratio:.1f}x (< 5x)")
        figures["append_p99_over_p50_at_32"] = ratio
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("postgresql", "redis"), action="append")
    parser.add_argument("--clients", type=int, action="append", help="A ramp step (repeatable).")
    parser.add_argument("--seconds", type=float, help="Seconds per step (default 5, quick 1).")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--quick", action="store_true", help="1 s steps of 1, 8 and 32 clients.")
    parser.add_argument("--json", help="Also write the figures to this file.")
    args = parser.parse_args()
    ramp = args.clients or ([1, 8, 32] if args.quick else [1, 4, 8, 16, 32, 64])
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    console = Console(highlight=False, width=100)
    console.print(
        f"{len(ramp)} steps of {seconds:g} s, clients {ramp}, {args.processes} worker processes, "
        f"{os.cpu_count()} cores; weights {WEIGHTS}"
    )
    results: dict[str, Any] = {}
    for backend in args.backend or ["postgresql", "redis"]:
        target = Target(backend, uuid.uuid4().hex[:12])
        try:
            seed(target)
            steps = [run_step(target, n, seconds, args.processes) for n in ramp]
            results[backend] = report(console, backend, steps)
        except Exception as exc:  # a benchmark reports a backend it cannot run and goes on
            console.print(f"{backend}: not runnable here: {type(exc).__name__}: {exc}")
        finally:
            drop(target)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
