"""Where a thread lives in Redis: the key layout, with ids escaped so that no two collide.

For key prefix ``P``, tenant ``T`` and thread ``H`` (both escaped, see `escape`)::

    P{T}:threads     sorted set: H -> update time (µs), newest last; list_threads reads it
    P{T}:t:H:m       list: the thread's messages, oldest first (`memfold.backends.redis.elements`)
    P{T}:t:H:i       hash: message id -> sequence number, for ``before=`` and duplicate checks
    P{T}:t:H:h       hash: c (created, µs), m (metadata JSON),
                     n (the next sequence number: the newest message's plus one)
    P{T}:sizes       sorted set: H -> the size class of its message count (threads with
                     messages; the count rounded up, exact to 16, then 8 classes per
                     doubling: `memfold.backends.redis.scripts`), for keep-last sweeps
    P{T}:firsts      sorted set: H -> its first message's creation time (µs; 0 when the
                     element does not say), for max-age sweeps
    P{T}:ttls        sorted set: H -> the thread's own TTL (seconds, `set_thread_ttl`)
    Ptenants         set: every tenant with threads (escaped), for sweeps of all tenants
    P{T}:erased      hash: the tenant's tombstones, shared by every store kind under the
                     prefix (`memfold.backends.redis.tombstones`)
    Playout          string: the key layout's version, written by ``setup()``

Escaping leaves no ``:``, ``{`` or ``}`` in an id, so each key names exactly one tenant and
thread. All of a tenant's keys share the Redis Cluster hash tag ``{T}``.

Examples:
    >>> keys = thread_keys("memfold:", "acme", "a:b{c}")
    >>> keys.messages
    'memfold:{acme}:t:a%3Ab%7Bc%7D:m'
    >>> unescape(keys.member)
    'a:b{c}'
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import unquote

from memfold.errors import InvalidInput
from memfold.schema_steps import Step

__all__ = [
    "LAYOUT_STEPS",
    "LAYOUT_VERSION",
    "TenantKeys",
    "ThreadKeys",
    "check_prefix",
    "escape",
    "layout_key",
    "tenant_base",
    "tenant_index",
    "tenant_keys",
    "tenants_key",
    "thread_keys",
    "tombstone_key",
    "unescape",
]

LAYOUT_STEPS: Final = (
    Step(1, "a list, an id hash and an info hash per thread; an index of threads per tenant"),
    Step(2, "message elements with binary ids and times (version 1 elements read as they are)"),
    Step(3, "threads indexed by size, first message time and own TTL; a set of tenants"),
    Step(4, "tombstones: a hash per tenant whose erased threads refuse writes"),
    Step(5, "the size index scores a thread by size class, so appends seldom move it"),
)
"""The steps of the key layout and element format above (`memfold.backends.redis.layout`);
``setup()`` records the last. Version 2 added element kinds with binary ids and times
(`memfold.backends.redis.elements`); version 3 the indexes retention sweeps search, which its
upgrade fills in for the threads written before; version 5 scores the size index by size
class, which its upgrade (the same backfill) rescores."""
LAYOUT_VERSION: Final = LAYOUT_STEPS[-1].version


def escape(value: str) -> str:
    """``value`` with ``%``, ``:``, ``{`` and ``}`` percent-escaped: injective, and readable."""
    if "%" in value or ":" in value or "{" in value or "}" in value:
        return value.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")
    return value


def unescape(value: str | bytes) -> str:
    """The id that `escape` turned into ``value``."""
    text = value.decode() if isinstance(value, bytes) else value
    return unquote(text) if "%" in text else text


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it can start memfold's keys, else raise `InvalidInput`."""
    if not isinstance(prefix, str) or not 0 < len(prefix) <= 256:
        raise InvalidInput(f"key_prefix must be a str of 1 to 256 characters, got {prefix!r}")
    if "{" in prefix or "}" in prefix:
        raise InvalidInput(
            f"key_prefix {prefix!r} holds a brace: memfold puts each tenant in its own "
            "{hash tag}, so leave braces out of the prefix"
        )
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"key_prefix {prefix!r} is not valid Unicode (lone surrogate)") from exc
    return prefix


def layout_key(prefix: str) -> str:
    """The key holding the layout version."""
    return f"{prefix}layout"


def tenant_base(prefix: str, tenant: str) -> str:
    """The start of every key of ``tenant``'s threads (a thread's keys add ``H:m``, ...)."""
    return f"{prefix}{{{escape(tenant)}}}:t:"


def tenant_index(prefix: str, tenant: str) -> str:
    """The sorted set of ``tenant``'s threads."""
    return f"{prefix}{{{escape(tenant)}}}:threads"


def tenants_key(prefix: str) -> str:
    """The set of every tenant with threads."""
    return f"{prefix}tenants"


@dataclass(frozen=True, slots=True)
class TenantKeys:
    """A tenant's thread indexes (by update time, size, first message time and own TTL), and
    the start of its threads' keys."""

    index: str
    sizes: str
    firsts: str
    ttls: str
    base: str

    @property
    def all(self) -> tuple[str, str, str, str]:
        """The indexes, in the order the tenant-wide scripts take them."""
        return self.index, self.sizes, self.firsts, self.ttls


@lru_cache(maxsize=1024)
def tenant_keys(prefix: str, tenant: str) -> TenantKeys:
    """The indexes of ``tenant``'s threads."""
    tag = f"{prefix}{{{escape(tenant)}}}:"
    return TenantKeys(f"{tag}threads", f"{tag}sizes", f"{tag}firsts", f"{tag}ttls", f"{tag}t:")


def tombstone_key(prefix: str, tenant: str) -> str:
    """The hash of ``tenant``'s tombstones."""
    return f"{prefix}{{{escape(tenant)}}}:erased"


@dataclass(frozen=True, slots=True)
class ThreadKeys:
    """The keys of one thread and its tenant's indexes, and its member name."""

    messages: str
    ids: str
    info: str
    index: str
    sizes: str
    firsts: str
    ttls: str
    member: str

    @property
    def all(self) -> tuple[str, str, str, str, str, str, str]:
        """The thread's keys and its tenant's indexes (every key a write may expire)."""
        return self.messages, self.ids, self.info, self.index, self.sizes, self.firsts, self.ttls


@lru_cache(maxsize=4096)
def thread_keys(prefix: str, tenant: str, thread_id: str) -> ThreadKeys:
    """The keys of thread ``thread_id`` of ``tenant`` (cached: hot threads are written often)."""
    member = escape(thread_id)
    t = tenant_keys(prefix, tenant)
    base = t.base + member
    return ThreadKeys(
        f"{base}:m",
        f"{base}:i",
        f"{base}:h",
        t.index,
        t.sizes,
        t.firsts,
        t.ttls,
        member,
    )
