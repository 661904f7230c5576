"""Compactor on every thread backend, sync and async: the raw thread stays, each fold is
persisted as a record in the thread's metadata, the next view reuses it, and `expand` returns
the covered originals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from memfold import InvalidInput, Message, ToolCall
from memfold.compaction import (
    RECORD_KEY,
    ApproximateCounter,
    CompactionRecord,
    Compactor,
    ExtractiveFacts,
    ExtractiveSummarizer,
    Fact,
    RunningSummary,
    SummarizeRequest,
)
from memfold.limits import Limits
from memfold.memories import open_memory_store
from memfold.stores import BaseThreadStore
from tests.support import drop_store, make_store

COUNTER = ApproximateCounter()


class Counting(ExtractiveSummarizer):
    """The extractive summarizer, counting the messages it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def summarize(self, request: SummarizeRequest) -> str:
        self.sent += [m.id or "" for m in request.messages]
        return super().summarize(request)


@pytest.fixture
async def tstore(backend: str, tmp_path: Path) -> AsyncIterator[BaseThreadStore]:
    """A fresh store of each backend, closed through the async API."""
    opened = make_store(backend, tmp_path)
    yield opened
    await opened.aclose()
    drop_store(opened)


def _turn(i: int) -> list[Message]:
    ask = Message(role="user", content=f"Turn {i}: Ana booked flight TP{i} on May {i % 28 + 1}.")
    if i % 3:
        return [ask, Message(role="assistant", content=f"Noted flight TP{i} for Ana, {i} euros.")]
    call = Message(
        role="assistant",
        tool_calls=(ToolCall(f"c{i}a", "price", {"f": f"TP{i}"}), ToolCall(f"c{i}b", "seat", {})),
    )
    return [
        ask,
        call,
        Message(role="tool", content=f"{i * 10} euros", tool_call_id=f"c{i}b"),
        Message(role="tool", content="12A", tool_call_id=f"c{i}a"),
    ]


@pytest.mark.parametrize("use_async", [False, True])
async def test_views_fold_persist_and_expand(tstore: BaseThreadStore, use_async: bool) -> None:
    """Over a growing thread every view fits, folds are saved beside other metadata, a view
    with nothing new sends nothing to the summarizer, and summary plus view cover the thread
    (every word of it sent once, with input_tokens=None)."""
    summarizer = Counting()
    strategy = RunningSummary(400, counter=COUNTER, input_tokens=None)
    compactor = Compactor(tstore, strategy, summarizer)
    if use_async:
        await tstore.aappend("t", Message(role="system", content="You book travel."))
        await tstore.aset_thread_metadata("t", {"owner": "ana"})
    else:
        tstore.append("t", Message(role="system", content="You book travel."))
        tstore.set_thread_metadata("t", {"owner": "ana"})
    folds = 0
    for i in range(30):
        if use_async:
            await tstore.aappend("t", _turn(i))
            done = await compactor.acompact("t")
        else:
            tstore.append("t", _turn(i))
            done = compactor.compact("t")
        folds += done.folded
        assert COUNTER.count_messages(done.view) <= 400
        assert done.view[0].content == "You book travel."
    assert folds >= 3
    before = list(summarizer.sent)
    again = await compactor.aview("t") if use_async else compactor.view("t")
    assert summarizer.sent == before, "a view with nothing new summarized again"
    assert len(before) == len(set(before))
    info = await tstore.aget_thread("t") if use_async else tstore.get_thread("t")
    assert info.metadata["owner"] == "ana"
    assert done.record is not None
    assert info.metadata[RECORD_KEY] == done.record.to_dict()
    fresh = Compactor(tstore, strategy, summarizer)
    assert (await fresh.arecord("t") if use_async else fresh.record("t")) == done.record
    summary = again[1]
    covered = await fresh.aexpand(summary, "t") if use_async else fresh.expand(summary, "t")
    thread = await tstore.aload("t") if use_async else tstore.load("t")
    assert [m.id for m in thread] == [m.id for m in [thread[0], *covered, *again[2:]]]
    assert [m.id for m in covered] == before


