"""Hostile values for the fuzz suite (tests/reliability/test_fuzz_*.py), and its settings.

Every fuzz test runs under `FUZZ`: a bounded number of examples in ``make test``, the same ones
every run (derandomized, so a gate never fails on an example no earlier run drew), and many more,
freshly random, with ``MEMFOLD_FUZZ_PROFILE=fuzz-soak`` (``make fuzz-soak``;
``MEMFOLD_FUZZ_EXAMPLES`` sets how many, 1,000 by default): what a soak finds becomes a
regression test. No example database is kept, so
nothing is written into the repository (see tests/conftest.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from memfold import MemfoldError, Message, Part, ToolCall
from memfold.memories import open_memory_store
from memfold.recall.embedders import Embedder

settings.register_profile(
    "fuzz",
    parent=settings.get_profile("memfold"),
    max_examples=20,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz-soak",
    parent=settings.get_profile("fuzz"),
    max_examples=int(os.environ.get("MEMFOLD_FUZZ_EXAMPLES", "1000")),
    derandomize=False,
)
FUZZ = settings(settings.get_profile(os.environ.get("MEMFOLD_FUZZ_PROFILE", "fuzz")))
"""The settings every fuzz test uses."""
FUZZ_SLOW = settings(FUZZ, max_examples=max(FUZZ.max_examples // 2, 1))
"""`FUZZ` with half the examples, for tests whose every example opens stores afresh (a CLI
command, an import); ``make fuzz-soak`` still runs hundreds."""

INJECTIONS = [
    "'; DROP TABLE memfold_messages; --",
    "x' OR '1'='1",
    '" OR ""="',
    "1; SELECT pg_sleep(5); --",
    "$1",
    "%s",
    "%(name)s",
    ":name",
    "?",
    "\\",
    "'",
    '"',
    "`",
    "*",
    "[a-z]*",
    "{tag}",
    "}{",
    "\r\nFLUSHALL\r\n",
    "redis.call('FLUSHALL')",
    "NEAR(a b)",
    "a AND OR NOT b",
    '"unterminated',
    "^col:*",
    "a & b | !c <-> d",
    "a.b",
    "$where",
    "$gt",
    "..",
    "../../etc/passwd",
    "-- comment",
    "/* x */",
    "%",
    "_",
    "\x1f",
    "\x1e",
    ":",
]
"""Strings that break a query, a key pattern or a script when pasted into one unescaped."""

ODD_UNICODE = [
    "é",
    "e\u0301",
    "\U0001f600",
    "\u202e\u202d",
    "\ufeff",
    "\u200b",
    "\u2028\u2029",
    "İı",
    "ß",
    "\ufb01",
    "\x7f\x1b[31m",
    "\t\n\r\x0b\x0c",
    "\U0001d518\U0001d52b",
    "中文",
    "\U0010ffff",
]
"""Valid Unicode that trips up collations, case folding, tokenizers and terminals."""

INVALID_TEXT = ["\x00", "a\x00b", "\ud800", "x\udfff", "\udc80\ud800"]
"""NUL characters and lone surrogates."""

ALL_CHARS = st.characters(exclude_categories=())
"""Any code point, lone surrogates and NUL included."""


def hostile_text(*, max_size: int = 30) -> st.SearchStrategy[str]:
    """Strings that are hard to store: injections, odd and invalid Unicode, long runs, any
    code point, and mixes of these."""
    pieces = st.sampled_from(INJECTIONS + ODD_UNICODE + INVALID_TEXT)
    return st.one_of(
        pieces,
        st.text(ALL_CHARS, max_size=max_size),
        st.lists(pieces | st.text(ALL_CHARS, max_size=4), min_size=1, max_size=5).map("".join),
        st.sampled_from(["a" * 512, "a" * 513, "\u4e2d" * 200, "\U0001f600" * 129, ""]),
    )


def hostile_ids() -> st.SearchStrategy[Any]:
    """Ids as a caller might pass them: hostile strings, and values that are not strings."""
    return st.one_of(
        hostile_text(),
        hostile_text(),
        st.sampled_from([None, 0, 1.5, b"bytes", ("t",), ["t"], {"t": 1}, True, object()]),
    )


def hostile_keys() -> st.SearchStrategy[Any]:
    """Mapping keys as a caller might pass them: hostile strings, and hashable non-strings."""
    return hostile_text() | st.sampled_from([None, 0, 1.5, b"bytes", ("t",), True])


def json_scalars() -> st.SearchStrategy[Any]:
    """JSON leaves, including the floats JSON cannot hold and ints past 64 bits."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([2**63, -(2**63) - 1, 10**40]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308, math.inf, math.nan]),
        hostile_text(),
    )


