"""One metadata filter language for every backend: a Python predicate and SQL with the same
semantics.

A filter is a JSON object over the fields of a record's ``value`` (``"a.b"`` reaches a nested
field; a part that reads as an integer, such as ``"0"`` or ``"-1"``, is refused: arrays have no
fields). Top-level entries are ANDed. A field maps to a scalar (equality) or to a dict of
operators (ANDed):

- ``$eq`` (or a plain scalar): the field exists and equals it; ``true`` never equals ``1``,
  while ``1`` equals ``1.0``.
- ``$ne``: the field does not equal it (a missing field matches).
- ``$in`` / ``$nin``: the field equals one of the list / none of it (missing matches ``$nin``).
- ``$gt``, ``$gte``, ``$lt``, ``$lte``: the field is a number compared with a number, or a str
  compared with a str by code point; other types never match.
- ``$exists``: the field is present (``true``), even if null, or absent (``false``).
- ``$type``: the field is present and holds a value of that JSON type: ``"object"``,
  ``"array"``, ``"string"``, ``"number"``, ``"boolean"`` or ``"null"`` (``{"a": {"$type":
  "object"}}`` tells a nested object from a missing field or a scalar).
- ``$size``: the field is an array of that many elements (``{"tags": {"$size": 0}}``: an empty
  array; a missing field, a string or an object has no size).

``{"$and": [f, ...]}`` and ``{"$or": [f, ...]}`` combine filters. Values are str, int, float,
bool or None (an int within 64 bits); anything else is `memfold.errors.InvalidInput`.

Examples:
    >>> f = parse_filter({"kind": "fact", "score": {"$gte": 3}})
    >>> f.matches({"kind": "fact", "score": 4}), f.matches({"kind": "fact", "score": "9"})
    (True, False)
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from sqlalchemy import ColumnElement, Text, and_, bindparam, case, false, func, not_, or_, true
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from memfold.errors import InvalidInput
from memfold.limits import MAX_COUNT
from memfold.model import JSON

__all__ = ["Filter", "FilterSpec", "parse_filter"]

FilterSpec: TypeAlias = Mapping[str, JSON]
"""A filter as users write it (see the module docstring)."""

Scalar: TypeAlias = str | int | float | bool | None

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
_COMPARE = set(_OPERATORS)
_JSONB_TYPES = {"bool": "boolean", "number": "number", "str": "string", "null": "null"}
_SQLITE_TYPES: dict[str, tuple[str, ...]] = {
    "object": ("object",),
    "array": ("array",),
    "string": ("text",),
    "number": ("integer", "real"),
    "boolean": ("true", "false"),
    "null": ("null",),
}
"""Each ``$type`` name and what SQLite's ``json_type`` calls it (PostgreSQL's ``jsonb_typeof``
uses the names themselves)."""
_MISSING = object()


def _check_scalar(value: object, where: str) -> Scalar:
    if value is None or isinstance(value, str | bool | int):
        if isinstance(value, str) and "\x00" in value:
            raise InvalidInput(f"filter value for {where} must not contain NUL")
        if isinstance(value, int) and not -MAX_COUNT - 1 <= value <= MAX_COUNT:
            raise InvalidInput(
                f"filter value for {where} must be an int of 64 bits (SQL compares no wider), "
                f"got {value}: compare with a float instead"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"filter value for {where} must be finite, got {value!r}")
        return value
    raise InvalidInput(
        f"filter value for {where} must be a str, number, bool or None, got "
        f"{type(value).__name__} (use $in for a list; address nested fields as 'a.b')"
    )


_INTEGER = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")
"""A part PostgreSQL's ``#>`` reads as an array position (as C's ``strtol`` does), not a key."""


def _check_path(field: object) -> tuple[str, ...]:
    if not isinstance(field, str) or not field:
        raise InvalidInput(f"a filter field must be a non-empty str, got {field!r}")
    parts = tuple(field.split("."))
    for part in parts:
        if (
            not part
            or part.isdigit()
            or _INTEGER.fullmatch(part)
            or any(c in part for c in '"\\\x00$')
        ):
            raise InvalidInput(
                f"filter field {field!r}: each dotted part must be non-empty, not an integer "
                '(arrays have no fields), and free of ", \\, $ and NUL'
            )
    return parts


def _kind(value: object) -> str:
    """The JSON type of a value: 'bool', 'number', 'str', 'null' or 'other'."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "str"
    return "null" if value is None else "other"


