"""LangGraph adapters: a checkpoint saver and a long-term store backed by memfold stores, and a
compaction pre-model hook.

Examples:
    >>> from memfold.integrations.langgraph import MemfoldSaver
    >>> with MemfoldSaver.from_url("memory://") as saver:
    ...     print(saver.get_tuple({"configurable": {"thread_id": "t1"}}))
    None
"""

from typing import TYPE_CHECKING

from memfold.integrations._require import lazy_exports, require_extra

require_extra("langgraph", "langgraph.checkpoint.base")

if TYPE_CHECKING:
    from memfold.integrations.langgraph.checkpointer import (
        MemfoldSaver,
    )
    from memfold.integrations.langgraph.hooks import (
        CompactionState,
        compaction_hook,
    )
    from memfold.integrations.langgraph.store import (
        MemfoldStore,
    )

_EXPORTS = {
    "MemfoldSaver": "checkpointer",
    "CompactionState": "hooks",
    "compaction_hook": "hooks",
    "MemfoldStore": "store",
}
__all__ = [
    "CompactionState",
    "MemfoldSaver",
    "MemfoldStore",
    "compaction_hook",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
