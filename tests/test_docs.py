"""Docs are code: the site builds strict, docstring examples pass, and page examples run."""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import pkgutil
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest
import redis
from typer.main import get_group
from typer.testing import CliRunner

import memfold
from memfold.cli import app

ROOT = Path(__file__).resolve().parent.parent
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
PAGES_WITH_CODE = [p for p in PAGES if PYTHON_BLOCK.search(p.read_text(encoding="utf-8"))]
# Modules whose docstrings promise an example: the public entry points.
MUST_HAVE_EXAMPLES = ["memfold", "memfold.model", "memfold.open", "memfold.stores"]
# Modules whose docstring examples write to the Redis at EXAMPLES_REDIS, each under a key prefix
# of its own, ``doctest-<uuid4 hex>:``.
REDIS_EXAMPLES = [
    "memfold.backends.redis.checkpoint_store",
    "memfold.backends.redis.memory_store",
    "memfold.backends.tiered_checkpoints",
]
EXAMPLES_REDIS = "redis://127.0.0.1:6379/0"


def memfold_modules() -> list[str]:
    """Every module of the installed memfold package, integrations included."""
    names = ["memfold"]
    for info in pkgutil.walk_packages(memfold.__path__, prefix="memfold."):
        names.append(info.name)
    return sorted(names)


def run_doctests(module: ModuleType) -> doctest.TestResults:
    """Run the docstring examples defined in ``module`` (not those of what it imports)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, module.__name__):
        runner.run(test)
    return runner.summarize(verbose=False)


def test_site_builds_strict(tmp_path: Path) -> None:
    """The mkdocs site builds with --strict (no warning at all) and renders the API reference."""
    site = tmp_path / "site"
    config = str(ROOT / "mkdocs.yml")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "-d", str(site)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    for anchor in ("memfold.stores.BaseThreadStore.load", "memfold.model.Message"):
        assert f'id="{anchor}"' in reference, f"{anchor} missing from the API reference"


@pytest.mark.parametrize("name", memfold_modules())
def test_docstring_examples_pass(name: str) -> None:
    """Every docstring example in this memfold module runs and prints what it shows."""
    results = run_doctests(importlib.import_module(name))
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples failed in {name}"


@pytest.mark.parametrize("name", REDIS_EXAMPLES)
def test_redis_examples_leave_no_keys(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The docstring examples that write to Redis delete their keys (each run left two)."""
    made: list[uuid.UUID] = []
    new_uuid = uuid.uuid4

    def recorded() -> uuid.UUID:
        made.append(new_uuid())
        return made[-1]

    monkeypatch.setattr(uuid, "uuid4", recorded)  # to learn the prefixes the examples use
    results = run_doctests(importlib.import_module(name))
    assert results.attempted > 0
    assert results.failed == 0
    prefixes = {f"doctest-{u.hex}" for u in made}
    assert prefixes
    client = redis.Redis.from_url(EXAMPLES_REDIS)
    try:
        keys = [k.decode() for k in client.scan_iter(match="doctest-*", count=1000)]
    finally:
        client.close()
    assert [k for k in keys if k.split(":", 1)[0] in prefixes] == []


def test_docstring_examples_use_the_examples_heading() -> None:
    """Docstring examples sit under ``Examples:``, the heading the docs render as code."""
    # griffe's Google parser knows only the plural; under ``Example:`` the ``>>>`` lines become a
    # plain paragraph, and any ``[...]`` output in them breaks the strict build.
    singular = re.compile(r"^[ \t]*Example:[ \t]*$", re.MULTILINE)
    offenders = []
    for name in memfold_modules():
        source = inspect.getsource(importlib.import_module(name))
        for match in singular.finditer(source):
            offenders.append(f"{name} line {source.count(chr(10), 0, match.start()) + 1}")
    assert offenders == [], "use 'Examples:' instead of 'Example:' in " + ", ".join(offenders)


@pytest.mark.parametrize("name", MUST_HAVE_EXAMPLES)
def test_public_modules_have_examples(name: str) -> None:
    """Each public entry-point module shows an example, so its doctests cannot pass empty."""
    assert run_doctests(importlib.import_module(name)).attempted > 0


def test_pages_have_examples() -> None:
    """The README, the quickstart and the thread guide carry python examples for the suite."""
    names = {p.relative_to(ROOT).as_posix() for p in PAGES_WITH_CODE}
    assert {"README.md", "docs/quickstart.md", "docs/threads.md"} <= names


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    """The python blocks of a page, run top to bottom as one script in a fresh folder, succeed."""
    blocks = PYTHON_BLOCK.findall(page.read_text(encoding="utf-8"))
    script = tmp_path / f"{page.stem}_examples.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{page.name} examples failed:\n{result.stderr}"
    assert "Traceback" not in result.stderr, (
        f"{page.name} examples logged an error:\n{result.stderr}"
    )


def cli_lines() -> list[str]:
    """The ``$ memfold ...`` command lines of the CLI page, in order."""
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```console\n(.*?)^```", page, re.DOTALL | re.MULTILINE)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def test_cli_commands_documented() -> None:
    """Every command of the memfold CLI has its own section and an example on the CLI page."""
    commands = get_group(app).commands
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    examples = {shlex.split(line)[1] for line in cli_lines()}
    for name in commands:
        assert f"\n## memfold {name}\n" in page, f"memfold {name} has no section in docs/cli.md"
        assert name in examples, f"memfold {name} has no example in docs/cli.md"


def test_cli_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI page's commands, run in order after its setup snippet, all exit with status 0."""
    setup = "\n".join(PYTHON_BLOCK.findall((ROOT / "docs" / "cli.md").read_text(encoding="utf-8")))
    subprocess.run([sys.executable, "-c", setup], cwd=tmp_path, check=True, timeout=60)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMFOLD_URL", raising=False)
    lines = cli_lines()
    assert lines
    for line in lines:
        result = CliRunner().invoke(app, shlex.split(line)[1:])
        assert result.exit_code == 0, f"$ {line}\n{result.output}"
