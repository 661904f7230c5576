"""Hostile input to recall's building blocks (`memfold.recall`): metadata filters parsed from
hostile specs, matched against hostile values and compiled to SQLite and PostgreSQL SQL; score
fusion and weights; the hashing and cached embedders, sync and async. Each answers (finite
scores, unit vectors of the declared size, the same vector from the cache as from its embedder)
or raises a `memfold.errors` error. (Filters on stored records, on every backend, are fuzzed by
test_fuzz_memories.)"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, MetaData, Table, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB

from memfold import InvalidInput
from memfold.recall.embedders import CachedEmbedder, HashingEmbedder
from memfold.recall.filters import Filter, parse_filter
from memfold.recall.hybrid import check_weights, fuse
from tests.reliability.fuzzing import (
    FUZZ,
    hostile_ids,
    hostile_keys,
    hostile_text,
    json_objects,
    numbers,
)
from tests.reliability.test_fuzz_memories import filters

NUMBERS = numbers(-3, 64)
SCORES = st.none() | st.dictionaries(hostile_keys(), st.floats() | st.integers() | hostile_ids())
TABLE = Table("fuzz", MetaData(), Column("sqlite_value", Text), Column("pg_value", JSONB))


@FUZZ
@given(
    spec=filters(),
    value=json_objects(),
    dialect=st.sampled_from(["sqlite", "postgresql"]) | hostile_ids(),
)
def test_filters_parse_match_and_compile_or_refuse(spec: Any, value: Any, dialect: Any) -> None:
    """parse_filter of a hostile spec gives a Filter or raises InvalidInput; the filter
    matches a hostile value with a bool, and compiles to SQL for SQLite and PostgreSQL with
    every value bound as a parameter (none pasted into the statement), or refuses."""
    try:
        found = parse_filter(spec)
    except InvalidInput:
        return
    assert isinstance(found, Filter)
    try:
        assert isinstance(found.matches(value), bool)
    except InvalidInput:
        assert not isinstance(value, dict)
    try:
        column = TABLE.c.pg_value if dialect == "postgresql" else TABLE.c.sqlite_value
        clause = found.to_sql(column, dialect)
    except InvalidInput:
        assert dialect not in ("sqlite", "postgresql")
        return
    compiled = (
        select(TABLE.c.sqlite_value)
        .where(clause)
        .compile(dialect=postgresql.dialect() if dialect == "postgresql" else sqlite.dialect())
    )
    for injection in ("DROP TABLE", "FLUSHALL", "pg_sleep"):
        assert injection not in str(compiled)


@FUZZ
@given(text=SCORES, vector=SCORES, weights=st.tuples(NUMBERS, NUMBERS))
def test_fusion_answers_or_refuses(text: Any, vector: Any, weights: tuple[Any, Any]) -> None:
    """check_weights scales hostile weights to sum to 1 or raises InvalidInput; fuse of
    hostile score maps gives one finite score per candidate, or raises InvalidInput."""
    try:
        text_weight, vector_weight = check_weights(*weights)
    except InvalidInput:
        text_weight, vector_weight = 0.5, 0.5
    else:
        assert math.isclose(text_weight + vector_weight, 1.0)
    try:
        fused = fuse(text, vector, text_weight, vector_weight)
    except InvalidInput:
        return
    keys = [*(text or {}), *(vector or {})]
    assert [key for key, *_ in fused] == list(dict.fromkeys(keys))
    assert all(math.isfinite(score) for _, score, *_ in fused)


@FUZZ
@given(
    dimensions=NUMBERS,
    texts=st.lists(hostile_text(max_size=60), max_size=4) | hostile_ids(),
    kind=st.sampled_from(["document", "query"]) | hostile_ids(),
    batch_size=NUMBERS,
    max_entries=NUMBERS,
)
def test_embedders_embed_or_refuse(
    dimensions: Any, texts: Any, kind: Any, batch_size: Any, max_entries: Any
) -> None:
    """HashingEmbedder and a CachedEmbedder over it, built with hostile sizes, embed hostile
    texts (sync and async) into unit or zero vectors of their dimensions, the cache giving what
    its embedder gives, or raise InvalidInput."""
    try:
        inner = HashingEmbedder(dimensions)
    except InvalidInput:
        inner = HashingEmbedder(8)
    try:
        cached = CachedEmbedder(inner, batch_size=batch_size, max_entries=max_entries)
    except InvalidInput:
        cached = CachedEmbedder(inner)
    try:
        vectors = inner.embed(texts, kind=kind)
    except InvalidInput:
        with pytest.raises(InvalidInput):
            cached.embed(texts, kind=kind)
        return
    assert len(vectors) == len(texts)
    for v in vectors:
        assert len(v) == inner.dimensions
        norm = math.sqrt(sum(x * x for x in v))
        assert norm == 0 or math.isclose(norm, 1.0, rel_tol=1e-6)
    assert asyncio.run(inner.aembed(texts, kind=kind)) == vectors
    assert cached.embed(texts, kind=kind) == vectors
    assert asyncio.run(cached.aembed(texts, kind=kind)) == vectors


@pytest.mark.parametrize(
    "call",
    [
        lambda: fuse({"a": "x"}, None, 1.0, 0.0),
        lambda: fuse({"a": math.nan}, None, 1.0, 0.0),
        lambda: fuse(None, {"a": math.inf}, 0.0, 1.0),
        lambda: fuse([("a", 1.0)], None, 1.0, 0.0),  # type: ignore[arg-type]
        lambda: CachedEmbedder(HashingEmbedder(8), batch_size=1.0),  # type: ignore[arg-type]
        lambda: CachedEmbedder(HashingEmbedder(8)).embed(None),  # type: ignore[arg-type]
        lambda: CachedEmbedder(HashingEmbedder(8)).embed(["\ud800"]),
    ],
)
def test_found_bugs_raise_invalid_input(call: Any) -> None:
    """Regressions from the fuzzing: each raised a raw TypeError or UnicodeEncodeError, or gave
    a NaN score; each now raises InvalidInput."""
    with pytest.raises(InvalidInput):
        call()
