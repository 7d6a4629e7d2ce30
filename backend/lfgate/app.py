"""The FastAPI application: long-lived objects opened in the lifespan, routers mounted once,
service errors mapped to HTTP statuses in one place, the web page served at /."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, NoMatchFound

from lfgate import __version__
from lfgate.api import (
    chat,
    chats,
    compare,
    doctor,
    health,
    login,
    models,
    prompt_sets,
)
from lfgate.api.guards.auth import AuthGate, LoginLimiter
from lfgate.api.guards.bad_input import explained, storable_request, unparseable_body
from lfgate.api.guards.body_limit import BodyLimit
from lfgate.api.guards.cors import V1Cors
from lfgate.api.guards.origin import SameOriginGate
from lfgate.api.guards.security_headers import SecurityHeaders
from lfgate.api.openai import routes as openai_routes
from lfgate.api.openai.errors import is_v1, openai_error, validation_error
from lfgate.api.refusal_log import RefusalLog
from lfgate.box_list import box_definitions
from lfgate.config import Settings, check_listen_address, cors_origins
from lfgate.connection_limits import ConnectionLimits
from lfgate.loop_watch import LoopWatch
from lfgate.services.boxes.fleet import BoxFleet
from lfgate.services.boxes.startup_checks import check_boxes
from lfgate.services.chat.turns import ChatTurns
from lfgate.services.errors import ServiceError, TooManyTurns
from lfgate.services.evals.compare import Compares
from lfgate.services.evals.prompt_runs import PromptRuns
from lfgate.services.evals.standings import Standings
from lfgate.storage.chat_store import ChatStore
from lfgate.storage.database import open_database
from lfgate.storage.errors import StorageError
from lfgate.storage.faults import StorageFailed
from lfgate.storage.presence import Presence
from lfgate.storage.prompt_set_store import PromptSetStore
from lfgate.storage.run_store import RunStore
from lfgate.storage.vote_store import VoteStore

logger = logging.getLogger("lfgate")


def _schema_routes(app: FastAPI) -> None:
    """/openapi.json, /docs and /redoc as FastAPI serves them, except that the schema is
    built in a thread: building it costs ~170 ms of CPU the first time, which held every
    other request up on the event loop (lfgate.loop_watch found it)."""

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(await asyncio.to_thread(app.openapi))

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI",
                                   oauth2_redirect_url="/docs/oauth2-redirect")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


def _unknown_api_paths(app: FastAPI) -> None:
    """A path under /api or /v1 that no route serves is a 404 naming it (in OpenAI's shape
    under /v1), whatever the method: without this, a POST fell through to the page's static
    files and came back 405, and a client probing `POST /v1/completions` read "method not
    allowed" where OpenAI says the URL is unknown. A known path asked with another method
    stays a 405 with its Allow header."""
    known = list(app.router.routes)
    methods = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    async def unknown(request: Request) -> Response:
        allowed = [method for method in methods if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in known)]
        if allowed:
            raise StarletteHTTPException(405, headers={"Allow": ", ".join(allowed)})
        raise StarletteHTTPException(
            404, f"Unknown request URL: {request.method} {request.url.path}")

    for prefix in ("/api", "/v1"):
        app.add_api_route(f"{prefix}/{{rest:path}}", unknown, include_in_schema=False,
                          methods=list(methods))


def create_app(settings: Settings) -> FastAPI:
    check_listen_address(settings)  # not beyond loopback without GATEWAY_TOKEN
    env_path = settings.env_path  # the doctor reports on the .env the gateway read
    boxes = box_definitions(settings)  # a wrong BOXES file stops here, naming the key

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _serving(app):
            # What start-up made (modules, the app, the schemas) lives as long as the gateway:
            # out of the collector's way, so a full collection while serving scans only what
            # requests made (it was 84 ms of one request's step under 200 at once: a pause
            # for every request; lfgate.loop_watch said so).
            gc.collect()
            gc.freeze()
            # From the first request to shutdown: start-up serves nobody yet.
            watch = LoopWatch(settings.loop_watch_ms / 1000) if settings.loop_watch_ms else None
            if watch is not None:
                watch.install()
            try:
                yield
            finally:
                if watch is not None:
                    watch.uninstall()

    @contextlib.asynccontextmanager
    async def _serving(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.started_at = int(time.time())
        # One gateway per SQLite file (a second refuses to start, naming the first); on
        # PostgreSQL, gateways share, each recovering only what no live gateway owns.
        app.state.database = database = await open_database(settings.effective_database_url)
        app.state.presence = presence = Presence(database)
        await presence.register()
        app.state.store = ChatStore(database, presence)
        app.state.prompt_sets = PromptSetStore(database)
        app.state.runs = RunStore(database, presence)

        async def recover() -> None:
            interrupted = await app.state.store.mark_interrupted()
            if interrupted:
                logger.warning("%d reply(ies) were cut off by a gateway that stopped; marked "
                               "interrupted", interrupted)
            cut = await app.state.runs.mark_interrupted()
            if cut:
                logger.warning("%d prompt-set run(s) were cut off by a gateway that stopped; "
                               "marked interrupted (resume them to go on)", cut)

        await recover()
        presence.start(after_beat=recover)  # a gateway sharing the database died: its too
        app.state.fleet = fleet = BoxFleet.open(boxes, env_path)
        app.state.registry = fleet.registry
        app.state.turns = ChatTurns(app.state.registry, app.state.store, settings)
        app.state.votes = VoteStore(database)
        app.state.standings = Standings(app.state.votes, app.state.runs)
        app.state.compares = Compares(app.state.turns, app.state.registry, app.state.store,
                                      app.state.votes)
        app.state.prompt_runs = PromptRuns(app.state.turns, app.state.registry,
                                           app.state.prompt_sets, app.state.runs)
        fleet.start()
        # The doctor's quick checks, each failure a line with its fix, while the gateway
        # already serves: a box that does not answer holds nothing back.
        checks = asyncio.create_task(check_boxes(fleet.stacks, env_path),
                                     name="start-up checks")
        try:
            yield
        finally:
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checks
            await fleet.stop_watching()
            await app.state.compares.close()
            await app.state.prompt_runs.close()
            await app.state.turns.close()
            await fleet.close()
            await presence.close()
            await database.close()
        logger.info("stopped: every reply saved, the box's wrappers ended")

    # Every route refuses, by name, text that cannot be stored (lfgate.api.guards.bad_input).
    # The schema and its explorers are served by our own routes (below), not FastAPI's.
    app = FastAPI(title="LF Gate", version=__version__, lifespan=lifespan,
                  dependencies=[Depends(storable_request)], openapi_url=None, docs_url=None,
                  redoc_url=None)
    _schema_routes(app)
    # MAX_REQUEST_BYTES behind the token, 8 KiB on the login and the page's files, and
    # BODY_TIMEOUT_S (lfgate.api.guards.body_limit); the connections' own limits are
    # uvicorn's protocol's, which `lfgate serve` reads here (lfgate.connection_limits).
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes,
                       timeout_s=settings.body_timeout_s)
    app.state.connection_limits = ConnectionLimits(max_connections=settings.max_connections,
                                                   header_timeout_s=settings.header_timeout_s)
    # GATEWAY_TOKEN on /api and /v1, checked before a body is read (middleware added later
    # runs first); failed logins counted per address (lfgate.api.guards.auth).
    app.add_middleware(AuthGate, token=settings.gateway_token.get_secret_value())
    app.state.login_limiter = LoginLimiter()
    app.add_middleware(SecurityHeaders)  # CSP and friends on every response
    # A Host this gateway is not reached by (DNS rebinding), or a browser request from
    # another origin, is refused before anything else (lfgate.api.guards.origin).
    origins = cors_origins(settings)  # a wrong GATEWAY_CORS_ORIGINS stops here, naming it
    app.add_middleware(SameOriginGate, listen_host=settings.gateway_host,
                       allowed=settings.gateway_allowed_hosts, cors_origins=origins)
    # Browser pages of GATEWAY_CORS_ORIGINS may call /v1 (none by default; api.guards.cors).
    app.add_middleware(V1Cors, origins=origins)
    # Around everything: each /v1 refusal (4xx) told in the log with its reason, whoever
    # answered it (lfgate.api.refusal_log).
    app.add_middleware(RefusalLog)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = ({"Retry-After": str(exc.retry_after_s)}
                   if isinstance(exc, TooManyTurns) else None)
        if is_v1(request):
            return openai_error(getattr(exc, "v1_status_code", exc.status_code), exc.message,
                                code=exc.code, param=getattr(exc, "param", None),
                                headers=headers)
        detail = {"code": exc.code, "message": exc.message}
        if getattr(exc, "line", None) is not None:  # a prompt-set file: the line at fault
            detail["line"] = exc.line
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(StorageError)
    async def storage_error(request: Request, exc: StorageError) -> JSONResponse:
        """An id storage does not hold: a 404 naming what is missing. The database refusing
        for a while (locked by another process, its disk full; lfgate.storage.faults): a 503
        naming the cause, with Retry-After when waiting helps."""
        status = getattr(exc, "status_code", 404)
        retry = getattr(exc, "retry_after_s", None)
        headers = {"Retry-After": str(retry)} if retry else None
        if is_v1(request):
            return openai_error(status, exc.message, code=exc.code, headers=headers)
        return JSONResponse({"detail": {"code": exc.code, "message": exc.message}},
                            status_code=status, headers=headers)

    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeout)
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        """What the driver raised, never shown as it is (it holds the SQL and its values):
        the database's passing states by name, anything else as a 500 told in the log."""
        fault = request.app.state.database.fault(exc)
        if fault is not None:
            logger.warning("%s %s: %s", request.method, request.url.path, fault.message)
            return await storage_error(request, fault)
        logger.error("%s %s failed in the database", request.method, request.url.path,
                     exc_info=exc)
        return await storage_error(request, StorageFailed(
            "the database failed on this request (the gateway's log has the details)"))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        exc = explained(exc)
        if is_v1(request):
            return validation_error(exc)
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if (unreadable := unparseable_body(exc)) is not None:  # not "error parsing the body"
            return await invalid_request(request, unreadable)
        if is_v1(request):
            return openai_error(exc.status_code, str(exc.detail), headers=exc.headers)
        return await http_exception_handler(request, exc)

    for router in (health.router, login.router, doctor.router, models.router, chat.router,
                   chats.router, compare.router, prompt_sets.router, openai_routes.router):
        app.include_router(router)
    _unknown_api_paths(app)
    frontend = resources.files("lfgate.frontend")
    app.mount("/", StaticFiles(directory=str(frontend), html=True), name="frontend")
    _build_routes_now(app)
    return app


def _build_routes_now(app: FastAPI) -> None:
    """Build every route before serving, not on the event loop. FastAPI builds a router's
    routes (their dependencies, their pydantic adapters) at the first request that reaches
    it, all of them at once: 25-70 ms of CPU in one step of the loop per router, holding
    every other request up (the loop watch caught it over 100 ms on a loaded machine, at a
    page's first model load). url_path_for walks every route, so it builds them all; and
    anyio's asyncio backend, imported at the first call run in a thread, is imported here."""
    with contextlib.suppress(NoMatchFound):
        app.url_path_for("lfgate: build every route")
    importlib.import_module("anyio._backends._asyncio")
