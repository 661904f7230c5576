"""Helpers shared by the test modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import memfold
from memfold.stores import BaseThreadStore

BACKENDS = ["memory", "sqlite"]


def make_store(backend: str, tmp_path: Path, **options: Any) -> BaseThreadStore:
    """A fresh store of ``backend`` whose files live in ``tmp_path``."""
    if backend == "memory":
        return memfold.open_store("memory://", **options)
    return memfold.open_store(f"sqlite:///{tmp_path / 'memfold.db'}", **options)


class Api:
    """Calls a store's sync methods or their async twins behind one awaitable interface."""

    def __init__(self, store: BaseThreadStore, use_async: bool) -> None:
        self.store = store
        self.use_async = use_async

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.use_async:
                return await getattr(self.store, "a" + name)(*args, **kwargs)
            return getattr(self.store, name)(*args, **kwargs)

        return call
