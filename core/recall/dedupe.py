"""Near-duplicate merging on write: a new memory whose vector is within a cosine threshold of
one already in its namespace updates that record instead of adding another.

The merged record keeps the old id and creation time and takes the new text, value and vector;
its importance is the higher of the two.

Examples:
    >>> import numpy as np
    >>> stored = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> nearest_duplicate(np.array([0.99, 0.141], dtype=np.float32), stored, 0.95)
    0
"""

from __future__ import annotations

import numpy as np

from memfold.errors import InvalidInput
from memfold.recall.vectors import Matrix

__all__ = ["check_threshold", "nearest_duplicate"]


def check_threshold(threshold: float | None) -> float | None:
    """``threshold`` if it is None or a cosine similarity in (0, 1], else `InvalidInput`."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InvalidInput(f"dedupe_threshold must be a number or None, got {threshold!r}")
    if not 0 < threshold <= 1:
        raise InvalidInput(f"dedupe_threshold is a cosine similarity in (0, 1], got {threshold}")
    return float(threshold)


def nearest_duplicate(vector: Matrix, stored: Matrix, threshold: float) -> int | None:
    """The row of ``stored`` (unit vectors) most similar to ``vector`` if its cosine similarity
    is at least ``threshold``, else None."""
    if stored.shape[0] == 0:
        return None
    scores = stored @ vector
    best = int(np.argmax(scores))
    return best if float(scores[best]) >= threshold else None
