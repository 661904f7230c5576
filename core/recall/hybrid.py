"""Fusing the text and vector rankings of a search into one score.

Each ranking proposes candidates; every candidate gets both parts:

- ``text``: its BM25 score divided by the best BM25 score among the candidates (0..1; 0 when
  it shares no term with the query);
- ``vector``: its cosine similarity to the query vector divided by the best among the
  candidates (0..1; negative similarities count as 0, and `memfold.memories.rank_hits` orders
  candidates whose fused scores tie by the similarity itself), so both parts share one scale
  while each keeps how far its candidates are from its best one.

The fused score is ``text_weight * text + vector_weight * vector`` (weights are normalised to
sum to 1), multiplied by the recency factor (`memfold.recall.decay`). Normalising scores keeps
how far apart candidates are, which reciprocal-rank fusion throws away.

Examples:
    >>> fused = fuse({"a": 4.0, "b": 2.0}, {"a": 0.2, "b": 0.6, "c": 0.4}, 0.5, 0.5)
    >>> [(key, round(score, 2)) for key, score, _, _ in fused]
    [('a', 0.67), ('b', 0.75), ('c', 0.33)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from memfold.errors import InvalidInput

__all__ = ["DEFAULT_TEXT_WEIGHT", "DEFAULT_VECTOR_WEIGHT", "check_weights", "fuse"]

DEFAULT_TEXT_WEIGHT = 0.5
DEFAULT_VECTOR_WEIGHT = 0.5


def check_weights(text_weight: float, vector_weight: float) -> tuple[float, float]:
    """The weights scaled to sum to 1, or `InvalidInput` if either is negative or both 0."""
    for name, w in (("text_weight", text_weight), ("vector_weight", vector_weight)):
        if isinstance(w, bool) or not isinstance(w, int | float) or not w >= 0:
            raise InvalidInput(f"{name} must be a number >= 0, got {w!r}")
    total = text_weight + vector_weight
    if total == 0:
        raise InvalidInput("text_weight and vector_weight cannot both be 0")
    return text_weight / total, vector_weight / total


def fuse(
    text: Mapping[str, float] | None,
    vector: Mapping[str, float] | None,
    text_weight: float,
    vector_weight: float,
) -> list[tuple[str, float, float | None, float | None]]:
    """``(key, fused score, text part, raw cosine)`` per candidate, in the order first seen
    (``text`` candidates, then the rest of ``vector``); the caller sorts after decay.

    ``text`` maps candidates to BM25 scores, ``vector`` to cosine similarities; a ranking that
    was not run is None, and then the other gets all the weight (its part in the hit is None).

    Raises:
        InvalidInput: a ranking is not a mapping of keys to finite numbers.
    """
    for name, scores in (("text", text), ("vector", vector)):
        if scores is not None and not (
            isinstance(scores, Mapping)
            and all(
                isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s)
                for s in scores.values()
            )
        ):
            raise InvalidInput(f"the {name} ranking must map keys to finite numbers")
    if text is None:
        text_weight, vector_weight = 0.0, 1.0
    elif vector is None:
        text_weight, vector_weight = 1.0, 0.0
    bm25 = text or {}
    cosines = vector or {}
    best_text = max(bm25.values(), default=0.0)
    best_cosine = max(cosines.values(), default=0.0)
    out = []
    for key in dict.fromkeys([*bm25, *cosines]):
        t = bm25.get(key, 0.0) / best_text if best_text > 0 else 0.0
        cosine = cosines.get(key)
        v = 0.0 if cosine is None or best_cosine <= 0 else max(cosine, 0.0) / best_cosine
        score = text_weight * t + vector_weight * v
        out.append((key, score, None if text is None else t, cosine))
    return out
