"""LangChain adapters: a chat message history, journaled tools, compaction middleware and
message converters.

Examples:
    >>> from memfold.integrations.langchain import MemfoldChatMessageHistory
    >>> MemfoldChatMessageHistory("memory://", "t1").messages
    []
"""

from typing import TYPE_CHECKING

from memfold.integrations._require import lazy_exports, require_extra

require_extra("langchain", "langchain_core")

if TYPE_CHECKING:
    from memfold.integrations.langchain.chat_history import (
        MemfoldChatMessageHistory,
    )
    from memfold.integrations.langchain.embeddings import (
        EmbeddingsEmbedder,
        MemfoldEmbeddings,
    )
    from memfold.integrations.langchain.journal import (
        JournaledTool,
        journaled,
    )
    from memfold.integrations.langchain.kv_store import (
        MemfoldKVStore,
    )
    from memfold.integrations.langchain.messages import (
        to_langchain,
        to_memfold,
    )
    from memfold.integrations.langchain.middleware import (
        RECORD_STATE_KEY,
        CompactionState,
        MemfoldCompactionMiddleware,
        acompact_messages,
        compact_messages,
    )
    from memfold.integrations.langchain.summarizer import (
        ChatModelSummarizer,
    )
    from memfold.integrations.langchain.tools import (
        ForgetTool,
        RecallTool,
        RememberTool,
        UpdateTool,
        memory_tools,
    )
    from memfold.integrations.langchain.vectorstore import (
        MemfoldVectorStore,
    )

_EXPORTS = {
    "MemfoldChatMessageHistory": "chat_history",
    "EmbeddingsEmbedder": "embeddings",
    "MemfoldEmbeddings": "embeddings",
    "JournaledTool": "journal",
    "journaled": "journal",
    "MemfoldKVStore": "kv_store",
    "to_langchain": "messages",
    "to_memfold": "messages",
    "RECORD_STATE_KEY": "middleware",
    "CompactionState": "middleware",
    "MemfoldCompactionMiddleware": "middleware",
    "acompact_messages": "middleware",
    "compact_messages": "middleware",
    "ChatModelSummarizer": "summarizer",
    "ForgetTool": "tools",
    "RecallTool": "tools",
    "RememberTool": "tools",
    "UpdateTool": "tools",
    "memory_tools": "tools",
    "MemfoldVectorStore": "vectorstore",
}
__all__ = [
    "RECORD_STATE_KEY",
    "ChatModelSummarizer",
    "CompactionState",
    "EmbeddingsEmbedder",
    "ForgetTool",
    "JournaledTool",
    "MemfoldChatMessageHistory",
    "MemfoldCompactionMiddleware",
    "MemfoldEmbeddings",
    "MemfoldKVStore",
    "MemfoldVectorStore",
    "RecallTool",
    "RememberTool",
    "UpdateTool",
    "acompact_messages",
    "compact_messages",
    "journaled",
    "memory_tools",
    "to_langchain",
    "to_memfold",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
