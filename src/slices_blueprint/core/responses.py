"""JSON answers serialized once: a view returning one of these skips FastAPI's second
validation of its return value against the route's ``response_model`` (the models here were
validated when they were built; plain values are the route's model's fields, in its order)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import orjson
import pydantic_core
from fastapi import Response
from pydantic import BaseModel, TypeAdapter

JSON = "application/json"


@cache
def _list_of(model: type[BaseModel]) -> TypeAdapter:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def json_answer(value: BaseModel | Sequence[BaseModel], model: type[BaseModel] | None = None, *,
                status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``value`` (a model, or a list of ``model``) as the JSON the route documents."""
    return Response(model_json(value, model), status_code=status_code, media_type=JSON, headers=headers)


def model_json(value: BaseModel | Sequence[BaseModel], model: type[BaseModel] | None = None) -> bytes:
    """The body of :func:`json_answer`."""
    if isinstance(value, BaseModel):
        return value.__pydantic_serializer__.to_json(value)
    assert model is not None, "a list needs its item model"
    return _list_of(model).dump_json(list(value))


def json_items_answer(items: Sequence[bytes], *, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON array of ``items``, each already a JSON value (a row's JSON remembered)."""
    return Response(b"[" + b",".join(items) + b"]", media_type=JSON, headers=headers)


def plain_json(value: Any) -> bytes:
    """``value`` as pydantic's serializer writes it (``datetime`` in UTC with ``Z``, UUIDs,
    UTF-8 unescaped), by orjson, which writes the same bytes for plain values in half the
    time; by pydantic itself where orjson refuses one (an integer past 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        return pydantic_core.to_json(value)
