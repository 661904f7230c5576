"""Compaction: the view of a thread sent to a model, never a deletion.

Token counting (`ExactCounter`, `ApproximateCounter`), pure trimming strategies
(`sliding_window`, `token_budget`), the running summary (`RunningSummary` with the `run`/`arun`
drivers), summarizers (`ExtractiveSummarizer`, or a host model through the integrations), and
`Compactor`, which keeps the raw thread in a store and persists each summary as a record of the
messages it covers (and, given a memory store, keeps the facts of folded messages as long-term
memories: `ExtractiveFacts`).

Examples:
    >>> from memfold import Message, open_store
    >>> from memfold.compaction import ApproximateCounter, Compactor, RunningSummary
    >>> store = open_store("memory://")
    >>> _ = store.append("t1", [Message(role="user", content="hello")])
    >>> compactor = Compactor(store, RunningSummary(500, counter=ApproximateCounter()))
    >>> [m.content for m in compactor.view("t1")]
    ['hello']
"""

from memfold.compaction.compactor import RECORD_KEY, Compactor
from memfold.compaction.excerpts import excerpt
from memfold.compaction.facts import ExtractiveFacts, Fact, FactExtractor
from memfold.compaction.summarizers import (
    CONDENSE_PROMPT,
    EXTEND_PROMPT,
    SUMMARIZE_PROMPT,
    ExtractiveSummarizer,
    Summarizer,
    SummarizeRequest,
    render_prompt,
    render_transcript,
)
from memfold.compaction.summary import (
    SEGMENT_SEPARATOR,
    SUMMARY_KEY,
    Compacted,
    CompactionRecord,
    Fold,
    RunningSummary,
    arun,
    run,
)
from memfold.compaction.tokens import (
    ApproximateCounter,
    ExactCounter,
    TokenCounter,
    default_counter,
    render_chat,
)
from memfold.compaction.units import split
from memfold.compaction.window import sliding_window, token_budget

__all__ = [
    "CONDENSE_PROMPT",
    "EXTEND_PROMPT",
    "RECORD_KEY",
    "SEGMENT_SEPARATOR",
    "SUMMARIZE_PROMPT",
    "SUMMARY_KEY",
    "ApproximateCounter",
    "Compacted",
    "CompactionRecord",
    "Compactor",
    "ExactCounter",
    "ExtractiveFacts",
    "ExtractiveSummarizer",
    "Fact",
    "FactExtractor",
    "Fold",
    "RunningSummary",
    "SummarizeRequest",
    "Summarizer",
    "TokenCounter",
    "arun",
    "default_counter",
    "excerpt",
    "render_chat",
    "render_prompt",
    "render_transcript",
    "run",
    "sliding_window",
    "split",
    "token_budget",
]
