"""Vector search: memfold's memory stores against Chroma, pgvector through langchain-postgres,
sqlite-vec and numpy brute force (the floor), on the same vectors in one process run.

The data are 384-d unit vectors with real neighbourhoods: points scattered around ``n / 100``
cluster centres in a random 32-d subspace, projected to 384-d, plus isotropic noise, then
normalised (random normal vectors have no neighbourhoods and make every approximate index look
broken). Queries are fresh points from the same mixture. For each system: insert rate, query
p50/p99 at k=10, recall@10 against exact numpy search, and (for memfold) a filtered query that
must return k hits when k records match. "x floor" divides a system's p50 by the p50 of numpy
brute force timed on the same queries, each right before the system's (the machine may be
shared, so a floor measured at another moment would not compare).

    .venv/bin/python benchmarks/vectors.py            # 10k and 100k vectors
    .venv/bin/python benchmarks/vectors.py --quick    # 10k only
    .venv/bin/python benchmarks/vectors.py --size 100000 --only memfold
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]

PG_URL = os.environ.get("MEMFOLD_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
DIMS, K, QUERIES, BATCH = 384, 10, 200, 1000
FILTER_BUCKETS = 500  # record i has value {"bucket": i % 500}; bucket 7 is what filters select


def dataset(n: int, seed: int = 0) -> tuple[Matrix, Matrix]:
    """``n`` points and `QUERIES` queries from one low-rank Gaussian mixture, unit length."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 100, 10), 32))
    basis, _ = np.linalg.qr(rng.normal(size=(DIMS, 32)))

    def draw(count: int) -> Matrix:
        picks = centres[rng.integers(0, len(centres), count)]
        low = picks + rng.normal(scale=0.35, size=(count, 32))
        points = low @ basis.T + rng.normal(scale=0.02, size=(count, DIMS))
        out: Matrix = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
        return out

    return draw(n), draw(QUERIES)


def exact(data: Matrix, queries: Matrix) -> list[set[int]]:
    """The true top-k row numbers of each query."""
    return [set(np.argpartition(-(data @ q), K)[:K].tolist()) for q in queries]


@dataclass
class Result:
    system: str
    n: int
    insert_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    floor_p50_ms: float = 0.0
    recall: float = 0.0
    filtered: str = ""
    error: str = ""


class System:
    """One store under test: load the vectors, answer a k=10 query with row numbers."""

    name = ""

    def load(self, data: Matrix) -> None:
        raise NotImplementedError

    def query(self, q: Matrix) -> list[int]:
        raise NotImplementedError

    def filtered(self, q: Matrix) -> int | None:
        """How many hits a k=10 query filtered to one bucket returns (None: not measured)."""
        return None

    def close(self) -> None:
        pass


class Numpy(System):
    name = "numpy brute force (floor)"

    def load(self, data: Matrix) -> None:
        self.data = data.copy()

    def query(self, q: Matrix) -> list[int]:
        scores = self.data @ q
        top = np.argpartition(-scores, K)[:K]
        return [int(i) for i in top[np.argsort(-scores[top])]]


