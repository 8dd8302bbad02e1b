"""The Twilio webhook, an ASGI app (Starlette) served by ``livesell webhook`` (SPEC §4, ADR 0008).

- ``POST /webhooks/twilio/messages``: an inbound WhatsApp message. Verified, recorded
  ``received`` in the durable inbox, enqueued on ``webhook-processing``; answered with an empty
  TwiML ``<Response/>``.
- ``POST /webhooks/twilio/status``: a delivery status callback for an outbound message, matched by
  the ``tenantId`` and ``outboxId`` the sender put in the callback URL.
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (Postgres and Redis answer).

Thin on purpose (STYLE rule 9): read and verify the request, call a use case of
``application.inbox``, and map its outcome to an HTTP status in one place (``HttpProblem`` for
every refusal). Every request is verified before any work: the ``X-Twilio-Signature`` is computed
over the public URL Twilio called (``WEBHOOK_PUBLIC_BASE_URL`` + path + query when set, since a
proxy such as Railway's changes the scheme and host; else the URL the request came to) and the
form parameters, which is why the form is read (bounded, strictly decoded) before the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import anyio
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from uvicorn.protocols.http.h11_impl import H11Protocol

from application.inbox import (
    DeliveryIgnored,
    DeliveryRecorded,
    Duplicate,
    Invalid,
    Recorded,
    UnknownNumber,
    WebhookMessage,
    receive_inbound_message,
    record_delivery_report,
)
from entrypoints.build_info import log_context
from entrypoints.container import Container, build
from entrypoints.logs import configure_logging, current_worker
from entrypoints.observability import init_sentry
from entrypoints.settings import ConfigError, Settings
from ports.repositories import StoreUnavailable

log = logging.getLogger("livesell.webhook_app")

WORKER_NAME = "webhook"
MESSAGES_PATH = "/webhooks/twilio/messages"
STATUS_PATH = "/webhooks/twilio/status"
FORM_TYPE = "application/x-www-form-urlencoded"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_FORM_FIELDS = 256
MAX_MEDIA = 10
READY_TIMEOUT_SECONDS = 3.0
INSECURE_ENV = "LIVESELL_WEBHOOK_INSECURE_SKIP_SIGNATURE"
"""Set by ``livesell webhook --insecure-skip-signature`` for the app factory of each uvicorn
worker process; the flag is the interface."""
TOKEN_REQUIRED = (
    "is required to verify X-Twilio-Signature; for local development only, start the webhook "
    "with --insecure-skip-signature"
)
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_MEDIA_URL = re.compile(r"^MediaUrl(\d+)$")


class HttpProblem(Exception):
    """A request refused with ``status``; ``reason`` is the answer's text and the log line's."""

    def __init__(self, status: int, reason: str, **context: Any) -> None:
        self.status = status
        self.reason = reason
        self.context = context
        super().__init__(f"{status} {reason}")


class FormParams(dict[str, str]):
    """Form fields (the first value of each) that also answer ``getall`` for repeated keys, as
    Twilio's ``RequestValidator`` expects of a multi-dict."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self._all: dict[str, list[str]] = {}
        for key, value in pairs:
            self._all.setdefault(key, []).append(value)
            self.setdefault(key, value)

    def getall(self, key: str) -> list[str]:
        return self._all[key]


