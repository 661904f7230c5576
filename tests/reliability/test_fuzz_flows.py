"""Hostile input to the store-call flows (`memfold.flows`) and the checkpoint delta policy
(`memfold.checkpoint_deltas.DeltaPolicy`): calls naming hostile methods, flows yielding things
that are not calls, and policies and snapshot questions with hostile numbers answer or raise a
`memfold.errors` error; a canary thread is unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memfold import InvalidInput, MemfoldError, Message, open_store
from memfold.checkpoint_deltas import DeltaPolicy, StoredBlob
from memfold.flows import Call, arun, run
from tests.reliability.fuzzing import FUZZ, hostile_ids, numbers

NUMBERS = numbers(-3, 40)


@FUZZ
@given(
    method=st.sampled_from(["count", "load", "get_thread", "nope", "_lock", "__class__"])
    | hostile_ids(),
    args=st.tuples(hostile_ids()) | st.sampled_from([("t",), ["t"], None]),
    yielded=st.sampled_from(["call", "text", None, 1]),
    use_async=st.booleans(),
)
def test_flows_run_or_refuse(method: Any, args: Any, yielded: Any, use_async: bool) -> None:
    """A flow yielding a Call with a hostile method name and arguments, or something that is
    not a Call, is run (sync and async) to its result or raises a memfold error, and the
    canary thread is unchanged."""
    store = open_store("memory://")
    store.append("canary", [Message("user", "keep me")])

    def flow() -> Generator[Any, Any, Any]:
        if yielded == "call":
            return (yield Call(store, method, args))
        return (yield yielded)

    try:
        result = asyncio.run(arun(flow())) if use_async else run(flow())
    except MemfoldError:
        pass
    else:
        assert method in ("count", "load")
        assert result is not None
    with pytest.raises(InvalidInput):
        run("not a flow")  # type: ignore[arg-type]
    assert [m.content for m in store.load("canary")] == ["keep me"]


@FUZZ
@given(
    every=NUMBERS,
    growth=NUMBERS,
    depth=st.integers(0, 40),
    snapshot_length=st.integers(0, 10**6),
    new_length=NUMBERS,
)
def test_delta_policy_answers_or_refuses(
    every: Any, growth: Any, depth: int, snapshot_length: int, new_length: Any
) -> None:
    """DeltaPolicy with hostile numbers builds or raises InvalidInput; wants_snapshot of a
    stored list and a hostile new length answers with a bool (never a snapshot before the
    chain is snapshot_every long) or raises InvalidInput."""
    try:
        policy = DeltaPolicy(every, growth)
    except InvalidInput:
        return
    base = StoredBlob("messages", 1, "delta", b"d", length=snapshot_length, depth=depth,
                      snapshot_length=snapshot_length)  # fmt: skip
    try:
        answer = policy.wants_snapshot(base, new_length)
    except InvalidInput:
        assert not isinstance(new_length, int) or isinstance(new_length, bool)
        return
    assert isinstance(answer, bool)
    if depth + 1 < policy.snapshot_every:
        assert answer is False
    with pytest.raises(InvalidInput):
        policy.wants_snapshot(None, 3)  # type: ignore[arg-type]


def _calling(method: str) -> Generator[Call, Any, Any]:
    return (yield Call(open_store("memory://"), method, ("t",)))


@pytest.mark.parametrize(
    "call",
    [
        lambda: DeltaPolicy(16, "3"),  # type: ignore[arg-type]
        lambda: DeltaPolicy().wants_snapshot(None, 3),  # type: ignore[arg-type]
        lambda: Call(object(), None),  # type: ignore[arg-type]
        lambda: run(iter([1])),  # type: ignore[arg-type]
        lambda: Call(object(), "_lock"),
        lambda: run(_calling("nope")),
        lambda: asyncio.run(arun(_calling("nope"))),
    ],
)
def test_found_bugs_raise_invalid_input(call: Any) -> None:
    """Regressions from the fuzzing: each raised a raw TypeError or AttributeError (a call to
    a missing or private attribute), or was accepted; each now raises InvalidInput."""
    with pytest.raises(InvalidInput):
        call()
