"""The webhook's refusals: ``HttpProblem`` is raised for every one, and ``answer_problem`` is the
one place it becomes an HTTP answer and a log line (STYLE rule 9)."""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

log = logging.getLogger("livesell.webhook_app")


class HttpProblem(Exception):
    """A request refused with ``status``; ``reason`` is the answer's text and the log line's."""

    def __init__(self, status: int, reason: str, **context: Any) -> None:
        self.status = status
        self.reason = reason
        self.context = context
        super().__init__(f"{status} {reason}")


async def answer_problem(request: Request, exc: Exception) -> Response:
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


def first_line(exc: BaseException) -> str:
    """An error's first line, bounded: driver errors may go on with the statement's values."""
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def where_raised(exc: BaseException) -> str:
    """``file:line in function`` of the frame that raised ``exc``."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}"
