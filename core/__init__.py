"""memfold: one memory layer for agents, shared by LangChain and LlamaIndex.

Examples:
    >>> import memfold
    >>> store = memfold.open_store()
    >>> _ = store.append("t1", memfold.Message(role="user", content="hello"))
    >>> store.count("t1")
    1
"""

from memfold.checkpoints import (
    CheckpointStore,
    RetentionPolicy,
    aopen_checkpoint_store,
    open_checkpoint_store,
)
from memfold.erase import (
    ErasureReport,
    Subject,
    aerase,
    alift_erasure,
    erase,
    lift_erasure,
)
from memfold.errors import (
    BackendUnavailable,
    Conflict,
    EncryptionError,
    Erased,
    InvalidInput,
    LimitExceeded,
    MemfoldError,
    NotFound,
    SchemaTooNew,
    UnsupportedOperation,
)
from memfold.limits import Limits
from memfold.memories import (
    MemoryHit,
    MemoryRecord,
    MemoryStore,
    aopen_memory_store,
    open_memory_store,
)
from memfold.migrate import MigrationResult, amigrate, migrate
from memfold.model import Message, MessageHit, Part, ThreadInfo, ToolCall
from memfold.open import aopen_store, create_memory, open_store
from memfold.stores import DEFAULT_TENANT, BaseThreadStore, Capabilities, ThreadStore

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TENANT",
    "BackendUnavailable",
    "BaseThreadStore",
    "Capabilities",
    "CheckpointStore",
    "Conflict",
    "EncryptionError",
    "Erased",
    "ErasureReport",
    "InvalidInput",
    "LimitExceeded",
    "Limits",
    "MemfoldError",
    "MemoryHit",
    "MemoryRecord",
    "MemoryStore",
    "Message",
    "MessageHit",
    "MigrationResult",
    "NotFound",
    "Part",
    "RetentionPolicy",
    "SchemaTooNew",
    "Subject",
    "ThreadInfo",
    "ThreadStore",
    "ToolCall",
    "UnsupportedOperation",
    "__version__",
    "aerase",
    "alift_erasure",
    "amigrate",
    "aopen_checkpoint_store",
    "aopen_memory_store",
    "aopen_store",
    "create_memory",
    "erase",
    "lift_erasure",
    "migrate",
    "open_checkpoint_store",
    "open_memory_store",
    "open_store",
]
