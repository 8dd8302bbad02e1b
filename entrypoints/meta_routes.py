"""Meta's webhook on the ``livesell webhook`` app (issue 17 §2, ADR 0019).

- ``GET /webhooks/meta``: Meta's verification request; ``hub.challenge`` as plain text when
  ``hub.mode`` is ``subscribe`` and ``hub.verify_token`` is ``META_VERIFY_TOKEN``, else 403
  (https://developers.facebook.com/docs/graph-api/webhooks/getting-started, "Verification
  Requests").
- ``POST /webhooks/meta``: a notification, signed with ``X-Hub-Signature-256`` (HMAC-SHA256 of
  the raw body with ``META_APP_SECRET``, same page, "Validating Payloads"). Missing or wrong:
  403 and nothing recorded. Then every message goes into the durable inbox exactly as a Twilio
  message does (``WebhookApp.accept``: the same ``InboundMessage``, the same idempotency by
  message id, the spool when the database is down), its tenant found by
  ``metadata.phone_number_id``; every status goes through ``record_delivery_report`` as a Twilio
  status callback does. Nothing signed is refused without a trace: a message without ``id`` or
  ``from``, a phone-number id no tenant has, an invalid message and a body that is not a
  WhatsApp notification are each kept as a dead letter and logged.

The answer is 200 once everything the POST carried is recorded or kept as a dead letter; Meta
retries any other answer, so only what a retry can mend answers otherwise: 503 when neither the
database nor the spool took a message, 500 when a message failed in the webhook (kept as a
dead letter), 400 for a body that is no notification (kept too).
"""

from __future__ import annotations

import logging

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from application.inbound import Rejected, RejectReason, reject_inbound
from application.inbox import (
    Invalid,
    record_delivery_report,
    serves_meta_phone_number_id,
)
from entrypoints.meta_messages import MetaInboundMessage
from entrypoints.meta_webhook import (
    SIGNATURE_HEADER,
    InvalidMetaPayload,
    MetaNotification,
    MetaStatusUpdate,
    read_notification,
    signature_is_valid,
    verification_challenge,
)
from entrypoints.twilio_form import bounded_body
from entrypoints.webhook_app import WebhookApp, log_accepted, log_delivery_outcome
from entrypoints.webhook_problems import HttpProblem, first_line, where_raised
from ports.repositories import StoreUnavailable

log = logging.getLogger("livesell.webhook_app")

META_PATH = "/webhooks/meta"
META_MISSING = ("id", "from")


