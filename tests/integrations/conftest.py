"""Helpers for the host-adapter tests: offline fake chat models, and a ban on sync store I/O."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field

from memfold.stores import BaseThreadStore
from tests.support import drop_store, make_store

SYNC_METHODS = ("load", "append", "clear", "count", "delete_thread", "list_threads")


class FakeToolModel(GenericFakeChatModel):
    """GenericFakeChatModel that accepts bound tools and records the messages it was sent."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, Any]:
        """Tools change nothing: the scripted replies already hold the tool calls."""
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


@pytest.fixture
async def store(backend: str, tmp_path: Path) -> AsyncIterator[BaseThreadStore]:
    """A fresh store of each backend, closed through the async API (aiosqlite needs a loop)."""
    opened = make_store(backend, tmp_path)
    yield opened
    await opened.aclose()
    drop_store(opened)


@pytest.fixture
def fake_model() -> Callable[..., FakeToolModel]:
    """Build a FakeToolModel that answers with the given messages (or strings), in order."""

    def make(*replies: AIMessage | str) -> FakeToolModel:
        return FakeToolModel(messages=iter(replies))

    return make


@pytest.fixture
def forbid_sync_io(monkeypatch: pytest.MonkeyPatch) -> Callable[[BaseThreadStore], None]:
    """Make a store's sync I/O methods raise, to prove the async paths never call them."""

    def forbid(store: BaseThreadStore) -> None:
        for name in SYNC_METHODS:

            def boom(*args: Any, _name: str = name, **kwargs: Any) -> Any:
                raise AssertionError(f"sync store.{_name} called from an async method")

            monkeypatch.setattr(store, name, boom)

    return forbid
