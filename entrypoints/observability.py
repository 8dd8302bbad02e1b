"""Error reporting: Sentry when ``SENTRY_DSN`` is set.

sentry-sdk's RQ integration hooks ``Worker.perform_job``, which the threaded engine never calls
(ADR 0007), so the workers report a job's exception themselves with ``report_exception``, tagged
with the job's queue, id, correlationId and tenant (ADR 0014). The log line that says the same
(``Job failed``) carries ``sentry_reported`` and is not sent again by the logging integration.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from entrypoints.settings import Settings

log = logging.getLogger("livesell.observability")


def init_sentry(settings: Settings, *, component: str, **options: Any) -> bool:
    """Start Sentry when a DSN is configured; returns whether it is on. ``options`` go to
    ``sentry_sdk.init`` (tests pass a capturing ``transport``).

    Without the ``sentry`` extra installed a DSN cannot be honoured: say so once, clearly, and run
    without it rather than refuse to start.
    """
    if not settings.sentry_dsn:
        return False
    if importlib.util.find_spec("sentry_sdk") is None:
        log.error(
            "SENTRY_DSN is set but sentry-sdk is not installed: error reporting is OFF."
            " Install the extra: pip install 'livesell[sentry]'",
            extra={"context": {"component": component}},
        )
        return False
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.rq import RqIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        integrations=[RqIntegration(), LoggingIntegration(event_level=logging.ERROR)],
        server_name=component,
        traces_sample_rate=0.0,
        before_send=drop_reported_log_events,
        **options,
    )
    log.info("Sentry error reporting enabled", extra={"context": {"component": component}})
    return True


def _sentry_on() -> bool:
    """Whether ``init_sentry`` turned Sentry on in this process (cheap: called for every send)."""
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is None:
        return False
    client = sentry_sdk.get_client()
    return bool(client.is_active()) and client.transport is not None


@contextlib.contextmanager
def job_scope(tags: Mapping[str, str | None]) -> Iterator[None]:
    """Run a job's work in a Sentry scope of its own carrying ``tags``: what it logs at ERROR (an
    exception logged with its traceback) reaches Sentry with them. Nothing when Sentry is off."""
    if not _sentry_on():
        yield
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            if value is not None:
                scope.set_tag(key, value)
        yield


def report_exception(exc: BaseException, tags: Mapping[str, str | None]) -> bool:
    """Send ``exc`` (with its traceback) to Sentry with ``tags`` (None values left out); False
    when Sentry is off."""
    if importlib.util.find_spec("sentry_sdk") is None:
        return False
    import sentry_sdk

    if not sentry_sdk.is_initialized():
        return False
    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            if value is not None:
                scope.set_tag(key, value)
        scope.capture_exception(exc)
    return True


def drop_reported_log_events(event: Any, hint: dict[str, Any]) -> Any:
    """``before_send``: a log record marked ``sentry_reported`` was already sent as an exception
    event with the job's tags; drop the logging integration's copy."""
    record = hint.get("log_record")
    if record is not None and getattr(record, "sentry_reported", False):
        return None
    return event
