"""The committed cassettes hold no secrets and nothing of the machine that recorded them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from vcr.request import Request

from tests.cassettes.support import API_KEY, KEPT_HEADERS, scrub_request, scrub_response

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CASSETTES = sorted(HERE.rglob("*.yaml"))
KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}|\bbearer\s|\bapi[-_]?key\b|authorization", re.I)


def test_cassettes_are_committed() -> None:
    """Every cassette test module has its recordings here."""
    assert {p.parent.name for p in CASSETTES} == {"test_summarizers", "test_agent_middleware"}


@pytest.mark.parametrize("path", CASSETTES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_cassette_holds_no_secret(path: Path) -> None:
    """No Authorization header or key-looking string, no header but the content type, and
    not the recording machine's checkout path (the model's file path, say)."""
    text = path.read_text(encoding="utf-8")
    assert not KEY_LIKE.search(text)
    assert API_KEY not in text
    assert str(ROOT) not in text
    interactions = yaml.safe_load(text)["interactions"]
    assert interactions
    for interaction in interactions:
        for part in ("request", "response"):
            assert {h.lower() for h in interaction[part]["headers"]} <= KEPT_HEADERS


def test_scrubbing_drops_the_key() -> None:
    """What the client sends, Authorization included, is cut down to the content type."""
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Content-Type": "application/json",
        "X-Stainless-OS": "Linux",
    }
    request = Request("POST", "http://127.0.0.1:8765/v1/chat/completions", b"{}", headers)
    assert dict(scrub_request(request).headers) == {"Content-Type": "application/json"}
    response = {"headers": {"date": ["today"], "content-type": ["application/json"]}}
    assert scrub_response(response)["headers"] == {"content-type": ["application/json"]}
