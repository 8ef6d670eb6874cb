"""Error answers of the HTTP API: their one JSON shape, and the one mapping from error codes to statuses.

Every error leaves as `{"error": {"code", "message"}}` with a fitting status: 400 a request the backend or the
server limits reject, 401 a missing or wrong API key, 404 an unknown job, 409 a result not ready yet, 410 an
expired result, 413 a body over the limit, 422 a body of the wrong shape, 429 a rate or job limit, 503 a
transport that refused the request, 504 a job nobody answered in time.
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagcore.errors import InvalidRequest, RequestTimedOut, TagError, is_invalid_request_code

from .schemas import ErrorResponse


class ApiError(Exception):
    """An error answer with its status, stable code and message (and optional headers)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def status_for(code: str | None, error: TagError | None = None) -> int:
    """The status of a TagError raised here, or of a failed job's error code (a worker's answer): 400 for a
    request that was wrong in itself (any InvalidRequest code), 504 for one nobody answered in time, else 500."""
    if isinstance(error, InvalidRequest) or is_invalid_request_code(code):
        return 400
    if code == RequestTimedOut.code:
        return 504
    return 500


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def error_schemas(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entries of a route's error statuses."""
    return {status: {"model": ErrorResponse} for status in statuses}


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line naming the first few fields of a body of the wrong shape and what is wrong with each."""
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _tag_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TagError)
    return error_response(status_for(exc.code, exc), exc.code, exc.message)


async def _invalid_shape(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", validation_message(list(exc.errors())))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    """Give every error the API's one shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(TagError, _tag_error)
    app.add_exception_handler(RequestValidationError, _invalid_shape)
    app.add_exception_handler(StarletteHTTPException, _http_error)
