"""The preset dictionary of checkpoint payloads: SQL stores deflate with it (codec
``d1``, see `memfold.backends.sql.checkpoint_rows`), Redis zstd (flag ``d``, see
`memfold.backends.redis.elements`).

Raw deflate starts every payload with an empty window, so a short payload pays in full for
strings every payload repeats: a LangChain message's class path and field names, a LangGraph
checkpoint body's keys. A preset dictionary puts them in the window first. It holds structure
only (no content): a checkpoint body's keys and LangGraph's reserved channel names, then the
msgpack form `JsonPlusSerializer` gives an empty system, tool, AI and human message, the most
common last (deflate codes nearer strings in fewer bits). On the benchmark workload deflate
stores pending writes and value rows in 23% fewer bytes with it than without, and bodies in a
third.

Stored payloads name the dictionary they were compressed with, so these bytes never change: a
better dictionary is a new codec (and flag) beside this one (`DICTIONARY_SHA256` pins them in
the tests).
"""

from __future__ import annotations

__all__ = ["DICTIONARY", "DICTIONARY_SHA256"]

_BODY = (
    b"\x84\xa1v\x04\xa2ts\xd9 2026-01-01T00:00:00.000000+00:00\xadversions_seen\x82\xa9__i"
    b"nput__\x80\xa9__start__\x81\xa9__start__\x01\xb0updated_channels\x91\xa8messages\xaf"
    b"branch:to:\xad__interrupt__"
)
_SYSTEM = (
    b"\xc7\x88\x05\x94\xbelangchain_core.messages.system\xadSystemMessage\x86\xa7content"
    b"\xa0\xb1additional_kwargs\x80\xb1response_metadata\x80\xa4type\xa6system\xa4name\xc0"
    b"\xa2id\xa0\xb3model_validate_json"
)
_TOOL = (
    b"\xc7\xa9\x05\x94\xbclangchain_core.messages.tool\xabToolMessage\x89\xa7content\xa0"
    b"\xb1additional_kwargs\x80\xb1response_metadata\x80\xa4type\xa4tool\xa4name\xa0\xa2id"
    b"\xa0\xactool_call_id\xa0\xa8artifact\xc0\xa6status\xa7success\xb3model_validate_json"
)
_AI = (
    b"\xc7\xcc\x05\x94\xbalangchain_core.messages.ai\xa9AIMessage\x89\xa7content\xa0\xb1ad"
    b"ditional_kwargs\x80\xb1response_metadata\x80\xa4type\xa2ai\xa4name\xc0\xa2id\xa0\xaa"
    b"tool_calls\x91\x84\xa4name\xa0\xa4args\x80\xa2id\xa0\xa4type\xa9tool_call\xb2invalid"
    b"_tool_calls\x90\xaeusage_metadata\xc0\xb3model_validate_json"
)
_HUMAN = (
    b"\xc7\x85\x05\x94\xbdlangchain_core.messages.human\xacHumanMessage\x86\xa7content\xa0"
    b"\xb1additional_kwargs\x80\xb1response_metadata\x80\xa4type\xa5human\xa4name\xc0\xa2i"
    b"d\xa0\xb3model_validate_json"
)

DICTIONARY = _BODY + _SYSTEM + _TOOL + _AI + _HUMAN
"""The ``d1`` dictionary (795 bytes)."""

DICTIONARY_SHA256 = "5f47e3b3650e10f1ad9410a6caf4ff2dc6527448ec8b4d981f7227012b7de6b6"
"""The SHA-256 of `DICTIONARY`, which a test checks."""
