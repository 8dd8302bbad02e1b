"""Every environment variable of SPEC §4, typed and validated in one place.

A bad value raises ConfigError naming the variable and what is allowed; the CLI turns it into
exit code 2. Secrets are kept out of ``repr`` and masked by ``describe``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import attrs

from adapters.sqlalchemy import urls
from adapters.sqlalchemy.urls import DEFAULT_DATABASE_URL
from domain.errors import InvalidPhoneNumber, InvalidSetting
from domain.live_sessions import InactivityWindow
from domain.phones import normalise_phone

T = TypeVar("T")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SECRET_FIELDS = frozenset(
    {
        "twilio_auth_token",
        "redis_token",
        "sentry_dsn",
        "meta_access_token",
        "meta_app_secret",
        "meta_verify_token",
    }
)
TWILIO_VARIABLES = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_WHATSAPP_NUMBER")
META_VARIABLES = ("META_ACCESS_TOKEN", "META_APP_SECRET", "META_VERIFY_TOKEN")
"""Meta's Cloud API (ADR 0019): the token the sender sends with, the app secret that signs
Meta's webhook (``X-Hub-Signature-256``) and the token of its verification request."""
DEFAULT_META_GRAPH_BASE_URL = "https://graph.facebook.com"


class ConfigError(ValueError):
    """An environment variable has a value the service cannot start with."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        return default if value is None else value

    def number(self, name: str, default: T, cast: Callable[[str], T], low: float, high: float) -> T:
        value = self.raw(name)
        if value is None:
            return default
        kind = "a whole number" if cast is int else "a number"
        try:
            parsed = cast(value)
        except ValueError:
            raise ConfigError(name, f"must be {kind} in {low}..{high}, got {value!r}") from None
        if not low <= parsed <= high:  # type: ignore[operator]
            raise ConfigError(name, f"must be {kind} in {low}..{high}, got {value!r}")
        return parsed

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() not in allowed:
            raise ConfigError(name, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value.lower()


def normalise_database_url(url: str) -> str:
    """``adapters.sqlalchemy.urls.normalise_database_url`` (``postgres://`` and ``postgresql://``
    use psycopg 3), its refusal raised as the ConfigError of ``DATABASE_URL``."""
    try:
        return urls.normalise_database_url(url)
    except urls.UnsupportedDatabaseUrl as exc:
        raise ConfigError("DATABASE_URL", str(exc)) from exc


def mask_url(url: str) -> str:
    """Hide the password of a URL (anything between ``:`` and ``@`` when it cannot be parsed)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if not parts.scheme or not parts.netloc:
        return "***" if "@" in url else url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@attrs.frozen(kw_only=True)
