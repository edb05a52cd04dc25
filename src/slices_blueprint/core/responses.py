"""JSON answers serialized once: a view returning one of these skips FastAPI's second
validation of its return value against the route's ``response_model`` (the models here were
validated when they were built)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

from fastapi import Response
from pydantic import BaseModel, TypeAdapter

JSON = "application/json"


@cache
def _list_of(model: type[BaseModel]) -> TypeAdapter:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def json_answer(value: BaseModel | Sequence[BaseModel], model: type[BaseModel] | None = None, *,
                status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``value`` (a model, or a list of ``model``) as the JSON the route documents."""
    if isinstance(value, BaseModel):
        body = value.__pydantic_serializer__.to_json(value)
    else:
        assert model is not None, "a list needs its item model"
        body = _list_of(model).dump_json(list(value))
    return Response(body, status_code=status_code, media_type=JSON, headers=headers)
