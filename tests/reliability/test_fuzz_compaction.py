"""Hostile input to compaction (`memfold.compaction`): token counters, trimming windows,
excerpts, summarizers, prompts, fact extraction, running summaries and their records, and
`Compactor` on stored threads (memory and SQLite, sync and async). Each call answers (a view
made of the thread's own messages, whole units kept) or raises a `memfold.errors` error, and a
canary thread with its saved summary is unchanged."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memfold import InvalidInput, MemfoldError, Message, ToolCall
from memfold.compaction import (
    RECORD_KEY,
    ApproximateCounter,
    CompactionRecord,
    Compactor,
    ExactCounter,
    ExtractiveFacts,
    ExtractiveSummarizer,
    Fact,
    RunningSummary,
    SummarizeRequest,
    arun,
    excerpt,
    render_chat,
    render_prompt,
    render_transcript,
    run,
    sliding_window,
    split,
    token_budget,
)
from memfold.compaction.tokens import REPLY_TOKENS
from memfold.stores import BaseThreadStore
from tests.reliability.fuzzing import (
    FUZZ,
    call,
    hostile_ids,
    hostile_text,
    json_values,
    messages,
    numbers,
)
from tests.support import Api, drop_store, make_store

NUMBERS = numbers(-5, 400)
COUNTER = ApproximateCounter()
CANARY = "memfold-canary"


def threads() -> st.SearchStrategy[Any]:
    """Threads of hostile messages with system prefixes, tool calls and orphan tool results,
    and things that are not threads."""
    roles = st.sampled_from(["system", "user", "assistant", "tool", "developer"])
    message = st.builds(
        Message,
        role=roles,
        content=hostile_text(max_size=80),
        id=st.none() | hostile_text(max_size=10),
        tool_calls=st.lists(
            st.builds(ToolCall, hostile_text(max_size=6), hostile_text(max_size=6)), max_size=1
        ).map(tuple),
        tool_call_id=st.none() | hostile_text(max_size=6),
    )
    return st.one_of(
        st.lists(message, max_size=8),
        st.lists(messages(), max_size=3),
        st.sampled_from([None, "user: hi", [None], ["hi"], 3, {"role": "user"}]),
    )


def counters() -> st.SearchStrategy[Any]:
    """How to count: an approximate ratio or an exact encoding, hostile."""
    ratio = st.one_of(st.floats(), st.integers(-2, 8), st.sampled_from([None, "4", True]))
    encoding = st.sampled_from(["o200k_base", "cl100k_base"]) | hostile_ids()
    return st.tuples(st.sampled_from(["approximate", "exact"]), ratio, encoding)


def build_counter(spec: tuple[str, Any, Any]) -> Any:
    kind, ratio, encoding = spec
    return ApproximateCounter(ratio) if kind == "approximate" else ExactCounter(encoding)


@FUZZ
@given(spec=counters(), text=hostile_text(max_size=200) | hostile_ids(), thread=threads())
def test_counters_count_or_refuse(spec: tuple[str, Any, Any], text: Any, thread: Any) -> None:
    """Token counters built with hostile ratios and encodings count hostile text, messages and
    threads as non-negative ints (a thread as the sum of its messages plus the reply header,
    render_chat as its rendering), or raise a memfold error."""
    try:
        counter = build_counter(spec)
    except MemfoldError:
        return
    try:
        n = counter.count_text(text)
        assert isinstance(n, int)
        assert n >= 0
    except MemfoldError:
        assert not isinstance(text, str)
    try:
        total = counter.count_messages(thread)
    except MemfoldError:
        return
    each = [counter.count_message(m) for m in thread]
    assert all(isinstance(n, int) and n > 0 for n in each)
    assert total == REPLY_TOKENS + sum(each)
    assert isinstance(render_chat(thread), str)


def subsequence(view: list[Message], thread: list[Message]) -> bool:
    """Whether ``view`` is ``thread`` with some messages left out (the very objects)."""
    it = iter(thread)
    return all(any(m is t for t in it) for m in view)


@FUZZ
@given(thread=threads(), number=NUMBERS, spec=counters())
def test_windows_and_excerpts_answer_or_refuse(
    thread: Any, number: Any, spec: tuple[str, Any, Any]
) -> None:
    """split, sliding_window, token_budget and excerpt of a hostile thread with hostile sizes
    return the thread's own messages in order (no tool result first after the system prefix,
    within budget) or raise a memfold error."""
    try:
        counter = build_counter(spec)
    except MemfoldError:
        counter = COUNTER
    try:
        pinned, units = split(thread)
    except MemfoldError:
        return
    assert [*pinned, *(m for u in units for m in u)] == list(thread)
    for trim in (
        lambda: sliding_window(thread, number),
        lambda: token_budget(thread, number, counter),
    ):
        try:
            view = trim()
        except MemfoldError:
            continue
        assert subsequence(view, thread)
        rest = view[len(pinned) :]
        assert not rest or rest[0].role not in ("tool", "function")
    try:
        kept = excerpt(thread, number, counter)
    except MemfoldError:
        return
    ids = [m.id for m in thread]
    assert all(m.id in ids for m in kept)


@FUZZ
@given(
    thread=threads(),
    previous=st.none() | hostile_text(max_size=200) | hostile_ids(),
    max_tokens=NUMBERS,
    ratio=st.one_of(st.floats(), st.integers(-2, 8), st.sampled_from([None, "4"])),
    template=st.none() | hostile_text() | st.sampled_from(["{messages}", "{x}", "{", "{0}"]),
    roles=st.lists(st.sampled_from(["user", "assistant"]) | hostile_ids(), max_size=2)
    | hostile_ids(),
    max_facts=NUMBERS,
)
def test_summarizers_prompts_and_facts_answer_or_refuse(
    thread: Any,
    previous: Any,
    max_tokens: Any,
    ratio: Any,
    template: Any,
    roles: Any,
    max_facts: Any,
) -> None:
    """A summarize request of hostile messages, summary and budget is answered by the
    extractive summarizer (sync and async) within its budget, rendered into a hostile prompt
    template, and mined for facts, or refused with a memfold error."""
    try:
        request = SummarizeRequest(thread, previous, max_tokens)
        summarizer = ExtractiveSummarizer(ratio)
    except MemfoldError:
        return
    summary = summarizer.summarize(request)
    assert summary == asyncio.run(summarizer.asummarize(request))
    assert len(summary) <= request.max_tokens * summarizer.chars_per_token
    assert isinstance(render_transcript(request.messages), str)
    try:
        prompt = render_prompt(request, summarize=template or "{messages}", extend="{previous}")
        assert isinstance(prompt, str)
    except MemfoldError:
        assert template is not None
    try:
        facts = ExtractiveFacts(roles=roles, max_facts=max_facts)
    except MemfoldError:
        return
    found = facts.extract(request.messages)
    assert found == asyncio.run(facts.aextract(request.messages))
    assert len(found) <= facts.max_facts
    ids = {m.id for m in request.messages}
    assert all(isinstance(f, Fact) and f.message_id in ids for f in found)


def records() -> st.SearchStrategy[Any]:
    """Saved compaction records as a store might hand them back: real-looking ones with
    hostile ids and numbers, and dicts that are not records at all."""
    good = st.fixed_dictionaries(
        {
            "version": st.just(2),
            "segments": st.lists(hostile_text(), max_size=3) | hostile_ids(),
            "first_id": hostile_ids(),
            "last_id": hostile_ids(),
            "end": NUMBERS,
            "covered": NUMBERS,
            "folds": st.lists(st.tuples(hostile_ids(), hostile_ids()), max_size=2)
            | json_values(max_leaves=3),
        }
    )
    return st.one_of(good, good, json_values(max_leaves=6), st.just({"summary": "s"}))


@FUZZ
@given(
    budget=st.tuples(NUMBERS, st.none() | NUMBERS, st.none() | NUMBERS, st.none() | NUMBERS),
    input_tokens=st.none() | NUMBERS,
    role=st.sampled_from(["user", "system"]) | hostile_ids(),
    prefix=hostile_text() | hostile_ids(),
    saved=records(),
    size=st.integers(0, 30),
)
def test_running_summaries_fold_or_refuse(
    budget: tuple[Any, Any, Any, Any],
    input_tokens: Any,
    role: Any,
    prefix: Any,
    saved: Any,
    size: int,
) -> None:
    """A running summary with hostile budgets, role and prefix, folding a thread under a
    hostile saved record (sync and async), returns a view of the thread's own messages after
    its system messages and summary, or raises a memfold error; a record it makes survives
    to_dict and from_dict exactly."""
    max_tokens, keep, summary, segment = budget
    thread = [Message("system", "be brief", id="s")] + [
        Message("user" if i % 2 else "assistant", f"Turn {i}: Ana paid {i} dollars.", id=f"m{i}")
        for i in range(size)
    ]
    try:
        record = CompactionRecord.from_dict(saved)
    except MemfoldError:
        record = None
    else:
        assert CompactionRecord.from_dict(record.to_dict()) == record
    try:
        strategy = RunningSummary(
            max_tokens, keep_tokens=keep, summary_tokens=summary, segment_tokens=segment,
            input_tokens=input_tokens, counter=COUNTER, role=role, prefix=prefix,
        )  # fmt: skip
    except MemfoldError:
        return
    try:
        done = run(strategy.fold(thread, record), ExtractiveSummarizer())
    except MemfoldError:
        return
    assert done == asyncio.run(arun(strategy.fold(thread, record), ExtractiveSummarizer()))
    assert done.view[0] is thread[0]
    rest = [m for m in done.view[1:] if m.id not in (None,) and not m.id.startswith("memfold-")]
    assert subsequence(rest, thread)
    if done.record is not None:
        assert CompactionRecord.from_dict(done.record.to_dict()) == done.record
        assert strategy.summary_message(done.record) in done.view
        assert strategy.view(thread, done.record) == done.view


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseThreadStore]:
    """A thread store holding a folded canary thread (the Compactor only calls the store's
    public methods, fuzzed on every backend by test_fuzz_threads)."""
    s = make_store(request.param, tmp_path)
    s.append(CANARY, [Message("user" if i % 2 else "assistant", f"Fact {i}: Bo is {i}.")
                      for i in range(40)])  # fmt: skip
    yield s
    drop_store(s)
    s.close()


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, store: BaseThreadStore) -> Api:
    """The store, driven through its sync or its async API."""
    return Api(store, request.param == "async")


@FUZZ
@given(
    thread_id=hostile_ids(),
    tenant=st.none() | hostile_ids(),
    saved=st.none() | records(),
    summary=st.sampled_from(["view", "record"]) | messages() | hostile_ids(),
    size=st.integers(0, 30),
)
async def test_compactor_answers_or_refuses(
    api: Api, thread_id: Any, tenant: Any, saved: Any, summary: Any, size: int
) -> None:
    """Compactor.compact, view, record and expand on hostile thread ids and tenants, over a
    hostile saved record and hostile summary messages, answer with the thread's own messages
    or raise a memfold error, and the canary thread and its record are unchanged."""
    store = api.store
    compactor = Compactor(store, RunningSummary(200, counter=COUNTER))
    canary_view = compactor.view(CANARY)
    canary = (store.get_thread(CANARY), store.load(CANARY))
    go = api.use_async
    try:
        if size:
            await api.append(thread_id, [Message("user", f"Fact {i}: Bo is {i}.")
                                         for i in range(size)], tenant=tenant)  # fmt: skip
        if saved is not None:
            await api.set_thread_metadata(thread_id, {RECORD_KEY: saved}, tenant=tenant)
        done = await call(go, compactor, "compact", thread_id, tenant=tenant)
        view = await call(go, compactor, "view", thread_id, tenant=tenant)
        assert [m.id for m in view] == [m.id for m in done.view]
        record = await call(go, compactor, "record", thread_id, tenant=tenant)
        if done.folded:
            assert record == done.record
        if summary == "view":
            summary = view[0] if view else None
        elif summary == "record":
            summary = record
        covered = await call(go, compactor, "expand", summary, thread_id, tenant=tenant)
        stored = await api.load(thread_id, tenant=tenant)
        assert [m.id for m in covered] == [m.id for m in stored][: len(covered)]
    except MemfoldError:
        pass
    assert (store.get_thread(CANARY), store.load(CANARY)) == canary
    assert compactor.view(CANARY) == canary_view


@pytest.mark.parametrize(
    "call",
    [
        lambda: ApproximateCounter("4"),  # type: ignore[arg-type]
        lambda: COUNTER.count_text(None),  # type: ignore[arg-type]
        lambda: COUNTER.count_messages(None),  # type: ignore[arg-type]
        lambda: COUNTER.count_message(
            Message("user", "", tool_calls=(ToolCall("c", "f", {"a": {1, 2}}),))
        ),
        lambda: split("user: hi"),  # type: ignore[arg-type]
        lambda: ExtractiveSummarizer("4"),  # type: ignore[arg-type]
        lambda: SummarizeRequest((), None, "3"),  # type: ignore[arg-type]
        lambda: render_prompt(SummarizeRequest((Message("user", "x"),), None, 5), summarize="{x}"),
        lambda: render_prompt(SummarizeRequest((Message("user", "x"),), None, 5), summarize="{"),
        lambda: ExtractiveFacts(max_facts="5"),  # type: ignore[arg-type]
        lambda: CompactionRecord.from_dict(
            {"segments": [], "first_id": "a", "last_id": "b", "end": math.inf, "covered": 0}
        ),
        lambda: CompactionRecord.from_dict(
            {"segments": "abc", "first_id": "a", "last_id": "b", "end": 1, "covered": 1}
        ),
        lambda: ExtractiveFacts(roles="user"),
        lambda: Compactor(None, None).expand(None, "t"),  # type: ignore[arg-type]
        lambda: RunningSummary(100, keep_tokens="3"),  # type: ignore[arg-type]
    ],
)
def test_found_bugs_raise_invalid_input(call: Any) -> None:
    """Regressions from the fuzzing: each of these raised a raw TypeError, KeyError,
    ValueError, OverflowError or AttributeError, or went on with a value it misread (a str of
    segments or roles taken letter by letter); each now raises InvalidInput."""
    with pytest.raises(InvalidInput):
        call()
