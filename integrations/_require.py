"""Fail early, naming the pip extra, when a host framework is not installed; import an
integration's modules only when one of their names is first used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports", "require_extra"]


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


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a submodule)
    on first use of ``name``, so importing the package costs only what is used.

    Examples:
        >>> getattr_ = lazy_exports("json", {"JSONDecoder": "decoder"})
        >>> getattr_("JSONDecoder").__name__
        'JSONDecoder'
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
