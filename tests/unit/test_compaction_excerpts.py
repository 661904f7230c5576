"""Excerpts: the most informative sentences within a token budget, in order, per speaker."""

from __future__ import annotations

import pytest

from memfold import Message, ToolCall
from memfold.compaction import ApproximateCounter, ExactCounter, excerpt, render_transcript

COUNTER = ApproximateCounter()

CHAT = [
    Message(role="user", content="Hello! How are you? I paid 120 euros in Porto.", id="1"),
    Message(role="assistant", content="Oh nice. That is so great to hear.", id="2"),
    Message(
        role="assistant",
        content="Let me check.",
        id="3",
        tool_calls=(ToolCall("c1", "flights", {"to": "Lisbon", "day": "3 May"}),),
    ),
    Message(role="tool", content="TP1234 leaves at 09:40.", tool_call_id="c1", id="4"),
    Message(role="user", content="Ok cool. Bo joins me on 4 June.", name="ana", id="5"),
]


def test_what_fits_is_returned_unchanged() -> None:
    assert excerpt(CHAT, 1000, COUNTER) == CHAT


@pytest.mark.parametrize("counter", [COUNTER, ExactCounter()], ids=["approximate", "exact"])
@pytest.mark.parametrize("budget", [8, 25, 40, 60])
def test_the_excerpt_fits_and_keeps_order_and_speakers(counter: object, budget: int) -> None:
    assert isinstance(counter, (ApproximateCounter, ExactCounter))
    out = excerpt(CHAT, budget, counter)
    assert counter.count_text(render_transcript(out)) <= budget
    ids = [m.id for m in out]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids))
    by_id = {m.id: m for m in CHAT}
    for m in out:
        source = by_id[m.id]
        assert (m.role, m.name, m.tool_call_id) == (source.role, source.name, source.tool_call_id)
        assert not m.tool_calls
        kept = render_transcript([m]).split(": ", 1)[1].split(" ")
        assert set(kept) <= set(render_transcript([source]).split(": ", 1)[1].split())


def test_names_dates_and_numbers_come_before_small_talk() -> None:
    out = render_transcript(excerpt(CHAT, 50, COUNTER))
    for fact in ("120 euros in Porto", "TP1234 leaves at 09:40", "Bo joins me on 4 June"):
        assert fact in out
    for chat in ("Hello!", "How are you?", "Oh nice.", "so great"):
        assert chat not in out
    assert "user (ana): Bo joins me on 4 June." in out
    assert "tool [result of c1]: TP1234" in out


def test_a_tool_call_is_one_sentence() -> None:
    call = Message(
        role="assistant",
        content="Yes, I will do that for you.",
        tool_calls=CHAT[2].tool_calls,
        id="3",
    )
    out = excerpt([call], 20, COUNTER)
    assert [m.content for m in out] == ['[call c1] flights({"to":"Lisbon","day":"3 May"})']


def test_nothing_fits_nothing_is_sent() -> None:
    assert excerpt(CHAT, 1, COUNTER) == []
