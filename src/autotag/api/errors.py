"""One JSON error shape for every failure: {"error": short what, "detail": why and what to do}."""

from __future__ import annotations

import logging
from typing import Any

from autotag.types import AutotagError

log = logging.getLogger("autotag.api")


class ApiError(AutotagError):
    """A failure the client caused (or must know about), with the HTTP status to answer it with."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


def error_body(error: str, detail: str) -> dict[str, str]:
    return {"error": error, "detail": detail}


class BodyLimit:
    """ASGI middleware refusing a request body over `max_bytes` with a 413 in the one JSON shape.

    A declared Content-Length over the limit is refused before reading; a body streamed without one
    is cut off once it passes the limit. Starlette's own limit answers in plain text, hence this.
    """

    def __init__(self, app: Any, max_bytes: int, limit: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes  # what the body may hold: the upload limit plus the form around the file
        self.limit = max_bytes if limit is None else limit  # the configured upload limit, named to the client

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.datastructures import Headers
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        detail = f"upload is over the limit of {self.limit} bytes (server setting max_upload_bytes)"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse(error_body("too large", detail), status_code=413)(scope, receive, send)
        received = 0

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, detail)  # answered by the handler below, in the JSON shape
            return message

        await self.app(scope, limited_receive, send)


def allowed_methods(request: Any) -> list[str]:
    """Every method some route of the app answers on this request's path."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
    return sorted(methods)


def install_error_handlers(app: Any) -> None:
    """Map our errors, FastAPI's validation errors and HTTP errors onto the one JSON shape.

    An unexpected exception is still answered with the same shape (500) so that clients never have
    to parse an HTML page; it is logged with its traceback because it is a bug, not user input.
    """
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from autotag.ingest import ImageError
    from autotag.library import FileGone, NotInLibrary, UnknownLearnedTag, UnknownModel

    # the library's own failures, by what they mean to a client
    statuses = {NotInLibrary: (404, "not found"), FileGone: (404, "not found"), UnknownModel: (400, "unknown model"),
                UnknownLearnedTag: (404, "not found")}  # fmt: skip
    for kind, (status, title) in statuses.items():

        async def _library_error(request: Request, exc: Exception, status: int = status, title: str = title) -> Any:
            return JSONResponse(error_body(title, str(exc)), status_code=status)

        app.add_exception_handler(kind, _library_error)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "X-API-Key"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.error, exc.detail), status_code=exc.status, headers=headers)

    @app.exception_handler(ImageError)
    async def _image_error(request: Request, exc: ImageError) -> JSONResponse:
        return JSONResponse(error_body("unusable image", str(exc)), status_code=422)

    @app.exception_handler(AutotagError)
    async def _autotag_error(request: Request, exc: AutotagError) -> JSONResponse:
        return JSONResponse(error_body("bad request", str(exc)), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        return JSONResponse(error_body("invalid request", "; ".join(parts) or "invalid request"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {404: "not found", 405: "method not allowed", 413: "too large", 415: "unsupported media type"}
        error = names.get(exc.status_code, "http error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(error_body(error, str(exc.detail)), status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal error", f"{type(exc).__name__}; see the server log"), status_code=500)