class Settings:
    database_url: str = attrs.field(default=DEFAULT_DATABASE_URL, repr=mask_url)
    database_pool_size: int = 5
    redis_url: str = attrs.field(default=DEFAULT_REDIS_URL, repr=mask_url)
    redis_token: str | None = attrs.field(default=None, repr=False)
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = attrs.field(default=None, repr=False)
    twilio_whatsapp_number: str | None = None
    twilio_timeout_seconds: float = 10.0
    meta_access_token: str | None = attrs.field(default=None, repr=False)
    meta_app_secret: str | None = attrs.field(default=None, repr=False)
    meta_verify_token: str | None = attrs.field(default=None, repr=False)
    meta_graph_base_url: str = DEFAULT_META_GRAPH_BASE_URL
    meta_timeout_seconds: float = 10.0
    live_session_inactivity_window_minutes: int = 45
    webhook_worker_concurrency: int = 5
    outbox_poll_interval_seconds: float = 5.0
    outbox_batch_size: int = 100
    outbox_max_attempts: int = 5
    outbox_send_concurrency: int = 64
    outbox_rate_limit_per_second: float = 80.0
    outbox_sender_instances: int = 1
    outbox_lease_seconds: float = 60.0
    outbox_rate_limited_max_seconds: float = 3600.0
    outbox_recipient_min_gap_seconds: float = 0.0
    close_interval_minutes: float = 10.0
    close_batch_limit: int = 100
    messaging_provider: str = "simulated"
    log_format: str = "text"
    log_level: str = "info"
    sentry_dsn: str | None = attrs.field(default=None, repr=False)
    metrics_port: int | None = None
    health_port: int | None = None
    health_stall_seconds: float = 60.0
    webhook_public_base_url: str | None = None
    webhook_max_body_bytes: int = 1048576
    inbox_reconcile_after_seconds: float = 60.0
    simulated_latency_ms: float = 0.0
    simulated_transient_failure_rate: float = 0.0
    simulated_permanent_failure_rate: float = 0.0
    simulated_seed: int = 0
    simulated_sent_log: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; raises ConfigError naming the first bad one."""
        env = _Env(os.environ if environ is None else environ)
        database_url = normalise_database_url(env.text("DATABASE_URL", DEFAULT_DATABASE_URL) or "")
        redis_url = env.text("REDIS_URL", DEFAULT_REDIS_URL) or DEFAULT_REDIS_URL
        if urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("REDIS_URL", "must start with redis://, rediss:// or unix://")
        window = env.number("LIVE_SESSION_INACTIVITY_WINDOW_MINUTES", 45, int, 1, 1440)
        try:
            InactivityWindow(window)
        except InvalidSetting as exc:  # pragma: no cover - the range above already holds
            raise ConfigError("LIVE_SESSION_INACTIVITY_WINDOW_MINUTES", str(exc)) from exc
        sid = env.text("TWILIO_ACCOUNT_SID")
        token = env.text("TWILIO_AUTH_TOKEN")
        number = env.text("TWILIO_WHATSAPP_NUMBER")
        if number is not None:
            try:
                number = normalise_phone(number, "US")
            except InvalidPhoneNumber:
                raise ConfigError(
                    "TWILIO_WHATSAPP_NUMBER", "must be a phone number in E.164, e.g. +14155238886"
                ) from None
        twilio = dict(zip(TWILIO_VARIABLES, (sid, token, number), strict=True))
        missing = [name for name, value in twilio.items() if not value]
        # Unset, the provider is Twilio as soon as one Twilio variable is set: an incomplete set
        # is then refused where a message would be sent (check_messaging_provider), never read
        # as "simulated" (ADR 0011).
        meta = {name: env.text(name) for name in META_VARIABLES}
        graph_url = env.text("META_GRAPH_BASE_URL", DEFAULT_META_GRAPH_BASE_URL) or ""
        if urlsplit(graph_url).scheme not in ("http", "https"):
            raise ConfigError("META_GRAPH_BASE_URL", "must be an http:// or https:// URL")
        # Meta's variables make the deployment send for real as Twilio's do (ADR 0019): the
        # provider "twilio" means "the real providers", each tenant's own.
        real = len(missing) < len(TWILIO_VARIABLES) or any(meta.values())
        provider = env.choice(
            "MESSAGING_PROVIDER",
            "twilio" if real else "simulated",
            ("twilio", "simulated"),
        )
        explicit = env.raw("MESSAGING_PROVIDER") is not None
        if provider == "twilio" and missing and explicit and not any(meta.values()):
            raise ConfigError("MESSAGING_PROVIDER", f"twilio needs {', '.join(missing)} set")
        metrics_port = env.raw("METRICS_PORT")
        health_port = env.raw("HEALTH_PORT")
        transient = env.number("SIMULATED_TRANSIENT_FAILURE_RATE", 0.0, float, 0.0, 1.0)
        permanent = env.number("SIMULATED_PERMANENT_FAILURE_RATE", 0.0, float, 0.0, 1.0)
        if transient + permanent > 1.0:
            raise ConfigError(
                "SIMULATED_PERMANENT_FAILURE_RATE", "plus the transient rate must not exceed 1"
            )
        base_url = env.text("WEBHOOK_PUBLIC_BASE_URL")
        if base_url is not None and urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError("WEBHOOK_PUBLIC_BASE_URL", "must be an http:// or https:// URL")
        settings = cls(
            database_url=database_url,
            database_pool_size=env.number("DATABASE_POOL_SIZE", 5, int, 1, 100),
            redis_url=redis_url,
            redis_token=env.text("REDIS_TOKEN"),
            twilio_account_sid=sid,
            twilio_auth_token=token,
            twilio_whatsapp_number=number,
            twilio_timeout_seconds=env.number("TWILIO_TIMEOUT_SECONDS", 10.0, float, 0.5, 120),
            meta_access_token=meta["META_ACCESS_TOKEN"],
            meta_app_secret=meta["META_APP_SECRET"],
            meta_verify_token=meta["META_VERIFY_TOKEN"],
            meta_graph_base_url=graph_url.rstrip("/"),
            meta_timeout_seconds=env.number("META_TIMEOUT_SECONDS", 10.0, float, 0.5, 120),
            live_session_inactivity_window_minutes=window,
            webhook_worker_concurrency=env.number("WEBHOOK_WORKER_CONCURRENCY", 5, int, 1, 64),
            outbox_poll_interval_seconds=env.number(
                "OUTBOX_POLL_INTERVAL_SECONDS", 5.0, float, 0.01, 3600
            ),
            outbox_batch_size=env.number("OUTBOX_BATCH_SIZE", 100, int, 1, 1000),
            outbox_max_attempts=env.number("OUTBOX_MAX_ATTEMPTS", 5, int, 1, 100),
            outbox_send_concurrency=env.number("OUTBOX_SEND_CONCURRENCY", 64, int, 1, 512),
            outbox_rate_limit_per_second=env.number(
                "OUTBOX_RATE_LIMIT_PER_SECOND", 80.0, float, 0.1, 10000
            ),
            outbox_sender_instances=env.number("OUTBOX_SENDER_INSTANCES", 1, int, 1, 1000),
            outbox_lease_seconds=env.number("OUTBOX_LEASE_SECONDS", 60.0, float, 1, 3600),
            outbox_rate_limited_max_seconds=env.number(
                "OUTBOX_RATE_LIMITED_MAX_SECONDS", 3600.0, float, 1, 7 * 86400
            ),
            outbox_recipient_min_gap_seconds=env.number(
                "OUTBOX_RECIPIENT_MIN_GAP_SECONDS", 0.0, float, 0, 3600
            ),
            close_interval_minutes=env.number("CLOSE_INTERVAL_MINUTES", 10.0, float, 0.01, 1440),
            close_batch_limit=env.number("CLOSE_BATCH_LIMIT", 100, int, 1, 100000),
            messaging_provider=provider,
            log_format=env.choice("LOG_FORMAT", "text", ("text", "json")),
            log_level=env.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            sentry_dsn=env.text("SENTRY_DSN"),
            metrics_port=(
                None if metrics_port is None else env.number("METRICS_PORT", 0, int, 1, 65535)
            ),
            health_port=(
                None if health_port is None else env.number("HEALTH_PORT", 0, int, 1, 65535)
            ),
            health_stall_seconds=env.number("HEALTH_STALL_SECONDS", 60.0, float, 1, 3600),
            webhook_public_base_url=base_url.rstrip("/") if base_url else None,
            webhook_max_body_bytes=env.number(
                "WEBHOOK_MAX_BODY_BYTES", 1048576, int, 1024, 10 * 1024 * 1024
            ),
            inbox_reconcile_after_seconds=env.number(
                "INBOX_RECONCILE_AFTER_SECONDS", 60.0, float, 1, 86400
            ),
            simulated_latency_ms=env.number("SIMULATED_LATENCY_MS", 0.0, float, 0, 60000),
            simulated_transient_failure_rate=transient,
            simulated_permanent_failure_rate=permanent,
            simulated_seed=env.number("SIMULATED_SEED", 0, int, 0, 2**63),
            simulated_sent_log=env.text("SIMULATED_SENT_LOG"),
        )
        settings.check_lease()
        return settings

    def longest_send_seconds(self) -> float:
        """The longest a claimed message can take to be sent (ADR 0015): waiting its turn at the
        rate limit behind every other send slot of every sender instance (``OUTBOX_SEND_CONCURRENCY
        * OUTBOX_SENDER_INSTANCES / OUTBOX_RATE_LIMIT_PER_SECOND``: the limit is shared, ADR 0018),
        then the provider call itself (``TWILIO_TIMEOUT_SECONDS`` for Twilio; the simulated
        provider's slowest call, 1.5 * ``SIMULATED_LATENCY_MS``)."""
        slots = self.outbox_send_concurrency * self.outbox_sender_instances
        queued = slots / self.outbox_rate_limit_per_second
        if self.messaging_provider == "twilio":
            return queued + max(self.twilio_timeout_seconds, self.meta_timeout_seconds)
        return queued + 1.5 * self.simulated_latency_ms / 1000

    def check_lease(self) -> None:
        """Raise ConfigError when ``OUTBOX_LEASE_SECONDS`` does not outlast the longest send: a
        lease that ends mid-send lets another sender claim the row and send it twice."""
        longest = self.longest_send_seconds()
        if self.outbox_lease_seconds > longest:
            return
        slowest = (
            ("TWILIO_TIMEOUT_SECONDS", self.twilio_timeout_seconds)
            if self.twilio_timeout_seconds >= self.meta_timeout_seconds
            else ("META_TIMEOUT_SECONDS", self.meta_timeout_seconds)
        )
        call = (
            f"{slowest[0]} {slowest[1]:g}"
            if self.messaging_provider == "twilio"
            else f"1.5 * SIMULATED_LATENCY_MS {self.simulated_latency_ms:g} / 1000"
        )
        instances = (
            f" * OUTBOX_SENDER_INSTANCES {self.outbox_sender_instances}"
            if self.outbox_sender_instances > 1
            else ""
        )
        raise ConfigError(
            "OUTBOX_LEASE_SECONDS",
            f"{self.outbox_lease_seconds:g} s does not outlast the longest send, "
            f"OUTBOX_SEND_CONCURRENCY {self.outbox_send_concurrency}{instances} / "
            f"OUTBOX_RATE_LIMIT_PER_SECOND {self.outbox_rate_limit_per_second:g} + {call} "
            f"= {longest:.3g} s: raise it, or lower the concurrency or the timeout",
        )

    @property
    def twilio_variables_set(self) -> tuple[str, ...]:
        """The Twilio variables this process has (names only)."""
        values = (self.twilio_account_sid, self.twilio_auth_token, self.twilio_whatsapp_number)
        return tuple(name for name, value in zip(TWILIO_VARIABLES, values, strict=True) if value)

    @property
    def meta_variables_set(self) -> tuple[str, ...]:
        """The Meta variables this process has (names only)."""
        values = (self.meta_access_token, self.meta_app_secret, self.meta_verify_token)
        return tuple(name for name, value in zip(META_VARIABLES, values, strict=True) if value)

    @property
    def uses_twilio(self) -> bool:
        """Whether Twilio sends here: a Twilio variable is set, or no Meta one is (the default)."""
        return bool(self.twilio_variables_set) or not self.meta_variables_set

    def check_meta_provider(self) -> None:
        """Raise ConfigError naming the first missing Meta variable; called at start-up where
        messages are sent when a Meta variable is set or a tenant is on Meta (ADR 0019)."""
        present = self.meta_variables_set
        missing = [name for name in META_VARIABLES if name not in present]
        if missing:
            raise ConfigError(
                missing[0],
                f"is required to send and receive with Meta's Cloud API "
                f"({', '.join(present) or 'a tenant on the meta provider'}); "
                f"set {' and '.join(missing)}",
            )

    def check_messaging_provider(self) -> None:
        """Raise ConfigError, naming the first missing variable, when the provider is Twilio and
        a Twilio variable is missing (``MESSAGING_PROVIDER`` unset and the set incomplete). Called
        where the provider is built, so a process that sends refuses to start while one that only
        verifies webhooks (``TWILIO_AUTH_TOKEN`` alone) does not. A deployment with Meta's
        variables and none of Twilio's sends through Meta only: their set is checked instead."""
        if self.messaging_provider != "twilio":
            return
        if self.meta_variables_set:
            self.check_meta_provider()
        if not self.uses_twilio:
            return
        present = self.twilio_variables_set
        missing = [name for name in TWILIO_VARIABLES if name not in present]
        if missing:
            raise ConfigError(
                missing[0],
                f"is required to send with Twilio ({', '.join(present)} set, so MESSAGING_PROVIDER "
                f"defaults to twilio); set {' and '.join(missing)}, or set "
                "MESSAGING_PROVIDER=simulated to send nothing",
            )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def describe(self) -> dict[str, Any]:
        """The effective configuration with secrets masked (``--check-config``)."""
        out: dict[str, Any] = {}
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if field.name in SECRET_FIELDS and value is not None:
                value = "***"
            elif field.name in ("database_url", "redis_url"):
                value = mask_url(value)
            out[field.name.upper()] = value
        return out
