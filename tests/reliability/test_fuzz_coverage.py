"""The fuzz suite covers every public entry point: the API reference's, ``memfold.__all__``'s,
the integrations' and every ``memfold`` command (the map is tests/reliability/coverage.py)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import typer.main
import typing_extensions

from memfold.cli import app
from tests.reliability.coverage import COVERAGE, GAPS, NOT_ENTRY_POINTS

ROOT = Path(__file__).parents[2]
HERE = Path(__file__).parent
INTEGRATIONS = ("langchain", "langgraph", "llama_index")


def reference_targets() -> list[str]:
    """The ``::: target`` lines of the API reference."""
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    return re.findall(r"^::: (\S+)", text, re.MULTILINE)


def _resolve(target: str) -> Iterator[tuple[str, Any]]:
    """A module's public names (its ``__all__``), or the one object a dotted name is."""
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError:
        parent, _, name = target.rpartition(".")
        yield target, getattr(importlib.import_module(parent), name)
        return
    for name in module.__all__:
        yield f"{target}.{name}", getattr(module, name)


def public_objects() -> dict[str, Any]:
    """Every object the reference, ``memfold.__all__`` and the integrations make public."""
    found: dict[str, Any] = {}
    targets = [
        *reference_targets(),
        "memfold",
        *(f"memfold.integrations.{i}" for i in INTEGRATIONS),
    ]
    for target in targets:
        for name, obj in _resolve(target):
            found.setdefault(name, obj)
    return found


def _short(module: str, qualname: str) -> str:
    return f"{module}.{qualname}".removeprefix("memfold.")


def _takes_input(function: Callable[..., Any]) -> bool:
    """Whether ``function`` has a parameter besides ``self`` or ``cls``."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return True
    return any(name not in ("self", "cls") for name in parameters)


def _twin(name: str, siblings: set[str]) -> str | None:
    """The sync name whose async twin ``name`` is (``aput`` -> ``put``), if it has one."""
    for prefix in ("async_", "a"):
        if name.startswith(prefix) and name.removeprefix(prefix) in siblings:
            return name.removeprefix(prefix)
    return None


def _is_entry_class(obj: type) -> bool:
    if issubclass(obj, BaseException) or getattr(obj, "_is_protocol", False):
        return False
    return not typing_extensions.is_typeddict(obj)


def _methods(cls: type) -> Iterator[tuple[str, str]]:
    """``(entry point, twin)`` of each public memfold method of ``cls`` that takes input,
    named on the highest memfold class defining it; twin is the async name or ""."""
    names = {n for n in dir(cls) if not n.startswith("_")}
    for name in sorted(names):
        static = inspect.getattr_static(cls, name)
        function = static.__func__ if isinstance(static, classmethod | staticmethod) else static
        if not inspect.isfunction(function) or not function.__module__.startswith("memfold"):
            continue
        sync = _twin(name, names) or name
        owners = [
            c for c in reversed(cls.__mro__)
            if sync in vars(c) and c.__module__.startswith("memfold")
            and not c.__name__.startswith("_")
        ]  # fmt: skip
        owner = owners[0] if owners else cls
        sync_function = getattr(cls, sync)
        if _takes_input(sync_function):
            yield (
                _short(owner.__module__, f"{owner.__qualname__}.{sync}"),
                name if sync != name else "",
            )


@cache
def entry_points() -> dict[str, set[str]]:
    """Every entry point, with the async twins (if any) that count as it."""
    points: dict[str, set[str]] = {}
    for obj in public_objects().values():
        if inspect.isclass(obj):
            if not (obj.__module__.startswith("memfold") and _is_entry_class(obj)):
                continue
            if _takes_input(obj):
                points.setdefault(_short(obj.__module__, obj.__qualname__), set())
            for method, twin in _methods(obj):
                points.setdefault(method, set()).update({twin} - {""})
        elif inspect.isfunction(obj) and obj.__module__.startswith("memfold"):
            module = importlib.import_module(obj.__module__)
            sync = _twin(obj.__name__, set(vars(module))) or obj.__name__
            function = getattr(module, sync)
            if _takes_input(function):
                twins = {obj.__name__} - {sync}
                points.setdefault(_short(function.__module__, sync), set()).update(twins)
    for command in commands():
        points[command] = set()
    return points


def commands() -> set[str]:
    """Every leaf command, as typed: ``memfold threads``, ``memfold db status``, ..."""
    found: set[str] = set()

    def walk(command: Any, prefix: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            if getattr(sub, "commands", None):
                walk(sub, f"{prefix}{name} ")
            else:
                found.add(prefix + name)

    walk(typer.main.get_command(app), "memfold ")
    return found


def covered() -> dict[str, list[str]]:
    """Entry point -> the tests that cover it."""
    by_name: dict[str, list[str]] = {}
    for test, names in COVERAGE.items():
        for name in names:
            by_name.setdefault(name, []).append(test)
    return by_name


def _test_function(test: str) -> tuple[str, ast.AsyncFunctionDef | ast.FunctionDef | None]:
    """The source the test draws on (its module and the shared strategies), and its node."""
    file, _, function = test.partition("::")
    source = (HERE / file).read_text(encoding="utf-8")
    shared = (HERE / "fuzzing.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            return source + shared, node
    return source + shared, None


def test_every_entry_point_is_fuzzed() -> None:
    """Each public entry point has a fuzz test, or is listed as taking no input to fuzz (or,
    until its test lands, as a gap)."""
    missing = set(entry_points()) - set(covered()) - set(NOT_ENTRY_POINTS) - set(GAPS)
    assert not missing, f"entry points no fuzz test covers: {sorted(missing)}"


def test_the_map_names_only_entry_points() -> None:
    """Every name in the map is a current entry point, and in one list only: a renamed or
    removed one fails here until the map follows, and a covered one cannot stay a gap."""
    listed = {*covered(), *NOT_ENTRY_POINTS, *GAPS}
    assert sorted(listed - set(entry_points())) == []
    assert not set(GAPS) & (set(covered()) | set(NOT_ENTRY_POINTS))
    assert not set(NOT_ENTRY_POINTS) & set(covered())
    assert len(GAPS) == len(set(GAPS))


def test_each_covering_test_exists_and_names_what_it_covers() -> None:
    """Each test in the map exists in tests/reliability, and its module names each entry point
    it covers (the method, function, class or command word), and drives each async twin."""
    for test, names in COVERAGE.items():
        source, node = _test_function(test)
        assert node is not None, f"{test} does not exist"
        fixtures = {a.arg for a in node.args.args}
        for name in names:
            word = name.rsplit(" ", 1)[-1].rsplit(".", 1)[-1]
            assert re.search(rf"\b{re.escape(word)}\b", source), f"{test} never names {word}"
            for twin in entry_points().get(name, set()):
                drives_both = bool({"use_async", "api"} & fixtures)
                assert drives_both or re.search(rf"\b{twin}\b", source), (
                    f"{test} covers {name} but not its async twin {twin}"
                )
