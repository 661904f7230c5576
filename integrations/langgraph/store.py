"""A LangGraph long-term ``BaseStore`` over a memfold memory store.

An item is a memory record: its namespace is ``(tenant, *namespace)``, its key the record id,
its value the record's JSON value. With an ``IndexConfig``, the texts at the index's ``fields``
(joined, one vector per item) become the record's text, so ``search(query=...)`` ranks by words
and meaning together; ``index=False`` stores an item unsearchable by query but still gettable,
listable and filterable. TTLs are in minutes, as in LangGraph, and reads refresh them unless
``refresh_ttl=False``. Filters follow LangGraph's rules (plain values mean equality, a dict
without ``$`` operators matches the fields of an object there, ``$eq``/``$ne``/``$gt``/``$gte``/
``$lt``/``$lte``; equality with None also matches a missing field) and run in the store, so
``limit`` results come back whenever that many match.

Ops in a batch run in order, so a get after a put in the same batch sees the put.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
)
from langgraph.store.base.embed import get_text_at_path

from memfold.errors import InvalidInput, UnsupportedOperation
from memfold.integrations.langchain.embeddings import EmbeddingsEmbedder
from memfold.memories import MemoryHit, MemoryRecord, MemoryStore, open_memory_store
from memfold.model import JSON
from memfold.stores import check_id

__all__ = ["MemfoldStore"]


def _labels(value: object, what: str) -> tuple[str, ...]:
    """A namespace (or path) of str labels as a tuple, or `InvalidInput`."""
    if not isinstance(value, tuple | list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{what} must be a tuple of str, got {value!r:.100}")
    return tuple(value)


def _count(value: object, what: str, *, optional: bool = False) -> int | None:
    """A non-negative int (or None when ``optional``), or `InvalidInput`."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} must be an int >= 0, got {value!r:.100}")
    return value


def _checked(op: object) -> Op:
    """``op`` if its fields have the types LangGraph declares, or `InvalidInput`: the store
    runs nothing of a batch holding a malformed op."""
    if isinstance(op, GetOp | PutOp):
        _labels(op.namespace, "namespace")
        if not isinstance(op.key, str):
            raise InvalidInput(f"key must be a str, got {op.key!r:.100}")
    if isinstance(op, PutOp):
        check_id(op.key, "key")  # "" would be given a fresh id
        if op.value is not None and not isinstance(op.value, Mapping):
            raise InvalidInput(f"a put's value must be a dict or None, got {op.value!r:.100}")
        if op.index not in (None, False):
            _labels(op.index, "index")
        if op.ttl is not None and (isinstance(op.ttl, bool) or not isinstance(op.ttl, int | float)):
            raise InvalidInput(f"ttl must be a number of minutes or None, got {op.ttl!r:.100}")
    elif isinstance(op, SearchOp):
        _labels(op.namespace_prefix, "namespace_prefix")
        if op.filter is not None and not isinstance(op.filter, Mapping):
            raise InvalidInput(f"filter must be a dict or None, got {op.filter!r:.100}")
        _count(op.limit, "limit")
        _count(op.offset, "offset")
        if op.query is not None and not isinstance(op.query, str):
            raise InvalidInput(f"query must be a str or None, got {op.query!r:.100}")
    elif isinstance(op, ListNamespacesOp):
        for condition in op.match_conditions or ():
            if condition.match_type not in ("prefix", "suffix"):
                raise InvalidInput(
                    f"match_type must be 'prefix' or 'suffix', got {condition!r:.100}"
                )
            _labels(condition.path, "a match condition's path")
        _count(op.max_depth, "max_depth", optional=True)
        _count(op.limit, "limit")
        _count(op.offset, "offset")
    elif not isinstance(op, GetOp):
        raise InvalidInput(f"unknown LangGraph store operation {type(op).__name__}")
    return op


