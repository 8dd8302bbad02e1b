"""The worker's health logic (ADR 0015): a part is alive while it runs and beats within its
declared wait plus the stall bound; readiness checks are bounded in time. Fake clocks only."""

from __future__ import annotations

import threading

import pytest

from entrypoints.health import Heartbeat, PartState, Readiness, judge, liveness

STALL = 10.0


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Part:
    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.heartbeat = Heartbeat(clock=clock, wall_clock=lambda: 1_772_000_000.0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


class TestALivePart:
    def test_a_running_part_that_just_beat_is_alive(self, clock: Clock) -> None:
        part = Part("outbox-sender", clock)
        part.heartbeat.running()
        clock.now += 3

        verdict = judge(part.name, part.heartbeat.read(), clock(), STALL)

        assert (True, None, 3.0) == (verdict.alive, verdict.problem, verdict.last_beat_seconds_ago)
        assert verdict.last_beat_at is not None
        assert verdict.last_beat_at.startswith("2026-")

    def test_a_part_waiting_on_purpose_is_alive_for_its_wait_plus_the_bound(
        self, clock: Clock
    ) -> None:
        part = Part("close-inactive-live-sessions", clock)
        part.heartbeat.running()
        part.heartbeat.beat(away=600)

        clock.now += 600 + STALL
        alive = judge(part.name, part.heartbeat.read(), clock(), STALL)
        clock.now += 0.5
        late = judge(part.name, part.heartbeat.read(), clock(), STALL)

        assert (True, False) == (alive.alive, late.alive)
        assert "stalled: no heartbeat for 610.5 s (allowed 610.0 s)" == late.problem

    def test_each_beat_replaces_the_declared_wait(self, clock: Clock) -> None:
        part = Part("inbox-reconciler", clock)
        part.heartbeat.running()
        part.heartbeat.beat(away=600)
        part.heartbeat.beat()  # the loop went round and is working now

        clock.now += STALL + 1

        assert judge(part.name, part.heartbeat.read(), clock(), STALL).problem.startswith("stalled")


class TestAPartThatIsNotAlive:
    def test_a_part_that_died_says_why(self, clock: Clock) -> None:
        part = Part("webhook-processor", clock)
        part.heartbeat.running()
        part.heartbeat.died(RuntimeError("a webhook worker process died\nmore"))

        verdict = judge(part.name, part.heartbeat.read(), clock(), STALL)

        assert (False, PartState.DIED, "died: RuntimeError: a webhook worker process died") == (
            verdict.alive,
            verdict.state,
            verdict.problem,
        )

    def test_a_part_whose_loop_returned_is_not_alive(self, clock: Clock) -> None:
        part = Part("outbox-sender", clock)
        part.heartbeat.running()
        part.heartbeat.stopped()

        assert (
            "stopped: its loop returned"
            == judge(part.name, part.heartbeat.read(), clock(), STALL).problem
        )

    def test_a_part_not_started_yet_is_not_alive(self, clock: Clock) -> None:
        part = Part("outbox-sender", clock)

        verdict = judge(part.name, part.heartbeat.read(), clock(), STALL)

        assert (False, "starting", None) == (
            verdict.alive,
            verdict.problem,
            verdict.last_beat_seconds_ago,
        )


class TestTheServiceVerdict:
    def test_all_parts_alive_is_200_and_lists_each_with_its_last_heartbeat(
        self, clock: Clock
    ) -> None:
        parts = [Part("webhook-processor", clock), Part("outbox-sender", clock)]
        for part in parts:
            part.heartbeat.running()
        clock.now += 1

        report = liveness(parts, STALL, clock)

        body = report.as_json()
        assert (200, "ok", []) == (report.status_code, body["status"], body["failed"])
        assert {"webhook-processor", "outbox-sender"} == set(body["parts"])
        assert 1.0 == body["parts"]["outbox-sender"]["lastHeartbeatSecondsAgo"]

    def test_one_stalled_part_is_503_naming_it_alone(self, clock: Clock) -> None:
        stuck, fine = Part("outbox-sender", clock), Part("webhook-processor", clock)
        stuck.heartbeat.running()
        fine.heartbeat.running()
        clock.now += STALL + 5
        fine.heartbeat.beat()

        report = liveness([stuck, fine], STALL, clock)

        assert (503, ["outbox-sender"]) == (report.status_code, report.failed)
        assert report.as_json()["parts"]["webhook-processor"]["alive"] is True

    def test_no_part_at_all_is_not_healthy(self, clock: Clock) -> None:
        assert 503 == liveness([], STALL, clock).status_code


class TestReadiness:
    def test_every_check_passing_is_ready(self) -> None:
        report = Readiness({"postgres": lambda: None, "schema": lambda: None}).report()

        assert (200, {"postgres": "ok", "schema": "ok"}) == (report.status_code, report.checks)

    def test_a_failing_check_is_503_with_its_reason(self) -> None:
        def schema() -> None:
            raise ValueError("DATABASE_URL: the database schema is at 0005_event_logs")

        report = Readiness({"postgres": lambda: None, "schema": schema}).report()

        assert (503, ["schema"]) == (report.status_code, report.failed)
        assert report.checks["schema"].startswith("ValueError: DATABASE_URL: the database schema")

    def test_a_hung_check_times_out_without_holding_the_others(self) -> None:
        release = threading.Event()
        readiness = Readiness({"redis": release.wait, "postgres": lambda: None}, timeout=0.2)
        try:
            report = readiness.report()
        finally:
            release.set()

        assert {"redis": "timed out", "postgres": "ok"} == report.checks
        assert "unavailable" == report.as_json()["status"]
