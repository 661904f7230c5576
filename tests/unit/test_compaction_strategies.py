"""Property tests: every strategy's view keeps the system messages first, keeps tool calls with
their results (parallel calls too), never starts with a tool result, and fits its budget; the
running summary sends each message to the summarizer once and loses none."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memfold import InvalidInput, Message, ToolCall
from memfold.compaction import (
    ApproximateCounter,
    Compacted,
    CompactionRecord,
    ExtractiveSummarizer,
    Fold,
    RunningSummary,
    SummarizeRequest,
    arun,
    render_transcript,
    run,
    sliding_window,
    split,
    token_budget,
)
from memfold.compaction.tokens import REPLY_TOKENS

COUNTER = ApproximateCounter()


def _text(draw: st.DrawFn, high: int = 30) -> str:
    return " ".join(draw(st.lists(st.sampled_from(WORDS_LIST), max_size=high)))


WORDS_LIST = [
    "Ana",
    "paid",
    "12",
    "euros",
    "in",
    "Lisbon",
    "on",
    "May",
    "3",
    "for",
    "the",
    "blue",
    "tram",
    ".",
]


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """Threads with system messages, tool calls (parallel ones, results in any order), orphan
    leading tool results and the odd mid-thread system message."""
    out: list[Message] = []
    for _ in range(draw(st.integers(0, 2))):
        out.append(Message(role="system", content=_text(draw, 12)))
    if draw(st.booleans()) and draw(st.booleans()):
        out.append(Message(role="tool", content=_text(draw, 5), tool_call_id="lost"))
    calls = 0
    for _ in range(draw(st.integers(0, 14))):
        if draw(st.integers(0, 9)) == 0:
            out.append(Message(role="system", content=_text(draw, 5)))
        out.append(Message(role="user", content=_text(draw)))
        for _ in range(draw(st.integers(0, 3))):
            n = draw(st.integers(0, 3))
            ids = [f"c{calls + i}" for i in range(n)]
            calls += n
            args = {"q": _text(draw, 6)}
            out.append(
                Message(
                    role="assistant",
                    content=_text(draw, 10),
                    tool_calls=tuple(ToolCall(i, "lookup", args) for i in ids),
                )
            )
            for i in draw(st.permutations(ids)):
                out.append(Message(role="tool", content=_text(draw, 20), tool_call_id=i))
    return [
        Message(m.role, m.content, m.name, f"m{i:03}", m.tool_calls, m.tool_call_id)
        for i, m in enumerate(out)
    ]


def check_view(thread: Sequence[Message], view: Sequence[Message], extra: int = 0) -> None:
    """The invariants every view holds; ``extra`` messages (a summary) follow the pinned ones."""
    pinned, _ = split(thread)
    assert list(view[: len(pinned)]) == list(pinned), "system messages first"
    rest = list(view[len(pinned) + extra :])
    if rest:
        assert rest[0].role not in {"tool", "function"}, "starts with a tool result"
        assert rest == list(thread[len(thread) - len(rest) :]), "a suffix of the thread"
    shown = {m.id for m in view}
    callers = {c.id: m.id for m in thread for c in m.tool_calls}
    for m in thread:
        if m.role == "tool" and m.tool_call_id in callers and m.id in shown:
            assert callers[m.tool_call_id] in shown, "a result without its call"
        for c in m.tool_calls if m.id in shown else ():
            results = [r.id for r in thread if r.role == "tool" and r.tool_call_id == c.id]
            assert all(r in shown for r in results), "a call without its results"


def _newest_unit_cost(thread: Sequence[Message]) -> int:
    pinned, units = split(thread)
    return (
        REPLY_TOKENS
        + sum(COUNTER.count_message(m) for m in pinned)
        + (sum(COUNTER.count_message(m) for m in units[-1]) if units else 0)
    )


@settings(max_examples=100, deadline=None)
@given(thread=conversations(), turns=st.integers(1, 6))
def test_sliding_window_invariants(thread: list[Message], turns: int) -> None:
    """The window is the system messages plus at most ``turns`` whole turns."""
    view = sliding_window(thread, turns)
    check_view(thread, view)
    pinned, _ = split(thread)
    assert sum(1 for m in view[len(pinned) :] if m.role == "user") <= turns


@settings(max_examples=100, deadline=None)
@given(thread=conversations(), budget=st.integers(20, 700))
def test_token_budget_invariants(thread: list[Message], budget: int) -> None:
    """The view fits the budget, or the newest group with the system messages cannot."""
    try:
        view = token_budget(thread, budget, COUNTER)
    except InvalidInput:
        assert _newest_unit_cost(thread) > budget
        return
    check_view(thread, view)
    assert COUNTER.count_messages(view) <= budget
    longer = token_budget(thread, budget + 200, COUNTER)
    assert len(longer) >= len(view), "the largest suffix that fits"


class Recording:
    """The extractive summarizer, recording every request it is sent."""

    def __init__(self) -> None:
        self.requests: list[SummarizeRequest] = []
        self.inner = ExtractiveSummarizer()

    def summarize(self, request: SummarizeRequest) -> str:
        self.requests.append(request)
        return self.inner.summarize(request)

    async def asummarize(self, request: SummarizeRequest) -> str:
        self.requests.append(request)
        return await self.inner.asummarize(request)


def _drive(flow: Fold, summarizer: Recording, use_async: bool) -> Compacted:
    return asyncio.run(arun(flow, summarizer)) if use_async else run(flow, summarizer)


def _grow(
    thread: list[Message], max_tokens: int, use_async: bool, input_tokens: int | None
) -> None:
    strategy = RunningSummary(max_tokens, counter=COUNTER, input_tokens=input_tokens)
    summarizer = Recording()
    record: CompactionRecord | None = None
    pinned, _ = split(thread)
    for n in range(len(pinned) + 1, len(thread) + 1):
        prefix = thread[:n]
        flow = strategy.fold(prefix, record)
        try:
            done = _drive(flow, summarizer, use_async)
        except InvalidInput:
            assert _newest_unit_cost(prefix) + strategy.summary_tokens > max_tokens - 40
            return
        record = done.record
        check_view(prefix, done.view, extra=1 if record else 0)
        assert COUNTER.count_messages(done.view) <= max_tokens
        if record is not None:
            assert COUNTER.count_text(record.summary) <= strategy.summary_tokens
            assert prefix[record.end - 1].id == record.last_id
            rest = done.view[len(pinned) + 1 :]
            assert [m.id for m in prefix[record.end : record.end + len(rest)]] == [
                m.id for m in rest
            ], "nothing between the summary and the kept messages is lost"
            assert record.summary == "\n".join(record.segments)
    sent = [m.id for r in summarizer.requests for m in r.messages]
    assert len(sent) == len(set(sent)), "a message was summarized twice"
    if record is None:
        return
    evicted = [m.id for m in thread[len(pinned) : record.end]]
    if input_tokens is None:
        assert sent == evicted, "every word of every evicted message is sent"
        return
    assert sent == [i for i in evicted if i in set(sent)], "excerpts keep the order"
    for r in summarizer.requests:
        assert COUNTER.count_text(render_transcript(r.messages)) <= input_tokens


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    thread=conversations(),
    max_tokens=st.integers(220, 600),
    input_tokens=st.one_of(st.none(), st.integers(5, 150)),
)
def test_running_summary_invariants(
    thread: list[Message], max_tokens: int, input_tokens: int | None
) -> None:
    """Turn by turn, each view holds the invariants and the budget, each evicted message is
    sent to the summarizer at most once (exactly once, whole, with ``input_tokens=None``;
    else within that budget), and the summary plus the view cover the whole thread."""
    _grow(thread, max_tokens, use_async=False, input_tokens=input_tokens)


@pytest.mark.parametrize("use_async", [False, True])
def test_running_summary_folds_incrementally(use_async: bool) -> None:
    """A long thread folds several times; each fold sends only its new messages, alone while
    their summary fits as one more segment and with the summary so far when it must be
    merged, and the sync and async drivers behave alike."""
    thread = [Message(role="system", content="Be brief.", id="s")] + [
        Message(
            role=r, content=f"On May {i % 28 + 1} Ana paid {i} euros for tram {i}.", id=f"{r}{i}"
        )
        for i in range(80)
        for r in ("user", "assistant")
    ]
    strategy = RunningSummary(300, counter=COUNTER)
    summarizer = Recording()
    record = None
    folds = 0
    for n in range(2, len(thread) + 1):
        flow = strategy.fold(thread[:n], record)
        done = _drive(flow, summarizer, use_async)
        folds += done.folded
        record = done.record
    assert record is not None
    assert folds >= 5
    assert len(record.folds) == folds
    merges = [r for r in summarizer.requests if r.messages and r.previous]
    alone = [r for r in summarizer.requests if r.messages and not r.previous]
    assert len(merges) + len(alone) == folds
    assert 0 < len(merges) < len(alone), "the summary so far is sent only to merge it"
    assert all(r.max_tokens == strategy.segment_tokens for r in summarizer.requests)
    assert record.segments
    assert record.first_id == "user0"


def test_running_summary_refuses_budgets_that_cannot_fit() -> None:
    """keep_tokens plus summary_tokens over max_tokens, a segment larger than the summary and
    an input budget under one token are refused up front."""
    with pytest.raises(InvalidInput, match="keep_tokens"):
        RunningSummary(100, keep_tokens=80, summary_tokens=30, counter=COUNTER)
    with pytest.raises(InvalidInput, match="segment_tokens"):
        RunningSummary(1000, summary_tokens=100, segment_tokens=101, counter=COUNTER)
    with pytest.raises(InvalidInput, match="input_tokens"):
        RunningSummary(1000, input_tokens=0, counter=COUNTER)
    strategy = RunningSummary(1000, counter=COUNTER)
    assert (strategy.summary_tokens, strategy.segment_tokens, strategy.input_tokens) == (
        200,
        50,
        150,
    )


def test_system_messages_alone_over_budget_are_refused() -> None:
    """A thread of only system messages over max_tokens is refused as fold documents (and as
    token_budget does), not returned over budget."""
    thread = [Message(role="system", content="word " * 1000, id="s")]
    with pytest.raises(InvalidInput, match="system messages alone"):
        token_budget(thread, 200, COUNTER)
    with pytest.raises(InvalidInput, match="system messages alone"):
        run(RunningSummary(200, counter=COUNTER).fold(thread, None), ExtractiveSummarizer())


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("after", [0, 3])
def test_a_summary_from_a_larger_budget_is_condensed(after: int, use_async: bool) -> None:
    """A record saved under a larger max_tokens whose summary no longer fits, with nothing to
    evict (``after`` new messages that fit in keep_tokens, or none), has its summary condensed
    to a segment: the view fits and the record covers the same messages."""
    thread = [Message(role="system", content="Be brief.", id="s")] + [
        Message(role=r, content=f"Turn {i}: Ana paid {i} dollars in Lisbon.", id=f"{r}{i}")
        for i in range(20)
        for r in ("user", "assistant")
    ]
    summary = " ".join(f"Ana paid {i} dollars in Lisbon on May {i}." for i in range(60))
    old = CompactionRecord((summary,), "user0", "assistant9", 21, 20, (("user0", "assistant9"),))
    strategy = RunningSummary(300, counter=COUNTER)
    summarizer = Recording()
    done = _drive(strategy.fold(thread[: old.end + after], old), summarizer, use_async)
    assert COUNTER.count_messages(done.view) <= 300
    assert done.folded
    assert done.record is not None
    assert replace(done.record, segments=old.segments) == old
    assert COUNTER.count_text(done.record.summary) <= strategy.segment_tokens
    assert [(r.messages, r.previous) for r in summarizer.requests][:1] == [((), summary)]
    assert [m.id for m in done.view] == ["s", "memfold-summary-assistant9"] + [
        m.id for m in thread[old.end : old.end + after]
    ]


def test_a_fold_sends_an_excerpt_of_its_messages() -> None:
    """Past input_tokens a fold sends the evicted messages' most informative sentences (the
    names, dates and numbers, not the small talk); with None it sends every word."""
    thread = [Message(role="system", content="Be brief.", id="s")]
    for i in range(30):
        thread += [
            Message(role="user", content=f"Hi! Ana flew to Lisbon on May {i}.", id=f"u{i}"),
            Message(role="assistant", content="Oh, that sounds lovely, tell me more!", id=f"a{i}"),
        ]
    for input_tokens in (60, None):
        summarizer = Recording()
        strategy = RunningSummary(
            400, summary_tokens=80, counter=COUNTER, input_tokens=input_tokens
        )
        run(strategy.fold(thread, None), summarizer)
        [request] = summarizer.requests
        text = render_transcript(request.messages)
        if input_tokens is None:
            assert list(request.messages) == thread[1 : 1 + len(request.messages)]
            assert len(request.messages) > 20
        else:
            assert COUNTER.count_text(text) <= input_tokens
            assert "lovely" not in text
            assert "Hi!" not in text
            assert text.count("user: Ana flew to Lisbon on May") >= 3


def test_records_of_version_1_still_load() -> None:
    """A record saved before summaries had segments loads with its summary as one segment;
    a record round-trips through to_dict."""
    old = {"version": 1, "summary": "Ana paid.", "first_id": "a", "last_id": "b", "end": 3,
           "covered": 2, "folds": [["a", "b"]]}  # fmt: skip
    record = CompactionRecord.from_dict(old)
    assert record.segments == ("Ana paid.",)
    assert record.summary == "Ana paid."
    assert CompactionRecord.from_dict(record.to_dict()) == record
    with pytest.raises(InvalidInput):
        CompactionRecord.from_dict({"version": 2, "first_id": "a"})


class Verbose:
    """A summarizer that ignores the budget: it always answers with ``text``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def summarize(self, request: SummarizeRequest) -> str:
        return self.text

    async def asummarize(self, request: SummarizeRequest) -> str:
        return self.text