class MetaWebhook:
    """The two routes over the Twilio app's handlers (their ports, their refusals)."""

    def __init__(self, app: WebhookApp, *, verify_signatures: bool = True) -> None:
        self.app = app
        settings = app.settings
        if verify_signatures and settings.meta_variables_set:
            settings.check_meta_provider()  # one Meta variable set: all three are needed
        self.app_secret = settings.meta_app_secret or ""
        self.verify_token = settings.meta_verify_token or ""
        self.verifies = verify_signatures

    async def verify(self, request: Request) -> Response:
        challenge = verification_challenge(request.query_params, self.verify_token)
        if challenge is None:
            log.warning(
                "Meta webhook verification refused",
                extra={"context": {"mode": request.query_params.get("hub.mode")}},
            )
            return PlainTextResponse("", status_code=403)
        log.info("Meta webhook verification answered")
        return PlainTextResponse(challenge)

    async def notification(self, request: Request) -> Response:
        body = await bounded_body(request, self.app.settings.webhook_max_body_bytes)
        header = request.headers.get(SIGNATURE_HEADER)
        if self.verifies and not signature_is_valid(body, header, self.app_secret):
            reason = "missing" if not header else "invalid"
            if not self.app_secret:
                reason = "META_APP_SECRET is not set"
            raise HttpProblem(403, f"{SIGNATURE_HEADER} {reason}", provider="meta")
        try:
            notification = read_notification(body)
        except InvalidMetaPayload as exc:
            dead_letter_id = await self._keep_unreadable(body, str(exc))
            raise HttpProblem(
                400, f"not a WhatsApp notification: {exc}", deadLetterId=dead_letter_id
            ) from exc
        failed: list[HttpProblem] = []
        for message in notification.messages:
            problem = await self._accept(message)
            if problem is not None:
                failed.append(problem)
        for update in notification.statuses:
            await self._record_status(update)
        _log_the_rest(notification)
        if failed:
            raise max(failed, key=lambda problem: problem.status)
        return PlainTextResponse("", status_code=200)

    async def _accept(self, meta: MetaInboundMessage) -> HttpProblem | None:
        message = meta.message
        ids = {
            "providerMessageId": message.provider_message_id or None,
            "phoneNumberId": meta.phone_number_id or None,
            "provider": "meta",
        }
        if meta.missing:
            reason = f"missing field(s): {', '.join(meta.missing)}"
            dead_letter_id = await self.app.reject(message, RejectReason.MISSING_FIELDS, reason)
            log.error(
                "Meta message without " + " and ".join(meta.missing) + ", kept as a dead letter",
                extra={"context": {**ids, "deadLetterId": dead_letter_id}},
            )
            return None if dead_letter_id else HttpProblem(500, reason, **ids)
        try:
            outcome = await self.app.accept(message, list(message.params), None)
        except StoreUnavailable as exc:
            log.error(  # noqa: TRY400 - the store's message is the whole story
                "Meta message not recorded: the inbox database and the spool are unavailable",
                extra={"context": {**ids, "error": first_line(exc)}},
            )
            return HttpProblem(
                503,
                "the inbox database and the spool are unavailable",
                **ids,
                error=first_line(exc),
            )
        except Exception as exc:  # never an unhandled 500: keep the message, say what failed
            log.error(  # noqa: TRY400 - the error's text may hold the message
                "Inbound message failed in the webhook",
                extra={"context": {**ids, "error": type(exc).__name__, "at": where_raised(exc)}},
            )
            dead_letter_id = await self.app.reject(
                message, RejectReason.WEBHOOK_ERROR, f"{type(exc).__name__} in the webhook"
            )
            return HttpProblem(
                500, "a message could not be recorded", **ids, deadLetterId=dead_letter_id
            )
        if isinstance(outcome, Invalid):
            log.error(
                "Invalid Meta message, kept as a dead letter",
                extra={
                    "context": {
                        **ids,
                        "errors": [str(e) for e in outcome.errors],
                        "deadLetterId": outcome.dead_letter_id,
                    }
                },
            )
            return None
        log_accepted(outcome, ids)
        return None

    async def _record_status(self, update: MetaStatusUpdate) -> None:
        context = {
            "provider": "meta",
            "phoneNumberId": update.phone_number_id or None,
            "providerMessageId": update.provider_message_id or None,
            "messageStatus": update.status,
            "errorCode": update.error_code,
            "matchedBy": "callback data" if update.tenant_id and update.outbox_id else "wamid",
        }
        try:
            if update.tenant_id and update.outbox_id and not await self._owned(update):
                log.warning(
                    "Meta status names a tenant that is not its number's, matched by wamid",
                    extra={"context": {**context, "claimedTenantId": update.tenant_id}},
                )
                update = attrs.evolve(update, tenant_id=None, outbox_id=None)
                context["matchedBy"] = "wamid"
            if not update.provider_message_id and not (update.tenant_id and update.outbox_id):
                log.warning("Meta status without id ignored", extra={"context": context})
                return
            outcome = await run_in_threadpool(
                lambda: record_delivery_report(
                    status=update.status,
                    error_code=update.error_code,
                    tenant_id=update.tenant_id,
                    outbox_id=update.outbox_id,
                    provider_message_id=update.provider_message_id or None,
                    sender=update.sender,
                    uow_factory=self.app.uow_factory,
                    clock=self.app.clock,
                )
            )
        except StoreUnavailable as exc:
            # Not retried by answering 503 for a whole POST of messages: Meta sends the same
            # status again later in the message's life, and the join is forward only.
            log.error(  # noqa: TRY400
                "Meta status not recorded, the database is unavailable",
                extra={"context": {**context, "error": first_line(exc)}},
            )
            return
        context |= {"tenantId": outcome.tenant_id, "outboxId": outcome.outbox_id}
        log_delivery_outcome(outcome, context)

    async def _owned(self, update: MetaStatusUpdate) -> bool:
        return await run_in_threadpool(
            lambda: serves_meta_phone_number_id(
                uow_factory=self.app.uow_factory,
                tenant_id=update.tenant_id or "",
                phone_number_id=update.phone_number_id,
            )
        )

    async def _keep_unreadable(self, body: bytes, error: str) -> str | None:
        """A signed body that is no notification, kept whole as a dead letter."""
        payload = {"provider": "meta", "rawBody": body.decode("utf-8", errors="replace")}
        try:
            rejected = await run_in_threadpool(
                lambda: reject_inbound(
                    payload,
                    RejectReason.INVALID_PAYLOAD,
                    error,
                    uow_factory=self.app.uow_factory,
                    clock=self.app.clock,
                    ids=self.app.ids,
                )
            )
        except Exception as exc:
            log.error(  # noqa: TRY400 - the error's text may hold the body
                "Unreadable Meta notification could not be kept as a dead letter",
                extra={"context": {"error": type(exc).__name__}},
            )
            return None
        dead_letter_id = rejected.dead_letter_id if isinstance(rejected, Rejected) else None
        log.error(
            "Unreadable Meta notification, kept as a dead letter",
            extra={"context": {"error": error, "deadLetterId": dead_letter_id}},
        )
        return dead_letter_id


def _log_the_rest(notification: MetaNotification) -> None:
    for error in notification.errors:
        log.warning(
            "Meta reported an error about a business number",
            extra={
                "context": {
                    "phoneNumberId": error.phone_number_id or None,
                    "errorCode": error.code,
                    "title": error.title,
                    "details": error.details,
                }
            },
        )
    if notification.ignored:
        log.info(
            "Meta webhook fields not taken",
            extra={"context": {"fields": sorted(set(notification.ignored))}},
        )
