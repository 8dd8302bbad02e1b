"""Settings added by ADR 0015 (the lease against the longest send, the rate-limited ceiling) and
the worker's health endpoint (``HEALTH_PORT``, ``HEALTH_STALL_SECONDS``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from entrypoints.container import build
from entrypoints.settings import ConfigError, Settings

TWILIO = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "tw-secret-token",
    "TWILIO_WHATSAPP_NUMBER": "+14155238886",
}


def refused(**environ: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    return caught.value


class TestTheLeaseOutlastsTheLongestSend:
    def test_the_defaults_leave_a_60_second_lease_over_a_10_8_second_send(self) -> None:
        settings = Settings.from_env(TWILIO)

        assert (60.0, pytest.approx(10.8)) == (
            settings.outbox_lease_seconds,
            settings.longest_send_seconds(),
        )

    def test_a_lease_shorter_than_the_twilio_timeout_plus_the_rate_wait_is_refused(self) -> None:
        error = refused(**TWILIO, OUTBOX_LEASE_SECONDS="10")

        assert "OUTBOX_LEASE_SECONDS" == error.variable
        for name in (
            "OUTBOX_SEND_CONCURRENCY",
            "OUTBOX_RATE_LIMIT_PER_SECOND",
            "TWILIO_TIMEOUT_SECONDS",
        ):
            assert name in str(error)
        assert "10.8 s" in str(error)

    def test_a_slow_rate_makes_the_queue_wait_count(self) -> None:
        error = refused(
            **TWILIO,
            OUTBOX_SEND_CONCURRENCY="100",
            OUTBOX_RATE_LIMIT_PER_SECOND="1",
            OUTBOX_LEASE_SECONDS="60",
        )

        assert "= 110 s" in str(error)

    def test_a_lease_just_over_the_longest_send_is_accepted(self) -> None:
        settings = Settings.from_env({**TWILIO, "OUTBOX_LEASE_SECONDS": "10.9"})

        assert 10.9 == settings.outbox_lease_seconds

    def test_the_simulated_provider_counts_its_slowest_call_not_the_twilio_timeout(
        self,
    ) -> None:
        settings = Settings.from_env(
            {
                "OUTBOX_LEASE_SECONDS": "2",
                "OUTBOX_SEND_CONCURRENCY": "30",
                "SIMULATED_LATENCY_MS": "40",
            }
        )
        assert pytest.approx(30 / 80 + 0.06) == settings.longest_send_seconds()

        error = refused(OUTBOX_LEASE_SECONDS="1", SIMULATED_LATENCY_MS="1000")
        assert "SIMULATED_LATENCY_MS" in str(error)


class TestTheRateLimitedCeiling:
    def test_it_defaults_to_an_hour_and_reaches_the_retry_policy(self) -> None:
        policy = build(Settings.from_env({}), store="memory").retry_policy()

        assert timedelta(hours=1) == policy.rate_limited_ceiling

    def test_it_is_read_in_seconds(self) -> None:
        settings = Settings.from_env({"OUTBOX_RATE_LIMITED_MAX_SECONDS": "600"})

        assert (
            timedelta(minutes=10)
            == build(settings, store="memory").retry_policy().rate_limited_ceiling
        )

    @pytest.mark.parametrize("value", ["0", "-5", "soon", "700000"])
    def test_a_bad_ceiling_is_refused_naming_it(self, value: str) -> None:
        assert (
            "OUTBOX_RATE_LIMITED_MAX_SECONDS"
            == refused(OUTBOX_RATE_LIMITED_MAX_SECONDS=value).variable
        )


class TestTheHealthPort:
    def test_it_is_off_when_unset(self) -> None:
        settings = Settings.from_env({})

        assert (None, 60.0) == (settings.health_port, settings.health_stall_seconds)

    def test_a_port_and_a_stall_bound_are_read(self) -> None:
        settings = Settings.from_env({"HEALTH_PORT": "8081", "HEALTH_STALL_SECONDS": "5"})

        assert (8081, 5.0) == (settings.health_port, settings.health_stall_seconds)

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("HEALTH_PORT", "0"),
            ("HEALTH_PORT", "70000"),
            ("HEALTH_PORT", "web"),
            ("HEALTH_STALL_SECONDS", "0"),
            ("HEALTH_STALL_SECONDS", "a minute"),
        ],
    )
    def test_a_bad_value_is_refused_naming_its_variable(self, variable: str, value: str) -> None:
        assert variable == refused(**{variable: value}).variable
