"""LangGraph adapters: a checkpoint saver and a long-term store backed by memfold stores, and a
compaction pre-model hook.

Examples:
    >>> from memfold.integrations.langgraph import MemfoldSaver
    >>> with MemfoldSaver.from_url("memory://") as saver:
    ...     print(saver.get_tuple({"configurable": {"thread_id": "t1"}}))
    None
"""

from memfold.integrations._require import require_extra

require_extra("langgraph", "langgraph.checkpoint.base")

from memfold.integrations.langgraph.checkpointer import MemfoldSaver  # noqa: E402
from memfold.integrations.langgraph.hooks import CompactionState, compaction_hook  # noqa: E402
from memfold.integrations.langgraph.store import MemfoldStore  # noqa: E402

__all__ = ["CompactionState", "MemfoldSaver", "MemfoldStore", "compaction_hook"]
