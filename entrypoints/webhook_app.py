"""The Twilio webhook, an ASGI app (Starlette) served by ``livesell webhook`` (SPEC §4, ADR 0008).

- ``POST /webhooks/twilio/messages``: an inbound WhatsApp message. Verified, recorded
  ``received`` in the durable inbox, enqueued on ``webhook-processing``; answered with an empty
  TwiML ``<Response/>``. With the database down it is spooled in Redis instead (ADR 0013).
- ``POST /webhooks/twilio/status`` (and with a trailing slash): a delivery status callback for an
  outbound message, matched by the ``tenantId`` and ``outboxId`` the sender put in the callback
  URL, or by its ``MessageSid`` when the URL has none (a Messaging Service's callback, ADR 0011).
- ``GET`` and ``POST /webhooks/meta``: Meta's webhook, the same inbox (``entrypoints.meta_routes``).
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (Postgres and Redis answer, the
  schema is at head: ADR 0015).

Thin on purpose (STYLE rule 9): read and verify the request, call a use case of
``application.inbox``, and map its outcome to an HTTP status in one place (``HttpProblem`` for
every refusal, answered by ``entrypoints.webhook_problems``). Every request is verified before any
work (``entrypoints.webhook_signatures``); the form is read by ``entrypoints.twilio_form``;
uvicorn serves the app through ``entrypoints.webhook_server``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from application.inbound import RejectReason
from application.inbox import (
    DeliveryIgnored,
    DeliveryOutcome,
    DeliveryRecorded,
    Duplicate,
    Invalid,
    ReceiveOutcome,
    Recorded,
    UnknownNumber,
    record_delivery_report,
    reject_webhook_message,
)
from application.spool import Spooled, accept_inbound_message
from application.webhook_input import WebhookMessage
from entrypoints.build_info import log_context
from entrypoints.container import Container
from entrypoints.logs import current_worker
from entrypoints.metrics import metrics, scrape_registry
from entrypoints.settings import ConfigError
from entrypoints.twilio_form import read_twilio_message
from entrypoints.webhook_problems import HttpProblem, answer_problem, first_line, where_raised
from entrypoints.webhook_signatures import SignedForms
from ports.messaging import STATUS_CALLBACK_PATH
from ports.repositories import StoreUnavailable
from ports.spool import Spool, SpoolUnavailable

log = logging.getLogger("livesell.webhook_app")

WORKER_NAME = "webhook"
MESSAGES_PATH = "/webhooks/twilio/messages"
STATUS_PATH = STATUS_CALLBACK_PATH
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
READY_TIMEOUT_SECONDS = 3.0
INSECURE_ENV = "LIVESELL_WEBHOOK_INSECURE_SKIP_SIGNATURE"
"""Set by ``livesell webhook --insecure-skip-signature`` for the app factory of each uvicorn
worker process; the flag is the interface."""
TOKEN_REQUIRED = (
    "is required to verify X-Twilio-Signature (or META_APP_SECRET, for Meta's webhook alone); "
    "for local development only, start the webhook with --insecure-skip-signature"
)
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


class WebhookApp:
    """The routes' handlers over one container."""

    def __init__(self, container: Container, *, verify_signatures: bool = True) -> None:
        settings = container.settings()
        if settings is None:  # pragma: no cover - build() always sets it
            raise ConfigError("settings", "the container was built without settings")
        if verify_signatures and not settings.twilio_auth_token and not settings.meta_app_secret:
            raise ConfigError("TWILIO_AUTH_TOKEN", TOKEN_REQUIRED)
        # A deployment on Meta alone has no Twilio token: its Twilio routes refuse everything.
        self.serves_twilio = bool(settings.twilio_auth_token) or not verify_signatures
        self.settings = settings
        self.forms = SignedForms(
            settings.twilio_auth_token if verify_signatures else None,
            public_base_url=settings.webhook_public_base_url,
            max_body_bytes=settings.webhook_max_body_bytes,
        )
        self.container = container
        self.uow_factory = container.uow_factory()
        self.queue = container.inbound_queue()
        self.spool = container.spool()
        self.clock = container.clock()
        self.ids = container.ids()

    # -- routes ----------------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        self._check_twilio()
        form = await self.forms.read(request)
        message = read_twilio_message(form.pairs)
        correlation_id = _request_id(request)
        ids = {"providerMessageId": message.provider_message_id or None}
        missing = [key for key in ("MessageSid", "From", "To") if not form.get(key)]
        try:
            if missing:
                return await self._refuse_missing(message, missing)
            params = [(key, value) for key in form for value in form.getall(key)]
            outcome = await self.accept(message, params, correlation_id)
        except HttpProblem:
            raise
        except StoreUnavailable as exc:
            raise HttpProblem(
                503,
                "the inbox database and the spool are unavailable, message not recorded",
                **ids,
                error=first_line(exc),
            ) from exc
        except Exception as exc:  # never an unhandled 500: keep the form, say what failed
            # The error's type and where it was raised, never its text (it may hold the body).
            log.error(  # noqa: TRY400
                "Inbound message failed in the webhook",
                extra={"context": {**ids, "error": type(exc).__name__, "at": where_raised(exc)}},
            )
            dead_letter_id = await self.reject(
                message, RejectReason.WEBHOOK_ERROR, f"{type(exc).__name__} in the webhook"
            )
            raise HttpProblem(
                500, "the message could not be recorded", **ids, deadLetterId=dead_letter_id
            ) from exc
        if isinstance(outcome, Invalid):
            raise HttpProblem(
                400,
                "invalid message: " + "; ".join(str(e) for e in outcome.errors),
                **ids,
                deadLetterId=outcome.dead_letter_id,
            )
        log_accepted(outcome, ids)
        return _twiml()

    async def accept(
        self, message: WebhookMessage, params: list[tuple[str, str]], correlation_id: str | None
    ) -> ReceiveOutcome | Spooled:
        """``accept_inbound_message`` off the event loop, on this app's ports."""
        return await run_in_threadpool(
            accept_inbound_message,
            message,
            params=params,
            correlation_id=correlation_id,
            uow_factory=self.uow_factory,
            queue=self.queue,
            spool=self.spool,
            clock=self.clock,
            ids=self.ids,
        )

    async def _refuse_missing(self, message: WebhookMessage, missing: list[str]) -> Response:
        reason = f"missing field(s): {', '.join(missing)}"
        dead_letter_id = await self.reject(message, RejectReason.MISSING_FIELDS, reason)
        raise HttpProblem(400, reason, missing=missing, deadLetterId=dead_letter_id)

    async def reject(self, message: WebhookMessage, reason: str, error: str) -> str | None:
        """Keep a signed message the webhook cannot take as a dead letter; None (logged) when
        even that fails: the refusal then answers non-2xx, so Twilio records its error."""
        try:
            return await run_in_threadpool(
                reject_webhook_message,
                message,
                reason,
                error,
                correlation_id=None,
                uow_factory=self.uow_factory,
                clock=self.clock,
                ids=self.ids,
            )
        except Exception as exc:
            log.error(  # noqa: TRY400 - the error's text may hold the message's values
                "Inbound message could not be kept as a dead letter",
                extra={"context": {"reason": reason, "error": type(exc).__name__}},
            )
            return None

    async def status(self, request: Request) -> Response:
        self._check_twilio()
        form = await self.forms.read(request)
        tenant_id = request.query_params.get("tenantId") or None
        outbox_id = request.query_params.get("outboxId") or None
        sid = form.get("MessageSid") or None
        missing = [] if form.get("MessageStatus") else ["MessageStatus"]
        if not (tenant_id and outbox_id) and sid is None:
            missing.append("MessageSid (or tenantId and outboxId in the URL)")
        if missing:
            raise HttpProblem(400, f"missing field(s): {', '.join(missing)}", missing=missing)
        try:
            outcome = await run_in_threadpool(
                record_delivery_report,
                status=form["MessageStatus"],
                error_code=form.get("ErrorCode"),
                uow_factory=self.uow_factory,
                clock=self.clock,
                tenant_id=tenant_id,
                outbox_id=outbox_id,
                provider_message_id=sid,
                sender=form.get("From"),
            )
        except StoreUnavailable as exc:
            raise HttpProblem(
                503, "the database is unavailable, status not recorded", error=str(exc)
            ) from exc
        context = {
            "tenantId": outcome.tenant_id,
            "outboxId": outcome.outbox_id,
            "providerMessageId": sid,
            "messageStatus": form["MessageStatus"],
            "errorCode": form.get("ErrorCode"),
            "matchedBy": "url" if tenant_id and outbox_id else "MessageSid",
        }
        log_delivery_outcome(outcome, context)
        return PlainTextResponse("", status_code=200)

    def _check_twilio(self) -> None:
        if not self.serves_twilio:
            raise HttpProblem(
                403, "X-Twilio-Signature cannot be verified: TWILIO_AUTH_TOKEN is not set"
            )

    async def metrics(self, _request: Request) -> Response:
        """Prometheus text: the webhook's counters (unknown numbers)."""
        body = generate_latest(scrape_registry())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        checks = {self._store_name(): self._check_store, "redis": self._check_redis}
        if self.container.store() != "memory":
            checks["schema"] = self._check_schema
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

    # -- readiness checks --------------------------------------------------------------------

    def _store_name(self) -> str:
        if self.container.store() == "memory":
            return "memory"
        return "sqlite" if self.settings.is_sqlite else "postgres"

    def _check_store(self) -> None:
        self.container.store_check()()

    def _check_schema(self) -> None:
        """Raises SchemaNotAtHead unless the database is at this build's head (ADR 0015)."""
        self.container.schema_check()()

    def _check_redis(self) -> None:
        self.container.queue_check()()


