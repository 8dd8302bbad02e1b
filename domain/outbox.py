"""The transactional outbox: an outbound WhatsApp message and the rules of its delivery."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import attrs

from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.errors import IllegalTransition, InvalidOutboundContent
from domain.events import (
    Event,
    MessageDeadLettered,
    MessageExpired,
    MessageRetryScheduled,
    MessageSent,
)
from domain.retry import GiveUp, RetryPolicy
from domain.template_refs import is_twilio_content_sid, meta_template

MAX_BODY_LENGTH = 4096
LEASE_EXPIRED_CODE = "lease_expired"
EXPIRED_CODE = "expired"

MAX_MEDIA_URLS = 1
"""WhatsApp takes one attachment per message: "unlike MMS, a WhatsApp media message can only
contain one media attachment. Any additional attachments will be ignored" (Twilio, "Sending and
Receiving Media with WhatsApp Messaging on Twilio",
https://support.twilio.com/hc/en-us/articles/360017961894). More is refused rather than dropped
in silence."""
MAX_CONTENT_VARIABLES = 100
""""You can include up to 100 key-value pairs per request" (Twilio, "Send templates created with
the Content Template Builder",
https://www.twilio.com/docs/content/send-templates-created-with-the-content-template-builder)."""


def _as_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def check_content(
    *,
    body: str,
    content_sid: str | None,
    content_variables: Mapping[str, str] | None,
    media_urls: Sequence[str],
) -> None:
    """Raise ``InvalidOutboundContent`` unless the message is a free-form body (with optional
    media) or a template.

    Twilio's rules: a message needs "a Body, Media URL or Content SID" (error 21619,
    https://www.twilio.com/docs/api/errors/21619); with a ContentSid, "Body and MediaUrl should be
    excluded ... They are both superseded by the ContentSid"
    (https://www.twilio.com/docs/content-api/send-templates-created-with-content-api);
    ContentVariables need a ContentSid (error 21654, https://www.twilio.com/docs/api/errors/21654).
    """
    if len(body) > MAX_BODY_LENGTH:
        raise InvalidOutboundContent(
            f"body is {len(body)} characters, at most {MAX_BODY_LENGTH} allowed"
        )
    if content_sid is not None:
        if not is_twilio_content_sid(content_sid) and meta_template(content_sid) is None:
            raise InvalidOutboundContent(
                f"content_sid {content_sid!r} is not a Twilio Content SID (HX and 32 hexadecimal "
                "digits) nor a Meta template (name:language, e.g. order_ready:fr)"
            )
        if body or media_urls:
            raise InvalidOutboundContent(
                "a template message (content_sid) has no body and no media: the template "
                "supersedes both"
            )
    elif content_variables is not None:
        raise InvalidOutboundContent("content_variables need a content_sid (a template)")
    elif not body and not media_urls:
        raise InvalidOutboundContent("a message needs a body, a media URL or a template")
    if content_variables is not None:
        if len(content_variables) > MAX_CONTENT_VARIABLES:
            raise InvalidOutboundContent(
                f"{len(content_variables)} content variables, at most {MAX_CONTENT_VARIABLES}"
            )
        for key, value in content_variables.items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise InvalidOutboundContent(
                    f"content variable {key!r}: names and values are non-empty text"
                )
    if len(media_urls) > MAX_MEDIA_URLS:
        raise InvalidOutboundContent(
            f"{len(media_urls)} media URLs, WhatsApp takes at most {MAX_MEDIA_URLS} per message"
        )
    for url in media_urls:
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidOutboundContent(f"media URL {url!r} is not an http(s) URL")


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    EXPIRED = "expired"
    """Not handed to the provider before its ``expires_at``: terminal, no dead letter."""


@attrs.frozen(kw_only=True)
class DeliveryFailure:
    """Why a send failed: transient (retry) or permanent (dead at once), and the provider's code.

    ``rate_limited``: the provider refused for capacity and did not process the request (HTTP 429,
    Twilio 20429): a transient failure that spends no attempt (ADR 0015)."""

    transient: bool
    message: str
    code: str | None = None
    retry_after: timedelta | None = None
    rate_limited: bool = False

    def __attrs_post_init__(self) -> None:
        if self.rate_limited and not self.transient:
            raise ValueError("a rate-limited failure is transient")


@attrs.frozen
class RetryScheduled:
    """The message will be tried again at ``next_attempt_at``."""

    next_attempt_at: datetime


@attrs.frozen
class DeadLettered:
    """The message is dead; ``dead_letter`` is the row to store with it."""

    dead_letter: DeadLetter


FailureOutcome = RetryScheduled | DeadLettered


@attrs.define(kw_only=True)
class OutboxMessage:
    """One outbound message. Written ``pending``; a sender claims, sends and records the outcome.

    ``attempts`` counts claims. It doubles as a fencing token: an outcome is stored only if the row
    still holds the claim it was sent under (``claimed_attempt``, ``claimed_until``; ADR 0006).
    """

    id: str
    tenant_id: str
    to_phone: str
    body: str
    correlation_id: str
    status: OutboxStatus = OutboxStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime
    locked_until: datetime | None = None
    last_error: str | None = None
    last_error_code: str | None = None
    provider_message_id: str | None = None
    from_phone: str | None = None
    provider: str | None = None
    """The provider the message goes out through (its tenant's when written, ADR 0019), with
    ``from_phone`` its sender there; None: the default provider (Twilio)."""
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    content_sid: str | None = None
    """A template sent instead of a body: a Twilio Content SID (``HX...``) or a Meta template
    ``name:language`` (``check_content``, ADR 0023)."""
    content_variables: dict[str, str] | None = None
    """The template's variables (``{"1": "Robe"}``), sent as a JSON string."""
    media_urls: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)
    expires_at: datetime | None = None
    """Not handed to the provider at or after this instant: the message ends ``expired``."""
    rate_limited_since: datetime | None = None
    """When the provider first answered this message "rate limited" (None: never). The time since
    is what ``RetryPolicy.rate_limited_ceiling`` bounds."""
    claimed_attempt: int | None = attrs.field(default=None, eq=False, repr=False)
    claimed_until: datetime | None = attrs.field(default=None, eq=False, repr=False)
    """The claim this copy holds (attempt number and lease end): the fencing token its outcome is
    stored under. The lease end tells apart two claims with the same attempt number (a replay
    starts attempts again). Not stored; set by ``claim`` or by the adapter that claimed the row."""
    events: list[Event] = attrs.field(factory=list, eq=False, repr=False)

    @classmethod
    def new(
        cls,
        *,
        id: str,
        tenant_id: str,
        to_phone: str,
        body: str,
        correlation_id: str,
        now: datetime,
        from_phone: str | None = None,
        content_sid: str | None = None,
        content_variables: Mapping[str, str] | None = None,
        media_urls: Sequence[str] = (),
        expires_at: datetime | None = None,
        provider: str | None = None,
    ) -> OutboxMessage:
        """A ``pending`` message due at once. ``to_phone`` must already be E.164.

        Raises ``InvalidOutboundContent`` (a ``ValueError``) for content Twilio would refuse
        (``check_content``) or an ``expires_at`` not after ``now``."""
        check_content(
            body=body,
            content_sid=content_sid,
            content_variables=content_variables,
            media_urls=media_urls,
        )
        if expires_at is not None and expires_at <= now:
            raise InvalidOutboundContent(
                f"expires_at {expires_at.isoformat()} is not after now ({now.isoformat()})"
            )
        return cls(
            id=id,
            tenant_id=tenant_id,
            to_phone=to_phone,
            body=body,
            correlation_id=correlation_id,
            next_attempt_at=now,
            from_phone=from_phone,
            content_sid=content_sid,
            content_variables=dict(content_variables) if content_variables is not None else None,
            media_urls=tuple(media_urls),
            expires_at=expires_at,
            provider=provider,
            created_at=now,
            updated_at=now,
        )

    def is_expired(self, now: datetime) -> bool:
        """True when ``now`` is at or past ``expires_at``: too late to hand it to the provider."""
        return self.expires_at is not None and now >= self.expires_at

    def expire(self, now: datetime) -> None:
        """End a claimed message that was not handed to the provider before ``expires_at``:
        ``expired``, terminal, with its event and no dead letter."""
        self._require_sending()
        if not self.is_expired(now):
            raise IllegalTransition(f"outbox message {self.id} has not expired")
        assert self.expires_at is not None
        self.status = OutboxStatus.EXPIRED
        self.locked_until = None
        self.last_error = f"expired at {self.expires_at.isoformat()} before it was sent"
        self.last_error_code = EXPIRED_CODE
        self.updated_at = now
        self.events.append(
            MessageExpired(
                tenant_id=self.tenant_id,
                subject_id=self.id,
                correlation_id=self.correlation_id,
                occurred_at=now,
                attempts=self.attempts,
                expires_at=self.expires_at,
            )
        )

    def is_due(self, now: datetime) -> bool:
        """Pending or failed and due, or ``sending`` whose lease has passed (its sender died)."""
        if self.status in (OutboxStatus.PENDING, OutboxStatus.FAILED):
            return self.next_attempt_at <= now
        if self.status is OutboxStatus.SENDING:
            return self.locked_until is not None and self.locked_until < now
        return False

    def claim(self, now: datetime, lease: timedelta) -> None:
        """Take the message for one attempt: ``sending`` until ``now + lease``, one more attempt."""
        if not self.is_due(now):
            raise IllegalTransition(f"outbox message {self.id} is not due ({self.status})")
        self.status = OutboxStatus.SENDING
        self.locked_until = now + lease
        self.attempts += 1
        self.claimed_attempt = self.attempts
        self.claimed_until = self.locked_until
        self.updated_at = now

    def over_budget(self, policy: RetryPolicy) -> bool:
        """True when a claim went past the last attempt: only after a sender died mid-send."""
        return self.attempts > policy.max_attempts

    def mark_sent(self, provider_message_id: str, now: datetime) -> None:
        self._require_sending()
        self.status = OutboxStatus.SENT
        self.provider_message_id = provider_message_id
        self.sent_at = now
        self.locked_until = None
        self.last_error = None
        self.last_error_code = None
        self.updated_at = now
        self.events.append(
            MessageSent(
                tenant_id=self.tenant_id,
                subject_id=self.id,
                correlation_id=self.correlation_id,
                occurred_at=now,
                provider_message_id=provider_message_id,
                attempts=self.attempts,
            )
        )

    def record_failure(
        self, failure: DeliveryFailure, now: datetime, policy: RetryPolicy, dead_letter_id: str
    ) -> FailureOutcome:
        """Apply the retry policy to a failed attempt: retry later, or dead-letter.

        A rate-limited failure goes by ``reschedule_rate_limited`` instead: no attempt spent."""
        if failure.rate_limited:
            return self.reschedule_rate_limited(failure, now, policy, dead_letter_id)
        self._require_sending()
        self.last_error = failure.message
        self.last_error_code = failure.code
        self.locked_until = None
        self.updated_at = now
        decision = (
            GiveUp() if not failure.transient else policy.decide(self.attempts, failure.retry_after)
        )
        if isinstance(decision, GiveUp):
            return self._die(now, dead_letter_id, permanent=not failure.transient)
        return self._retry_at(now, decision.delay, failure)

    def reschedule_rate_limited(
        self, failure: DeliveryFailure, now: datetime, policy: RetryPolicy, dead_letter_id: str
    ) -> FailureOutcome:
        """The provider refused for capacity (its request was never processed): give the claim's
        attempt back and try again after its Retry-After (or a backoff), unless the message has
        then been rate limited for longer than ``policy.rate_limited_ceiling``: dead, with its
        dead letter (ADR 0015)."""
        self._require_sending()
        self.last_error = failure.message
        self.last_error_code = failure.code
        self.locked_until = None
        self.updated_at = now
        if self.rate_limited_since is None:
            self.rate_limited_since = now
        decision = policy.decide_rate_limited(now - self.rate_limited_since, failure.retry_after)
        if isinstance(decision, GiveUp):
            ceiling = int(policy.rate_limited_ceiling.total_seconds())
            self.last_error = f"{failure.message} (rate limited for over {ceiling} s)"
            return self._die(now, dead_letter_id, permanent=False)
        self.attempts = max(self.attempts - 1, 0)
        return self._retry_at(now, decision.delay, failure)

    def _retry_at(
        self, now: datetime, delay: timedelta, failure: DeliveryFailure
    ) -> RetryScheduled:
        self.status = OutboxStatus.FAILED
        self.next_attempt_at = now + delay
        if self.expires_at is not None and self.next_attempt_at > self.expires_at:
            # Due again when it expires, so it ends ``expired`` then rather than at a later retry.
            self.next_attempt_at = max(self.expires_at, now)
        self.events.append(
            MessageRetryScheduled(
                tenant_id=self.tenant_id,
                subject_id=self.id,
                correlation_id=self.correlation_id,
                occurred_at=now,
                attempts=self.attempts,
                next_attempt_at=self.next_attempt_at,
                error=failure.message,
                error_code=failure.code,
                rate_limited=failure.rate_limited,
            )
        )
        return RetryScheduled(self.next_attempt_at)

    def abandon(self, now: datetime, policy: RetryPolicy, dead_letter_id: str) -> DeadLettered:
        """Dead-letter a message whose last attempt's lease expired (its sender died mid-send)."""
        self._require_sending()
        self.attempts = min(self.attempts, policy.max_attempts)
        self.last_error = "lease expired on the last attempt: the sender stopped mid-send"
        self.last_error_code = LEASE_EXPIRED_CODE
        self.locked_until = None
        self.updated_at = now
        return self._die(now, dead_letter_id, permanent=False)

    def requeue(self, now: datetime) -> None:
        """Operator replay of a dead message: ``pending`` again with fresh attempts."""
        if self.status is not OutboxStatus.DEAD:
            raise IllegalTransition(
                f"only a dead message can be replayed, {self.id} is {self.status}"
            )
        self.status = OutboxStatus.PENDING
        self.attempts = 0
        self.rate_limited_since = None
        self.next_attempt_at = now
        self.locked_until = None
        self.updated_at = now

    def pull_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def to_dead_letter_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "outboxId": self.id,
            "tenantId": self.tenant_id,
            "to": self.to_phone,
            "body": self.body,
            "correlationId": self.correlation_id,
        }
        if self.content_sid is not None:
            payload["contentSid"] = self.content_sid
            payload["contentVariables"] = self.content_variables
        if self.media_urls:
            payload["mediaUrls"] = list(self.media_urls)
        return payload

    def _die(self, now: datetime, dead_letter_id: str, *, permanent: bool) -> DeadLettered:
        self.status = OutboxStatus.DEAD
        error = self.last_error or "unknown error"
        self.events.append(
            MessageDeadLettered(
                tenant_id=self.tenant_id,
                subject_id=self.id,
                correlation_id=self.correlation_id,
                occurred_at=now,
                attempts=self.attempts,
                error=error,
                error_code=self.last_error_code,
                permanent=permanent,
            )
        )
        return DeadLettered(
            DeadLetter(
                id=dead_letter_id,
                tenant_id=self.tenant_id,
                source=DeadLetterSource.MESSAGES_OUT,
                source_id=self.id,
                payload=self.to_dead_letter_payload(),
                error=error,
                error_code=self.last_error_code,
                attempts=self.attempts,
                created_at=now,
            )
        )

    def _require_sending(self) -> None:
        if self.status is not OutboxStatus.SENDING:
            raise IllegalTransition(f"outbox message {self.id} is {self.status}, not sending")
