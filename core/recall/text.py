"""Words for memory search, and BM25 over them, the same on every backend.

A text becomes *terms*: lower-cased runs of letters and digits (`memfold.fulltext.tokenize`),
without common English stop words, each cut to a light stem (``cooking`` and ``cooked`` both
become ``cook``), so a query finds a memory phrased in another form of the same word. Backends
store a record's terms and use their own index only to find the candidates containing a query
term; the score is always `bm25` here.

Examples:
    >>> terms("She was cooking pasta for the parties")
    ['cook', 'pasta', 'party']
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from memfold.fulltext import tokenize

__all__ = ["MAX_TERM", "bm25", "stem", "terms"]

MAX_TERM = 64
"""Longer words are not indexed (they are ids or noise, and index entries have size limits)."""

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves s t d ll m re ve""".split()  # noqa: SIM905
)

_VOWELS = frozenset("aeiouy")


def _has_vowel(word: str) -> bool:
    return any(c in _VOWELS for c in word)


def stem(word: str) -> str:
    """A light English stem: plural, -ing, -ed, -ly and -ies endings removed."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ingly", "edly", "ing", "ed", "ly"):
        base = word[: -len(suffix)]
        if word.endswith(suffix) and len(base) >= 3 and _has_vowel(base):
            word = base
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # stopped -> stopp -> stop
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]  # one form for "hike", "hikes", "hiking" and "hiked"
    return word


def terms(text: str) -> list[str]:
    """The searchable terms of ``text``, in order, with repeats (BM25 counts them)."""
    return [
        stem(word) for word in tokenize(text) if word not in STOP_WORDS and len(word) <= MAX_TERM
    ]


def bm25(
    query: Sequence[str],
    documents: Sequence[Sequence[str]],
    *,
    n_docs: int,
    avg_len: float,
    df: Mapping[str, int],
    k1: float = 1.2,
    b: float = 0.75,
    weights: Sequence[float] = (),
) -> list[float]:
    """Okapi BM25 of each document (a list of terms) for ``query`` (distinct terms, each
    weighted by ``weights`` when given), given the collection's size, average length and
    document frequencies."""
    weight = dict(zip(query, weights, strict=True)) if weights else {}
    idf = {
        t: weight.get(t, 1.0) * math.log(1 + (n_docs - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5))
        for t in dict.fromkeys(query)
    }
    avg = avg_len or 1.0
    scores = []
    for doc in documents:
        counts = Counter(doc)
        norm = k1 * (1 - b + b * len(doc) / avg)
        scores.append(
            sum(
                w * counts[t] * (k1 + 1) / (counts[t] + norm) for t, w in idf.items() if t in counts
            )
        )
    return scores
