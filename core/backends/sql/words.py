"""PostgreSQL full-text input: the words `memfold.fulltext` matches on, as tsvector and tsquery.

PostgreSQL's own parser splits text differently from SQLite's FTS5 and from the memory backend
(``example.com`` stays one token, for instance), so memfold never lets it parse. Python splits
the text with `memfold.fulltext.tokenize`; the row stores its distinct words, space-separated,
and the index holds ``array_to_tsvector(string_to_array(search_text, ' '))``. A query is a
tsquery literal requiring every word. The same words therefore match on every backend.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import ColumnElement, Text, cast, func, literal_column
from sqlalchemy.dialects.postgresql import JSON, TSVECTOR

from memfold.fulltext import tokenize

__all__ = ["derivable", "document", "message_vector", "query", "terms", "tsvector"]

_LONG_WORD = 255
"""Words longer than this many UTF-8 bytes are indexed by a hash (a lexeme holds 2047 at most)."""
_MAX_BYTES = 1_000_000
"""Words past this many bytes of a message are not indexed (a tsvector holds 1 MiB at most)."""


def _lexeme(word: str) -> str:
    if len(word) * 4 <= _LONG_WORD or len(word.encode()) <= _LONG_WORD:
        return word
    # '#' is not a word character, so a hash never equals a real word.
    return "#" + hashlib.sha256(word.encode()).hexdigest()


def document(text: str) -> str:
    """The ``search_text`` stored for ``text``: its distinct words, space-separated."""
    words: list[str] = []
    size = 0
    for word in dict.fromkeys(tokenize(text)):
        lexeme = _lexeme(word)
        size += len(lexeme.encode())
        if size > _MAX_BYTES:
            break
        words.append(lexeme)
    return " ".join(words)


def terms(text: str) -> list[str]:
    """The distinct words of a query, as the lexemes they are stored as."""
    return [_lexeme(word) for word in dict.fromkeys(tokenize(text))]


def query(lexemes: list[str]) -> str:
    """A tsquery literal requiring every lexeme ('' for none).

    Lexemes hold only letters, digits and _ (or are '#' and hex), so quoting them is safe.
    """
    return " & ".join(f"'{lexeme}'" for lexeme in lexemes)


def tsvector(search_text: ColumnElement[str]) -> ColumnElement[str]:
    """The indexed expression: the stored words as a tsvector (no parser, no positions)."""
    return func.array_to_tsvector(
        func.string_to_array(search_text, literal_column("' '")), type_=TSVECTOR
    )


def derivable(text: str) -> bool:
    """Whether PostgreSQL can split ``text`` into exactly its `document` words itself (see
    `message_vector`), so no copy of them needs storing: plain ASCII (where lower-casing and
    word characters mean the same to both), no NUL, no word long enough to be hashed.

    Examples:
        >>> derivable("Ship it to 10 Main St., please"), derivable("café"), derivable(chr(0))
        (True, False, False)
    """
    return (
        text.isascii()
        and "\x00" not in text
        and len(text) <= _MAX_BYTES
        and all(len(word) <= _LONG_WORD for word in tokenize(text))
    )


def message_vector(search_text: ColumnElement[str], body: ColumnElement[str]) -> ColumnElement[str]:
    """The indexed expression for a message: its stored words, or when none are stored (the
    text is `derivable`) the words of the body's text content, split on non-word ASCII."""
    # Literals, not bound parameters, so a query's expression matches the index's.
    content = cast(body, JSON).op("->>")(literal_column("'content'"))
    split = func.regexp_split_to_array(func.lower(content), literal_column("'[^a-z0-9_]+'"))
    words = func.coalesce(
        func.string_to_array(search_text, literal_column("' '")),
        func.array_remove(split, cast(literal_column("''"), Text)),
    )
    return func.array_to_tsvector(words, type_=TSVECTOR)
