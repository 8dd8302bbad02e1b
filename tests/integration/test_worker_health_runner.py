"""``/healthz`` over HTTP while the real ``Runner`` runs parts in threads (ADR 0015): a part that
dies is named with a 503 for as long as the service drains; a part whose loop returned while the
others work is named too. The parts are fakes; the runner, the heartbeats and the server are
the production ones."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx

from entrypoints.health import Heartbeat, Readiness, health_routes, serve_routes
from entrypoints.runner import EXIT_OK, EXIT_PART_DIED, Runner

STALL = 1.0


class LoopingPart:
    """Beats every 50 ms until stopped; may die or return early; drains ``drains_for`` s."""

    def __init__(
        self,
        name: str,
        *,
        dies_after: float | None = None,
        returns_after: float | None = None,
        drains_for: float = 0.0,
    ) -> None:
        self.name = name
        self.heartbeat = Heartbeat()
        self.dies_after = dies_after
        self.returns_after = returns_after
        self.drains_for = drains_for

    def start(self) -> None:
        """Nothing to acquire."""

    def run(self, stop: threading.Event) -> None:
        started = time.monotonic()
        while not stop.wait(0.05):
            self.heartbeat.beat()
            elapsed = time.monotonic() - started
            if self.dies_after is not None and elapsed >= self.dies_after:
                raise ConnectionError("the database went away for good")
            if self.returns_after is not None and elapsed >= self.returns_after:
                return
        time.sleep(self.drains_for)


class Prober:
    """GETs ``/healthz`` every 50 ms in a thread and keeps every answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, dict[str, object]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)
        self._thread.start()

    def _probe(self) -> None:
        while not self._stop.wait(0.05):
            try:
                response = httpx.get(self.url, timeout=2)
            except httpx.HTTPError:
                continue
            self.answers.append((response.status_code, response.json()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def run_with_probe(
    parts: list[LoopingPart], sigterm_after: float | None = None
) -> tuple[int, Prober]:
    endpoints = serve_routes(0, health_routes(parts, Readiness({}), STALL), addr="127.0.0.1")
    prober = Prober(f"http://127.0.0.1:{endpoints.port}/healthz")
    timer = None
    if sigterm_after is not None:
        timer = threading.Timer(sigterm_after, os.kill, args=(os.getpid(), signal.SIGTERM))
        timer.start()
    try:
        code = Runner(parts, grace_seconds=10).run()
    finally:
        prober.close()
        endpoints.close()
        if timer is not None:
            timer.cancel()
    return code, prober


class TestHealthWhileTheRunnerRuns:
    def test_a_part_that_dies_is_named_with_a_503_while_the_others_drain(self) -> None:
        parts = [
            LoopingPart("webhook-processor", dies_after=2.0),
            LoopingPart("outbox-sender", drains_for=1.5),
        ]

        code, prober = run_with_probe(parts)

        assert EXIT_PART_DIED == code
        healthy = [body for status, body in prober.answers if status == 200]
        sick = [body for status, body in prober.answers if status == 503]
        assert healthy, "healthy before the part died"
        assert sick, "a 503 while the service drained"
        died = sick[0]["parts"]["webhook-processor"]  # type: ignore[index]
        assert "webhook-processor" in sick[0]["failed"]  # type: ignore[operator]
        assert (False, "died", "died: ConnectionError: the database went away for good") == (
            died["alive"],
            died["state"],
            died["problem"],
        )

    def test_a_part_whose_loop_returned_while_the_others_work_is_named(self) -> None:
        parts = [
            LoopingPart("close-inactive-live-sessions", returns_after=1.0),
            LoopingPart("outbox-sender"),
        ]

        code, prober = run_with_probe(parts, sigterm_after=3.0)

        assert EXIT_OK == code
        closer = "close-inactive-live-sessions"
        named = [b for status, b in prober.answers if status == 503 and b["failed"] == [closer]]
        assert named, prober.answers
        problem = named[-1]["parts"][closer]["problem"]  # type: ignore[index]
        assert "stopped: its loop returned" == problem
