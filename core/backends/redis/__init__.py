"""The Redis backend (``redis://``): threads in plain Redis 7, no modules needed.

Needs the ``redis`` extra: ``pip install 'memfold[redis]'``.
"""

try:
    import redis as _redis  # noqa: F401
    import zstandard as _zstandard  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(f"the redis backend needs {exc.name}: pip install 'memfold[redis]'") from exc

from memfold.backends.redis.store import RedisThreadStore

__all__ = ["RedisThreadStore"]
