"""Full-text matching shared by every backend: the same words match everywhere.

A query matches a message when every word of the query occurs in the message's text (words are
runs of letters and digits, compared case-insensitively).
"""

from __future__ import annotations

import re

__all__ = ["fts5_query", "tokenize"]

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-cased words, the unit that full-text search matches on."""
    return _WORD.findall(text.lower())


def fts5_query(text: str) -> str:
    """An SQLite FTS5 MATCH expression requiring every word of ``text`` (quoted, so no syntax)."""
    return " ".join(f'"{word}"' for word in dict.fromkeys(tokenize(text)))
