"""Token counters: the exact counter matches an independent tokenizer on the rendered chat, the
approximate one stays close to it, and both count tool calls, names, results and media."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import bpe_openai  # type: ignore[import-untyped]
import pytest
import tiktoken
import tiktoken_ext.openai_public as openai_public  # type: ignore[import-untyped]
from tiktoken.load import load_tiktoken_bpe

from memfold import InvalidInput, Message, Part, ToolCall
from memfold.compaction import ApproximateCounter, ExactCounter, render_chat
from memfold.compaction.tokens import MEDIA_TOKENS, REPLY_TOKENS, default_counter

DOCS = Path(__file__).resolve().parents[2] / "docs"

THREAD = [
    Message(role="system", content="You are a careful travel agent. <|endoftext|> is text."),
    Message(role="user", content="Book me a flight to Lisbon on 3 May, and a hotel.", name="ana"),
    Message(
        role="assistant",
        content="",
        tool_calls=(
            ToolCall("call_1", "search_flights", {"to": "LIS", "date": "2026-05-03"}),
            ToolCall("call_2", "search_hotels", {"city": "Lisbon", "nights": 4, "max": 120.5}),
        ),
    ),
    Message(role="tool", content='[{"flight": "TP1351", "eur": 89}]', tool_call_id="call_1"),
    Message(role="tool", content="Hotel Lx: 110 EUR/night", tool_call_id="call_2", name="hotels"),
    Message(role="assistant", content="TP1351 for 89 EUR and Hotel Lx; shall I book both?"),
    Message(role="user", content=(Part("text", text="Yes."), Part("text", text="Thanks!"))),
]


def _tiktoken(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tiktoken.Encoding:
    """tiktoken's own encoder for ``name`` built from the ranks bpe-openai bundles (tiktoken
    cannot download here), with the three ChatML markers as special tokens."""
    bundled = Path(bpe_openai.__file__).parent / "data" / f"{name}.tiktoken.gz"
    plain = tmp_path / f"{name}.tiktoken"
    plain.write_bytes(gzip.decompress(bundled.read_bytes()))
    monkeypatch.setattr(
        openai_public, "load_tiktoken_bpe", lambda *a, **k: load_tiktoken_bpe(str(plain))
    )
    params: dict[str, Any] = openai_public.ENCODING_CONSTRUCTORS[name]()
    top = max(params["mergeable_ranks"].values()) + 10_000
    markers = {"<|im_start|>": top, "<|im_sep|>": top + 1, "<|im_end|>": top + 2}
    params["special_tokens"] = {**params["special_tokens"], **markers}
    return tiktoken.Encoding(**params)


@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
def test_exact_counter_matches_tiktoken_on_the_rendered_chat(
    encoding: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The exact count of a thread with names, parallel tool calls and results equals
    tiktoken's count of its ChatML rendering."""
    reference = _tiktoken(encoding, monkeypatch, tmp_path)
    text = render_chat(THREAD)
    markers = {"<|im_start|>", "<|im_sep|>", "<|im_end|>"}
    expected = len(reference.encode(text, allowed_special=markers, disallowed_special=()))
    assert ExactCounter(encoding).count_messages(THREAD) == expected
    for seen in ('"nights":4', "tool:hotels call_2", "user:ana"):
        assert seen in text


def test_every_field_a_model_sees_costs_tokens() -> None:
    """Tool-call arguments, tool results, names and media parts all add to the count."""
    counter = ExactCounter()
    base = Message(role="assistant", content="ok")
    call = Message(role="assistant", content="ok", tool_calls=(ToolCall("c1", "f", {"x": 1}),))
    bigger = Message(
        role="assistant",
        content="ok",
        tool_calls=(ToolCall("c1", "f", {"x": "a long argument " * 5}),),
    )
    assert counter.count_message(base) < counter.count_message(call) < counter.count_message(bigger)
    named = Message(role="user", content="ok", name="bartholomew")
    assert counter.count_message(named) > counter.count_message(Message(role="user", content="ok"))
    result = Message(role="tool", content="42", tool_call_id="call_abc")
    assert counter.count_message(result) > counter.count_message(Message(role="tool", content="42"))
    image = Message(
        role="user", content=(Part("text", text="ok"), Part("image", url="https://x/y.png"))
    )
    assert (
        counter.count_message(image)
        == counter.count_message(Message(role="user", content="ok")) + MEDIA_TOKENS
    )
    assert counter.count_messages([]) == REPLY_TOKENS


def test_exact_counter_cache_follows_edits() -> None:
    """A message rewritten under the same id is counted afresh, not served from the cache."""
    counter = ExactCounter()
    first = Message(role="user", content="short", id="m1")
    edited = Message(role="user", content="a much longer text than before " * 4, id="m1")
    assert counter.count_message(first) < counter.count_message(edited)
    assert counter.count_message(first) == counter.count_message(
        Message(role="user", content="short")
    )


def test_bad_encoding_and_ratio_are_refused() -> None:
    """An unknown encoding or a non-positive ratio is an InvalidInput naming the choices."""
    with pytest.raises(InvalidInput, match="o200k_base"):
        ExactCounter("nope")
    with pytest.raises(InvalidInput):
        ApproximateCounter(0)
    assert isinstance(default_counter(), ExactCounter)


def test_approximate_counter_is_within_15_percent_on_prose_and_code() -> None:
    """On conversations made of this project's own docs (prose, tables and code, one paragraph
    a message, with tool calls), the approximate count is within 15% of the exact one.
    ``benchmarks/compaction.py`` reports the same on the LoCoMo conversations."""
    exact, approx = ExactCounter(), ApproximateCounter()
    pages = sorted(DOCS.rglob("*.md"))
    assert len(pages) >= 5
    for page in pages:
        paragraphs = [p for p in page.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        thread = [
            Message(role="user" if i % 2 else "assistant", content=text)
            for i, text in enumerate(paragraphs)
        ]
        call = ToolCall(id="c1", name="read_page", arguments={"path": str(page.name)})
        thread += [
            Message(role="assistant", tool_calls=(call,)),
            Message(role="tool", tool_call_id="c1", content=paragraphs[0]),
        ]
        e, a = exact.count_messages(thread), approx.count_messages(thread)
        assert abs(a - e) / e <= 0.15, (page.name, e, a)
