"""The accelerated clock the embedded demo runs on."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from adapters.system.clock import AcceleratedClock


class TestAcceleratedClock:
    def test_virtual_time_runs_factor_times_faster_than_wall_time(self) -> None:
        clock = AcceleratedClock(100, start=datetime(2026, 1, 1, tzinfo=UTC))
        first = clock.now()
        time.sleep(0.2)
        elapsed = clock.now() - first

        assert timedelta(seconds=20) <= elapsed < timedelta(seconds=60)

    def test_it_starts_at_the_given_instant_and_is_timezone_aware(self) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        clock = AcceleratedClock(10, start=start)

        now = clock.now()
        assert start <= now < start + timedelta(seconds=5)
        assert UTC == now.tzinfo

    def test_elapsed_virtual_time_is_what_now_has_moved_since_the_start(self) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC)
        clock = AcceleratedClock(50, start=start)
        time.sleep(0.1)

        elapsed = clock.elapsed()
        assert timedelta(seconds=5) <= elapsed <= clock.now() - start

    def test_a_non_positive_factor_is_refused(self) -> None:
        with pytest.raises(ValueError, match="factor must be positive"):
            AcceleratedClock(0)
