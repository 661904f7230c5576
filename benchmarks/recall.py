"""Recall quality: evidence recall@5/10/20 on the LoCoMo conversations, through the public API.

Each dialog turn of each conversation is stored with ``put_many`` as one memory,
``(session date) Speaker said, "text"``, in a namespace of its own conversation; each question
is a ``search`` of that namespace. A question's recall@k is the share of its evidence turns among
the top k hits; the script prints the mean per question category and overall for text-only
(``vector_weight=0``), vector-only (``text_weight=0``) and memfold's default hybrid search, on
two halves of the conversations: ``tune`` (the first half, where the method was developed) and
``held-out`` (the rest, looked at only to check the method generalises).

Embeddings come from the built-in all-MiniLM-L6-v2 (the ``embeddings`` extra) and are cached on
disk under ``~/.cache/memfold/recall-embeddings.sqlite`` so reruns are fast.

Run:
    .venv/bin/python benchmarks/recall.py ../shared/data/locomo/locomo-dev.json
    .venv/bin/python benchmarks/recall.py PATH --json results.json

The data (CC BY-NC 4.0, research and evaluation only) is read from the path given; it is never
copied into the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memfold.memories import MemoryRecord, open_memory_store
from memfold.recall.embedders import Embedder, Kind, LocalEmbedder

KS = (5, 10, 20)
TARGET = 0.70
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
MODES = {
    "text-only": {"vector_weight": 0.0},
    "vector-only": {"text_weight": 0.0},
    "hybrid (default)": {},
}


class DiskCachedEmbedder:
    """Wraps an embedder with a SQLite cache of vectors by (model, kind, text) hash."""

    def __init__(self, inner: Embedder, path: Path) -> None:
        self.inner = inner
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS v (key BLOB PRIMARY KEY, vec BLOB)")

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def dimensions(self) -> int | None:
        return self.inner.dimensions

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        keys = [hashlib.sha256(f"{self.model}\x00{kind}\x00{t}".encode()).digest() for t in texts]
        found: dict[bytes, list[float]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, vec in self._db.execute(
                f"SELECT key, vec FROM v WHERE key IN ({marks})", chunk
            ):
                found[key] = np.frombuffer(vec, dtype="<f4").tolist()
        missing = [(k, t) for k, t in zip(keys, texts, strict=True) if k not in found]
        if missing:
            made = self.inner.embed([t for _, t in missing], kind=kind)
            rows = [
                (k, np.asarray(v, dtype="<f4").tobytes())
                for (k, _), v in zip(missing, made, strict=True)
            ]
            self._db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?)", rows)
            self._db.commit()
            found.update((k, list(v)) for (k, _), v in zip(missing, made, strict=True))
        return [found[k] for k in keys]

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "document") -> list[list[float]]:
        return self.embed(texts, kind=kind)


def turns(sample: dict[str, Any]) -> list[tuple[str, str]]:
    """``(dia_id, indexed text)`` for every turn of a conversation."""
    conv = sample["conversation"]
    out = []
    n = 1
    while f"session_{n}" in conv:
        date = conv.get(f"session_{n}_date_time", "")
        for turn in conv[f"session_{n}"]:
            out.append((turn["dia_id"], f'({date}) {turn["speaker"]} said, "{turn["text"]}"'))
        n += 1
    return out


def evidence(qa: dict[str, Any]) -> set[str]:
    ids: set[str] = set()
    for item in qa.get("evidence", []):
        for part in str(item).replace(",", ";").split(";"):
            if part.strip():
                ids.add(part.strip())
    return ids


def run(path: Path, limit: int | None) -> dict[str, Any]:
    data = json.loads(path.read_text())
    cache = Path.home() / ".cache" / "memfold" / "recall-embeddings.sqlite"
    embedder = DiskCachedEmbedder(LocalEmbedder(), cache)
    store = open_memory_store("memory://", embedder=embedder)
    half = len(data) // 2 + len(data) % 2
    # results[split][mode][category] -> list of (recall@5, @10, @20)
    results: dict[str, dict[str, dict[str, list[tuple[float, ...]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    started = time.perf_counter()
    n_turns = 0
    for index, sample in enumerate(data):
        split = "tune" if index < half else "held-out"
        ns = ("locomo", sample["sample_id"])
        dialog = turns(sample)
        n_turns += len(dialog)
        store.put_many([MemoryRecord(ns, dia_id, text) for dia_id, text in dialog])
        known = {dia_id for dia_id, _ in dialog}
        questions = [q for q in sample["qa"] if evidence(q) & known][:limit]
        for qa in questions:
            wanted = evidence(qa) & known
            for mode, weights in MODES.items():
                hits = store.search(ns, str(qa["question"]), k=max(KS), **weights)
                ids = [h.record.id for h in hits]
                scores = tuple(len(wanted & set(ids[:k])) / len(wanted) for k in KS)
                results[split][mode][CATEGORIES.get(qa["category"], "other")].append(scores)
                results[split][mode]["overall"].append(scores)
    elapsed = time.perf_counter() - started
    return {
        "turns": n_turns,
        "seconds": elapsed,
        "results": {
            split: {
                mode: {cat: _means(rows) for cat, rows in cats.items()}
                for mode, cats in modes.items()
            }
            for split, modes in results.items()
        },
    }


def _means(rows: list[tuple[float, ...]]) -> dict[str, float]:
    means = {f"r@{k}": statistics.fmean(s[i] for s in rows) for i, k in enumerate(KS)}
    return {"n": len(rows), **means}


def report(out: dict[str, Any]) -> None:
    print(f"LoCoMo evidence recall: {out['turns']} turns indexed, {out['seconds']:.1f} s")
    for split, modes in out["results"].items():
        print(f"\n== {split} ==")
        cats = ["overall", *CATEGORIES.values()]
        print(f"{'mode':<18}{'category':<13}{'n':>5}" + "".join(f"{f'r@{k}':>8}" for k in KS))
        for mode, by_cat in modes.items():
            for cat in cats:
                if cat in by_cat:
                    row = by_cat[cat]
                    print(
                        f"{mode:<18}{cat:<13}{row['n']:>5}"
                        + "".join(f"{row[f'r@{k}']:>8.3f}" for k in KS)
                    )
    print()
    pooled = [0.0, 0]
    for split, modes in out["results"].items():
        row = modes["hybrid (default)"]["overall"]
        pooled[0] += row["r@10"] * row["n"]
        pooled[1] += row["n"]
        print(f"{split}: default hybrid recall@10 {row['r@10']:.3f}")
    score = pooled[0] / pooled[1]
    verdict = "PASS" if score >= TARGET else "MISS"
    print(f"{verdict} overall: default hybrid recall@10 {score:.3f} (target >= {TARGET})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="locomo-dev.json (or locomo10.json)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--limit", type=int, help="questions per conversation (smoke runs)")
    args = parser.parse_args()
    if not args.path.exists():
        sys.exit(f"no LoCoMo file at {args.path}")
    out = run(args.path, args.limit)
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