class WebhookApp:
    """The routes' handlers over one container."""

    def __init__(self, container: Container, *, verify_signatures: bool = True) -> None:
        settings = container.settings()
        if settings is None:  # pragma: no cover - build() always sets it
            raise ConfigError("settings", "the container was built without settings")
        if verify_signatures and not settings.twilio_auth_token:
            raise ConfigError("TWILIO_AUTH_TOKEN", TOKEN_REQUIRED)
        self.settings = settings
        self.validator = (
            RequestValidator(settings.twilio_auth_token)
            if verify_signatures and settings.twilio_auth_token
            else None
        )
        self.container = container
        self.uow_factory = container.uow_factory()
        self.queue = container.inbound_queue()
        self.clock = container.clock()
        self.ids = container.ids()

    # -- routes ----------------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        form = await self.signed_form(request)
        missing = [key for key in ("MessageSid", "From", "To") if not form.get(key)]
        if missing:
            raise HttpProblem(400, f"missing field(s): {', '.join(missing)}", missing=missing)
        message = WebhookMessage(
            provider_message_id=form["MessageSid"],
            from_address=form["From"],
            to_address=form["To"],
            body=form.get("Body", ""),
            profile_name=form.get("ProfileName") or None,
            num_media=_num_media(form),
            media_urls=_media_urls(form),
        )
        correlation_id = _request_id(request)
        try:
            outcome = await run_in_threadpool(
                receive_inbound_message,
                message,
                correlation_id=correlation_id,
                uow_factory=self.uow_factory,
                queue=self.queue,
                clock=self.clock,
                ids=self.ids,
            )
        except StoreUnavailable as exc:
            raise HttpProblem(
                503,
                "the inbox database is unavailable, message not recorded",
                providerMessageId=message.provider_message_id,
                error=str(exc),
            ) from exc
        ids = {"providerMessageId": message.provider_message_id}
        if isinstance(outcome, Recorded):
            log.info(
                "Inbound message recorded",
                extra={
                    "context": {
                        **ids,
                        "tenantId": outcome.tenant_id,
                        "correlationId": outcome.correlation_id,
                        "enqueued": outcome.enqueued,
                        "jobId": outcome.job_id,
                    }
                },
            )
        elif isinstance(outcome, Duplicate):
            log.info(
                "Inbound message already recorded, not enqueued again",
                extra={
                    "context": {
                        **ids,
                        "tenantId": outcome.tenant_id,
                        "correlationId": outcome.correlation_id,
                        "processed": outcome.processed,
                    }
                },
            )
        elif isinstance(outcome, UnknownNumber):
            log.warning(
                "Inbound message for a number no tenant has, ignored",
                extra={"context": {**ids, "to": outcome.to_address}},
            )
        elif isinstance(outcome, Invalid):
            raise HttpProblem(
                400,
                "invalid message: " + "; ".join(str(e) for e in outcome.errors),
                **ids,
                deadLetterId=outcome.dead_letter_id,
            )
        return _twiml()

    async def status(self, request: Request) -> Response:
        form = await self.signed_form(request)
        tenant_id = request.query_params.get("tenantId")
        outbox_id = request.query_params.get("outboxId")
        missing = [k for k, v in (("tenantId", tenant_id), ("outboxId", outbox_id)) if not v]
        missing += [] if form.get("MessageStatus") else ["MessageStatus"]
        if missing or tenant_id is None or outbox_id is None:
            raise HttpProblem(400, f"missing field(s): {', '.join(missing)}", missing=missing)
        try:
            outcome = await run_in_threadpool(
                record_delivery_report,
                tenant_id=tenant_id,
                outbox_id=outbox_id,
                status=form["MessageStatus"],
                error_code=form.get("ErrorCode"),
                uow_factory=self.uow_factory,
                clock=self.clock,
            )
        except StoreUnavailable as exc:
            raise HttpProblem(
                503, "the database is unavailable, status not recorded", error=str(exc)
            ) from exc
        context = {
            "tenantId": tenant_id,
            "outboxId": outbox_id,
            "providerMessageId": form.get("MessageSid"),
            "messageStatus": form["MessageStatus"],
            "errorCode": form.get("ErrorCode"),
        }
        if isinstance(outcome, DeliveryRecorded):
            log.info("Delivery status recorded", extra={"context": context})
        elif isinstance(outcome, DeliveryIgnored):
            level = logging.INFO if outcome.reason == "stale" else logging.WARNING
            log.log(
                level,
                "Delivery status ignored",
                extra={"context": {**context, "reason": outcome.reason}},
            )
        return PlainTextResponse("", status_code=200)

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        checks = {
            self._store_name(): self._check_store,
            "redis": self._check_redis,
        }
        results: dict[str, str] = {}

        async def run(name: str, check: Callable[[], None]) -> None:
            results[name] = "timed out"
            with anyio.move_on_after(READY_TIMEOUT_SECONDS):
                try:
                    await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
                    results[name] = "ok"
                except Exception as exc:
                    results[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]

        async with anyio.create_task_group() as group:
            for name, check in checks.items():
                group.start_soon(run, name, check)
        failed = sorted(name for name, result in results.items() if result != "ok")
        if failed:
            log.warning(
                "Not ready: " + ", ".join(failed) + " unreachable",
                extra={"context": {"checks": results}},
            )
            return JSONResponse(
                {"status": "unavailable", "failed": failed, "checks": results}, status_code=503
            )
        return JSONResponse({"status": "ready", "checks": results})

    # -- reading a signed form ---------------------------------------------------------------

    async def signed_form(self, request: Request) -> FormParams:
        """The form of a request Twilio signed. Raises HttpProblem: 403 (no or a wrong signature),
        415 (not a UTF-8 form), 413 (over ``WEBHOOK_MAX_BODY_BYTES``), 400 (unreadable)."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if self.validator is not None and not signature:
            raise HttpProblem(403, f"missing {SIGNATURE_HEADER}")
        media_type, _, parameters = request.headers.get("content-type", "").partition(";")
        if media_type.strip().lower() != FORM_TYPE:
            raise HttpProblem(
                415, f"expected {FORM_TYPE}", contentType=request.headers.get("content-type")
            )
        charset = _charset(parameters)
        if charset not in (None, "utf-8", "utf8"):
            raise HttpProblem(415, f"expected a UTF-8 form, got charset {charset}")
        body = await self._bounded_body(request)
        try:
            text = body.decode("utf-8")
            pairs = parse_qsl(
                text,
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=MAX_FORM_FIELDS,
            )
        except UnicodeDecodeError as exc:
            raise HttpProblem(400, "the form is not valid UTF-8") from exc
        except ValueError as exc:
            raise HttpProblem(400, f"unreadable form: {exc}") from exc
        form = FormParams(pairs)
        if self.validator is not None:
            url = self.public_url(request)
            algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
            if not self.validator.validate(url, form, signature, algorithm):
                raise HttpProblem(403, f"invalid {SIGNATURE_HEADER}", url=url)
        return form

    def public_url(self, request: Request) -> str:
        """The URL Twilio signed: the public base URL + path + query when configured (behind a
        proxy), else the URL this request came to."""
        base = self.settings.webhook_public_base_url
        if base is None:
            return str(request.url)
        query = request.scope.get("query_string", b"").decode("latin-1")
        return base + request.url.path + (f"?{query}" if query else "")

    async def _bounded_body(self, request: Request) -> bytes:
        limit = self.settings.webhook_max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise HttpProblem(400, "invalid Content-Length")
            if int(declared) > limit:
                raise HttpProblem(413, f"body over {limit} bytes", contentLength=int(declared))
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpProblem(413, f"body over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- readiness checks --------------------------------------------------------------------

    def _store_name(self) -> str:
        if self.container.config.store() == "memory":
            return "memory"
        return "sqlite" if self.settings.is_sqlite else "postgres"

    def _check_store(self) -> None:
        if self.container.config.store() == "memory":
            return
        with self.container.engine().connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def _check_redis(self) -> None:
        self.container.queue_redis().ping()

    async def on_problem(self, request: Request, exc: Exception) -> Response:
        """The one place a refusal becomes an answer and a log line."""
        assert isinstance(exc, HttpProblem)
        level = logging.ERROR if exc.status >= 500 else logging.WARNING
        log.log(
            level,
            "Webhook request refused",
            extra={
                "context": {
                    "status": exc.status,
                    "reason": exc.reason,
                    "path": request.url.path,
                    **exc.context,
                }
            },
        )
        return PlainTextResponse(exc.reason, status_code=exc.status)


class _NamedWorker:
    """Names the log lines of every request ``webhook`` (the worker field of SPEC §4 logs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        current_worker.set(WORKER_NAME)
        await self.app(scope, receive, send)


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with ``TCP_NODELAY`` on every connection.

    asyncio sets it only on sockets whose ``proto`` is ``IPPROTO_TCP``; the listening socket
    uvicorn binds for ``--workers`` > 1 has ``proto`` 0, so its connections kept Nagle's algorithm,
    and a response written as headers then body waited for the client's delayed ACK: 40 ms added
    to every request (measured by ``bench/webhook_latency.py``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def create_app(container: Container, *, verify_signatures: bool = True) -> Starlette:
    """The webhook app on ``container``. Raises ConfigError without ``TWILIO_AUTH_TOKEN`` unless
    ``verify_signatures`` is False (local development only)."""
    handlers = WebhookApp(container, verify_signatures=verify_signatures)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        current_worker.set(WORKER_NAME)
        if handlers.validator is None:
            log.warning("X-Twilio-Signature is NOT verified (--insecure-skip-signature)")
        log.info(
            "Webhook started successfully",
            extra={
                "context": {
                    "publicBaseUrl": handlers.settings.webhook_public_base_url,
                    "maxBodyBytes": handlers.settings.webhook_max_body_bytes,
                    "pid": os.getpid(),
                }
                | log_context()
            },
        )
        yield
        log.info("Webhook stopped", extra={"context": {"pid": os.getpid()}})

    problem_handler: Callable[[Request, Exception], Awaitable[Response]] = handlers.on_problem
    app = Starlette(
        routes=[
            Route(MESSAGES_PATH, handlers.messages, methods=["POST"]),
            Route(STATUS_PATH, handlers.status, methods=["POST"]),
            Route("/healthz", handlers.healthz, methods=["GET"]),
            Route("/readyz", handlers.readyz, methods=["GET"]),
        ],
        exception_handlers={HttpProblem: problem_handler},
        lifespan=lifespan,
    )
    app.add_middleware(_NamedWorker)
    return app


def create_app_from_env() -> Starlette:
    """uvicorn's app factory (``--factory``): one container per worker process, from the
    environment."""
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    init_sentry(settings, component="webhook")
    return create_app(build(settings), verify_signatures=os.environ.get(INSECURE_ENV) != "1")


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


def _charset(parameters: str) -> str | None:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _num_media(form: FormParams) -> int:
    raw = form.get("NumMedia", "0").strip() or "0"
    if not raw.isdigit() or int(raw) > MAX_MEDIA:
        raise HttpProblem(400, f"NumMedia must be a whole number in 0..{MAX_MEDIA}, got {raw!r}")
    return int(raw)


def _media_urls(form: FormParams) -> tuple[str, ...]:
    numbered = []
    for key, value in form.items():
        match = _MEDIA_URL.match(key)
        if match and value:
            numbered.append((int(match.group(1)), value))
    return tuple(url for _, url in sorted(numbered))


def _request_id(request: Request) -> str | None:
    """The caller's ``X-Request-Id`` as the correlation id when it is a sane token."""
    value = request.headers.get("x-request-id")
    return value if value is not None and _REQUEST_ID.match(value) else None
