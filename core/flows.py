"""Store calls as data, so that an algorithm over stores is written once and run sync or async.

A *flow* is a generator that yields a `Call` for each store method it needs and is sent back
the call's result; it does no I/O of its own (apart from ordinary file writes). `run` drives a
flow with the stores' sync methods, `arun` with their async twins (``"a" + method``), so the
two stay one algorithm (the pattern of httpx's auth flows). `memfold.export` and
`memfold.importer` are flows.

Examples:
    >>> from memfold import Message, open_store
    >>> store = open_store("memory://")
    >>> _ = store.append("t1", Message(role="user", content="hi"))
    >>> def count_both(thread_id):
    ...     n = yield Call(store, "count", (thread_id,))
    ...     return n + (yield Call(store, "count", ("t2",)))
    >>> run(count_both("t1"))
    1
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from memfold.errors import InvalidInput

__all__ = ["Call", "Flow", "arun", "run"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One store method call: ``getattr(target, method)(*args, **kwargs)``, awaited as
    ``"a" + method`` by `arun`."""

    target: object
    method: str
    args: tuple[object, ...] = ()
    kwargs: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        method = self.method
        if not isinstance(method, str) or not method.isidentifier() or method.startswith("_"):
            raise InvalidInput(f"a Call's method must be a public method name, got {method!r}")
        if not isinstance(self.args, tuple) or not isinstance(self.kwargs, Mapping):
            raise InvalidInput("a Call's args must be a tuple and its kwargs a mapping")


Flow: TypeAlias = Generator[Call, Any, T]
"""A generator that yields calls, is sent their results, and returns a ``T``."""


def _check_flow(flow: object) -> None:
    if not isinstance(flow, Generator):
        raise InvalidInput(f"a flow is a generator of Calls, got {type(flow).__name__}")


def _check_call(call: object) -> None:
    if not isinstance(call, Call):
        raise InvalidInput(f"a flow must yield memfold.flows.Call, got {type(call).__name__}")


def _method(target: object, name: str) -> Any:
    method = getattr(target, name, None)
    if not callable(method):
        raise InvalidInput(f"{type(target).__name__} has no method {name!r}")
    return method


def run(flow: Flow[T]) -> T:
    """Drive ``flow`` with sync calls; returns what it returns. A call's error is raised inside
    the flow, at its ``yield``, so the flow may catch it.

    Raises:
        InvalidInput: ``flow`` is not a generator, or yields something that is not a `Call`.
    """
    _check_flow(flow)
    try:
        call = next(flow)
        while True:
            _check_call(call)
            try:
                result = _method(call.target, call.method)(*call.args, **call.kwargs)
            except Exception as exc:
                call = flow.throw(exc)
            else:
                call = flow.send(result)
    except StopIteration as done:
        value: T = done.value
        return value
    finally:
        flow.close()


async def arun(flow: Flow[T]) -> T:
    """Async `run`: each call is the awaited async twin of the method named."""
    _check_flow(flow)
    try:
        call = next(flow)
        while True:
            _check_call(call)
            try:
                method = _method(call.target, "a" + call.method)
                result = await method(*call.args, **call.kwargs)
            except Exception as exc:
                call = flow.throw(exc)
            else:
                call = flow.send(result)
    except StopIteration as done:
        value: T = done.value
        return value
    finally:
        flow.close()
