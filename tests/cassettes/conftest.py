"""Cassette tests: LLM summaries replayed from HTTP cassettes recorded against a real model.

`make record-cassettes` starts llama-cpp-python's OpenAI-compatible server on
`tests.cassettes.support.BASE_URL` (scripts/llm_server.sh) and runs these tests with
``--record-mode=rewrite``; everywhere else pytest-recording's default record mode, "none",
replays the YAML files next to this one and fails on any request that is not in them, so no
test reaches a network.

Recorded requests and responses keep only their content type as headers (no Authorization, no
client or platform versions). A replayed request must send the same chat messages as the
recorded one, in the same order (the ``chat`` matcher), so a change to a prompt or to what a
fold sends fails here until the cassettes are re-recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vcr import VCR

from tests.cassettes.support import same_chat, scrub_request, scrub_response

HERE = Path(__file__).resolve().parent


def pytest_recording_configure(config: pytest.Config, vcr: VCR) -> None:
    """Register the ``chat`` matcher."""
    vcr.register_matcher("chat", same_chat)


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    """tests/cassettes/<test module>/<test>.yaml."""
    return str(HERE / Path(str(request.node.fspath)).stem)


@pytest.fixture
def vcr_config() -> dict[str, Any]:
    """Replay by method, path and chat messages; record with the headers scrubbed."""
    return {
        "match_on": ("method", "path", "chat"),
        "before_record_request": scrub_request,
        "before_record_response": scrub_response,
        "decode_compressed_response": True,
    }
