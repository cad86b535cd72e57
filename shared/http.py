"""The FastAPI pieces every devtools service shares.

Errors always come back as JSON ``{"error": "...", ...}`` with a 4xx for anything
the caller did wrong: malformed JSON is a 400, a body that does not match the
schema is a 422 naming each field, an oversized body is a 413. ``/metrics``
serves Prometheus text to a caller with a token (`MetricsAccess`: DEVTOOLS_METRICS_TOKEN or an API
token) or to anyone where DEVTOOLS_METRICS_PUBLIC is set; ``/health`` is open, added per service from a
check function.

Values PostgreSQL cannot store (NUL characters, lone surrogates, NaN in JSON, numbers out of a
column's range) are refused by the request models (``StorableStr``, ``storable_json``); should one
slip through, the database's data error still becomes a 422, never a 500.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import AfterValidator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1_048_576  # 1 MiB: requests carry descriptions and payloads, not artifacts
BIGINT_MAX = 2**63 - 1  # PostgreSQL bigint
# Deeper JSON is refused before it reaches recursive encoders (json.dumps, jsonb input).
MAX_JSON_DEPTH = 32
# Errors caused by the values a caller sent, raised by the database or the driver's encoder.
DATA_ERRORS: tuple[type[Exception], ...] = (
    psycopg.DataError,
    psycopg.errors.CheckViolation,
    UnicodeEncodeError,
)

HTTP_REQUESTS = Counter(
    "devtools_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "devtools_http_request_duration_seconds", "HTTP request handling time", ["service", "method", "route"]
)

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]


class BodyTooLarge(Exception):
    """Raised inside the ASGI receive wrapper when a streamed body passes the limit."""


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, **extra}


def _printable(text: str) -> str:
    # Echoed input may hold lone surrogates, which cannot be encoded into the UTF-8 response.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _field_name(loc: Sequence[Any]) -> str:
    # ("body", "payload", "count") -> "payload.count"; the "body"/"query" root says nothing useful.
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return _printable(".".join(parts)) or "body"


def validation_fields(errors: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {"field": _field_name(e.get("loc", ())), "message": _printable(str(e.get("msg", "invalid")))}
        for e in errors
    ]


def storable_text(value: str) -> str:
    """The text unchanged, or ValueError when PostgreSQL cannot store it (text, text[] or jsonb)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it contains a lone surrogate)") from None
    return value


# A str field whose value goes to the database: a 422 naming the field instead of a driver error.
StorableStr = Annotated[str, AfterValidator(storable_text)]


