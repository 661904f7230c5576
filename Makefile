# The two set-up commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EDITABLE := --config-settings editable_mode=strict
# LoCoMo conversations for the compaction benchmark (evaluation data, never shipped).
LOCOMO ?= ../shared/data/locomo/locomo-dev.json

.PHONY: demo test lint types bench bench-checkpoints bench-load soak fuzz-soak clean services record-cassettes

# A venv with the core and the adapters the demo uses.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip

$(VENV)/.demo: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q -e ".[langchain,langgraph,llamaindex]" $(EDITABLE)
	touch $@

# Everything: every extra plus the dev group. torch first, as the CPU build on disk,
# so the embeddings extra does not pull a CUDA build.
$(VENV)/.all: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[all]" --group dev $(EDITABLE)
	touch $@ $(VENV)/.demo

demo: $(VENV)/.demo
	$(BIN)/python examples/demo.py

lint: $(VENV)/.all
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(VENV)/.all
	$(BIN)/mypy

# PostgreSQL 15 with pgvector, and Redis 7, for the suite: checked, or installed and started (root).
services:
	bash scripts/services.sh

test: lint types services
	$(BIN)/pytest -q -n auto

bench: $(VENV)/.all
	$(BIN)/python benchmarks/chat_history.py
	$(BIN)/python benchmarks/checkpoints.py
	$(BIN)/python benchmarks/vectors.py
	@if [ -f "$(LOCOMO)" ]; then $(BIN)/python benchmarks/compaction.py "$(LOCOMO)"; \
	else echo "skipping benchmarks/compaction.py: no LoCoMo data at $(LOCOMO) (make bench LOCOMO=path/to/locomo10.json)"; fi
	@if [ -f "$(LOCOMO)" ]; then $(BIN)/python benchmarks/recall.py "$(LOCOMO)"; \
	else echo "skipping benchmarks/recall.py: no LoCoMo data at $(LOCOMO) (make bench LOCOMO=path/to/locomo10.json)"; fi

bench-checkpoints: $(VENV)/.all
	$(BIN)/python benchmarks/checkpoints.py

# Mixed load from 1 to 64 concurrent clients on PostgreSQL and Redis (about two minutes).
bench-load: $(VENV)/.all services
	$(BIN)/python benchmarks/load.py

# The SIGKILL crash suite with 2,000 kill points per store kind and backend (make test: 70).
soak: $(VENV)/.all services
	MEMFOLD_CRASH_KILLS=2000 $(BIN)/pytest -q -n auto tests/reliability/test_crash.py

# The fuzz suite with fresh random examples, 1,000 per test (make test: 20, the same every run).
fuzz-soak: $(VENV)/.all services
	MEMFOLD_FUZZ_PROFILE=fuzz-soak $(BIN)/pytest -q -n auto tests/reliability -k fuzz

# Re-record the LLM cassettes in tests/cassettes/ against Gemma 3 270M on llama-cpp-python's
# server (scripts/llm_server.sh: the first run compiles llama.cpp, several minutes), then replay
# them. `make test` only replays.
record-cassettes: $(VENV)/.all
	bash scripts/llm_server.sh run $(BIN)/pytest -q -p no:xdist -m vcr --record-mode=rewrite tests/cassettes
	$(BIN)/pytest -q tests/cassettes

clean:
	rm -rf $(VENV) build dist site .mypy_cache .ruff_cache .pytest_cache