class _NamedWorker:
    """Names the log lines of every request ``webhook`` (the worker field of SPEC §4 logs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        current_worker.set(WORKER_NAME)
        await self.app(scope, receive, send)


def create_app(container: Container, *, verify_signatures: bool = True) -> Starlette:
    """The webhook app on ``container``. Raises ConfigError without ``TWILIO_AUTH_TOKEN`` unless
    ``verify_signatures`` is False (local development only), and with an incomplete set of
    Meta's variables."""
    from entrypoints.meta_routes import META_PATH, MetaWebhook  # it builds on this module

    handlers = WebhookApp(container, verify_signatures=verify_signatures)
    meta = MetaWebhook(handlers, verify_signatures=verify_signatures)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        current_worker.set(WORKER_NAME)
        if not verify_signatures:
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
        await _warn_if_spool_not_durable(handlers.spool)
        yield
        log.info("Webhook stopped", extra={"context": {"pid": os.getpid()}})

    problem_handler: Callable[[Request, Exception], Awaitable[Response]] = answer_problem
    app = Starlette(
        routes=[
            *_with_trailing_slash(MESSAGES_PATH, handlers.messages),
            Route(STATUS_PATH, handlers.status, methods=["POST"]),
            # The URL as pasted in Twilio's console may end with a slash: served, not redirected.
            Route(STATUS_PATH + "/", handlers.status, methods=["POST"]),
            Route(META_PATH, meta.verify, methods=["GET"]),
            Route(META_PATH, meta.notification, methods=["POST"]),
            Route("/healthz", handlers.healthz, methods=["GET"]),
            Route("/readyz", handlers.readyz, methods=["GET"]),
            Route("/metrics", handlers.metrics, methods=["GET"]),
        ],
        exception_handlers={HttpProblem: problem_handler},
        lifespan=lifespan,
    )
    app.add_middleware(_NamedWorker)
    return app


