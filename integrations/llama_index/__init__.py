"""LlamaIndex adapters: chat stores for chat memory buffers and ``Memory``, a compacting chat
memory with its LLM summarizer, journaled tools, and converters.

Examples:
    >>> from memfold.integrations.llama_index import MemfoldChatStore
    >>> MemfoldChatStore("memory://").get_keys()
    []
"""

from typing import TYPE_CHECKING

from memfold.integrations._require import lazy_exports, require_extra

require_extra("llamaindex", "llama_index.core")

if TYPE_CHECKING:
    from memfold.integrations.llama_index.chat_store import (
        MemfoldChatStore,
    )
    from memfold.integrations.llama_index.db_chat_store import (
        MemfoldDBChatStore,
    )
    from memfold.integrations.llama_index.embeddings import (
        LlamaIndexEmbedder,
        MemfoldEmbedding,
    )
    from memfold.integrations.llama_index.journal import (
        JournaledTool,
        JournalScope,
        journal_scope,
        journaled,
    )
    from memfold.integrations.llama_index.memory import (
        MemfoldCompactionMemory,
    )
    from memfold.integrations.llama_index.memory_block import (
        MemfoldMemoryBlock,
    )
    from memfold.integrations.llama_index.messages import (
        to_llama_index,
        to_memfold,
    )
    from memfold.integrations.llama_index.summarizer import (
        LLMSummarizer,
    )
    from memfold.integrations.llama_index.tools import (
        MemfoldToolSpec,
    )
    from memfold.integrations.llama_index.vector_store import (
        MemfoldVectorStore,
    )

_EXPORTS = {
    "MemfoldChatStore": "chat_store",
    "MemfoldDBChatStore": "db_chat_store",
    "LlamaIndexEmbedder": "embeddings",
    "MemfoldEmbedding": "embeddings",
    "JournalScope": "journal",
    "JournaledTool": "journal",
    "journal_scope": "journal",
    "journaled": "journal",
    "MemfoldCompactionMemory": "memory",
    "MemfoldMemoryBlock": "memory_block",
    "to_llama_index": "messages",
    "to_memfold": "messages",
    "LLMSummarizer": "summarizer",
    "MemfoldToolSpec": "tools",
    "MemfoldVectorStore": "vector_store",
}
__all__ = [
    "JournalScope",
    "JournaledTool",
    "LLMSummarizer",
    "LlamaIndexEmbedder",
    "MemfoldChatStore",
    "MemfoldCompactionMemory",
    "MemfoldDBChatStore",
    "MemfoldEmbedding",
    "MemfoldMemoryBlock",
    "MemfoldToolSpec",
    "MemfoldVectorStore",
    "journal_scope",
    "journaled",
    "to_llama_index",
    "to_memfold",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
