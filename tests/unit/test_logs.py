"""Log lines (SPEC §4): ``[timestamp] [LEVEL] [worker-name] message {json context}``, phones masked
to their last four digits wherever they appear, text or JSON."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from entrypoints.logs import LivesellFormatter, current_worker

LINE = re.compile(
    r"^\[(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00)\] \[(?P<level>[A-Z]+)\] "
    r"\[(?P<worker>[\w-]+)\] (?P<message>.*?)(?: (?P<context>\{.*\}))?$"
)


@pytest.fixture
def worker() -> Iterator[None]:
    token = current_worker.set("webhook-processor")
    yield
    current_worker.reset(token)


def record(
    message: str, *args: object, level: int = logging.INFO, **context: Any
) -> logging.LogRecord:
    made = logging.getLogger("livesell.test").makeRecord(
        "livesell.test",
        level,
        __file__,
        1,
        message,
        args,
        None,
        extra={"context": context} if context else None,
    )
    made.created = 1772474400.123  # 2026-03-02T18:00:00.123Z
    return made


def text(line_record: logging.LogRecord) -> re.Match[str]:
    line = LivesellFormatter("text").format(line_record)
    match = LINE.match(line)
    assert match is not None, line
    return match


@pytest.mark.usefixtures("worker")
class TestTextLines:
    def test_a_line_has_the_spec_shape(self) -> None:
        match = text(record("Job completed", correlationId="corr-1", jobId="job-1"))

        assert (
            "2026-03-02T18:00:00.123+00:00",
            "INFO",
            "webhook-processor",
            "Job completed",
            {"correlationId": "corr-1", "jobId": "job-1"},
        ) == (
            match["stamp"],
            match["level"],
            match["worker"],
            match["message"],
            json.loads(match["context"]),
        )

    def test_a_line_without_context_ends_with_the_message(self) -> None:
        match = text(record("Worker started successfully", level=logging.WARNING))

        assert ("WARNING", "Worker started successfully", None) == (
            match["level"],
            match["message"],
            match["context"],
        )

    def test_the_worker_name_comes_from_the_current_worker(self) -> None:
        token = current_worker.set("outbox-sender")
        try:
            match = text(record("Batch processed"))
        finally:
            current_worker.reset(token)

        assert "outbox-sender" == match["worker"]

    def test_phones_in_the_context_keep_only_their_last_four_digits(self) -> None:
        match = text(
            record(
                "Processing outbound message",
                to="+33612345678",
                **{"from": "whatsapp:+33698765432"},
                note="client +14155552671 asked",
                nested={"phone": "+447911123456"},
            )
        )

        assert {
            "to": "********5678",
            "from": "********5432",
            "note": "client ********2671 asked",
            "nested": {"phone": "*********3456"},
        } == json.loads(match["context"])

    def test_phones_in_the_message_keep_only_their_last_four_digits(self) -> None:
        match = text(record("Message sent to %s", "whatsapp:+33612345678"))

        assert "Message sent to whatsapp:********5678" == match["message"]

    def test_no_full_phone_survives_anywhere_in_the_line(self) -> None:
        line = LivesellFormatter("text").format(
            record("from +33612345678", to="+33612345678", error="bad '06 12 34 56 78'")
        )

        assert [] == [p for p in ("33612345678", "0612345678") if p in re.sub(r"\D", "", line)]

    def test_timestamps_and_provider_ids_in_the_context_are_not_masked(self) -> None:
        context = {
            "nextAttemptAt": "2026-03-02T18:00:08+00:00",
            "providerMessageId": "SM0123456789abcdef0123456789abcdef",
            "outboxId": "01KJ0000000000000000000000",
        }

        match = text(record("Message send failed, will retry", **context))

        assert context == json.loads(match["context"])

    def test_an_exception_is_logged_in_the_context_with_phones_masked(self) -> None:
        error = ValueError("cannot reach +33612345678")
        failing = record("Job failed")
        failing.exc_info = (ValueError, error, None)

        context = json.loads(text(failing)["context"])

        assert "ValueError: cannot reach ********5678" in context["error"]


@pytest.mark.usefixtures("worker")
class TestJsonLines:
    def test_a_json_line_holds_the_same_facts(self) -> None:
        line = LivesellFormatter("json").format(
            record("Job completed", correlationId="corr-1", to="+33612345678")
        )

        assert {
            "timestamp": "2026-03-02T18:00:00.123+00:00",
            "level": "INFO",
            "worker": "webhook-processor",
            "message": "Job completed",
            "correlationId": "corr-1",
            "to": "********5678",
        } == json.loads(line)
