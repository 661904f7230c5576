"""What the cassette tests share: the recording server's address, the header scrubbing, a
LoCoMo-like conversation, the strategy and prompts it is folded under, the two hosts' models on
the server, and readers of a cassette's recorded requests and replies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from langchain_openai import ChatOpenAI
from llama_index.llms.openai_like import OpenAILike
from pydantic import SecretStr
from vcr.cassette import Cassette
from vcr.request import Request

from memfold import Message
from memfold.compaction import (
    SEGMENT_SEPARATOR,
    ApproximateCounter,
    CompactionRecord,
    RunningSummary,
    SummarizeRequest,
    excerpt,
    render_prompt,
)

BASE_URL: Final = "http://127.0.0.1:8765/v1"
"""Where scripts/llm_server.sh serves the model."""
MODEL: Final = "gemma-3-270m"
API_KEY: Final = "sk-memfold-cassette-not-a-real-key"
"""Sent to the server, kept out of every cassette (test_hygiene.py checks)."""
SEED: Final = 1234
KEPT_HEADERS: Final = frozenset({"content-type"})


def chat_messages(request: Request) -> list[Any]:
    """The ``messages`` of a chat-completion request body."""
    messages: list[Any] = json.loads(request.body or b"{}")["messages"]
    return messages


def same_chat(sent: Request, recorded: Request) -> None:
    """The ``chat`` matcher: both requests send the same chat messages."""
    assert chat_messages(sent) == chat_messages(recorded), "the chat messages differ"


def _kept(headers: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in headers.items() if k.lower() in KEPT_HEADERS}


def scrub_request(request: Request) -> Request:
    """``request`` with only `KEPT_HEADERS` (vcrpy passes a copy)."""
    request.headers = _kept(dict(request.headers))
    return request


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """``response`` with only `KEPT_HEADERS`."""
    response["headers"] = _kept(response["headers"])
    return response


COUNTER: Final = ApproximateCounter()
MAX_TOKENS: Final = 320
SUMMARY_TOKENS: Final = 60
SUMMARY_REPLY_TOKENS: Final = 150
"""The summarizer model's reply limit: above `SUMMARY_TOKENS`, so condensing is exercised."""

PROMPTS: Final = {
    "summarize": "Write a short summary of this chat in at most {max_tokens} tokens.\n\n{messages}",
    "extend": (
        "Summary so far:\n{previous}\n\nNew messages:\n{messages}\n\n"
        "Write one updated summary in at most {max_tokens} tokens."
    ),
    "condense": "Shorten this summary to at most {max_tokens} tokens:\n\n{previous}",
}
"""Prompts unlike memfold's defaults, so a request shows which template it came from."""

SYSTEM: Final = "You are Melanie's assistant. Answer in one short sentence."

_TURNS: Final = [
    ("Caroline", "Hey Mel! I went to an LGBTQ support group on 7 May 2023 and it was so moving."),
    ("Melanie", "That's great, Caroline! What happened there? I painted a sunrise over the lake."),
    ("Caroline", "People told their transgender stories. It made me want to study counseling."),
    ("Melanie", "You'd be a great counselor. My kids and I went camping at Pine Lake last week."),
    ("Caroline", "I'm looking into a master's in counseling at Portland State, starting in fall."),
    ("Melanie", "Portland State has a strong program. Will you keep working at the bakery?"),
    ("Caroline", "Yes, 20 hours a week at Rosie's Bakery, so I can pay the $4,300 semester fee."),
    ("Melanie", "Smart. I ran a charity 5K on 20 May and raised $350 for the children's hospital."),
    ("Caroline", "Amazing, Mel! I adopted a dog named Oscar from the shelter on 25 May."),
    ("Melanie", "Oscar! What breed is he? My son Sam wants a golden retriever now."),
    ("Caroline", "A two-year-old beagle mix. He already knows sit and stay."),
    ("Melanie", "Cute. I signed up for a pottery class on Thursdays at the community center."),
    ("Caroline", "I have my Portland State interview on 9 June 2023 at 10 am. I'm nervous."),
    ("Melanie", "You'll do fine. Tell them about the support group and your mentoring."),
    ("Caroline", "Good idea. I mentor two teens at the youth center every Saturday."),
    ("Melanie", "We're driving to Yellowstone on 1 July with the kids for eight days."),
    ("Caroline", "Take pictures of Old Faithful! My mom visits from Sweden on 15 July."),
    ("Melanie", "How long is your mom staying? I finished my first bowl in pottery class."),
    ("Caroline", "Three weeks. I got into Portland State! Classes start 25 September."),
    ("Melanie", "Congratulations, Caroline! We should celebrate at the Thai place on Elm Street."),
    ("Caroline", "Yes! Friday at 7 pm works for me. I'll bring Oscar's photos."),
    ("Melanie", "Friday at 7 it is. Sam scored two goals in his soccer final on Saturday."),
    ("Caroline", "Tell Sam congratulations! I'm reading 'Becoming' by Michelle Obama."),
    ("Melanie", "I loved that book. I'm painting a portrait of Oscar for your new apartment."),
]