async def test_edited_history_starts_the_summary_again(tstore: BaseThreadStore) -> None:
    """If covered messages are deleted, the next view rebuilds the summary instead of failing,
    and expanding the old summary says its messages are gone."""
    compactor = Compactor(tstore, RunningSummary(300, counter=COUNTER))
    for i in range(20):
        await tstore.aappend("t", _turn(i))
    old = await compactor.acompact("t")
    assert old.record is not None
    thread = await tstore.aload("t")
    await tstore.adelete_messages("t", [m.id or "" for m in thread[: old.record.end]])
    new = await compactor.acompact("t")
    assert COUNTER.count_messages(new.view) <= 300
    with pytest.raises(Exception, match="no longer in the thread"):
        await compactor.aexpand(old.record, "t")
    with pytest.raises(InvalidInput):
        await compactor.aexpand(Message(role="user", content="not a summary"), "t")


async def test_unknown_thread_has_an_empty_view(tstore: BaseThreadStore) -> None:
    """A thread that does not exist yet has an empty view and no record."""
    compactor = Compactor(tstore, RunningSummary(300, counter=COUNTER))
    assert await compactor.aview("nope") == []
    assert compactor.view("nope") == []
    assert compactor.record("nope") is None


class EditsMetadata(ExtractiveSummarizer):
    """The extractive summarizer, changing the thread's metadata while it runs (as another
    writer would during a slow model call)."""

    def __init__(self, store: BaseThreadStore) -> None:
        super().__init__()
        self.store = store

    def summarize(self, request: SummarizeRequest) -> str:
        self.store.set_thread_metadata("t", {"owner": "bo"})
        return super().summarize(request)

    async def asummarize(self, request: SummarizeRequest) -> str:
        await self.store.aset_thread_metadata("t", {"owner": "bo"})
        return super().summarize(request)


@pytest.mark.parametrize("use_async", [False, True])
async def test_metadata_written_during_a_fold_is_kept(
    tstore: BaseThreadStore, use_async: bool
) -> None:
    """A metadata change made while the summarizer runs survives the record's save."""
    compactor = Compactor(tstore, RunningSummary(400, counter=COUNTER), EditsMetadata(tstore))
    tstore.set_thread_metadata("t", {"owner": "ana"})
    tstore.append("t", [m for i in range(20) for m in _turn(i)])
    done = await compactor.acompact("t") if use_async else compactor.compact("t")
    assert done.folded
    info = await tstore.aget_thread("t") if use_async else tstore.get_thread("t")
    assert info.metadata["owner"] == "bo"
    assert done.record is not None
    assert info.metadata[RECORD_KEY] == done.record.to_dict()


@pytest.mark.parametrize("use_async", [False, True])
async def test_folded_facts_become_long_term_memories(
    tstore: BaseThreadStore, tmp_path: Path, use_async: bool
) -> None:
    """Each fold's user facts are kept once in the memory store, named by their source, and
    found later by search; re-folding from scratch writes the same records, not duplicates."""
    memories = open_memory_store(f"sqlite:///{tmp_path / 'facts.db'}")
    namespace = ("default", "ana", "facts")
    compactor = Compactor(
        tstore, RunningSummary(300, counter=COUNTER), memories=memories, namespace=namespace
    )
    for i in range(20):
        await tstore.aappend("t", _turn(i))
        done = await compactor.acompact("t") if use_async else compactor.compact("t")
    assert done.record is not None
    kept = memories.list_records(namespace, limit=1000)
    by_id = {m.id: m for m in await tstore.aload("t")}
    assert kept, "no fact was kept"
    covered = {m.id for m in await compactor.aexpand(done.record, "t")}
    for record in kept:
        source = by_id[str(record.value["message_id"])]
        assert source.role == "user"
        assert source.id in covered
        assert record.text in str(source.content)
        assert record.value["thread_id"] == "t"
    hits = memories.search(namespace, "flight TP4", k=3, vector_weight=0)
    assert any("TP4" in h.record.text for h in hits)
    await tstore.aset_thread_metadata("t", {})  # forget the record: fold everything again
    await compactor.acompact("t") if use_async else compactor.compact("t")
    again = memories.list_records(namespace, limit=1000)
    assert {r.id for r in kept} <= {r.id for r in again}
    assert len({(r.value["message_id"], r.text) for r in again}) == len(again)
    memories.close()


