"""Compaction benchmark: a 600-turn LoCoMo conversation under one view budget.

For memfold's running summary, LangChain's ``SummarizationMiddleware`` and LlamaIndex's
``ChatSummaryMemoryBuffer``: the tokens sent to the summarizer in total, the view's tokens per
turn, and the time per turn. The peers' summarizer is a counting fake model that answers with a
summary as long as memfold's summary budget, so no LLM is needed; memfold uses its offline
extractive summarizer and counts the prompt an LLM summarizer would have been sent.

Usage: python benchmarks/compaction.py ../shared/data/locomo/locomo-dev.json [--turns 600]
(the LoCoMo data is read from the given path and never shipped).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from memfold import Message
from memfold.compaction import (
    ApproximateCounter,
    ExactCounter,
    ExtractiveSummarizer,
    RunningSummary,
    SummarizeRequest,
    render_prompt,
    run,
)

BUDGET = 2000
KEEP = 800
SUMMARY = 400
EXACT = ExactCounter()


def conversation(path: Path, turns: int) -> tuple[list[tuple[str, str]], list[tuple[str, int]]]:
    """(user, assistant) text pairs from the LoCoMo conversations, in order, and the QA
    answers found word for word in their evidence messages within those turns, each with the
    position of its last evidence message."""
    texts: list[str] = []
    answers = []
    for sample in json.loads(path.read_text()):
        at = {}
        for key, value in sample["conversation"].items():
            if key.startswith("session_") and isinstance(value, list):
                for t in value:
                    at[t["dia_id"]] = len(texts)
                    texts.append(f"{t['speaker']}: {t['text']}")
        for qa in sample["qa"]:
            found = [at[e] for e in qa.get("evidence", ()) if e in at]
            answer = str(qa.get("answer", "")).lower()
            if answer and found and any(answer in texts[i].lower() for i in found):
                answers.append((answer, max(found)))
    if len(texts) < 2 * turns:
        raise SystemExit(f"{path} holds {len(texts)} messages; {2 * turns} are needed")
    pairs = [(texts[2 * i], texts[2 * i + 1]) for i in range(turns)]
    return pairs, [(a, i) for a, i in answers if i < 2 * turns]


class Counting:
    """The extractive summarizer, counting the tokens of the LLM prompt for each request and
    keeping the prompts' text."""

    def __init__(self) -> None:
        self.sent = 0
        self.calls = 0
        self.prompts: list[str] = []
        self.inner = ExtractiveSummarizer()

    def summarize(self, request: SummarizeRequest) -> str:
        prompt = render_prompt(request)
        self.sent += EXACT.count_text(prompt)
        self.calls += 1
        self.prompts.append(prompt.lower())
        return self.inner.summarize(request)

    async def asummarize(self, request: SummarizeRequest) -> str:
        return self.summarize(request)


def fake_summary(prompt: str) -> str:
    """A summary of ``SUMMARY`` tokens' worth of the prompt's text (what a model would
    return at memfold's summary budget)."""
    return prompt[-SUMMARY * 4 :]


def run_memfold(
    pairs: list[tuple[str, str]], answers: list[tuple[str, int]], **options: Any
) -> dict[str, Any]:
    """memfold's running summary over ``pairs``, and how many of ``answers`` (text, position of
    its evidence) reach the summarizer, are in the summary just after their evidence is folded,
    and are in the last view."""
    strategy = RunningSummary(
        BUDGET, keep_tokens=KEEP, summary_tokens=SUMMARY, counter=EXACT, **options
    )
    summarizer = Counting()
    folded: dict[int, str] = {}
    thread: list[Message] = [
        Message(role="system", content="You are a friendly companion.", id="s")
    ]
    record = None
    views, times, quiet = [], [], []
    for i, (user, assistant) in enumerate(pairs):
        thread += [
            Message(role="user", content=user, id=f"u{i}"),
            Message(role="assistant", content=assistant, id=f"a{i}"),
        ]
        start = time.perf_counter()
        done = run(strategy.fold(thread, record), summarizer)
        elapsed = time.perf_counter() - start
        record = done.record
        times.append(elapsed)
        if not done.folded:
            quiet.append(elapsed)
        elif record is not None:
            folded[record.end - 1] = record.summary.lower()
        views.append(EXACT.count_messages(done.view))
    total = EXACT.count_messages(thread)
    prompts = "\n".join(summarizer.prompts)
    last = "\n".join(m.text for m in done.view).lower()
    evicted = [(a, i) for a, i in answers if record is not None and i + 1 < record.end]
    after = sorted(folded)
    kept = sum(a in folded[next(e for e in after if e >= i + 1)] for a, i in evicted)
    quality = {
        "answers": len(answers),
        "evicted": len(evicted),
        "reached": sum(a in prompts for a, _ in evicted),
        "kept": kept,
        "last view": sum(a in last for a, _ in answers),
    }
    return {"sent": summarizer.sent, "calls": summarizer.calls, "views": views,
            "times": times, "quiet": quiet, "conversation": total, "quality": quality}  # fmt: skip


