"""Fail early, naming the pip extra, when a host framework is not installed."""

from __future__ import annotations

import importlib

__all__ = ["require_extra"]


def require_extra(name: str, module: str) -> None:
    """Import ``module`` or raise `ImportError` saying which memfold extra provides it.

    Examples:
        >>> require_extra("langchain", "json")  # installed: nothing happens
        >>> require_extra("langchain", "nope_xyz")
        Traceback (most recent call last):
        ImportError: this memfold integration needs nope_xyz: pip install 'memfold[langchain]'
    """
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"this memfold integration needs {module}: pip install 'memfold[{name}]'"
        ) from exc
