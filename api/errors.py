"""Errors → the API's JSON shape `{"error": {"code", "message"}}` with a fitting status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.admission import Overloaded
from api.guard import BodyTooLarge, error_body
from api.workers import ClientGone
from rag.errors import InputError, RagError

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before the answer


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", describe_validation(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps any error while reading the body in a 400
            return JSONResponse(error_body("payload_too_large", exc.__cause__.message), status_code=413)
        if exc.status_code == 400:
            # FastAPI's own words for a body it could not decode at all
            code = "invalid_request"
            message = "the request body could not be read; send UTF-8 JSON (multipart/form-data for /v1/ingest)"
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RagError)
    async def rag_error(_: Request, exc: RagError) -> JSONResponse:
        return rag_error_response(exc)

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, __: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody reads it; the metrics count it


def rag_error_response(exc: RagError) -> JSONResponse:
    status = exc.http_status if not isinstance(exc, InputError) else 422
    headers = {"retry-after": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
    return JSONResponse(error_body(exc.code, exc.message), status_code=status, headers=headers)


def describe_validation(exc: RequestValidationError) -> str:
    """Pydantic's findings, each with the field it concerns and, where its wording does not say it, what to
    send instead."""
    problems = []
    for error in exc.errors()[:5]:
        kind = str(error.get("type", ""))
        loc = tuple(error.get("loc", ()))
        location = ".".join(str(part) for part in loc if part != "body") or "body"
        if kind == "json_invalid":
            position = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
            problems.append(f"the request body is not valid JSON{position}; send a JSON object")
            continue
        if loc == ("body",) and kind in {"model_attributes_type", "dict_type", "missing"}:
            problems.append("the request body must be a JSON object sent with Content-Type: application/json")
            continue
        if "files" in loc:
            problems.append("files: send the documents as multipart/form-data file fields named 'files'")
            continue
        message = str(error.get("msg", "invalid"))
        if kind.startswith("date"):
            message += " (write dates as YYYY-MM-DD)"
        problems.append(f"{location}: {message}")
    return "; ".join(dict.fromkeys(problems))