class FailsOnce(ExtractiveFacts):
    """The extractive facts, failing on the first call (as a memory store might)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def extract(self, messages: Sequence[Message]) -> list[Fact]:
        if not self.failed:
            self.failed = True
            raise ConnectionError("memory store unreachable")
        return super().extract(messages)


@pytest.mark.parametrize("use_async", [False, True])
async def test_facts_are_stored_as_the_memory_store_accepts_them_or_the_fold_is_redone(
    tstore: BaseThreadStore, use_async: bool
) -> None:
    """A fact holding a NUL character or over the store's text limit is stored cleaned and cut
    (a refusal would lose it), and facts are written before the record: a fold whose facts
    fail is not saved, so the next view redoes it and keeps them."""
    memories = open_memory_store("memory://", limits=Limits(max_memory_text_bytes=40))
    namespace = ("default", "ana", "facts")
    compactor = Compactor(
        tstore, RunningSummary(300, counter=COUNTER), memories=memories, namespace=namespace,
        facts=FailsOnce(),
    )  # fmt: skip
    await tstore.aappend("t", [
        Message(role="user", content=f"Ana paid {i} dollars in Lisbon on May {i}.\x00 Bo came.")
        for i in range(30)
    ])  # fmt: skip
    with pytest.raises(ConnectionError):
        await compactor.aview("t") if use_async else compactor.view("t")
    assert compactor.record("t") is None
    done = await compactor.acompact("t") if use_async else compactor.compact("t")
    assert done.folded
    assert compactor.record("t") == done.record
    kept = memories.list_records(namespace, limit=1000)
    assert kept, "no fact was kept"
    for record in kept:
        assert "\x00" not in record.text
        assert len(record.text.encode()) <= 40
        assert record.text.startswith("Ana paid")


def test_memories_need_a_namespace() -> None:
    """A memory store with no namespace for its facts is refused up front."""
    with pytest.raises(InvalidInput, match="namespace"):
        Compactor(
            make_store("memory", Path(".")),
            RunningSummary(300, counter=COUNTER),
            memories=open_memory_store("memory://"),
        )


@pytest.mark.parametrize(
    ("argument", "value", "match"),
    [
        ("summarizer", "gpt-4o", "ChatModelSummarizer"),
        ("summarizer", object(), "summarize and asummarize"),
        ("memories", "sqlite:///facts.db", "memory store"),
        ("facts", ExtractiveFacts().extract, "extract and aextract"),
    ],
)
def test_arguments_of_the_wrong_kind_are_refused_up_front(
    argument: str, value: object, match: str
) -> None:
    """A summarizer, memory store or fact extractor of the wrong kind (a model name, a chat
    model passed without its wrapper) is refused when the Compactor is built, saying what to
    pass, not with an AttributeError at the first fold."""
    options: dict[str, object] = {argument: value}
    if argument == "memories":
        options["namespace"] = ("default", "ana", "facts")
    store, strategy = make_store("memory", Path(".")), RunningSummary(300, counter=COUNTER)
    with pytest.raises(InvalidInput, match=match):
        Compactor(store, strategy, **options)  # type: ignore[arg-type]


class AnswersNone(ExtractiveSummarizer):
    """A summarizer that forgets to return its summary."""

    def summarize(self, request: SummarizeRequest) -> str:
        return None  # type: ignore[return-value]

    async def asummarize(self, request: SummarizeRequest) -> str:
        return None  # type: ignore[return-value]


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_summary_that_is_not_a_str_is_refused(use_async: bool) -> None:
    """A summarizer answering something other than a str gets InvalidInput, and no record is
    saved."""
    store = make_store("memory", Path("."))
    store.append("t", [m for i in range(20) for m in _turn(i)])
    compactor = Compactor(store, RunningSummary(300, counter=COUNTER), AnswersNone())
    with pytest.raises(InvalidInput, match="must return a str, got NoneType"):
        await compactor.aview("t") if use_async else compactor.view("t")
    assert compactor.record("t") is None


def test_extractive_summary_is_never_empty_when_no_sentence_fits() -> None:
    """With a budget smaller than any sentence, the most informative one is cut at a word."""
    long = "Ana moved to Lisbon on 3 May 2021 with her two cats and a piano."
    request = SummarizeRequest((Message(role="user", content=long),), None, 4)
    summary = ExtractiveSummarizer().summarize(request)
    assert summary
    assert f"user: {long}".startswith(summary)  # sentences keep their speaker
    assert len(summary) + 1 <= 4 * 4


def test_small_summaries_get_segments_that_hold_a_sentence() -> None:
    """A quarter of a small summary budget holds no sentence: the defaults have floors."""
    small = RunningSummary(120)
    assert (small.summary_tokens, small.segment_tokens, small.input_tokens) == (24, 24, 64)
    large = RunningSummary(2000, keep_tokens=800, summary_tokens=400)
    assert (large.segment_tokens, large.input_tokens) == (100, 300)


class Quoting(Counting):
    """Answers with the first word of each message it is sent, so a summary names exactly the
    messages it covers (and counts them, as `Counting` does)."""

    def summarize(self, request: SummarizeRequest) -> str:
        self.sent += [m.id or "" for m in request.messages]
        return " ".join(m.text.split()[0] for m in request.messages) or request.previous or ""


async def _tagged_thread(tstore: BaseThreadStore, compactor: Compactor) -> CompactionRecord:
    """40 messages, each starting with its own tag (``w00``…``w39``), folded once."""
    await tstore.aappend("t", [
        Message(role=("user", "assistant")[i % 2], content=f"w{i:02d} " + "pad " * 20)
        for i in range(40)
    ])  # fmt: skip
    record = (await compactor.acompact("t")).record
    assert record is not None
    return record


def _quoting(tstore: BaseThreadStore) -> Compactor:
    strategy = RunningSummary(
        300, keep_tokens=60, summary_tokens=200, segment_tokens=200, input_tokens=None,
        counter=COUNTER,
    )  # fmt: skip
    return Compactor(tstore, strategy, Quoting())


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("deleted", ["first", "middle", "last"])
async def test_deleting_a_covered_message_rebuilds_and_saves_the_summary(
    tstore: BaseThreadStore, deleted: str, use_async: bool
) -> None:
    """Deleting any message a summary covers rebuilds the summary without it on the next view
    and saves that record: the deleted text leaves the view and the thread metadata, expand
    returns the remaining messages, and later views summarize nothing again."""
    compactor = _quoting(tstore)
    old = await _tagged_thread(tstore, compactor)
    covered = await compactor.aexpand(old, "t")
    victim = covered[{"first": 0, "middle": len(covered) // 2, "last": -1}[deleted]]
    tag = victim.text.split()[0]
    assert tag in old.summary.split()
    summarizer = compactor.summarizer
    assert isinstance(summarizer, Quoting)
    before = len(summarizer.sent)
    if use_async:
        await tstore.adelete_messages("t", [victim.id or ""])
        done = await compactor.acompact("t")
        info = await tstore.aget_thread("t")
        expanded = await compactor.aexpand(done.view[0], "t")
        again = await compactor.aview("t")
    else:
        tstore.delete_messages("t", [victim.id or ""])
        done = compactor.compact("t")
        info = tstore.get_thread("t")
        expanded = compactor.expand(done.view[0], "t")
        again = compactor.view("t")
    assert done.record is not None
    assert tag not in done.view[0].text.split()
    assert info.metadata[RECORD_KEY] == done.record.to_dict()
    assert tag not in str(info.metadata)
    assert victim.id not in {m.id for m in expanded}
    assert len(expanded) + len(done.view) - 1 == 39
    assert again == done.view
    resent = summarizer.sent[before:]
    assert len(resent) == len(set(resent)) == len(expanded), "a message was summarized twice"


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_rebuilt_view_with_nothing_to_fold_drops_the_record(
    tstore: BaseThreadStore, use_async: bool
) -> None:
    """Once covered messages are deleted and the rest fits unfolded, the old record (and the
    deleted text in it) is removed from the thread metadata."""
    compactor = _quoting(tstore)
    old = await _tagged_thread(tstore, compactor)
    gone = [m.id or "" for m in (await compactor.aexpand(old, "t"))[:-2]]
    if use_async:
        await tstore.adelete_messages("t", gone)
        done = await compactor.acompact("t")
        info = await tstore.aget_thread("t")
    else:
        tstore.delete_messages("t", gone)
        done = compactor.compact("t")
        info = tstore.get_thread("t")
    assert done.record is None
    assert [m.id for m in done.view] == [m.id for m in await tstore.aload("t")]
    assert RECORD_KEY not in info.metadata


@pytest.mark.parametrize("use_async", [False, True])
async def test_deleting_a_system_message_keeps_the_summary(
    tstore: BaseThreadStore, use_async: bool
) -> None:
    """Deleting a message before the covered ones keeps the summary, summarizes nothing again,
    and saves the record's new position."""
    compactor = _quoting(tstore)
    await tstore.aappend("t", Message(role="system", content="Be brief."))
    old = await _tagged_thread(tstore, compactor)
    system = (await tstore.aload("t"))[0]
    summarizer = compactor.summarizer
    assert isinstance(summarizer, Quoting)
    before = list(summarizer.sent)
    if use_async:
        await tstore.adelete_messages("t", [system.id or ""])
        done = await compactor.acompact("t")
        saved = await compactor.arecord("t")
    else:
        tstore.delete_messages("t", [system.id or ""])
        done = compactor.compact("t")
        saved = compactor.record("t")
    assert done.record == saved == replace(old, end=old.end - 1)
    assert summarizer.sent == before


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_covered_system_message_stays_in_the_summary(
    tstore: BaseThreadStore, use_async: bool
) -> None:
    """A mid-thread system message that ends a fold is covered by the summary, not pinned:
    the Compactor's view (which loads only the pinned prefix and the tail from ``last_id``) is
    the strategy's view of the whole thread, and a system message after it keeps its place."""
    strategy = RunningSummary(400, counter=COUNTER)
    compactor = Compactor(tstore, strategy)
    thread = await tstore.aappend("t", [
        Message(role="system", content="You book travel."),
        Message(role="user", content="Ana flies to Lisbon."),
        Message(role="assistant", content="Booked."),
        Message(role="system", content="Be terse from now on."),
        Message(role="system", content="Answer in French."),
        Message(role="user", content="And Bo?"),
    ])  # fmt: skip
    record = CompactionRecord(
        ("Ana flies to Lisbon.",), thread[1].id or "", thread[3].id or "", 4, 3,
        ((thread[1].id or "", thread[3].id or ""),),
    )  # fmt: skip
    await tstore.aset_thread_metadata("t", {RECORD_KEY: record.to_dict()})
    view = await compactor.aview("t") if use_async else compactor.view("t")
    assert view == strategy.view(thread, record)
    assert [m.content for m in view[2:]] == ["Answer in French.", "And Bo?"]
    assert view[0] == thread[0]
