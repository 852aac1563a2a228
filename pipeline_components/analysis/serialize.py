"""Dataclasses <-> plain JSON: non-finite floats become null and come back as NaN.

Decisions travel through Airflow XCom, JSON files and the report, so they must be strict JSON
(no NaN tokens) and rebuild into the same typed objects (``from_dict``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Union


def to_plain(obj: Any) -> Any:
    """Recursively turn dataclasses, tuples and numpy scalars into JSON-safe Python values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def from_plain(tp: Any, value: Any) -> Any:
    """Rebuild a value of type ``tp`` (a dataclass, container or scalar type) from ``to_plain``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        return from_plain(real[0], value) if len(real) == 1 else value
    if value is None:
        return float("nan") if tp is float else None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        return tp(**{k: from_plain(hints[k], v) for k, v in value.items() if k in known})
    if origin is list:
        return [from_plain(args[0], v) for v in value]
    if origin is tuple:
        return tuple(from_plain(a, v) for a, v in zip(args, value, strict=False))
    if origin is dict:
        return {k: from_plain(args[1], v) for k, v in value.items()}
    if tp is float:
        return float(value)
    return value
