"""Vectors as memfold stores them: validated, unit length, float32.

Every backend keeps unit vectors, so cosine similarity is a dot product and a stored vector
is comparable across backends (pgvector's ``<=>`` gives the same ranking).

Examples:
    >>> unit([3.0, 4.0], 2).tolist()
    [0.6000000238418579, 0.800000011920929]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from memfold.errors import InvalidInput

__all__ = ["Matrix", "from_blob", "kept_unit", "to_blob", "top_k", "unit"]

Matrix = npt.NDArray[np.float32]


def unit(vector: Sequence[float] | Matrix, dimensions: int | None) -> Matrix:
    """``vector`` scaled to length 1, as float32.

    Raises:
        InvalidInput: not a flat list of finite numbers, the wrong length, or all zeros.
    """
    try:
        array = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"an embedding must be a list of numbers: {exc}") from exc
    if array.ndim != 1 or array.size == 0:
        raise InvalidInput(f"an embedding must be a flat, non-empty list, got shape {array.shape}")
    if dimensions is not None and array.size != dimensions:
        raise InvalidInput(
            f"an embedding has {array.size} dimensions but this store holds {dimensions}: "
            "use the store's embedding model, or open another store for this one"
        )
    if not np.isfinite(array).all():
        raise InvalidInput("an embedding holds NaN or infinity: check the embedding model")
    # Scaled by its largest component first, so that squaring neither overflows to infinity
    # (1e200) nor underflows to zero (1e-200).
    largest = float(np.abs(array).max())
    if largest == 0.0:
        raise InvalidInput("an embedding is all zeros, so it has no direction to compare")
    array = array / largest
    return (array / math.sqrt(float(array @ array))).astype(np.float32)


def kept_unit(vector: Sequence[float] | Matrix, dimensions: int | None) -> Matrix:
    """``vector`` checked as `unit` checks it, and kept float for float when it has unit length
    already (a vector read back from a store), so that a copy holds the very same floats.

    Examples:
        >>> stored = unit([3.0, 4.0], 2)
        >>> bool((kept_unit(stored.tolist(), 2) == stored).all())
        True
    """
    scaled = unit(vector, dimensions)
    kept = np.asarray(vector, dtype=np.float32)
    return kept if float(np.max(np.abs(kept - scaled))) <= 1e-6 else scaled


def to_blob(vector: Matrix) -> bytes:
    """Little-endian float32 bytes (the SQLite storage format)."""
    return vector.astype("<f4").tobytes()


def from_blob(blob: bytes) -> Matrix:
    """The vector `to_blob` wrote."""
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def top_k(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.intp]:
    """Indices of the ``k`` highest scores, best first (ties: lower index first)."""
    if k >= scores.size:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.lexsort((part, -scores[part]))]
