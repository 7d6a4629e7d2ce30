"""Limits that are settings, held after a body's own validation: MAX_MESSAGE_CHARS and
MAX_NEW_TOKENS_LIMIT (docs/api.md#limits-and-bad-input).

The request schemas declare the most either setting can be (lfgate.config's ceilings); a
field that a setting bounds carries a `Limit` in its annotation, and `check_limits` holds the
validated body to the gateway's settings. Going over is the same error as any other bad
field (422, or 400 in OpenAI's shape under /v1), naming the field, the limit and the setting.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from lfgate.config import Settings

_Loc = tuple[str | int, ...]


class Limit(enum.Enum):
    """Annotated[...] metadata: the setting that bounds this field."""

    MESSAGE_CHARS = "MAX_MESSAGE_CHARS"  # every string at or under the field, in characters
    NEW_TOKENS = "MAX_NEW_TOKENS_LIMIT"  # an int


def _strings(value: Any, loc: _Loc) -> Iterator[tuple[_Loc, str]]:
    """Every string at or under `value` (a /v1 message's content parts, stop strings, ...), in
    order; without recursion, as a /v1 message may nest as deep as the JSON parser goes."""
    stack: list[tuple[_Loc, Any]] = [(loc, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, list):
            stack.extend(((*where, i), part) for i, part in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            stack.extend(((*where, key), part) for key, part in reversed(item.items()))


def _over(limit: Limit, value: Any, loc: _Loc, settings: Settings) -> list[dict[str, Any]]:
    if limit is Limit.MESSAGE_CHARS:
        most = settings.max_message_chars
        return [{"type": "string_too_long", "loc": where,
                 "msg": f"String should have at most {most} characters (MAX_MESSAGE_CHARS), "
                        f"not {len(text)}",
                 "input": None, "ctx": {"max_length": most, "setting": limit.value}}
                for where, text in _strings(value, loc) if len(text) > most]
    most = settings.max_new_tokens_limit
    if isinstance(value, int) and value > most:
        return [{"type": "less_than_equal", "loc": loc,
                 "msg": f"Input should be less than or equal to {most} (MAX_NEW_TOKENS_LIMIT)",
                 "input": value, "ctx": {"le": most, "setting": limit.value}}]
    return []


def over_limits(model: BaseModel, settings: Settings, loc: _Loc = ("body",)
                ) -> list[dict[str, Any]]:
    """The errors of every field of `model` (and of the models in it) over its setting."""
    errors: list[dict[str, Any]] = []
    for name, field in type(model).model_fields.items():
        value, where = getattr(model, name), (*loc, name)
        for limit in (item for item in field.metadata if isinstance(item, Limit)):
            errors += _over(limit, value, where, settings)
        if isinstance(value, BaseModel):
            errors += over_limits(value, settings, where)
    return errors


def check_limits(body: BaseModel, settings: Settings) -> None:
    """Refuse a body that goes over a limit the settings set, as a validation error."""
    errors = over_limits(body, settings)
    if errors:
        raise RequestValidationError(errors)
