"""The wheel holds every module, imports cleanly, and the core never needs a host framework."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import memfold

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"core": "memfold", "integrations": "memfold/integrations"}


def source_modules() -> set[str]:
    """Every .py file under core/ and integrations/, as its path inside the wheel."""
    found = set()
    for folder, target in SOURCES.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                found.add(f"{target}/{path.relative_to(ROOT / folder).as_posix()}")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """memfold built as a wheel from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    [built] = out.glob("memfold-*.whl")
    return built


def test_wheel_holds_every_module_and_nothing_else(wheel: Path) -> None:
    """Every source module ships (a forgotten package fails here); tests and notebooks don't."""
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n for n in names if n.endswith(".py")}
    assert source_modules() == shipped
    assert "memfold/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "benchmarks/", "docs/"))]


def test_wheel_installs_into_a_clean_venv_and_imports(wheel: Path, tmp_path: Path) -> None:
    """In a fresh venv with only the core dependencies, every core module imports and works,
    and each adapter (and the Redis backend) says which extra to install."""
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True)
    modules = sorted(
        m.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for m in source_modules()
    )
    script = f"""
import importlib
modules = {modules!r}
for name in modules:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        extras = ("memfold.integrations.", "memfold.backends.redis",
                  "memfold.backends.sql.postgres", "memfold.backends.chroma",
                  "memfold.backends.tiered_checkpoints")
        assert name.startswith(extras), (name, exc)
        assert "pip install 'memfold[" in str(exc), (name, exc)
import memfold
store = memfold.open_store("sqlite:///" + {str(tmp_path / "x.db")!r})
store.append("t", memfold.Message(role="user", content="hi"))
assert store.load("t")[0].content == "hi"
print("ok", len(modules))
"""
    result = subprocess.run([python, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


BLOCK_HOSTS = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"langchain", "langchain_core", "langgraph", "llama_index"}:
            raise ImportError(f"blocked {name}")
        return None
sys.meta_path.insert(0, Block())
"""


def test_core_imports_with_every_host_framework_blocked(tmp_path: Path) -> None:
    """``import memfold`` and every core module work with LangChain, LangGraph and LlamaIndex
    unimportable."""
    core_modules = sorted(
        m.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for m in source_modules()
        if not m.startswith("memfold/integrations/")
    )
    script = (
        BLOCK_HOSTS
        + f"""
import importlib
for name in {core_modules!r}:
    importlib.import_module(name)
import memfold
store = memfold.open_store("sqlite:///" + {str(tmp_path / "x.db")!r})
store.append("t", memfold.Message(role="user", content="hi"))
roots = {{"langchain", "langchain_core", "langgraph", "llama_index"}}
hosts = [m for m in sys.modules if m.split(".")[0] in roots]
assert not hosts, hosts
print("ok")
"""
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_public_api_is_pinned() -> None:
    """The names ``memfold`` exports change only on purpose."""
    assert sorted(memfold.__all__) == sorted(
        [
            "DEFAULT_TENANT", "BackendUnavailable", "BaseThreadStore", "Capabilities",
            "CheckpointStore", "Conflict", "EncryptionError", "Erased", "ErasureReport",
            "InvalidInput", "LimitExceeded", "Limits", "MemfoldError", "MemoryHit", "MemoryRecord",
            "MemoryStore", "Message", "MessageHit", "MigrationResult", "NotFound", "Part",
            "RetentionPolicy", "SchemaTooNew", "Subject", "ThreadInfo", "ThreadStore", "ToolCall",
            "UnsupportedOperation", "__version__", "aerase", "alift_erasure", "amigrate",
            "aopen_checkpoint_store", "aopen_memory_store", "aopen_store", "create_memory",
            "erase", "lift_erasure", "migrate",
            "open_checkpoint_store", "open_memory_store", "open_store",
        ]
    )  # fmt: skip
    for name in memfold.__all__:
        assert hasattr(memfold, name)
