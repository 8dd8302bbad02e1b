"""Error reporting: Sentry through sentry-sdk's RQ integration when ``SENTRY_DSN`` is set."""

from __future__ import annotations

import importlib.util
import logging

from entrypoints.settings import Settings

log = logging.getLogger("livesell.observability")


def init_sentry(settings: Settings, *, component: str) -> bool:
    """Start Sentry when a DSN is configured; returns whether it is on.

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
    )
    log.info("Sentry error reporting enabled", extra={"context": {"component": component}})
    return True
