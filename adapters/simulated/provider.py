"""The simulated messaging provider.

Each attempt's fate is drawn from ``(seed, outbox id, attempt number)``, so a run is reproducible
whatever the thread or process interleaving. Accepted sends are kept in ``sent`` and, when a path
is given, appended as one JSON line each with a single ``write`` on an ``O_APPEND`` file, which
several processes can share.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import attrs

from domain.outbox import DeliveryFailure
from domain.template_refs import is_twilio_content_sid, meta_template
from ports.messaging import DeliveryFailed, SendReceipt, SendRequest

TRANSIENT_CODES = ("20429", "30001", "20500")
PERMANENT_CODES = ("21211", "21610", "63016")
DEFAULT_SENDER = "+15005550006"
RATE_LIMITED_CODES = {"twilio": "20429", "meta": "130429"}


@attrs.frozen
class SentRecord:
    outbox_id: str
    to: str
    correlation_id: str
    at: str
    provider_message_id: str
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    media_urls: tuple[str, ...] = ()
    validity_period: int | None = None
    called_at: str | None = None
    """When ``send`` was called, before its latency: the moment a real provider would see the
    request, which is what a rate limit paces (``at`` is when the answer came back)."""


def template_refusal(request: SendRequest) -> DeliveryFailure | None:
    """As the real providers do (ADR 0023): standing in for Meta it refuses a Twilio Content SID,
    for Twilio a Meta template, permanently as a configuration error; else None."""
    if request.content_sid is None:
        return None
    if request.provider == "meta":
        if meta_template(request.content_sid) is not None:
            return None
        code, wanted = "meta-template", "a Meta template (name:language)"
    else:
        if is_twilio_content_sid(request.content_sid):
            return None
        code, wanted = "twilio-template", "a Twilio Content SID (HX...)"
    return DeliveryFailure(
        transient=False,
        code=code,
        message=f"configuration error: the template {request.content_sid!r} is not {wanted}",
    )


class SimulatedMessagingProvider:
    """Accepts or fails sends at the given rates after ``latency_ms`` (real sleep by default)."""

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        transient_failure_rate: float = 0.0,
        permanent_failure_rate: float = 0.0,
        rate_limited_failure_rate: float = 0.0,
        seed: int = 0,
        sent_log: str | None = None,
        default_sender: str = DEFAULT_SENDER,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        for name, rate in (
            ("transient failure rate", transient_failure_rate),
            ("permanent failure rate", permanent_failure_rate),
            ("rate-limited failure rate", rate_limited_failure_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {rate}")
        if transient_failure_rate + permanent_failure_rate + rate_limited_failure_rate > 1.0:
            raise ValueError("failure rates add up to more than 1")
        if latency_ms < 0:
            raise ValueError(f"latency must be >= 0 ms, got {latency_ms}")
        self.latency_ms = latency_ms
        self.transient_failure_rate = transient_failure_rate
        self.permanent_failure_rate = permanent_failure_rate
        self.rate_limited_failure_rate = rate_limited_failure_rate
        """Refused for capacity, as a provider's 429 (no attempt spent, ADR 0015): drawn after
        the other two rates, so adding it changes no seeded run without it."""
        self.seed = seed
        self.default_sender = default_sender
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._attempts: Counter[str] = Counter()
        self.sent: list[SentRecord] = []
        self.failures: Counter[str] = Counter()
        self._log_fd = (
            os.open(sent_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if sent_log else None
        )

    def sender_key(self, request: SendRequest) -> str:
        return request.from_phone or self.default_sender

    def send(self, request: SendRequest) -> SendReceipt:
        refusal = template_refusal(request)
        if refusal is not None:
            raise DeliveryFailed(refusal)
        with self._lock:
            self._attempts[request.outbox_id] += 1
            attempt = self._attempts[request.outbox_id]
        called_at = self._wall_clock()
        draw = random.Random(f"{self.seed}:{request.outbox_id}:{attempt}")
        roll = draw.random()
        if self.latency_ms:
            self._sleep(draw.uniform(0.5, 1.5) * self.latency_ms / 1000)
        if roll < self.permanent_failure_rate:
            code = draw.choice(PERMANENT_CODES)
            self._count(f"permanent:{code}")
            raise DeliveryFailed(
                DeliveryFailure(transient=False, code=code, message=f"simulated permanent {code}")
            )
        if roll < self.permanent_failure_rate + self.transient_failure_rate:
            code = draw.choice(TRANSIENT_CODES)
            self._count(f"transient:{code}")
            retry_after = timedelta(seconds=2) if code == "20429" else None
            raise DeliveryFailed(
                DeliveryFailure(
                    transient=True,
                    code=code,
                    message=f"simulated transient {code}",
                    retry_after=retry_after,
                )
            )
        failed = self.permanent_failure_rate + self.transient_failure_rate
        if roll < failed + self.rate_limited_failure_rate:
            code = RATE_LIMITED_CODES.get(request.provider or "", RATE_LIMITED_CODES["twilio"])
            self._count(f"rate_limited:{code}")
            raise DeliveryFailed(
                DeliveryFailure(
                    transient=True,
                    code=code,
                    message=f"simulated rate limit {code}",
                    retry_after=timedelta(seconds=1),
                    rate_limited=True,
                )
            )
        # Standing in for Meta, it answers a wamid as Meta does; else a Twilio MessageSid.
        prefix = "wamid.SIM" if request.provider == "meta" else "SM"
        provider_id = f"{prefix}{draw.getrandbits(128):032x}"
        record = SentRecord(
            outbox_id=request.outbox_id,
            to=request.to_phone,
            correlation_id=request.correlation_id,
            at=self._wall_clock().isoformat(),
            provider_message_id=provider_id,
            content_sid=request.content_sid,
            content_variables=request.content_variables,
            media_urls=request.media_urls,
            validity_period=request.validity_period,
            called_at=called_at.isoformat(),
        )
        with self._lock:
            self.sent.append(record)
        if self._log_fd is not None:
            entry: dict[str, object] = {
                "outboxId": record.outbox_id,
                "to": record.to,
                "correlationId": record.correlation_id,
                "at": record.at,
                "calledAt": record.called_at,
            }
            # A template, media and expiry are logged only when the message has them.
            if record.content_sid is not None:
                entry["contentSid"] = record.content_sid
                entry["contentVariables"] = record.content_variables
            if record.media_urls:
                entry["mediaUrls"] = list(record.media_urls)
            if record.validity_period is not None:
                entry["validityPeriod"] = record.validity_period
            line = json.dumps(entry, ensure_ascii=False)
            os.write(self._log_fd, (line + "\n").encode())
        return SendReceipt(provider_id)

    def _count(self, key: str) -> None:
        with self._lock:
            self.failures[key] += 1

    def close(self) -> None:
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None