def _filter(spec: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[str, JSON]:
    """LangGraph's filter as memfold's: nested partial matches become dotted paths, each
    nested level also requiring an object there (``$type``), as LangGraph does."""
    out: dict[str, JSON] = {}
    for key, condition in spec.items():
        if not isinstance(key, str):
            raise InvalidInput(f"filter keys must be str, got {key!r:.100}")
        if "." in key:  # memfold's filters would read it as a path into nested values
            raise UnsupportedOperation(
                f"filter key {key!r:.100} holds a '.': a value key with a dot cannot be "
                "filtered on; filter on another field, or nest the value ({'a': {'b': 1}})"
            )
        field = (*path, key)
        if isinstance(condition, Mapping) and not any(
            isinstance(k, str) and k.startswith("$") for k in condition
        ):
            out[".".join(field)] = {"$type": "object"}  # even {"meta": {}} needs one
            out.update(_filter(condition, field))
        elif isinstance(condition, list | tuple):
            raise UnsupportedOperation(
                f"filter on {'.'.join(field)!r}: list equality is not supported; "
                "filter on scalar fields, or use {'$in': [...]} for one of several values"
            )
        else:
            _compare(".".join(field), condition, out)
    return out


def _compare(field: str, condition: Any, out: dict[str, JSON]) -> None:
    """Add LangGraph's test of ``field`` to ``out``: LangGraph compares ``value.get(key)``, so
    equality with None also matches a missing field, and ``$ne`` None needs one."""
    rest: dict[str, JSON] = {}
    for op, arg in (condition if isinstance(condition, Mapping) else {"$eq": condition}).items():
        if arg is None and op == "$eq":
            either: list[JSON] = [{field: None}, {field: {"$exists": False}}]
            cast(list[JSON], out.setdefault("$and", [])).append({"$or": either})
        elif arg is None and op == "$ne":
            rest.update({"$exists": True, "$ne": None})
        else:
            rest[op] = arg
    if rest:
        out[field] = rest


class MemfoldStore(BaseStore):
    """LangGraph's long-term memory store on memfold: every backend, TTL, and hybrid search
    where the backend ranks text and vectors (a Redis store answers ``query`` with
    `UnsupportedOperation`; filtered listings work everywhere).

    Args:
        store: a memfold memory store, or its URL (opened with ``index["embed"]`` as its
            embedder).
        index: LangGraph's ``IndexConfig``: ``embed`` and ``dims`` (only with a URL; a store
            object embeds with its own embedder) and ``fields`` (default ``["$"]``, the whole
            value). Without it, ``query`` is ignored and search lists in insertion order, as
            it does with ``query=""`` (no query, as in LangGraph).
        ttl: LangGraph's ``TTLConfig`` (``default_ttl`` in minutes, ``refresh_on_read``).
        tenant: the first label of every namespace this store touches, fixed here: no
            namespace or key a caller (or a model's tool call) passes can leave it (None: the
            default tenant, which a store opened with ``require_tenant`` refuses).
        options: passed to `memfold.memories.open_memory_store` with a URL.

    Examples:
        >>> from langchain_core.embeddings import DeterministicFakeEmbedding
        >>> index = {"dims": 8, "embed": DeterministicFakeEmbedding(size=8), "fields": ["text"]}
        >>> store = MemfoldStore("memory://", index=index)
        >>> store.put(("users", "u1"), "tea", {"text": "likes green tea", "kind": "pref"})
        >>> store.put(("users", "u1"), "job", {"text": "works on billing", "kind": "fact"})
        >>> [i.key for i in store.search(("users",), query="green tea", limit=1)]
        ['tea']
        >>> [i.key for i in store.search(("users",), filter={"kind": "fact"})]
        ['job']
    """

    supports_ttl = True

    def __init__(
        self,
        store: MemoryStore | str = "memory://",
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        tenant: str | None = None,
        **options: Any,
    ) -> None:
        embed = (index or {}).get("embed")
        if isinstance(store, str):
            embedder = None
            if embed is not None:
                dims = (index or {}).get("dims")
                embedder = EmbeddingsEmbedder(ensure_embeddings(embed), dimensions=dims)
            store = open_memory_store(store, embedder=embedder, **options)
        elif embed is not None or options:
            raise InvalidInput(
                "a store object embeds with its own embedder: give index only 'fields', "
                "or pass a URL to open a store with index['embed']"
            )
        self.store: MemoryStore = store
        self.index_config = index
        self.ttl_config = ttl
        self.tenant = store.resolve_tenant(tenant)
        self._fields: list[str] = list((index or {}).get("fields") or ["$"])

    def _text(self, op: PutOp) -> str:
        if self.index_config is None or op.index is False or op.value is None:
            return ""
        paths = self._fields if op.index is None else op.index
        return "\n".join(t for path in paths for t in get_text_at_path(op.value, path))

    def _record(self, op: PutOp) -> MemoryRecord:
        ttl = None if op.ttl is None else op.ttl * 60
        value = dict(op.value or {})
        return MemoryRecord((self.tenant, *op.namespace), op.key, self._text(op), value, None,
                            None, 0.5, ttl)  # fmt: skip

    def _item(self, record: MemoryRecord) -> Item:
        return Item(
            value=dict(record.value), key=str(record.id), namespace=record.namespace[1:],
            created_at=record.created_at, updated_at=record.updated_at,  # type: ignore[arg-type]
        )  # fmt: skip

    def _search_item(self, record: MemoryRecord, score: float | None) -> SearchItem:
        item = self._item(record)
        return SearchItem(item.namespace, item.key, item.value, item.created_at,
                          item.updated_at, score)  # fmt: skip

    def _hits(self, hits: list[MemoryHit]) -> list[SearchItem]:
        return [self._search_item(h.record, h.score) for h in hits]

    @staticmethod
    def _page(op: SearchOp) -> dict[str, Any]:
        """A ranked search's page: LangGraph's limit and offset, and whether to touch it."""
        return {"k": op.limit, "offset": op.offset, "touch": op.refresh_ttl}

    def _listed(self, records: list[MemoryRecord]) -> list[SearchItem]:
        return [self._search_item(r, None) for r in records]

    def _namespaces_args(self, op: ListNamespacesOp) -> dict[str, Any]:
        prefix: tuple[str, ...] = ()
        suffix: tuple[str, ...] = ()
        for condition in op.match_conditions or ():
            if "*" in condition.path:
                raise UnsupportedOperation(
                    "'*' wildcards in list_namespaces are not supported: match a literal "
                    "prefix or suffix, then filter the namespaces returned"
                )
            if condition.match_type == "prefix":
                prefix = tuple(condition.path)
            else:
                suffix = tuple(condition.path)
        return {
            "prefix": (self.tenant, *prefix),
            "suffix": suffix,
            "max_depth": None if op.max_depth is None else op.max_depth + 1,
            "limit": op.limit,
            "offset": op.offset,
        }

    def _ranked(self, op: SearchOp) -> bool:
        """Whether ``op`` ranks: it has a query ("" is none, as in LangGraph) and an index."""
        return bool(op.query) and self.index_config is not None

    def _run(self, op: Op) -> Result:
        s = self.store
        if isinstance(op, GetOp):
            found = s.get((self.tenant, *op.namespace), op.key, touch=op.refresh_ttl)
            return None if found is None else self._item(found)
        if isinstance(op, PutOp):
            if op.value is None:
                s.delete((self.tenant, *op.namespace), op.key)
            else:
                s.put_many([self._record(op)], dedupe_threshold=None)
            return None
        if isinstance(op, SearchOp):
            prefix, f = (self.tenant, *op.namespace_prefix), _filter(op.filter or {})
            if not op.limit:
                return []
            if self._ranked(op):
                return self._hits(s.search(prefix, op.query, **self._page(op), filter=f))
            return self._listed(
                s.list_records(
                    prefix, filter=f, limit=op.limit, offset=op.offset, touch=op.refresh_ttl
                )
            )
        if isinstance(op, ListNamespacesOp):
            args = self._namespaces_args(op)
            return [ns[1:] for ns in s.list_namespaces(**args)] if op.limit else []
        raise InvalidInput(f"unknown LangGraph store operation {type(op).__name__}")

    async def _arun(self, op: Op) -> Result:
        s = self.store
        if isinstance(op, GetOp):
            found = await s.aget((self.tenant, *op.namespace), op.key, touch=op.refresh_ttl)
            return None if found is None else self._item(found)
        if isinstance(op, PutOp):
            if op.value is None:
                await s.adelete((self.tenant, *op.namespace), op.key)
            else:
                await s.aput_many([self._record(op)], dedupe_threshold=None)
            return None
        if isinstance(op, SearchOp):
            prefix, f = (self.tenant, *op.namespace_prefix), _filter(op.filter or {})
            if not op.limit:
                return []
            if self._ranked(op):
                return self._hits(await s.asearch(prefix, op.query, **self._page(op), filter=f))
            listed = await s.alist_records(
                prefix, filter=f, limit=op.limit, offset=op.offset, touch=op.refresh_ttl
            )
            return self._listed(listed)
        if isinstance(op, ListNamespacesOp):
            args = self._namespaces_args(op)
            return [ns[1:] for ns in await s.alist_namespaces(**args)] if op.limit else []
        raise InvalidInput(f"unknown LangGraph store operation {type(op).__name__}")

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run LangGraph store operations in order; results in the same order."""
        return [self._run(op) for op in [_checked(op) for op in ops]]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Async `batch`."""
        return [await self._arun(op) for op in [_checked(op) for op in ops]]
