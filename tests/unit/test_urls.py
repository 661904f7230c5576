"""Store URLs keep a driver's query options and parse memfold's own, for every store kind."""

from __future__ import annotations

import pytest

from memfold import InvalidInput, open_checkpoint_store, open_memory_store, open_store
from memfold.urls import split_options
from tests.support import PG_URL, REDIS_URL

KINDS = {"keep_last": int, "ratio": float}


def test_our_options_are_parsed_and_the_drivers_stay_in_the_url() -> None:
    """Known options are parsed and removed; the rest keep their order for the driver."""
    plain, ours = split_options(
        "postgresql://h/db?application_name=x&keep_last=3&sslmode=disable&ratio=0.5",
        KINDS,
        strict=False,
    )
    assert plain == "postgresql://h/db?application_name=x&sslmode=disable"
    assert ours == {"keep_last": 3, "ratio": 0.5}
    assert split_options("sqlite:///a.db", KINDS, strict=False) == ("sqlite:///a.db", {})


def test_strict_urls_refuse_unknown_options_and_bad_values() -> None:
    """A URL without a driver names the options it knows; a value that does not parse says so."""
    with pytest.raises(InvalidInput, match=r"unknown option 'colour'.*keep_last"):
        split_options("memory://?colour=red", KINDS, strict=True)
    with pytest.raises(InvalidInput, match=r"keep_last='many'.*not a number"):
        split_options("memory://?keep_last=many", KINDS, strict=False)


def test_every_store_kind_passes_driver_options_through() -> None:
    """A PostgreSQL or Redis URL may carry the driver's options next to memfold's own."""
    with open_store(f"{PG_URL}?application_name=memfold-url-test", setup=False) as threads:
        assert threads.capabilities.persistent
    with open_checkpoint_store(
        f"{PG_URL}?application_name=memfold-url-test&keep_last=5", setup=False
    ) as checkpoints:
        assert checkpoints.capabilities.persistent
    memories = open_memory_store(f"{REDIS_URL}?socket_timeout=5&capacity=10", setup=False)
    memories.close()
    with pytest.raises(InvalidInput, match="unknown option"):
        open_memory_store("memory://?socket_timeout=5")