def json_values(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Nested JSON-like values: hostile keys and leaves, and now and then something JSON cannot
    hold exactly (a set, bytes, a non-str key, deep nesting)."""
    keys = hostile_text(max_size=12)
    tree = st.recursive(
        json_scalars(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=max_leaves,
    )
    odd = st.sampled_from([{1, 2}, b"\x00", object(), {1: "int key"}, {None: 1}, {(1,): 2}])
    return st.one_of(tree, tree, tree, odd, st.integers(1, 3_000).map(nested))


def json_objects(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Mappings as metadata or a value: mostly str-keyed dicts of `json_values`."""
    return st.one_of(
        st.dictionaries(hostile_text(max_size=12), json_values(max_leaves=max_leaves), max_size=5),
        st.sampled_from([[], "not a mapping", None, {1: "x"}]),
    )


def nested(depth: int) -> Any:
    """A list inside a dict inside a list ... ``depth`` containers deep."""
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def numbers(low: int, high: int, *, booleans: bool = True) -> st.SearchStrategy[Any]:
    """Counts and sizes: small ints from ``low`` to ``high``, any int or float, None, a numeric
    str, and (unless ``booleans`` is False) bools, which Python counts as ints."""
    kinds = [st.integers(low, high), st.integers(), st.floats()]
    kinds += [st.booleans()] if booleans else []
    return st.one_of(*kinds, st.none(), st.just("3"))


def vectors(dimensions: int) -> st.SearchStrategy[Any]:
    """Embeddings: good ones, and NaN, infinite, huge, tiny, zero, wrong-length, nested or
    non-numeric ones."""
    finite = st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False)
    good = st.lists(finite, min_size=dimensions, max_size=dimensions)
    return st.one_of(
        good,
        good,
        st.lists(st.floats(), min_size=dimensions, max_size=dimensions),
        st.sampled_from([math.nan, math.inf, -math.inf, 1e300, 1e-300, 5e-324, 0.0]).map(
            lambda x: [x] * dimensions
        ),
        st.sampled_from([1e300, -1e300, 1e-310]).map(lambda x: [x] + [1.0] * (dimensions - 1)),
        st.lists(finite, max_size=dimensions * 2).filter(lambda v: len(v) != dimensions),
        st.sampled_from([[], [[1.0] * dimensions], "1,2,3", [None] * dimensions, ["1"] * 3]),
    )


def parts() -> st.SearchStrategy[Part]:
    """Multi-part content blocks with hostile fields."""
    maybe = st.none() | hostile_text()
    return st.builds(
        Part,
        type=hostile_text(max_size=8),
        text=maybe,
        url=maybe,
        data=maybe,
        mime_type=maybe,
        extra=st.dictionaries(hostile_text(max_size=8), json_values(max_leaves=4), max_size=2),
    )


def messages() -> st.SearchStrategy[Message]:
    """Messages with hostile content, names, ids, tool calls and metadata (each one valid enough
    to construct: the model refuses the rest itself)."""
    calls = st.builds(
        ToolCall,
        id=hostile_text(max_size=8),
        name=hostile_text(max_size=8),
        arguments=st.dictionaries(hostile_text(max_size=8), json_values(max_leaves=4), max_size=3),
    )
    return st.builds(
        Message,
        role=st.sampled_from(["user", "assistant", "system", "tool"]),
        content=hostile_text(max_size=60) | st.lists(parts(), max_size=2).map(tuple),
        name=st.none() | hostile_text(max_size=8),
        id=st.none() | hostile_text(max_size=20),
        tool_calls=st.lists(calls, max_size=2).map(tuple),
        tool_call_id=st.none() | hostile_text(max_size=8),
        metadata=st.dictionaries(hostile_text(max_size=10), json_values(), max_size=4),
    )


def as_json(value: Any) -> Any:
    """``value`` as it comes back from JSON: tuples become lists (the one conversion memfold
    makes; everything else it cannot keep exactly is refused)."""
    if isinstance(value, tuple | list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def same_messages(stored: list[Message], written: list[Message]) -> bool:
    """Whether the messages read back are the ones written, field for field."""
    return [m.to_dict() for m in stored] == [as_json(m.to_dict()) for m in written]


async def call(use_async: bool, target: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """``target.name(...)``, or ``await target.aname(...)`` when ``use_async``."""
    if use_async:
        return await getattr(target, "a" + name)(*args, **kwargs)
    method: Callable[..., Any] = getattr(target, name)
    return method(*args, **kwargs)


async def embeds_or_refuses(
    make: Callable[[], Embedder], texts: Any, kind: Any, use_async: bool
) -> None:
    """The embedder ``make()`` returns (or refuses to build) gives one vector per text or
    raises a memfold error, and a memory store embedding through it keeps a record only with a
    finite vector."""
    try:
        embedder = make()
        store = open_memory_store("memory://", embedder=embedder)
        got = await call(use_async, embedder, "embed", texts, kind=kind)
        record = await call(use_async, store, "put", ("fuzz",), "text")
        assert len(got) == len(texts)
        stored = store.get(("fuzz",), record.id, include_embedding=True)
        assert stored is not None
        assert stored.embedding is not None
        assert all(math.isfinite(x) for x in stored.embedding)
    except MemfoldError:
        pass