def log_delivery_outcome(outcome: DeliveryOutcome, context: dict[str, Any]) -> None:
    """The line of a delivery report, from either provider: recorded (INFO), or ignored (INFO
    when stale, WARNING otherwise)."""
    if isinstance(outcome, DeliveryRecorded):
        log.info(
            "Delivery status recorded",
            extra={"context": {**context, "deliveryStatus": outcome.status.value}},
        )
    elif isinstance(outcome, DeliveryIgnored):
        level = logging.INFO if outcome.reason == "stale" else logging.WARNING
        log.log(
            level,
            "Delivery status ignored",
            extra={"context": {**context, "reason": outcome.reason}},
        )


def log_accepted(outcome: ReceiveOutcome | Spooled, ids: dict[str, Any]) -> None:
    """One log line (and the unknown-number metric) per accepted message, Twilio's or Meta's:
    recorded, a repeat, or kept as a dead letter for a number no tenant has. A spooled message
    is logged by the use case (the spool drainer records it, ADR 0013); an invalid one is the
    caller's to answer."""
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
                    "inputFlags": list(outcome.flags) or None,
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
        _observe_unknown_number()
        log.error(
            "Inbound message for a number no tenant has, kept as a dead letter",
            extra={
                "context": {
                    **ids,
                    "to": outcome.to_address,
                    "deadLetterId": outcome.dead_letter_id,
                }
            },
        )


async def _warn_if_spool_not_durable(spool: Spool) -> None:
    """Warn at start when Redis could evict the spool (ADR 0013); Redis down is no reason not
    to start (the database takes the messages)."""
    problem: str | None = None
    with anyio.move_on_after(READY_TIMEOUT_SECONDS):
        try:
            problem = await anyio.to_thread.run_sync(
                spool.durability_problem, abandon_on_cancel=True
            )
        except SpoolUnavailable as exc:
            log.warning(
                "Could not check the spool's Redis settings", extra={"context": {"error": str(exc)}}
            )
    if problem:
        log.warning("The spool is not durable: " + problem)


def _with_trailing_slash(
    path: str, handler: Callable[[Request], Awaitable[Response]]
) -> list[Route]:
    """POST routes for ``path`` and ``path/``: a console URL pasted with a trailing slash is
    served as is; Starlette's redirect (307) would make Twilio re-post, and its signature covers
    the URL it called, slash included."""
    return [Route(p, handler, methods=["POST"]) for p in (path, path + "/")]


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


def _observe_unknown_number() -> None:
    with contextlib.suppress(Exception):  # a metric never fails a request
        metrics().inbound_unknown_number()


def _request_id(request: Request) -> str | None:
    """The caller's ``X-Request-Id`` as the correlation id when it is a sane token."""
    value = request.headers.get("x-request-id")
    return value if value is not None and _REQUEST_ID.match(value) else None
