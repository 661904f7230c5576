"""The Compactor's running summary written by a real model, through LangChain's ChatOpenAI and
LlamaIndex's OpenAILike, replayed from cassettes: the summary message stands for the range its
record covers, `expand` returns the originals, each fold sends only the newly evicted messages
in the configured prompts, and a summary over its budget is condensed."""

from __future__ import annotations

import pytest
from vcr.cassette import Cassette

from memfold import open_store
from memfold.compaction import SUMMARY_KEY, CompactionRecord, Compactor, Summarizer
from memfold.compaction.tokens import REPLY_TOKENS
from memfold.integrations.langchain.summarizer import ChatModelSummarizer
from memfold.integrations.llama_index.summarizer import LLMSummarizer
from tests.cassettes.support import (
    COUNTER,
    MAX_TOKENS,
    PROMPTS,
    SUMMARY_REPLY_TOKENS,
    chat_openai,
    check_folds,
    conversation,
    ids,
    openai_like,
    replaying,
    strategy,
)


def summarizer(host: str) -> Summarizer:
    """The host's model summarizer on the recording server, with `PROMPTS`."""
    if host == "langchain":
        return ChatModelSummarizer(chat_openai(SUMMARY_REPLY_TOKENS), **PROMPTS)
    return LLMSummarizer(openai_like(SUMMARY_REPLY_TOKENS), **PROMPTS)


@pytest.mark.vcr
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("host", ["langchain", "llama_index"])
async def test_running_summary_by_a_real_model(host: str, use_async: bool, vcr: Cassette) -> None:
    """A chat appended one message at a time, viewed after each, stays within budget; the
    final view is the system message, the summary and the newest messages."""
    store = open_store("memory://")
    compactor = Compactor(store, strategy(), summarizer(host))
    records: list[CompactionRecord] = []
    for message in conversation():
        if use_async:
            await store.aappend("chat", [message])
            view = await compactor.aview("chat")
            record = await compactor.arecord("chat")
        else:
            store.append("chat", [message])
            view = compactor.view("chat")
            record = compactor.record("chat")
        assert REPLY_TOKENS + COUNTER.count_messages(view) <= MAX_TOKENS
        if record is not None and (not records or record != records[-1]):
            records.append(record)
    thread = store.load("chat")
    assert len(records) >= 2, "the chat should fold more than once"
    last = records[-1]
    system, summary, *kept = view
    assert system == thread[0]
    assert summary.text == strategy().prefix + last.summary
    assert summary.metadata[SUMMARY_KEY] == {"first_id": thread[1].id, "last_id": last.last_id}
    assert last.covered == last.end - 1
    assert ids(kept) == ids(thread[last.end :])
    if use_async:
        assert await compactor.aexpand(summary, "chat") == thread[1 : last.end]
    else:
        assert compactor.expand(summary, "chat") == thread[1 : last.end]
    check_folds(vcr, thread, records)
    if replaying(vcr):
        assert vcr.all_played, "a recorded summarizer call was not made"
    store.close()