class Memfold(System):
    def __init__(self, label: str, url: Callable[[], str], **options: Any) -> None:
        self.name = f"memfold {label}"
        self.url = url
        self.options = options

    def load(self, data: Matrix) -> None:
        from memfold.memories import MemoryRecord, open_memory_store

        self.store = open_memory_store(self.url(), dimensions=DIMS, **self.options)
        for start in range(0, len(data), BATCH):
            self.store.put_many([
                MemoryRecord(("bench", "u"), str(i), value={"bucket": i % FILTER_BUCKETS},
                             embedding=tuple(data[i].tolist()))
                for i in range(start, min(start + BATCH, len(data)))
            ], dedupe_threshold=None)  # fmt: skip

    def query(self, q: Matrix) -> list[int]:
        hits = self.store.search(("bench",), vector=q.tolist(), k=K)
        return [int(str(h.record.id)) for h in hits]

    def filtered(self, q: Matrix) -> int | None:
        return len(self.store.search(("bench",), vector=q.tolist(), k=K, filter={"bucket": 7}))

    def close(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()


class ChromaDirect(System):
    name = "Chroma direct (embedded)"

    def load(self, data: Matrix) -> None:
        import chromadb
        from chromadb.config import Settings

        self.dir = tempfile.mkdtemp(prefix="bench-chroma-")
        client = chromadb.PersistentClient(self.dir, Settings(anonymized_telemetry=False))
        self.col = client.create_collection(
            "bench", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        step = min(client.get_max_batch_size(), 5000)
        for start in range(0, len(data), step):
            rows = range(start, min(start + step, len(data)))
            self.col.add(ids=[str(i) for i in rows], embeddings=data[start : rows.stop],
                         metadatas=[{"bucket": i % FILTER_BUCKETS} for i in rows])  # fmt: skip

    def query(self, q: Matrix) -> list[int]:
        found = self.col.query(query_embeddings=[q.tolist()], n_results=K, include=[])
        return [int(i) for i in found["ids"][0]]

    def filtered(self, q: Matrix) -> int | None:
        found = self.col.query(
            query_embeddings=[q.tolist()], n_results=K, where={"bucket": 7}, include=[]
        )
        return len(found["ids"][0])

    def close(self) -> None:
        shutil.rmtree(getattr(self, "dir", ""), ignore_errors=True)


class PGVectorPeer(System):
    name = "langchain-postgres PGVector"

    def load(self, data: Matrix) -> None:
        from langchain_core.embeddings import Embeddings
        from langchain_postgres import PGVector

        class Given(Embeddings):
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                raise NotImplementedError

            def embed_query(self, text: str) -> list[float]:
                raise NotImplementedError

        self.store = PGVector(
            Given(), connection=PG_URL.replace("postgresql://", "postgresql+psycopg://"),
            collection_name=f"bench_{uuid.uuid4().hex}", use_jsonb=True,
        )  # fmt: skip
        for start in range(0, len(data), BATCH):
            rows = range(start, min(start + BATCH, len(data)))
            self.store.add_embeddings(
                texts=[""] * len(rows), embeddings=data[start : rows.stop].tolist(),
                metadatas=[{"bucket": i % FILTER_BUCKETS} for i in rows],
                ids=[str(i) for i in rows],
            )  # fmt: skip

    def query(self, q: Matrix) -> list[int]:
        docs = self.store.similarity_search_by_vector(q.tolist(), k=K)
        return [int(str(d.id)) for d in docs]

    def filtered(self, q: Matrix) -> int | None:
        docs = self.store.similarity_search_by_vector(q.tolist(), k=K, filter={"bucket": 7})
        return len(docs)

    def close(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.delete_collection()


class SqliteVec(System):
    name = "sqlite-vec (vec0, exact)"

    def load(self, data: Matrix) -> None:
        import apsw
        import sqlite_vec  # type: ignore[import-untyped]

        self.dir = tempfile.mkdtemp(prefix="bench-sqlite-vec-")
        self.db = apsw.Connection(str(Path(self.dir) / "vec.db"))
        self.db.enable_load_extension(True)
        self.db.load_extension(sqlite_vec.loadable_path())
        self.db.execute(
            f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{DIMS}] distance_metric=cosine, "
            "bucket integer)"
        )
        for start in range(0, len(data), BATCH):
            with self.db:
                self.db.executemany(
                    "INSERT INTO v(rowid, embedding, bucket) VALUES (?, ?, ?)",
                    [(i, data[i].tobytes(), i % FILTER_BUCKETS)
                     for i in range(start, min(start + BATCH, len(data)))],
                )  # fmt: skip

    def query(self, q: Matrix) -> list[int]:
        rows = self.db.execute(
            "SELECT rowid FROM v WHERE embedding MATCH ? AND k = ? ORDER BY distance",
            (q.tobytes(), K),
        )
        return [int(r[0]) for r in rows]

    def filtered(self, q: Matrix) -> int | None:
        rows = self.db.execute(
            "SELECT rowid FROM v WHERE embedding MATCH ? AND k = ? AND bucket = 7",
            (q.tobytes(), K),
        )
        return len(list(rows))

    def close(self) -> None:
        shutil.rmtree(getattr(self, "dir", ""), ignore_errors=True)


def _pg_schema() -> str:
    return f"bench_vectors_{uuid.uuid4().hex[:12]}"


def _drop_schemas() -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for (name,) in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_vectors\\_%'"
        ).fetchall():
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def systems(tmp: Path) -> list[System]:
    """Every system, memfold's first after the floor."""
    return [
        Numpy(),
        Memfold("memory (exact)", lambda: "memory://"),
        Memfold("SQLite (exact)", lambda: f"sqlite:///{tmp / uuid.uuid4().hex}.db"),
        Memfold("PostgreSQL (pgvector HNSW)", lambda: PG_URL, schema=_pg_schema()),
        Memfold("Chroma (embedded)", lambda: f"chroma://{tmp / uuid.uuid4().hex}"),
        ChromaDirect(),
        PGVectorPeer(),
        SqliteVec(),
    ]


def run(
    system: System, n: int, data: Matrix, queries: Matrix, truth: list[set[int]], floor: Numpy
) -> Result:
    result = Result(system.name, n)
    try:
        started = time.perf_counter()
        system.load(data)
        result.insert_per_s = n / (time.perf_counter() - started)
        for q in queries[:5]:
            system.query(q)  # warm-up
        times, floors, recalls = [], [], []
        for q, true in zip(queries, truth, strict=True):
            t0 = time.perf_counter_ns()
            floor.query(q)
            floors.append((time.perf_counter_ns() - t0) / 1e6)
            t0 = time.perf_counter_ns()
            got = system.query(q)
            times.append((time.perf_counter_ns() - t0) / 1e6)
            recalls.append(len(true & set(got)) / K)
        result.p50_ms = statistics.median(times)
        result.floor_p50_ms = statistics.median(floors)
        result.p99_ms = float(np.percentile(times, 99))
        result.recall = float(np.mean(recalls))
        counts = [system.filtered(q) for q in queries[:20]]
        if counts[0] is not None:
            matching = len(range(7, n, FILTER_BUCKETS))
            ok = all(c == min(K, matching) for c in counts)
            result.filtered = f"{'PASS' if ok else 'MISS'} ({min(c or 0 for c in counts)}/{K})"
    except Exception as exc:  # a peer that cannot run here is reported, and the run goes on
        result.error = f"{type(exc).__name__}: {str(exc)[:160]}"
    finally:
        system.close()
    return result


def report(results: Sequence[Result]) -> None:
    floor = {r.n: r.p50_ms for r in results if r.system.startswith("numpy") and not r.error}
    print(f"\n{'system':34} {'n':>7} {'insert/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'x floor':>8} {'recall@10':>9}  filtered k")  # fmt: skip
    for r in results:
        if r.error:
            print(f"{r.system:34} {r.n:>7}  not runnable here: {r.error}")
            continue
        ratio = r.p50_ms / r.floor_p50_ms if r.floor_p50_ms else float("nan")
        print(f"{r.system:34} {r.n:>7} {r.insert_per_s:>10.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
              f"{ratio:>8.1f} {r.recall:>9.3f}  {r.filtered}")  # fmt: skip
    print()
    for n in floor:
        by = {r.system: r for r in results if r.n == n and not r.error}
        for name in ("memfold memory (exact)", "memfold SQLite (exact)"):
            if name in by:
                ratio = by[name].p50_ms / by[name].floor_p50_ms
                print(f"{'PASS' if ratio <= 2 else 'MISS'} n={n}: {name} p50 is {ratio:.1f}x "
                      "the numpy floor (target: within 2x)")  # fmt: skip
        pg, peer = by.get("memfold PostgreSQL (pgvector HNSW)"), by.get(PGVectorPeer.name)
        if pg and peer:
            ok = pg.recall >= 0.95 and pg.p50_ms <= peer.p50_ms
            print(
                f"{'PASS' if ok else 'MISS'} n={n}: PostgreSQL HNSW recall@10 {pg.recall:.3f} "
                f"(target >= 0.95) at p50 {pg.p50_ms:.2f} ms vs PGVector {peer.p50_ms:.2f} ms"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k vectors only")
    parser.add_argument("--size", type=int, action="append", help="vectors to load (repeatable)")
    parser.add_argument("--only", help="run only systems whose name contains this text")
    args = parser.parse_args(argv)
    sizes = args.size or ([10_000] if args.quick else [10_000, 100_000])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-vectors-") as tmp:
        try:
            for n in sizes:
                data, queries = dataset(n)
                truth = exact(data, queries)
                floor = Numpy()
                floor.load(data)
                for system in systems(Path(tmp)):
                    wanted = not args.only or args.only.lower() in system.name.lower()
                    if not wanted and not system.name.startswith("numpy"):
                        continue
                    result = run(system, n, data, queries, truth, floor)
                    print(f"  {system.name} at {n}: done", file=sys.stderr, flush=True)
                    results.append(result)
        finally:
            _drop_schemas()
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
