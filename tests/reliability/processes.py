"""The one forkserver the reliability suite starts its writer processes from.

It preloads memfold's backends and the suite's writer functions, so a writer process starts in
milliseconds instead of importing them again. A process has one forkserver, set up by the first
process started, so every module that starts writers takes its context from here.
"""

from __future__ import annotations

import multiprocessing

__all__ = ["context"]

context = multiprocessing.get_context("forkserver")
context.set_forkserver_preload(
    [
        "memfold.backends.sql.store",
        "memfold.backends.sql.postgres",
        "memfold.backends.sql.sqlite",
        "memfold.backends.sql.checkpoint_store",
        "memfold.backends.sql.memory_store",
        "memfold.backends.redis.store",
        "memfold.backends.redis.checkpoint_store",
        "memfold.backends.tiered",
        "memfold.backends.tiered_checkpoints",
        "tests.reliability.test_crash",
        "tests.reliability.test_concurrency",
    ]
)
