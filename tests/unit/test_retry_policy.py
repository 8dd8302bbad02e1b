"""The retry policy (SPEC §3, ADR 0003): 1, 2, 4, 8 s then give up on the 5th failure; 30 s cap;
a longer Retry-After honoured whole (ADR 0015 supersedes ADR 0003's "still capped at 30 s")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from domain.errors import InvalidSetting
from domain.retry import GiveUp, RetryAt, RetryPolicy


def seconds(*values: float) -> list[timedelta]:
    return [timedelta(seconds=v) for v in values]


class TestTheDefaultPolicy:
    def test_the_schedule_is_1_2_4_8_seconds(self) -> None:
        assert seconds(1, 2, 4, 8) == RetryPolicy().schedule()

    def test_each_of_the_first_four_failures_is_retried_after_its_delay(self) -> None:
        policy = RetryPolicy()

        decisions = [policy.decide(attempt) for attempt in (1, 2, 3, 4)]

        assert [RetryAt(d) for d in seconds(1, 2, 4, 8)] == decisions

    def test_the_fifth_failure_gives_up(self) -> None:
        assert GiveUp() == RetryPolicy().decide(5)

    def test_attempts_past_the_maximum_give_up(self) -> None:
        assert GiveUp() == RetryPolicy().decide(6)

    def test_attempts_remaining_count_down_to_zero(self) -> None:
        policy = RetryPolicy()

        assert [4, 3, 2, 1, 0, 0] == [policy.attempts_remaining(n) for n in range(1, 7)]


class TestARaisedMaximum:
    def test_the_16_second_step_is_reached_then_the_30_second_cap(self) -> None:
        assert seconds(1, 2, 4, 8, 16, 30, 30) == RetryPolicy(max_attempts=8).schedule()

    def test_the_delay_stays_capped_for_very_late_attempts(self) -> None:
        assert timedelta(seconds=30) == RetryPolicy(max_attempts=100).delay_after(99)

    def test_a_single_attempt_policy_gives_up_on_the_first_failure(self) -> None:
        assert ([], GiveUp()) == (RetryPolicy(max_attempts=1).schedule(), RetryPolicy(1).decide(1))


class TestRetryAfter:
    def test_a_longer_retry_after_is_honoured(self) -> None:
        assert RetryAt(timedelta(seconds=10)) == RetryPolicy().decide(1, timedelta(seconds=10))

    def test_a_retry_after_beyond_the_cap_is_honoured_whole(self) -> None:
        assert RetryAt(timedelta(minutes=5)) == RetryPolicy().decide(1, timedelta(minutes=5))

    def test_a_shorter_retry_after_does_not_shorten_the_backoff(self) -> None:
        assert RetryAt(timedelta(seconds=4)) == RetryPolicy().decide(3, timedelta(seconds=1))

    def test_a_retry_after_does_not_buy_an_attempt_past_the_maximum(self) -> None:
        assert GiveUp() == RetryPolicy().decide(5, timedelta(seconds=2))


class TestInvalidSettings:
    @pytest.mark.parametrize("max_attempts", [0, -1, 101])
    def test_max_attempts_out_of_range_is_rejected(self, max_attempts: int) -> None:
        with pytest.raises(InvalidSetting):
            RetryPolicy(max_attempts=max_attempts)

    @pytest.mark.parametrize("max_attempts", [5.0, "5", True, None])
    def test_max_attempts_that_is_not_a_whole_number_is_rejected(self, max_attempts: Any) -> None:
        with pytest.raises(InvalidSetting):
            RetryPolicy(max_attempts=max_attempts)

    @pytest.mark.parametrize(
        ("base", "cap"),
        [
            (timedelta(0), timedelta(seconds=30)),
            (timedelta(seconds=-1), timedelta(seconds=30)),
            (timedelta(seconds=10), timedelta(seconds=5)),
        ],
    )
    def test_a_non_positive_base_or_a_cap_below_the_base_is_rejected(
        self, base: timedelta, cap: timedelta
    ) -> None:
        with pytest.raises(InvalidSetting):
            RetryPolicy(base=base, cap=cap)

    def test_attempt_numbers_start_at_one(self) -> None:
        with pytest.raises(InvalidSetting):
            RetryPolicy().delay_after(0)
