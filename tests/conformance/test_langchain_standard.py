"""LangChain's standard suites (langchain-tests) against the memfold vector store, byte store
and memory tools, on the memory, SQLite and PostgreSQL memory stores (and on Chroma, embedded
and over HTTP, for the vector store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from langchain_core.stores import BaseStore
from langchain_core.tools import BaseTool
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    BaseStoreAsyncTests,
    BaseStoreSyncTests,
    ToolsIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import ToolsUnitTests

from memfold.integrations.langchain import (
    EmbeddingsEmbedder,
    ForgetTool,
    MemfoldKVStore,
    MemfoldVectorStore,
    RecallTool,
    RememberTool,
    UpdateTool,
)
from memfold.memories import BaseMemoryStore
from tests.support import MEMORY_BACKENDS, drop_checkpoint_store, make_memory_store

NAMESPACE = ("acme", "user-1", "docs")


@pytest.fixture(params=MEMORY_BACKENDS)
def memory_backend(request: pytest.FixtureRequest) -> str:
    """The memory backend under test."""
    return str(request.param)


@pytest.fixture
def memory_store(memory_backend: str, tmp_path: Path) -> Iterator[BaseMemoryStore]:
    """A fresh memory store of the backend, embedding with langchain-tests' fake model."""
    embeddings = VectorStoreIntegrationTests.get_embeddings()
    store = make_memory_store(
        memory_backend, tmp_path, embedder=EmbeddingsEmbedder(embeddings, dimensions=6)
    )
    yield store
    store.close()
    drop_checkpoint_store(store)  # type: ignore[arg-type]  # drops any test schema


class TestVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture(params=[*MEMORY_BACKENDS, "chroma", "chroma+http"])
    def memory_backend(self, request: pytest.FixtureRequest) -> str:
        """Every memory backend with vector search: Chroma embedded and over HTTP too."""
        return str(request.param)

    @pytest.fixture
    def vectorstore(self, memory_store: BaseMemoryStore) -> VectorStore:
        """An empty vector store in a fresh memory store."""
        return MemfoldVectorStore(memory_store, namespace=NAMESPACE)


class TestKVSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, memory_store: BaseMemoryStore) -> BaseStore[str, bytes]:
        """An empty byte store in a fresh memory store."""
        return MemfoldKVStore(memory_store, namespace=NAMESPACE)

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        """Three distinct values, one not valid UTF-8."""
        return b"foo", b"bar", b"\xff\x00buzz"


class TestKVAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(self, memory_store: BaseMemoryStore) -> BaseStore[str, bytes]:
        """An empty byte store in a fresh memory store."""
        return MemfoldKVStore(memory_store, namespace=NAMESPACE)

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        """Three distinct values, one not valid UTF-8."""
        return b"foo", b"bar", b"\xff\x00buzz"


class _ToolSuite:
    """Binds each tool test to a fresh memory store of each backend, with one memory in it."""

    tool_class: type[BaseTool]
    example: ClassVar[dict[str, Any]]

    @pytest.fixture(autouse=True)
    def _bind_store(self, memory_store: BaseMemoryStore) -> None:
        self.store = memory_store
        memory_store.put(NAMESPACE, "Prefers green tea", id="m1")

    @property
    def tool_constructor(self) -> type[BaseTool]:
        return self.tool_class

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"store": self.store, "namespace": NAMESPACE}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return self.example


class TestRememberToolUnit(_ToolSuite, ToolsUnitTests):
    tool_class = RememberTool
    example: ClassVar[dict[str, Any]] = {"content": "Works on the billing service"}


class TestRememberToolIntegration(_ToolSuite, ToolsIntegrationTests):
    tool_class = RememberTool
    example: ClassVar[dict[str, Any]] = {"content": "Works on the billing service"}


class TestRecallToolUnit(_ToolSuite, ToolsUnitTests):
    tool_class = RecallTool
    example: ClassVar[dict[str, Any]] = {"query": "tea", "limit": 3}


class TestRecallToolIntegration(_ToolSuite, ToolsIntegrationTests):
    tool_class = RecallTool
    example: ClassVar[dict[str, Any]] = {"query": "tea", "limit": 3}


class TestUpdateToolUnit(_ToolSuite, ToolsUnitTests):
    tool_class = UpdateTool
    example: ClassVar[dict[str, Any]] = {"id": "m1", "content": "Prefers oolong tea"}


class TestUpdateToolIntegration(_ToolSuite, ToolsIntegrationTests):
    tool_class = UpdateTool
    example: ClassVar[dict[str, Any]] = {"id": "m1", "content": "Prefers oolong tea"}


class TestForgetToolUnit(_ToolSuite, ToolsUnitTests):
    tool_class = ForgetTool
    example: ClassVar[dict[str, Any]] = {"id": "m1"}


class TestForgetToolIntegration(_ToolSuite, ToolsIntegrationTests):
    tool_class = ForgetTool
    example: ClassVar[dict[str, Any]] = {"id": "m1"}