def storable_json[T](value: T, max_depth: int = MAX_JSON_DEPTH) -> T:
    """The value unchanged, or ValueError saying where it cannot be stored as jsonb.

    Walked iteratively so that deep nesting is reported, not a RecursionError.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        try:
            if isinstance(item, str):
                storable_text(item)
            elif isinstance(item, float) and not math.isfinite(item):
                raise ValueError("NaN and Infinity are not valid JSON numbers")
        except ValueError as exc:
            raise ValueError(f"at {where or 'top level'}: {exc}") from None
        if isinstance(item, dict):
            for key, child in item.items():
                try:
                    storable_text(str(key))
                except ValueError as exc:
                    raise ValueError(f"key {key!r} at {where or 'top level'}: {exc}") from None
                stack.append((child, f"{where}[{key!r}]", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return value


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(str(e.get("ctx", {}).get("error", e.get("msg"))) for e in errors)
        return JSONResponse(error_body(f"malformed JSON body: {detail}"), status_code=400)
    fields = validation_fields(errors)
    names = ", ".join(f["field"] for f in fields)
    return JSONResponse(error_body(f"invalid request: {names}", fields=fields), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    body = detail if isinstance(detail, dict) else error_body(str(detail))
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # The request models should have refused this value: log it so the gap gets closed.
    first_line = _printable((str(exc).splitlines() or [type(exc).__name__])[0])
    log.warning("data error from a request value", extra={"path": request.url.path, "error": first_line})
    return JSONResponse(error_body(f"invalid value: {first_line}", kind=type(exc).__name__), status_code=422)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path})
    return JSONResponse(error_body("internal error"), status_code=500)


class BodySizeLimit:
    """Refuses bodies over the limit with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        received = 0
        exceeded = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The framework may turn the receive error into its own 400; answer 413 instead.
            nonlocal replaced
            if exceeded:
                if not replaced:
                    replaced = True
                    await self._reject(send)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not replaced:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        response = JSONResponse(
            error_body(f"request body too large (limit {self.max_bytes} bytes)"), status_code=413
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


@dataclass(frozen=True)
class MetricsAccess:
    """Who may scrape ``/metrics``: anyone (``public``), or a caller presenting one of ``tokens``.

    Secure by default: with no token configured and not public, a scrape is a 503 saying what to set.
    """

    public: bool = False
    tokens: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsAccess:
        """DEVTOOLS_METRICS_PUBLIC, or the tokens of DEVTOOLS_METRICS_TOKEN, DEVTOOLS_API_TOKEN and
        DEVTOOLS_API_READ_TOKEN (whoever may read the API may read its metrics)."""
        tokens = [
            *token_identities(settings.metrics_token_value()),
            *token_identities(settings.api_token_value()),
            *token_identities(settings.api_read_token_value()),
        ]
        return cls(public=settings.metrics_public, tokens=tuple(dict.fromkeys(tokens)))

    def check(self, request: Request) -> None:
        """Nothing when the request may scrape; otherwise a 401 (no or a wrong token) or 503."""
        if self.public:
            return
        if not self.tokens:
            raise HTTPException(
                503,
                "metrics are closed: set DEVTOOLS_METRICS_TOKEN (the bearer token Prometheus sends), "
                "or DEVTOOLS_METRICS_PUBLIC=true on a private network",
            )
        presented = require_bearer(request)
        if not any(tokens_equal(presented, token) for token in self.tokens):
            raise HTTPException(401, "invalid bearer token", {"WWW-Authenticate": "Bearer"})


def create_service_app(
    service: str,
    *,
    lifespan: Any = None,
    health: HealthCheck | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    version: str = "0.1.0",
    on_metrics: Callable[[], Awaitable[None]] | None = None,
    metrics_access: MetricsAccess | None = None,
) -> FastAPI:
    """A FastAPI app with the shared error shape, body limit, request metrics, /metrics and /health.

    on_metrics runs before each /metrics scrape, to refresh gauges read from elsewhere (a database).
    metrics_access says who may scrape (`MetricsAccess.from_settings`); None: nobody (a 503).
    """
    access = metrics_access or MetricsAccess()
    app = FastAPI(title=service, version=version, lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for data_error in DATA_ERRORS:
        app.add_exception_handler(data_error, _data_error)
    app.add_exception_handler(Exception, _unexpected_error)

    @app.middleware("http")
    async def _count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        HTTP_REQUESTS.labels(service, request.method, route, str(response.status_code)).inc()
        HTTP_DURATION.labels(service, request.method, route).observe(time.perf_counter() - started)
        return response

    # Added last so it wraps everything: an oversized body never reaches parsing.
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        access.check(request)  # before anything is read
        if on_metrics is not None:
            try:
                await on_metrics()
            except Exception as exc:  # a scrape still serves the process's own metrics
                log.warning("metrics refresh failed", extra={"service": service, "error": str(exc)})
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if health is not None:

        @app.get("/health")
        async def health_endpoint() -> JSONResponse:
            report = await health()
            return JSONResponse(report, status_code=200 if report.get("status") == "healthy" else 503)

    return app


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_bearer(request: Request) -> str:
    token = bearer_token(request)
    if token is None:
        raise HTTPException(
            401, "missing bearer token (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"}
        )
    return token


def tokens_equal(a: str | None, b: str | None) -> bool:
    """Constant-time comparison; None never matches."""
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


DEFAULT_IDENTITY = "operator"


def token_identities(raw: str | None) -> dict[str, str]:
    """token -> identity, from DEVTOOLS_API_TOKEN: one token (`operator`) or `name=token,name=token`."""
    if not raw:
        return {}
    if "=" not in raw:
        return {raw: DEFAULT_IDENTITY}
    identities: dict[str, str] = {}
    for pair in raw.split(","):
        name, _, token = pair.strip().partition("=")
        if name and token:
            identities[token] = name
    return identities


def require_platform_caller(request: Request, raw_tokens: str | None) -> str:
    """The identity of the request's bearer token among DEVTOOLS_API_TOKEN's, or 401/503."""
    identities = token_identities(raw_tokens)
    if not identities:
        raise HTTPException(503, "write endpoints are disabled: set DEVTOOLS_API_TOKEN on this service")
    presented = require_bearer(request)
    for token, name in identities.items():
        if tokens_equal(presented, token):
            return name
    raise HTTPException(401, "invalid bearer token", {"WWW-Authenticate": "Bearer"})


class _Server:
    """uvicorn's server with a hook run on the first SIGINT/SIGTERM, before it stops listening."""

    @staticmethod
    def build(app: FastAPI, host: str, port: int, on_exit_signal: Callable[[], None] | None) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                if on_exit_signal is not None and not self.should_exit:
                    on_exit_signal()
                super().handle_exit(sig, frame)
                # A clean, drained shutdown exits 0 instead of re-raising the signal afterwards.
                self._captured_signals.clear()

        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=60
        )
        return Server(config)


def serve(app: FastAPI, host: str, port: int, on_exit_signal: Callable[[], None] | None = None) -> None:
    """Run the app with uvicorn in this process until SIGINT/SIGTERM (logging stays ours)."""
    _Server.build(app, host, port, on_exit_signal).run()