class Filter:
    """A parsed filter: `matches` in Python, `to_sql` for SQLite and PostgreSQL."""

    __slots__ = ()

    @property
    def always(self) -> bool:
        """Whether every record passes (the empty filter)."""
        return isinstance(self, _All) and not self.items

    def matches(self, value: Mapping[str, Any]) -> bool:
        """Whether a record whose value is ``value`` passes."""
        raise NotImplementedError

    def to_sql(self, column: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
        """The same test as SQL over a JSON column (TEXT on SQLite, JSONB on PostgreSQL);
        never NULL, so it can be negated safely."""
        raise NotImplementedError


def _json_type(value: object) -> str:
    """The ``$type`` name of a JSON value."""
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return _JSONB_TYPES.get(_kind(value), "other")


def _lookup(value: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = value
    for part in path:
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


@dataclass(frozen=True, slots=True)
class _Exists(Filter):
    path: tuple[str, ...]

    def matches(self, value: Mapping[str, Any]) -> bool:
        return _lookup(value, self.path) is not _MISSING

    def to_sql(self, column: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
        return _extract(column, self.path, dialect)[0].is_not(None)


@dataclass(frozen=True, slots=True)
class _Type(Filter):
    path: tuple[str, ...]
    type: str  # a key of _SQLITE_TYPES

    def matches(self, value: Mapping[str, Any]) -> bool:
        found = _lookup(value, self.path)
        return found is not _MISSING and _json_type(found) == self.type

    def to_sql(self, column: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
        typed = _extract(column, self.path, dialect)[0]
        if dialect == "postgresql":
            test = func.jsonb_typeof(typed) == bindparam(None, self.type, Text)
        else:  # _extract gives SQLite's json_type already
            test = or_(*(typed == bindparam(None, t, Text) for t in _SQLITE_TYPES[self.type]))
        return func.coalesce(test, false())


@dataclass(frozen=True, slots=True)
class _Size(Filter):
    path: tuple[str, ...]
    size: int

    def matches(self, value: Mapping[str, Any]) -> bool:
        found = _lookup(value, self.path)
        return isinstance(found, list | tuple) and len(found) == self.size

    def to_sql(self, column: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
        typed = _extract(column, self.path, dialect)[0]
        size: ColumnElement[int] = bindparam(None, self.size)
        if dialect == "postgresql":  # jsonb_array_length raises on anything but an array
            length = case((func.jsonb_typeof(typed) == "array", func.jsonb_array_length(typed)))
            test = length == size
        else:  # json_array_length gives 0 for a scalar or an object
            count = func.json_array_length(column, _sqlite_path(self.path))
            test = and_(typed == "array", count == size)
        return func.coalesce(test, false())


@dataclass(frozen=True, slots=True)
class _Compare(Filter):
    path: tuple[str, ...]
    op: str  # $eq $gt $gte $lt $lte
    value: Scalar

    def matches(self, value: Mapping[str, Any]) -> bool:
        found = _lookup(value, self.path)
        if found is _MISSING or _kind(found) != _kind(self.value):
            return False
        if self.op == "$eq":
            return bool(found == self.value)
        return bool(_OPERATORS[self.op](found, self.value))  # same kind: comparable

    def to_sql(self, column: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
        kind = _kind(self.value)
        typed, text_value = _extract(column, self.path, dialect)
        sql_op = {"$eq": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[self.op]
        if dialect == "postgresql":
            jtype = func.jsonb_typeof(typed)
            if kind == "str" and self.op != "$eq":
                test = and_(
                    jtype == "string",
                    text_value.collate("C").op(sql_op)(bindparam(None, self.value, Text)),
                )
            else:
                literal = func.cast(bindparam(None, _json_number(self.value), Text), JSONB)
                test = and_(jtype == _JSONB_TYPES[kind], typed.op(sql_op)(literal))
            return func.coalesce(test, false())
        jtype = func.json_type(column, _sqlite_path(self.path))
        if kind == "bool":
            test = jtype == ("true" if self.value else "false")
        elif kind == "null":
            test = jtype == "null"
        else:
            types = ("integer", "real") if kind == "number" else ("text",)
            test = and_(
                or_(*(jtype == t for t in types)),
                text_value.op(sql_op)(bindparam(None, self.value)),
            )
        return func.coalesce(test, false())


@dataclass(frozen=True, slots=True)
class _Not(Filter):
    inner: Filter

    def matches(self, value: Mapping[str, Any]) -> bool:
        return not self.inner.matches(value)

    def to_sql(self, column: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
        return not_(self.inner.to_sql(column, dialect))


@dataclass(frozen=True, slots=True)
class _All(Filter):
    items: tuple[Filter, ...]

    def matches(self, value: Mapping[str, Any]) -> bool:
        return all(f.matches(value) for f in self.items)

    def to_sql(self, column: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
        return and_(true(), *(f.to_sql(column, dialect) for f in self.items))


@dataclass(frozen=True, slots=True)
class _Any(Filter):
    items: tuple[Filter, ...]

    def matches(self, value: Mapping[str, Any]) -> bool:
        return any(f.matches(value) for f in self.items)

    def to_sql(self, column: ColumnElement[Any], dialect: str) -> ColumnElement[bool]:
        return or_(false(), *(f.to_sql(column, dialect) for f in self.items))


def _json_number(value: Scalar) -> str:
    """``value`` as JSON for PostgreSQL to compare as a decimal: a whole float as its exact
    digits (``json.dumps`` writes 2.0**60 as 1.152921504606847e+18, another number); any other
    float as its shortest form, which is what a stored float holds and tells no two apart."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def _sqlite_path(path: tuple[str, ...]) -> ColumnElement[str]:
    return bindparam(None, "$" + "".join(f'."{p}"' for p in path), Text)


def _extract(
    column: ColumnElement[Any], path: tuple[str, ...], dialect: str
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """(the field as JSON or NULL when missing, the field as a scalar SQL value)."""
    if dialect == "postgresql":
        array = bindparam(None, list(path), ARRAY(Text))
        return column.op("#>")(array), column.op("#>>")(array)
    return func.json_type(column, _sqlite_path(path)), func.json_extract(column, _sqlite_path(path))


def _parse_field(path: tuple[str, ...], field: str, condition: object) -> Filter:
    if not isinstance(condition, Mapping):
        return _Compare(path, "$eq", _check_scalar(condition, field))
    if not condition:
        raise InvalidInput(f"filter on {field!r} has no operator")
    parts: list[Filter] = []
    for op, arg in condition.items():
        where = f"{field} {op}"
        if op in ("$eq", "$ne"):
            eq = _Compare(path, "$eq", _check_scalar(arg, where))
            parts.append(eq if op == "$eq" else _Not(eq))
        elif op in _COMPARE:
            scalar = _check_scalar(arg, where)
            if _kind(scalar) not in ("number", "str"):
                raise InvalidInput(f"{where} compares with a number or a str, got {arg!r}")
            parts.append(_Compare(path, op, scalar))
        elif op in ("$in", "$nin"):
            if isinstance(arg, str) or not isinstance(arg, Sequence):
                raise InvalidInput(f"{where} takes a list of values, got {arg!r}")
            any_of = _Any(tuple(_Compare(path, "$eq", _check_scalar(v, where)) for v in arg))
            parts.append(any_of if op == "$in" else _Not(any_of))
        elif op == "$exists":
            if not isinstance(arg, bool):
                raise InvalidInput(f"{where} takes true or false, got {arg!r}")
            parts.append(_Exists(path) if arg else _Not(_Exists(path)))
        elif op == "$type":
            if not isinstance(arg, str) or arg not in _SQLITE_TYPES:
                raise InvalidInput(
                    f"{where} takes one of {', '.join(map(repr, _SQLITE_TYPES))}, got {arg!r}"
                )
            parts.append(_Type(path, arg))
        elif op == "$size":
            if isinstance(arg, bool) or not isinstance(arg, int) or not 0 <= arg <= MAX_COUNT:
                raise InvalidInput(f"{where} takes a count of elements (an int >= 0), got {arg!r}")
            parts.append(_Size(path, arg))
        else:
            raise InvalidInput(
                f"unknown filter operator {op!r} on {field!r}: use $eq, $ne, $in, $nin, $gt, "
                "$gte, $lt, $lte, $exists, $type or $size"
            )
    return parts[0] if len(parts) == 1 else _All(tuple(parts))


def parse_filter(spec: FilterSpec | None) -> Filter:
    """Validate a filter and parse it (None or ``{}`` matches everything).

    Raises:
        InvalidInput: an unknown operator, a bad field name or a value that is not a scalar.
    """
    if spec is None:
        return _All(())
    if not isinstance(spec, Mapping):
        raise InvalidInput(f"a filter must be a dict, got {type(spec).__name__}")
    parts: list[Filter] = []
    for key, condition in spec.items():
        if key in ("$and", "$or"):
            if isinstance(condition, str | Mapping) or not isinstance(condition, Sequence):
                raise InvalidInput(f"{key} takes a list of filters, got {condition!r}")
            items = tuple(parse_filter(c) for c in condition)  # type: ignore[arg-type]
            parts.append(_All(items) if key == "$and" else _Any(items))
        elif isinstance(key, str) and key.startswith("$"):
            raise InvalidInput(f"unknown filter operator {key!r} at the top level: use $and or $or")
        else:
            parts.append(_parse_field(_check_path(key), key, condition))
    return parts[0] if len(parts) == 1 else _All(tuple(parts))
