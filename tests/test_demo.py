"""The demo script runs offline, quickly, and shows a second process reading the thread back."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import memfold
from memfold.compaction import CompactionRecord

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo.py"


def run_demo(db: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the demo on ``db``; return the result and the CPU seconds it and its child used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, str(DEMO), str(db)],
        capture_output=True,
        text=True,
        cwd=db.parent,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, cpu


def test_demo_round_trips_through_a_second_process(tmp_path: Path) -> None:
    """The demo exits 0, and a process other than the writer prints every message it stored."""
    result, cpu = run_demo(tmp_path / "demo.db")
    assert result.returncode == 0, result.stdout + result.stderr
    # CPU time, not wall time, so a busy test machine cannot make this flaky. Six steps in three
    # processes (each importing its frameworks), a 300-turn compaction included: about 9 s.
    assert cpu < 20, f"the demo used {cpu:.1f} s of CPU"
    out = result.stdout
    writer = re.search(r"Process (\d+) stored 5 LangChain messages", out)
    reader = re.search(r"reader pid (\d+)", out)
    assert writer, out
    assert reader, out
    assert writer.group(1) != reader.group(1), "the thread must be read by a second process"
    read_back = out[reader.end() :]
    for text in (
        "You are a support agent",
        "Where is my order 42?",
        "lookup_order",
        '"status": "shipped"',
        "Order 42 has shipped",
        "5 messages read back",
    ):
        assert text in read_back, f"{text!r} not printed by the reading process:\n{out}"


def test_demo_starts_fresh(tmp_path: Path) -> None:
    """The demo replaces an existing database file instead of adding to the thread in it."""
    db = tmp_path / "demo.db"
    with memfold.open_store(f"sqlite:///{db}") as store:
        store.append("support-42", memfold.Message(role="user", content="left over"))
    result, _ = run_demo(db)
    assert result.returncode == 0, result.stdout + result.stderr
    with memfold.open_store(f"sqlite:///{db}") as store:
        assert store.count("support-42") == 5
        assert store.search("left over") == []


def test_demo_resumes_a_paused_run_in_another_process_and_forks_it(tmp_path: Path) -> None:
    """A graph run paused for approval is resumed by a different process, then forked from the
    paused checkpoint with a refusal; both endings stay in the SQLite file."""
    db = tmp_path / "demo.db"
    result, _ = run_demo(db)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    paused = re.search(r"Process (\d+) paused run refund-42 at \('review',\)", out)
    resumed = re.search(r"Process (\d+) resumed it with an approval", out)
    assert paused, out
    assert resumed, out
    assert paused.group(1) != resumed.group(1), "the run must be resumed by another process"
    assert "Refunded $30 to the card ending 4242." in out[resumed.end() :]
    assert "with a refusal:\n  ai     No refund was made." in out

    from memfold.checkpoints import open_checkpoint_store

    with open_checkpoint_store(f"sqlite:///{db}") as store:
        ids = [c.checkpoint_id for c in store.list_checkpoints("refund-42")]
        parents = {c.parent_id for c in store.list_checkpoints("refund-42")}
    assert len(ids) == 7, ids  # input, propose, paused, approved branch x2, refused branch x2
    assert len(parents) < len(ids), "two checkpoints share the paused parent: a fork"


def test_demo_keeps_a_300_turn_conversation_under_a_2000_token_view(tmp_path: Path) -> None:
    """Step 5 keeps every one of the 600 messages in the file, no view over 2,000 tokens, and
    prints the summary saved with the thread."""
    db = tmp_path / "demo.db"
    result, _ = run_demo(db)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    line = re.search(
        r"300 turns: 600 messages \(([\d,]+) tokens\) kept in the file; (\d+) folds; "
        r"largest view ([\d,]+) tokens \(budget 2,000\)",
        out,
    )
    assert line, out
    total, folds, largest = (int(g.replace(",", "")) for g in line.groups())
    assert largest <= 2000 < total
    assert folds >= 1
    with memfold.open_store(f"sqlite:///{db}") as store:
        assert store.count("customer-300") == 600
        record: Any = store.get_thread("customer-300").metadata["memfold.compaction"]
    summary = CompactionRecord.from_dict(record).summary
    assert "Order" in summary
    assert " ".join(summary.split()) in " ".join(out.split()), "the summary was not shown"


def test_demo_keeps_each_users_memories_apart_across_frameworks(tmp_path: Path) -> None:
    """Memories LangChain's tools remember for Ana are recalled through LlamaIndex's tool spec,
    and Bo's tools return only Bo's own."""
    result, _ = run_demo(tmp_path / "demo.db")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout[result.stdout.index("6. Long-term memory") :]
    assert out.count("LangChain remember (ana): Remembered (id: ") == 2
    ana = out[out.index("LlamaIndex recall (ana)") : out.index("LangChain recall (bo)")]
    assert "- Ana prefers refunds to store credit." in ana
    bo = out[out.index("LangChain recall (bo)") :]
    assert "- Bo likes express shipping." in bo
    assert "Ana" not in bo.split("\n", 1)[1]


def test_demo_exports_a_users_data_before_erasing_it(tmp_path: Path) -> None:
    """Step 7 writes Ana's memories, and nothing of Bo's, to a file that still imports them
    (times included) after step 8 erased her from the database."""
    from memfold.importer import import_data
    from memfold.memories import open_memory_store

    db = tmp_path / "demo.db"
    result, _ = run_demo(db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Exported ana's data to ana-export.jsonl: 0 threads, 0 checkpoints and 2 memories" in (
        result.stdout
    )
    export = (tmp_path / "ana-export.jsonl").read_text(encoding="utf-8")
    assert "Ana prefers refunds" in export
    assert "Bo likes" not in export
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    with (tmp_path / "ana-export.jsonl").open(encoding="utf-8") as source:
        assert import_data(copy, source).memories == 2
    with open_memory_store(copy) as restored:
        texts = sorted(r.text for r in restored.list_records(("shop", "ana")))
    assert texts == ["Ana prefers refunds to store credit.", "Ana's orders go to the Turin office."]
