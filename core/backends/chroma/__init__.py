"""The Chroma backend (``chroma:///path`` embedded, ``chroma+http://host:port`` server):
long-term memories in a Chroma collection.

Needs the ``chroma`` extra: ``pip install 'memfold[chroma]'``.
"""

try:
    import chromadb as _chromadb  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"the chroma backend needs {exc.name}: pip install 'memfold[chroma]'"
    ) from exc

from memfold.backends.chroma.store import ChromaMemoryStore

__all__ = ["ChromaMemoryStore"]
