"""LlamaIndex adapters: chat stores for chat memory buffers and ``Memory``, a compacting chat
memory with its LLM summarizer, journaled tools, and converters.

Examples:
    >>> from memfold.integrations.llama_index import MemfoldChatStore
    >>> MemfoldChatStore("memory://").get_keys()
    []
"""

from memfold.integrations._require import require_extra

require_extra("llamaindex", "llama_index.core")

from memfold.integrations.llama_index.chat_store import MemfoldChatStore  # noqa: E402
from memfold.integrations.llama_index.db_chat_store import MemfoldDBChatStore  # noqa: E402
from memfold.integrations.llama_index.embeddings import (  # noqa: E402
    LlamaIndexEmbedder,
    MemfoldEmbedding,
)
from memfold.integrations.llama_index.journal import (  # noqa: E402
    JournaledTool,
    JournalScope,
    journal_scope,
    journaled,
)
from memfold.integrations.llama_index.memory import MemfoldCompactionMemory  # noqa: E402
from memfold.integrations.llama_index.memory_block import MemfoldMemoryBlock  # noqa: E402
from memfold.integrations.llama_index.messages import to_llama_index, to_memfold  # noqa: E402
from memfold.integrations.llama_index.summarizer import LLMSummarizer  # noqa: E402
from memfold.integrations.llama_index.tools import MemfoldToolSpec  # noqa: E402
from memfold.integrations.llama_index.vector_store import MemfoldVectorStore  # noqa: E402

__all__ = [
    "JournalScope",
    "JournaledTool",
    "MemfoldChatStore",
    "MemfoldDBChatStore",
    "journal_scope",
    "journaled",
    "to_llama_index",
    "to_memfold",
]
__all__ += ["LlamaIndexEmbedder", "MemfoldEmbedding", "MemfoldMemoryBlock", "MemfoldToolSpec"]
__all__ += ["MemfoldVectorStore"]
__all__ += ["LLMSummarizer", "MemfoldCompactionMemory"]
