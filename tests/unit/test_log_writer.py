"""``LineWriter`` (ADR 0031): lines formatted where they are logged, written by one thread in
batches; a warning or an error at once, with every line before it; nothing lost at a clean exit.

``logging.Handler.handle`` and ``flush``/``close`` as the standard library defines them
(https://docs.python.org/3/library/logging.html#handler-objects); ``logging.shutdown``, which
flushes and closes every handler, runs at exit (https://docs.python.org/3/library/logging.html
#logging.shutdown).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable

import pytest

from entrypoints.logs import LineWriter, LivesellFormatter, configure_logging

NEVER = 3600.0  # an interval the writer thread never reaches within a test


def logger_on(writer: LineWriter, name: str) -> logging.Logger:
    log = logging.getLogger(f"livesell.test.writer.{name}")
    log.handlers[:] = [writer]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError("not within the time allowed")


class TestWhenLinesAreWritten:
    def test_an_info_line_waits_for_the_writer_thread_then_is_written(self) -> None:
        stream = io.StringIO()
        writer = LineWriter(stream, interval=0.02)
        log = logger_on(writer, "interval")

        log.info("Message sent successfully")

        wait_for(lambda: lines(stream) == ["Message sent successfully"])
        writer.close()

    def test_a_warning_is_written_at_once_after_every_line_before_it(self) -> None:
        stream = io.StringIO()
        writer = LineWriter(stream, interval=NEVER)
        log = logger_on(writer, "warning")

        log.info("Processing outbound message")
        log.debug("a detail")
        assert [] == lines(stream)  # held: the writer thread has not run
        log.warning("Message send failed, will retry")

        assert [
            "Processing outbound message",
            "a detail",
            "Message send failed, will retry",
        ] == lines(stream)
        writer.close()

    @pytest.mark.parametrize("level", [logging.ERROR, logging.CRITICAL])
    def test_an_error_is_never_held_back(self, level: int) -> None:
        stream = io.StringIO()
        log = logger_on(LineWriter(stream, interval=NEVER), f"level{level}")

        log.log(level, "Worker error")

        assert ["Worker error"] == lines(stream)

    def test_close_writes_what_waits_and_later_lines_go_at_once(self) -> None:
        stream = io.StringIO()
        writer = LineWriter(stream, interval=NEVER)
        log = logger_on(writer, "close")
        log.info("Worker metrics")

        writer.close()
        assert ["Worker metrics"] == lines(stream)
        log.info("Worker stopped")

        assert ["Worker metrics", "Worker stopped"] == lines(stream)


class TestManyThreads:
    def test_every_line_of_every_thread_is_written_once_whole_and_in_its_threads_order(
        self,
    ) -> None:
        stream = io.StringIO()
        writer = LineWriter(stream, interval=0.001)
        writer.setFormatter(LivesellFormatter("json"))
        log = logger_on(writer, "threads")

        def send(thread: int) -> None:
            for n in range(500):
                log.info("Message sent successfully", extra={"context": {"t": thread, "n": n}})

        threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        writer.close()

        written = [json.loads(line) for line in lines(stream)]  # each line whole JSON
        assert 8 * 500 == len(written)
        for t in range(8):
            assert list(range(500)) == [w["n"] for w in written if w["t"] == t]


class TestFailuresAndSetup:
    def test_a_stream_that_fails_does_not_fail_the_caller(self) -> None:
        class Gone(io.StringIO):
            def write(self, _text: str) -> int:
                raise OSError(5, "Input/output error")

        log = logger_on(LineWriter(Gone(), interval=NEVER), "gone")

        log.error("Worker error")  # written at once: the OSError stays in the writer

    def test_configuring_again_closes_the_writer_it_replaces_with_its_lines_written(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        root = logging.getLogger()
        saved, level = root.handlers[:], root.level
        try:
            configure_logging("text", "info")
            (first,) = root.handlers
            assert isinstance(first, LineWriter)
            logging.getLogger("livesell.test.writer.again").info("Worker started successfully")

            configure_logging("text", "info")

            assert "Worker started successfully" in capsys.readouterr().err
            (second,) = root.handlers
            assert second is not first
        finally:
            for handler in root.handlers:
                handler.close()
            root.handlers[:] = saved
            root.setLevel(level)
