"""Bad input refused by name, for every route at once: text that cannot be stored, numbers
that JSON has not, and bodies that cannot be read are a 422 (a 400 in OpenAI's shape under
/v1) whose `loc` and message say where and what, never a 500 or a bare "error parsing".

- `storable_request`, a dependency of the whole app: no string of the path, the query or
  the JSON body may hold a NUL (PostgreSQL refuses it in text, so it must not reach storage)
  or an unpaired surrogate (`"\\ud800"` parses, but is no Unicode text and cannot be
  encoded), and no number may be NaN or Infinity (Python's parser takes them; JSON has not).
  Other control characters, emoji and CJK are text like any other and are kept intact.
- `unparseable_body`: FastAPI answers a body that `json.loads` cannot read for a reason other
  than its syntax (bytes that are not UTF-8, an integer of more than 4300 digits, nesting
  deeper than the parser goes) with a bare 400; this gives the reason, as a syntax error is.
- `explained`: FastAPI's own errors about the body as a whole, said in words a client can act
  on (an empty body, a body that is not JSON, where the JSON breaks).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from lfgate.storage.storable import why_unstorable

MAX_REPORTED = 10  # problems listed in one answer; the first ones in the body's order

_Loc = tuple[str | int, ...]
_Problem = tuple[_Loc, str, str]  # where, pydantic-style error type, message


def _unstorable(value: object) -> tuple[str, str] | None:
    """Why this value cannot be taken (an error type and a message), or None."""
    if isinstance(value, str):
        why = why_unstorable(value)
        return None if why is None else ("invalid_text", why)
    elif isinstance(value, float) and not math.isfinite(value):
        return "finite_number", (f"Number {value} is not JSON (JSON has no NaN or Infinity): "
                                 "send a finite number")
    return None


def _problems(data: Any, loc: _Loc) -> Iterator[_Problem]:
    """Every unstorable value (or key) in a parsed JSON document, in document order; walked
    without recursion, so any depth the parser took is fine here."""
    stack: list[tuple[_Loc, Any]] = [(loc, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key in value:
                if (why := _unstorable(key)) is not None:
                    yield where, why[0], f"A key: {why[1]}"
            stack.extend(((*where, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*where, index), item)
                         for index, item in reversed(list(enumerate(value))))
        elif (why := _unstorable(value)) is not None:
            yield (where, *why)


def _is_json(request: Request) -> bool:
    """As FastAPI decides whether to parse a body as JSON."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media.startswith("application/") and (media == "application/json"
                                                 or media.endswith("+json"))


async def storable_request(request: Request) -> None:
    """Refuse, naming where, any string of the request that cannot be stored and any number
    that is not JSON (see the module's docstring)."""
    found: list[_Problem] = []
    for name, value in request.path_params.items():
        found += _problems(value, ("path", name))
    for name, value in request.query_params.multi_items():
        found += _problems(name, ("query",))
        found += _problems(value, ("query", name))
    if _is_json(request) and await request.body():  # FastAPI has parsed it: json() is cached
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # refused already by FastAPI, with its reason
            body = None
        for problem in _problems(body, ("body",)):
            found.append(problem)
            if len(found) >= MAX_REPORTED:
                break
    if found:
        raise RequestValidationError([{"type": kind, "loc": loc, "msg": msg, "input": None}
                                      for loc, kind, msg in found[:MAX_REPORTED]])


def unparseable_body(exc: HTTPException) -> RequestValidationError | None:
    """The reason behind FastAPI's bare 400 "There was an error parsing the body" (its
    cause), as the 422 of a JSON syntax error; None for any other HTTPException."""
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, ValueError | RecursionError):
        return None
    position = 0
    if isinstance(cause, UnicodeDecodeError):
        position = cause.start
        why = (f"the body is not valid UTF-8: byte {cause.object[cause.start]:#04x} at "
               f"position {cause.start} ({cause.reason}); send the text as UTF-8")
    elif isinstance(cause, RecursionError):
        why = "the JSON is nested too deeply to read"
    else:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        why = str(cause).split(";", 1)[0]
    return RequestValidationError([{"type": "json_invalid", "loc": ("body", position),
                                    "msg": "JSON decode error", "input": {},
                                    "ctx": {"error": why}}])


def explained(exc: RequestValidationError) -> RequestValidationError:
    """FastAPI's errors about the body as a whole, in words a client can act on; the others
    as they are."""
    errors = []
    for error in exc.errors():
        loc, kind = tuple(error.get("loc") or ()), error.get("type")
        if kind == "json_invalid" and loc[:1] == ("body",):
            position = loc[1] if len(loc) > 1 else 0
            reason = (error.get("ctx") or {}).get("error", "not JSON")
            error = {**error, "loc": ("body",),
                     "msg": f"JSON decode error at position {position}: {reason}"}
        elif kind == "missing" and loc == ("body",):
            error = {**error, "msg": "A JSON object is required as the request body (Content-"
                                     "Type: application/json); the body is empty"}
        elif kind == "model_attributes_type" and loc == ("body",) and isinstance(
                error.get("input"), str | bytes):
            error = {**error, "input": None,
                     "msg": "The body must be a JSON object sent with Content-Type: "
                            "application/json"}
        errors.append(error)
    return RequestValidationError(errors, body=exc.body)
