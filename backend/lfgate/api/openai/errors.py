"""Errors under /v1 in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
with OpenAI's statuses, so clients raise their usual exceptions (NotFoundError, ...)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

V1_PREFIX = "/v1/"
TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
         409: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
         429: "rate_limit_error"}


def is_v1(request: Request) -> bool:
    return request.url.path.startswith(V1_PREFIX) or request.url.path == V1_PREFIX[:-1]


def openai_error(status: int, message: str, *, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None
                 ) -> JSONResponse:
    kind = TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code}}, status_code=status, headers=headers)


def _param(location: tuple[Any, ...]) -> str:
    """pydantic's ('body', 'messages', 2, 'content') as OpenAI names it: messages[2].content."""
    name = ""
    for part in location[1:] if location and location[0] == "body" else location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def validation_error(exc: RequestValidationError) -> JSONResponse:
    """A 400 naming the first bad field (OpenAI answers 400, not 422)."""
    first = exc.errors()[0]
    param = _param(tuple(first.get("loc") or ()))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    where = f"{param}: " if param else ""
    return openai_error(400, f"{where}{message}", code="invalid_parameter", param=param or None)