def run_langchain(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    from langchain.agents.middleware import SummarizationMiddleware
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, SystemMessage

    sent = [0, 0]

    class CountingModel(GenericFakeChatModel):
        def _generate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
            text = "\n".join(str(m.content) for m in messages)
            sent[0] += EXACT.count_text(text)
            sent[1] += 1
            self.messages = iter([AIMessage(fake_summary(text))])
            return super()._generate(messages, *args, **kwargs)

    def count(messages: Any) -> int:
        return sum(EXACT.count_text(str(m.content)) + 3 for m in messages)

    model = CountingModel(messages=iter([]))
    middleware = SummarizationMiddleware(
        model, trigger=("tokens", BUDGET), keep=("tokens", KEEP), token_counter=count
    )
    state: list[Any] = [SystemMessage("You are a friendly companion.", id="s")]
    views, times = [], []
    for i, (user, assistant) in enumerate(pairs):
        state += [HumanMessage(user, id=f"u{i}"), AIMessage(assistant, id=f"a{i}")]
        start = time.perf_counter()
        update = middleware.before_model({"messages": state}, None)  # type: ignore[arg-type]
        if update:
            state = [m for m in update["messages"] if not isinstance(m, RemoveMessage)]
        times.append(time.perf_counter() - start)
        views.append(count(state) + 3)
    return {"sent": sent[0], "calls": sent[1], "views": views, "times": times}


def run_llama_index(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    from llama_index.core.llms import ChatMessage, CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.memory import ChatSummaryMemoryBuffer

    sent = [0, 0]

    class CountingLLM(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=100_000)

        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            sent[0] += EXACT.count_text(prompt)
            sent[1] += 1
            return CompletionResponse(text=fake_summary(prompt))

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    memory = ChatSummaryMemoryBuffer.from_defaults(
        llm=CountingLLM(), token_limit=BUDGET, tokenizer_fn=EXACT._encode
    )
    memory.put(ChatMessage(role="system", content="You are a friendly companion."))
    views, times = [], []
    for user, assistant in pairs:
        memory.put(ChatMessage(role="user", content=user))
        memory.put(ChatMessage(role="assistant", content=assistant))
        start = time.perf_counter()
        view = memory.get()
        times.append(time.perf_counter() - start)
        views.append(sum(EXACT.count_text(str(m.content)) + 3 for m in view) + 3)
    return {"sent": sent[0], "calls": sent[1], "views": views, "times": times}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("locomo", type=Path, help="path to locomo-dev.json")
    parser.add_argument("--turns", type=int, default=600)
    args = parser.parse_args()
    pairs, answers = conversation(args.locomo, args.turns)
    ours = run_memfold(pairs, answers)
    every_word = run_memfold(pairs, answers, input_tokens=None)
    peers = {"langchain SummarizationMiddleware": run_langchain(pairs),
             "llama_index ChatSummaryMemoryBuffer": run_llama_index(pairs)}  # fmt: skip
    conv = ours["conversation"]
    print(f"{args.turns} turns, {conv} tokens (o200k), view budget {BUDGET}, keep {KEEP}, "
          f"summary {SUMMARY}")  # fmt: skip
    row = "{:<38} {:>10} {:>6} {:>9} {:>9} {:>10} {:>10}"
    print(row.format("", "to summ.", "calls", "view max", "view p50", "turn p50", "turn max"))
    mine = {"memfold RunningSummary": ours, "memfold, input_tokens=None": every_word}
    for name, r in [*mine.items(), *peers.items()]:
        print(row.format(name, r["sent"], r["calls"], max(r["views"]),
                         int(statistics.median(r["views"])),
                         f"{statistics.median(r['times']) * 1e3:.2f}ms",
                         f"{max(r['times']) * 1e3:.1f}ms"))  # fmt: skip
    ratio = ours["sent"] / conv
    print(f"memfold sent / conversation: {ratio:.2f}x (target <= 2x) {verdict(ratio <= 2)}")
    for name, r in peers.items():
        ratio = r["sent"] / ours["sent"]
        print(f"{name} sent / memfold sent: {ratio:.1f}x (target >= 5x) {verdict(ratio >= 5)}")
    quiet = sorted(ours["quiet"])
    p99 = quiet[int(len(quiet) * 0.99)]
    print(f"memfold view with no fold due: p50 {quiet[len(quiet) // 2] * 1e3:.2f} ms, "
          f"p99 {p99 * 1e3:.2f} ms (target < 5 ms) {verdict(p99 < 0.005)}")  # fmt: skip
    print(f"LoCoMo QA answers found word for word in their evidence: "
          f"{ours['quality']['answers']}; with the extractive summarizer, of those whose "
          "evidence was folded:")  # fmt: skip
    for name, r in mine.items():
        q = r["quality"]
        print(f"{name}: sent to the summarizer {q['reached']}/{q['evicted']}, in the summary "
              f"after their fold {q['kept']}/{q['evicted']}, in the last view "
              f"{q['last view']}/{q['answers']}")  # fmt: skip
    approx = ApproximateCounter()
    thread = [
        Message(role=r, content=t) for u, a in pairs for r, t in (("user", u), ("assistant", a))
    ]
    e, a = EXACT.count_messages(thread), approx.count_messages(thread)
    print(f"approximate counter vs exact: {a} vs {e} ({(a - e) / e:+.1%}, target within 15%) "
          f"{verdict(abs(a - e) <= 0.15 * e)}")  # fmt: skip


if __name__ == "__main__":
    main()
