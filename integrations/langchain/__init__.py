"""LangChain adapters: a chat message history, journaled tools, compaction middleware and
message converters.

Examples:
    >>> from memfold.integrations.langchain import MemfoldChatMessageHistory
    >>> MemfoldChatMessageHistory("memory://", "t1").messages
    []
"""

from memfold.integrations._require import require_extra

require_extra("langchain", "langchain_core")

from memfold.integrations.langchain.chat_history import MemfoldChatMessageHistory  # noqa: E402
from memfold.integrations.langchain.embeddings import (  # noqa: E402
    EmbeddingsEmbedder,
    MemfoldEmbeddings,
)
from memfold.integrations.langchain.journal import JournaledTool, journaled  # noqa: E402
from memfold.integrations.langchain.kv_store import MemfoldKVStore  # noqa: E402
from memfold.integrations.langchain.messages import to_langchain, to_memfold  # noqa: E402
from memfold.integrations.langchain.middleware import (  # noqa: E402
    RECORD_STATE_KEY,
    CompactionState,
    MemfoldCompactionMiddleware,
    acompact_messages,
    compact_messages,
)
from memfold.integrations.langchain.summarizer import ChatModelSummarizer  # noqa: E402
from memfold.integrations.langchain.tools import (  # noqa: E402
    ForgetTool,
    RecallTool,
    RememberTool,
    UpdateTool,
    memory_tools,
)
from memfold.integrations.langchain.vectorstore import MemfoldVectorStore  # noqa: E402

__all__ = ["JournaledTool", "MemfoldChatMessageHistory", "journaled", "to_langchain", "to_memfold"]
__all__ += ["EmbeddingsEmbedder", "MemfoldEmbeddings", "MemfoldKVStore", "MemfoldVectorStore"]
__all__ += ["ForgetTool", "RecallTool", "RememberTool", "UpdateTool", "memory_tools"]
__all__ += [
    "RECORD_STATE_KEY",
    "ChatModelSummarizer",
    "CompactionState",
    "MemfoldCompactionMiddleware",
    "acompact_messages",
    "compact_messages",
]
