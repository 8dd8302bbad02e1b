"""The ``livesell worker`` runner: parts in threads, a clean stop, a dead part takes it down."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from entrypoints.health import Heartbeat
from entrypoints.runner import EXIT_FORCED, EXIT_OK, EXIT_PART_DIED, Runner


class FakePart:
    """Works until told to stop; can die, or take long to finish its in-flight work."""

    def __init__(self, name: str, *, dies_after: float | None = None, drains_for: float = 0.0):
        self.name = name
        self.dies_after = dies_after
        self.drains_for = drains_for
        self.started = False
        self.finished = threading.Event()
        self.heartbeat = Heartbeat()

    def start(self) -> None:
        self.started = True

    def run(self, stop: threading.Event) -> None:
        if self.dies_after is not None:
            time.sleep(self.dies_after)
            raise RuntimeError(f"{self.name} lost its connection for good")
        stop.wait()
        time.sleep(self.drains_for)
        self.finished.set()


def signal_soon(signum: int, delay: float = 0.3) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, args=(os.getpid(), signum))
    timer.start()
    return timer


class TestRunner:
    def test_sigterm_lets_every_part_finish_its_work_and_exits_zero(self) -> None:
        parts = [FakePart("webhook", drains_for=0.2), FakePart("outbox", drains_for=0.1)]
        signal_soon(signal.SIGTERM)

        code = Runner(parts, grace_seconds=5).run()

        assert EXIT_OK == code
        assert [True, True] == [p.started and p.finished.is_set() for p in parts]

    def test_a_part_that_dies_takes_the_service_down_with_a_non_zero_exit(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        survivor = FakePart("outbox")
        parts = [FakePart("webhook", dies_after=0.2), survivor]

        with caplog.at_level(logging.ERROR):
            code = Runner(parts, grace_seconds=5).run()

        assert EXIT_PART_DIED == code
        assert survivor.finished.is_set()
        assert any(r.getMessage() == "Worker error" for r in caplog.records)

    def test_work_that_outlasts_the_grace_period_ends_with_a_forced_exit_code(self) -> None:
        parts = [FakePart("outbox", drains_for=3.0)]
        signal_soon(signal.SIGINT)

        code = Runner(parts, grace_seconds=0.5).run()

        assert EXIT_FORCED == code

    def test_it_logs_started_successfully_once_every_part_is_up(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        parts = [FakePart("webhook"), FakePart("closer")]
        signal_soon(signal.SIGTERM)

        with caplog.at_level(logging.INFO):
            Runner(parts, grace_seconds=5).run()

        started = [r for r in caplog.records if r.getMessage() == "Worker started successfully"]
        assert 1 == len(started)
        assert ["webhook", "closer"] == started[0].context["parts"]  # type: ignore[attr-defined]


class SlowStartingPart(FakePart):
    """Its start takes a while (child processes importing); a signal may arrive meanwhile, and a
    child killed by it makes the start fail."""

    def __init__(self, name: str, *, fails_if_signalled: bool) -> None:
        super().__init__(name)
        self.fails_if_signalled = fails_if_signalled
        self.ran = False

    def start(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs in this (the main) thread meanwhile
        if self.fails_if_signalled:
            raise RuntimeError("webhook worker process 4242 did not start: it exited (-15)")
        self.started = True

    def run(self, stop: threading.Event) -> None:
        self.ran = True
        super().run(stop)


class TestSignalsDuringStartUp:
    def test_a_signal_while_a_part_starts_stops_the_start_and_exits_zero(self) -> None:
        first = FakePart("outbox", drains_for=0.1)
        interrupted = SlowStartingPart("webhook", fails_if_signalled=True)
        never = FakePart("closer")

        code = Runner([first, interrupted, never], grace_seconds=5).run()

        assert EXIT_OK == code
        assert first.finished.is_set(), "the part already started stopped as after a signal"
        assert not interrupted.ran
        assert not never.started

    def test_a_part_whose_start_completes_despite_the_signal_runs_and_stops_cleanly(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        part = SlowStartingPart("webhook", fails_if_signalled=False)

        with caplog.at_level(logging.INFO):
            code = Runner([part], grace_seconds=5).run()

        assert EXIT_OK == code
        assert part.finished.is_set()
        assert not any(r.getMessage() == "Worker started successfully" for r in caplog.records)

    def test_a_part_that_fails_to_start_without_a_signal_is_still_an_error(self) -> None:
        class Broken(FakePart):
            def start(self) -> None:
                raise RuntimeError("Redis is unavailable")

        with pytest.raises(RuntimeError, match="Redis is unavailable"):
            Runner([Broken("webhook")], grace_seconds=5).run()

    def test_a_part_without_a_heartbeat_is_refused_before_anything_starts(self) -> None:
        class Silent(FakePart):
            def __init__(self, name: str) -> None:
                super().__init__(name)
                del self.heartbeat

        first, silent = FakePart("webhook"), Silent("outbox")

        with pytest.raises(TypeError, match="outbox have no heartbeat"):
            Runner([first, silent], grace_seconds=5).run()
        assert not first.started