@pytest.mark.parametrize(
    ("text", "ending"),
    [(" ".join(f"Ana paid {i} euros on May {i}." for i in range(200)), "."), ("word " * 900, "")],
    ids=["sentences", "one-long-sentence"],
)
def test_an_overlong_summary_is_cut_after_its_last_whole_sentence(text: str, ending: str) -> None:
    """A summary still over budget after condensing is cut after the last sentence that fits
    (at a word boundary when not even one sentence fits), within summary_tokens."""
    thread = [
        Message(role=r, content=f"Turn {i}: Ana paid {i} euros.", id=f"{r}{i}")
        for i in range(60)
        for r in ("user", "assistant")
    ]
    strategy = RunningSummary(300, summary_tokens=60, counter=COUNTER)
    done = run(strategy.fold(thread, None), Verbose(text))
    assert done.record is not None
    summary = done.record.summary
    assert 0 < COUNTER.count_text(summary) <= 60
    assert text.startswith(summary)
    assert summary.endswith(ending) if ending else summary.endswith("word")


@pytest.mark.parametrize("deleted", ["first", "middle", "last"])
def test_running_summary_starts_again_without_a_deleted_covered_message(deleted: str) -> None:
    """Given the thread without one of the messages a record covers (an agent state after a
    RemoveMessage, say), a fold summarizes the rest from scratch instead of keeping the old
    summary."""
    thread = [
        Message(
            role=r, content=f"On May {i % 28 + 1} Ana paid {i} euros for tram {i}.", id=f"{r}{i}"
        )
        for i in range(40)
        for r in ("user", "assistant")
    ]
    strategy = RunningSummary(300, counter=COUNTER, input_tokens=None)
    record = run(strategy.fold(thread, None), Recording()).record
    assert record is not None
    last = record.end - 1
    at = {"first": 0, "middle": last // 2, "last": last}[deleted]
    summarizer = Recording()
    done = run(strategy.fold(thread[:at] + thread[at + 1 :], record), summarizer)
    assert done.record is not None
    assert len(done.record.folds) == 1
    sent = [m.id for r in summarizer.requests for m in r.messages]
    assert sent[0] == thread[1 if at == 0 else 0].id
    assert thread[at].id not in sent
    assert all(r.previous is None for r in summarizer.requests if r.messages)