def conversation() -> list[Message]:
    """A system message and a 24-turn slice of a LoCoMo-like chat between two friends (the
    user is Caroline, the assistant Melanie)."""
    return [Message(role="system", content=SYSTEM)] + [
        Message(role="user" if who == "Caroline" else "assistant", content=text, name=who)
        for who, text in _TURNS
    ]


def strategy() -> RunningSummary:
    """Small budgets, so the conversation folds several times; segments of two thirds of the
    summary, so the second fold merges; an input budget that still cuts each fold's messages."""
    return RunningSummary(
        MAX_TOKENS,
        keep_tokens=120,
        summary_tokens=SUMMARY_TOKENS,
        segment_tokens=40,
        input_tokens=100,
        counter=COUNTER,
    )


def ids(messages: Sequence[Message]) -> list[str | None]:
    """The ids of ``messages``."""
    return [m.id for m in messages]


def chat_openai(max_tokens: int) -> ChatOpenAI:
    """LangChain's OpenAI chat model on the recording server, greedy. The reply limit goes as
    ``max_tokens``: ChatOpenAI would send ``max_completion_tokens``, which llama-cpp-python's
    server ignores."""
    return ChatOpenAI(
        model=MODEL,
        base_url=BASE_URL,
        api_key=SecretStr(API_KEY),
        temperature=0,
        seed=SEED,
        extra_body={"max_tokens": max_tokens},
        max_retries=0,
    )


def openai_like(max_tokens: int) -> OpenAILike:
    """LlamaIndex's OpenAI-compatible LLM on the recording server, greedy."""
    return OpenAILike(
        model=MODEL,
        api_base=BASE_URL,
        api_key=API_KEY,
        is_chat_model=True,
        temperature=0.0,
        max_tokens=max_tokens,
        additional_kwargs={"seed": SEED},
        max_retries=0,
    )


def replaying(cassette: Cassette) -> bool:
    """Whether the cassette is replayed (not being recorded)."""
    return bool(cassette.record_mode == "none")


def _reply(response: dict[str, Any]) -> str:
    body: Any = json.loads(response["body"]["string"])
    return str(body["choices"][0]["message"]["content"])


def is_summarizer_call(messages: list[Any]) -> bool:
    """Whether a request's chat messages are a summarizer's prompt (one message from `PROMPTS`)."""
    starts = tuple(p.split("{", 1)[0] for p in PROMPTS.values())
    return len(messages) == 1 and str(messages[0]["content"]).startswith(starts)


def summarizer_calls(cassette: Cassette) -> list[tuple[str, str]]:
    """(prompt, reply) of each recorded summarizer call, in order."""
    calls = zip(cassette.requests, cassette.responses, strict=True)
    found = [(chat_messages(request), response) for request, response in calls]
    return [(str(m[0]["content"]), _reply(r)) for m, r in found if is_summarizer_call(m)]


def check_folds(
    cassette: Cassette, thread: Sequence[Message], records: Sequence[CompactionRecord]
) -> None:
    """The recorded summarizer calls are exactly what the folds behind ``records`` (each new
    record, oldest first) had to send for ``thread``, in the configured prompts: each fold an
    excerpt of only its newly evicted messages, alone, or with the summary so far when one more
    segment would not fit beside it (a merge); a reply over its budget is condensed; and every
    summary fits its budget."""
    folding = strategy()
    at = {m.id: i for i, m in enumerate(thread)}
    expected = []
    for k, record in enumerate(records):
        assert len(record.folds) == k + 1, "a view folded more than once, or a fold was lost"
        first, last = record.folds[k]
        so_far = records[k - 1].summary if k else ""
        if k:
            assert at[first] == at[records[k - 1].last_id] + 1, "folds overlap or leave a gap"
        evicted = thread[at[first] : at[last] + 1]
        assert folding.input_tokens is not None
        sent = tuple(excerpt(evicted, folding.input_tokens, COUNTER))
        assert len(sent) < len(evicted), "the excerpt left nothing out"
        room = SUMMARY_TOKENS - COUNTER.count_text(so_far + SEGMENT_SEPARATOR)
        merge = bool(k) and folding.segment_tokens > room
        request = SummarizeRequest(sent, so_far if merge else None, folding.segment_tokens)
        expected.append(render_prompt(request, **PROMPTS))
        if k and not merge:
            assert record.segments[:-1] == records[k - 1].segments, "a fold changed old segments"
        assert COUNTER.count_text(record.summary) <= SUMMARY_TOKENS
    assert any(p.startswith(PROMPTS["extend"].split("{", 1)[0]) for p in expected), "no merge"
    calls = summarizer_calls(cassette)
    condense = PROMPTS["condense"].split("{", 1)[0]
    assert [p for p, _ in calls if not p.startswith(condense)] == expected
    for (prompt, reply), after in zip(calls, [*calls[1:], None], strict=True):
        if prompt.startswith(condense):
            continue
        asked = PROMPTS["condense"].format(
            previous=reply.strip(), max_tokens=folding.segment_tokens
        )
        if COUNTER.count_text(reply.strip()) > folding.segment_tokens:
            assert after is not None, "an oversized summary was kept"
            assert after[0] == asked, "an oversized summary was kept"
        else:
            assert after is None or not after[0].startswith(condense)
    assert any(p.startswith(condense) for p, _ in calls), "no reply needed condensing"
