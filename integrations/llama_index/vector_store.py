"""A LlamaIndex vector store (``BasePydanticVectorStore``, ``stores_text=True``) over a memfold
memory store.

A node is a memory record in the store's namespace: its id is the record id, its text the
record's text, and its metadata (plus LlamaIndex's ``_node_content``, ``ref_doc_id`` and
friends) the record's JSON value, so ``MetadataFilters`` run in the store as memfold filters
and ``similarity_top_k`` results come back whenever that many match. The default query mode
ranks by vector; ``hybrid`` adds the words (``alpha`` weighs the vector part) and
``text_search`` uses the words alone. It serves ``VectorStoreIndex`` and LlamaIndex's
``VectorMemoryBlock``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
from pydantic import PrivateAttr

from memfold.errors import InvalidInput, UnsupportedOperation
from memfold.limits import DEFAULT_LIMITS
from memfold.memories import (
    MemoryHit,
    MemoryRecord,
    MemoryStore,
    check_namespace,
    open_memory_store,
)
from memfold.model import JSON
from memfold.stores import DEFAULT_TENANT, encode_json

__all__ = ["MemfoldVectorStore"]

_OPERATORS = {
    FilterOperator.EQ: "$eq", FilterOperator.NE: "$ne", FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte", FilterOperator.LT: "$lt", FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in", FilterOperator.NIN: "$nin",
}  # fmt: skip
_TEXT_MODES = (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE)


def to_filter(filters: MetadataFilters | None) -> dict[str, JSON]:
    """LlamaIndex ``MetadataFilters`` as a memfold filter (`memfold.recall.filters`); a key
    holding a ``.`` is refused (`UnsupportedOperation`): memfold would read it as a path."""
    if filters is None:
        return {}
    if filters.condition == FilterCondition.NOT:
        raise UnsupportedOperation("the 'not' filter condition is not supported: use '!=' or nin")
    parts: list[JSON] = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            parts.append(to_filter(f))
            continue
        if "." in f.key:  # memfold's filters would read it as a path into nested values
            raise UnsupportedOperation(
                f"filter key {f.key!r:.100} holds a '.': a metadata key with a dot cannot be "
                "filtered on"
            )
        if f.operator == FilterOperator.IS_EMPTY:  # missing, null, "" or []
            empty: list[JSON] = [{f.key: {"$exists": False}}, {f.key: None}, {f.key: ""}]
            parts.append({"$or": [*empty, {f.key: {"$size": 0}}]})
        elif f.operator in _OPERATORS:
            value: JSON = f.value  # type: ignore[assignment]  # lists of scalars are JSON
            parts.append({f.key: {_OPERATORS[f.operator]: value}})
        else:
            raise UnsupportedOperation(
                f"filter operator {f.operator.value!r} is not supported: use ==, !=, >, >=, <, "
                "<=, in, nin or is_empty"
            )
    if not parts:
        return {}
    return {"$or" if filters.condition == FilterCondition.OR else "$and": parts}


def _node(record: MemoryRecord) -> BaseNode:
    if "_node_content" not in record.value:  # written by memfold or another framework
        return TextNode(id_=str(record.id), text=record.text, metadata=dict(record.value))
    node = metadata_dict_to_node(dict(record.value), text=record.text)
    node.id_ = str(record.id)  # the store gave a node with an empty id one of its own
    return node


class MemfoldVectorStore(BasePydanticVectorStore):
    """LlamaIndex nodes as memfold memories.

    Args:
        store: a memfold memory store, or its URL.
        namespace: where the nodes live, ``(tenant, ...)``; queries cover it and the
            namespaces under it (None: ``(default tenant, "nodes")``, which a store opened with
            ``require_tenant`` refuses).
        options: passed to `memfold.memories.open_memory_store` with a URL.

    Examples:
        >>> from llama_index.core.schema import TextNode
        >>> vs = MemfoldVectorStore("memory://?dimensions=2")
        >>> vs.add([TextNode(id_="n1", text="north", embedding=[0.0, 1.0]),
        ...         TextNode(id_="n2", text="east", embedding=[1.0, 0.0])])
        ['n1', 'n2']
        >>> vs.query(VectorStoreQuery(query_embedding=[0.1, 0.9], similarity_top_k=1)).ids
        ['n1']
    """

    stores_text: bool = True
    namespace: tuple[str, ...] = (DEFAULT_TENANT, "nodes")
    _store: MemoryStore = PrivateAttr()

    def __init__(
        self,
        store: MemoryStore | str = "memory://",
        *,
        namespace: tuple[str, ...] | None = None,
        **options: Any,
    ) -> None:
        opened = open_memory_store(store, **options) if isinstance(store, str) else store
        if namespace is None:
            namespace = (opened.resolve_tenant(None), "nodes")
        super().__init__(stores_text=True, namespace=check_namespace(namespace))  # type: ignore[call-arg]
        self._store = opened

    @property
    def client(self) -> MemoryStore:
        """The memfold memory store."""
        return self._store

    def _records(self, nodes: Sequence[BaseNode]) -> list[MemoryRecord]:
        if isinstance(nodes, str) or not isinstance(nodes, Sequence):
            raise InvalidInput(f"nodes must be a list of BaseNode, got {type(nodes).__name__}")
        return [self._record(n) for n in nodes]

    def _record(self, node: object) -> MemoryRecord:
        """``node`` as a record, or `InvalidInput` if it is not a node or its metadata is not
        JSON (LlamaIndex would store a set as a list, and fails on deep nesting)."""
        if not isinstance(node, BaseNode):
            raise InvalidInput(f"nodes must be BaseNode objects, got {type(node).__name__}")
        limits = getattr(self._store, "limits", DEFAULT_LIMITS)  # a store's raised limits hold
        encode_json(node.metadata, "a node's metadata", limits)
        try:
            value = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
        except (ValueError, RecursionError) as exc:  # pydantic nests less deeply than memfold
            raise InvalidInput(f"LlamaIndex cannot serialise node {node.node_id!r}: {exc}") from exc
        return MemoryRecord(
            self.namespace,
            node.node_id,
            node.get_content(metadata_mode=MetadataMode.NONE),
            value,
            None if node.embedding is None else tuple(node.embedding),
        )

    def _search(self, q: VectorStoreQuery) -> dict[str, Any]:
        if q.node_ids:
            raise UnsupportedOperation("query by node_ids is not supported: use get_nodes")
        f = to_filter(q.filters)
        if q.doc_ids is not None and (
            isinstance(q.doc_ids, str) or not isinstance(q.doc_ids, Sequence)
        ):
            raise InvalidInput(f"doc_ids must be a list of str, got {q.doc_ids!r:.100}")
        if q.doc_ids:
            docs: dict[str, JSON] = {"ref_doc_id": {"$in": list(q.doc_ids)}}
            f = {"$and": [f, docs]} if f else docs
        args: dict[str, Any] = {"filter": f, "k": q.similarity_top_k}
        try:
            mode = VectorStoreQueryMode(q.mode)
        except ValueError as exc:
            raise InvalidInput(f"unknown query mode {q.mode!r:.100}") from exc
        if mode in _TEXT_MODES or q.query_embedding is None:
            return {**args, "query": q.query_str, "vector_weight": 0}
        if mode == VectorStoreQueryMode.HYBRID:
            alpha = 0.5 if q.alpha is None else q.alpha
            if isinstance(alpha, bool) or not isinstance(alpha, int | float):
                raise InvalidInput(f"alpha must be a number from 0 to 1, got {alpha!r:.100}")
            weights = {"text_weight": 1 - alpha, "vector_weight": alpha}
            return {**args, "query": q.query_str, "vector": q.query_embedding, **weights}
        if mode == VectorStoreQueryMode.DEFAULT:
            return {**args, "vector": q.query_embedding}
        raise UnsupportedOperation(f"query mode {mode.value!r}: use default, hybrid or text")

    @staticmethod
    def _result(hits: list[MemoryHit]) -> VectorStoreQueryResult:
        return VectorStoreQueryResult(
            nodes=[_node(h.record) for h in hits],
            similarities=[h.score for h in hits],
            ids=[str(h.record.id) for h in hits],
        )

    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Upsert nodes (embedded by the store when a node has no embedding); returns ids."""
        return [
            str(r.id) for r in self._store.put_many(self._records(nodes), dedupe_threshold=None)
        ]

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Async `add`."""
        stored = await self._store.aput_many(self._records(nodes), dedupe_threshold=None)
        return [str(r.id) for r in stored]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` best nodes passing the filters."""
        return self._result(self._store.search(self.namespace, **self._search(query)))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Async `query`."""
        return self._result(await self._store.asearch(self.namespace, **self._search(query)))

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        self._store.delete_where(self.namespace, {"ref_doc_id": ref_doc_id})

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Async `delete`."""
        await self._store.adelete_where(self.namespace, {"ref_doc_id": ref_doc_id})

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """Nodes by id (in the namespace) or by filters (the first 10,000 that pass)."""
        if node_ids is not None:
            return [_node(r) for r in self._store.get_many(self.namespace, node_ids)]
        listed = self._store.list_records(self.namespace, filter=to_filter(filters), limit=10_000)
        return [_node(r) for r in listed]

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        """Async `get_nodes`."""
        if node_ids is not None:
            return [_node(r) for r in await self._store.aget_many(self.namespace, node_ids)]
        f = to_filter(filters)
        return [
            _node(r)
            for r in await self._store.alist_records(self.namespace, filter=f, limit=10_000)
        ]

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete nodes by id, or every node passing ``filters``."""
        if (node_ids is None) == (filters is None):
            raise InvalidInput("delete_nodes takes node_ids or filters (use clear() for all)")
        if node_ids is not None:
            self._store.delete(self.namespace, node_ids)
        else:
            self._store.delete_where(self.namespace, to_filter(filters))

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Async `delete_nodes`."""
        if (node_ids is None) == (filters is None):
            raise InvalidInput("delete_nodes takes node_ids or filters (use clear() for all)")
        if node_ids is not None:
            await self._store.adelete(self.namespace, node_ids)
        else:
            await self._store.adelete_where(self.namespace, to_filter(filters))

    def clear(self) -> None:
        """Delete every node in the namespace (and under it)."""
        self._store.delete_where(self.namespace)

    async def aclear(self) -> None:
        """Async `clear`."""
        await self._store.adelete_where(self.namespace)
