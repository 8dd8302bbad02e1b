"""The loop of the periodic worker parts (``application.periodic``): when a pass runs, how long
the loop waits after one that failed, and what its heartbeat says, on virtual time."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from adapters.memory.loops import VirtualTime
from application.periodic import Pacing, PassOutcome, PeriodicLoop, Schedule

CLOSER = Pacing(interval=60.0, backoff_base=1.0, backoff_cap=60.0)
RECONCILER = Pacing(
    interval=2.0, backoff_base=2.0, backoff_cap=10.0, schedule=Schedule.FIXED_RATE, tick=1.0
)


class Task:
    """Passes that come to ``outcomes`` in turn (an exception is raised), each taking
    ``duration`` virtual seconds; DONE once the list is spent."""

    def __init__(
        self,
        time: VirtualTime,
        outcomes: Sequence[PassOutcome | Exception] = (),
        duration: float = 0.0,
    ) -> None:
        self.time = time
        self.outcomes = list(outcomes)
        self.duration = duration
        self.passes: list[float] = []
        self.looks: list[float] = []
        self.failures: list[tuple[str, float, int]] = []

    def between_passes(self) -> None:
        self.looks.append(self.time.now)

    def run_pass(self) -> PassOutcome:
        self.passes.append(self.time.now)
        self.time.advance(self.duration)
        outcome = self.outcomes.pop(0) if self.outcomes else PassOutcome.DONE
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def pass_failed(self, error: Exception, retry_in: float, failures: int) -> None:
        self.failures.append((str(error), retry_in, failures))


class Beats:
    def __init__(self) -> None:
        self.aways: list[float] = []

    def beat(self, away: float = 0.0) -> None:
        self.aways.append(away)


def run(
    pacing: Pacing, until: float, make: Callable[[VirtualTime], Task]
) -> tuple[Task, VirtualTime, Beats]:
    time = VirtualTime(until=until)
    task = make(time)
    beats = Beats()
    PeriodicLoop(task, pacing, heartbeat=beats, monotonic=time.monotonic).run(time)
    return task, time, beats


class TestWhenPassesRun:
    def test_the_first_pass_runs_at_once_and_the_next_after_the_interval(self) -> None:
        task, _, _ = run(CLOSER, 150, Task)

        assert [0.0, 60.0, 120.0] == task.passes

    def test_with_a_fixed_delay_the_wait_counts_from_the_end_of_a_pass(self) -> None:
        task, _, _ = run(CLOSER, 150, lambda time: Task(time, duration=5.0))

        assert [0.0, 65.0, 130.0] == task.passes

    def test_with_a_fixed_rate_the_wait_counts_from_the_start_of_a_pass(self) -> None:
        task, _, _ = run(RECONCILER, 7, lambda time: Task(time, duration=0.5))

        assert [0.0, 2.0, 4.0, 6.0] == task.passes

    def test_a_pass_that_stopped_at_its_limit_is_followed_at_once(self) -> None:
        more = [PassOutcome.MORE, PassOutcome.MORE]
        task, _, _ = run(CLOSER, 100, lambda time: Task(time, more, duration=1.0))

        assert [0.0, 1.0, 2.0, 63.0] == task.passes

    def test_between_passes_the_task_looks_every_tick(self) -> None:
        task, _, _ = run(RECONCILER, 4.5, Task)

        assert ([0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 4.0]) == (task.looks, task.passes)

    def test_no_pass_runs_once_stop_is_set(self) -> None:
        time = VirtualTime()
        time.set()
        task = Task(time)

        PeriodicLoop(task, CLOSER, heartbeat=Beats(), monotonic=time.monotonic).run(time)

        assert ([], []) == (task.passes, time.waits)


class TestBackoff:
    def test_each_failed_pass_in_a_row_doubles_the_wait_up_to_the_cap(self) -> None:
        errors = [RuntimeError(f"down {n}") for n in range(1, 8)]
        task, _, _ = run(CLOSER, 180, lambda time: Task(time, errors))

        assert [
            ("down 1", 2.0, 1),
            ("down 2", 4.0, 2),
            ("down 3", 8.0, 3),
            ("down 4", 16.0, 4),
            ("down 5", 32.0, 5),
            ("down 6", 60.0, 6),
            ("down 7", 60.0, 7),
        ] == task.failures
        assert [0.0, 2.0, 6.0, 14.0, 30.0, 62.0, 122.0] == task.passes

    def test_a_pass_that_went_well_starts_the_backoff_again(self) -> None:
        outcomes: list[PassOutcome | Exception] = [
            RuntimeError("a"),
            RuntimeError("b"),
            PassOutcome.DONE,
            RuntimeError("c"),
        ]
        task, _, _ = run(RECONCILER, 20, lambda time: Task(time, outcomes))

        assert [("a", 4.0, 1), ("b", 8.0, 2), ("c", 4.0, 1)] == task.failures

    def test_a_failed_outcome_backs_off_as_a_raise_does_and_reports_nothing(self) -> None:
        spool = Pacing(interval=1.0, backoff_base=1.0, backoff_cap=5.0)
        failed = [PassOutcome.FAILED] * 4
        task, _, _ = run(spool, 20, lambda time: Task(time, failed))

        assert ([], [0.0, 2.0, 6.0, 11.0, 16.0, 17.0, 18.0, 19.0]) == (task.failures, task.passes)

    @pytest.mark.parametrize(
        ("failures", "wait"), [(1, 4.0), (2, 8.0), (3, 10.0), (6, 10.0), (50, 10.0)]
    )
    def test_the_backoff_never_passes_its_cap(self, failures: int, wait: float) -> None:
        assert wait == RECONCILER.backoff(failures)


class TestTheHeartbeat:
    def test_it_beats_every_time_round_and_says_how_long_the_loop_waits(self) -> None:
        _, time, beats = run(RECONCILER, 2.5, Task)

        assert [1.0, 1.0, 1.0] == time.waits
        assert [0.0, 1.0, 0.0, 1.0, 0.0, 1.0] == beats.aways
