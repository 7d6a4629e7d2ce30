"""POST /api/login and /api/logout: the page's way in when GATEWAY_TOKEN is set. A login with
the token sets the session cookie (lfgate.api.guards.auth); failed logins are rate-limited per
client address. The body is read here rather than by FastAPI, so that no answer, not even a
422 about a malformed body, ever echoes what was sent: it may be the token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr, ValidationError

from lfgate.api.deps import SettingsDep
from lfgate.api.guards.auth import (
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    LoginLimiter,
    same_secret,
    session_value,
    unauthorized,
)


class LoginIn(BaseModel):
    token: SecretStr  # GATEWAY_TOKEN


def get_login_limiter(request: Request) -> LoginLimiter:
    return request.app.state.login_limiter


LoginLimiterDep = Annotated[LoginLimiter, Depends(get_login_limiter)]
_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": LoginIn.model_json_schema()}}}}

router = APIRouter(prefix="/api", tags=["auth"])


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None
           ) -> JSONResponse:
    return JSONResponse({"detail": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


@router.post("/login", status_code=204, response_class=Response, openapi_extra=_BODY)
async def login(request: Request, settings: SettingsDep, limiter: LoginLimiterDep
                ) -> Response:
    """`{"token": GATEWAY_TOKEN}` -> 204 with the session cookie (HttpOnly, SameSite=Strict,
    Path=/, Secure over https). A wrong token is a 401; after MAX_FAILED_LOGINS wrong ones
    from one address within a minute, every login from it is a 429 with Retry-After."""
    token = settings.gateway_token.get_secret_value()
    if not token:
        return _error(409, "no_token", "this gateway has no GATEWAY_TOKEN: there is nothing "
                      "to log in to")
    client = request.client.host if request.client else ""
    if wait_s := limiter.retry_after_s(client):
        return _error(429, "too_many_logins", f"too many failed logins from this address: "
                      f"try again in {wait_s} s", headers={"Retry-After": str(wait_s)})
    try:
        given = LoginIn.model_validate_json(await request.body()).token.get_secret_value()
    except ValidationError:
        return _error(422, "bad_login", 'send the token as a JSON object: {"token": "..."}')
    if not same_secret(given, token):
        limiter.failed(client)
        return unauthorized(request, "wrong token: it is not this gateway's GATEWAY_TOKEN",
                            code="wrong_token")
    limiter.succeeded(client)
    response = Response(status_code=204)
    response.set_cookie(SESSION_COOKIE, session_value(token), max_age=SESSION_MAX_AGE_S,
                        path="/", httponly=True, samesite="Strict",
                        secure=request.url.scheme == "https")
    return response


@router.post("/logout", status_code=204, response_class=Response)
async def logout(request: Request) -> Response:
    """Clears the session cookie (the Bearer token, held by API clients, is not affected)."""
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict",
                           secure=request.url.scheme == "https")
    return response
