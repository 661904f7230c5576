"""Recency decay: newer memories rank higher, by a half-life.

A hit's fused score is multiplied by ``(1 - weight) + weight * 0.5 ** (age / half_life)``, with
age measured from the record's last write. ``weight`` 0 turns decay off; 1 halves a score each
half-life.

Examples:
    >>> recency_factor(age_seconds=86_400, half_life_seconds=86_400, weight=0.5)
    0.75
"""

from __future__ import annotations

from memfold.errors import InvalidInput

__all__ = ["check_decay", "recency_factor"]


def check_decay(half_life_seconds: float | None, weight: float) -> None:
    """Raise `InvalidInput` unless the decay settings are usable."""
    if half_life_seconds is not None and (
        isinstance(half_life_seconds, bool)
        or not isinstance(half_life_seconds, int | float)
        or not half_life_seconds > 0
    ):
        raise InvalidInput(f"half_life_seconds must be positive or None, got {half_life_seconds!r}")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
        raise InvalidInput(f"decay_weight must be a number from 0 to 1, got {weight!r}")


def recency_factor(age_seconds: float, half_life_seconds: float | None, weight: float) -> float:
    """The multiplier for a record ``age_seconds`` old (1.0 when decay is off)."""
    if half_life_seconds is None or weight == 0:
        return 1.0
    return float((1 - weight) + weight * 0.5 ** (max(age_seconds, 0.0) / half_life_seconds))
