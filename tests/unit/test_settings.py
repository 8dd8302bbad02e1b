"""Settings (SPEC §4): every variable typed and validated; a bad value names the variable; a
secret is never printed."""

from __future__ import annotations

import itertools
import logging

import pytest

from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.twilio.provider import TwilioMessagingProvider
from entrypoints.cli import main
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


class TestDefaults:
    def test_an_empty_environment_gives_the_documented_defaults(self) -> None:
        settings = Settings.from_env({})

        assert (45, 100, 5, 5.0, 10.0, 100, 80.0, "simulated", "text") == (
            settings.live_session_inactivity_window_minutes,
            settings.outbox_batch_size,
            settings.outbox_max_attempts,
            settings.outbox_poll_interval_seconds,
            settings.close_interval_minutes,
            settings.close_batch_limit,
            settings.outbox_rate_limit_per_second,
            settings.messaging_provider,
            settings.log_format,
        )
        assert settings.is_sqlite

    def test_blank_values_count_as_unset(self) -> None:
        assert (
            45
            == Settings.from_env(
                {"LIVE_SESSION_INACTIVITY_WINDOW_MINUTES": "  "}
            ).live_session_inactivity_window_minutes
        )

    def test_twilio_is_the_default_provider_when_its_variables_are_set(self) -> None:
        assert "twilio" == Settings.from_env(TWILIO).messaging_provider


class TestABadValueNamesTheVariable:
    @pytest.mark.parametrize("value", ["0", "1441", "-1", "45.5", "forty"])
    def test_an_inactivity_window_out_of_1_to_1440_is_refused(self, value: str) -> None:
        error = refused(LIVE_SESSION_INACTIVITY_WINDOW_MINUTES=value)

        assert "LIVE_SESSION_INACTIVITY_WINDOW_MINUTES" == error.variable
        assert str(error).startswith("LIVE_SESSION_INACTIVITY_WINDOW_MINUTES: ")

    @pytest.mark.parametrize("value", ["1", "1440"])
    def test_the_inactivity_window_bounds_are_allowed(self, value: str) -> None:
        settings = Settings.from_env({"LIVE_SESSION_INACTIVITY_WINDOW_MINUTES": value})

        assert int(value) == settings.live_session_inactivity_window_minutes

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("OUTBOX_BATCH_SIZE", "abc"),
            ("OUTBOX_BATCH_SIZE", "0"),
            ("OUTBOX_MAX_ATTEMPTS", "0"),
            ("OUTBOX_POLL_INTERVAL_SECONDS", "soon"),
            ("OUTBOX_RATE_LIMIT_PER_SECOND", "0"),
            ("CLOSE_BATCH_LIMIT", "-5"),
            ("WEBHOOK_WORKER_CONCURRENCY", "many"),
            ("METRICS_PORT", "70000"),
            ("LOG_FORMAT", "xml"),
            ("SIMULATED_TRANSIENT_FAILURE_RATE", "1.5"),
            ("REDIS_URL", "http://127.0.0.1:6379"),
            ("DATABASE_URL", "mysql://localhost/livesell"),
            ("TWILIO_WHATSAPP_NUMBER", "not-a-number"),
            ("WEBHOOK_PUBLIC_BASE_URL", "ftp://example.com"),
        ],
    )
    def test_a_bad_value_is_refused_naming_its_variable(self, variable: str, value: str) -> None:
        error = refused(**{variable: value})

        assert variable == error.variable
        assert str(error).startswith(f"{variable}: ")

    def test_batch_size_abc_says_what_is_allowed(self) -> None:
        assert "OUTBOX_BATCH_SIZE: must be a whole number in 1..1000, got 'abc'" == str(
            refused(OUTBOX_BATCH_SIZE="abc")
        )

    def test_twilio_without_credentials_names_the_missing_variables(self) -> None:
        error = refused(MESSAGING_PROVIDER="twilio", TWILIO_ACCOUNT_SID="AC123")

        assert "MESSAGING_PROVIDER" == error.variable
        assert "TWILIO_AUTH_TOKEN" in str(error)
        assert "TWILIO_WHATSAPP_NUMBER" in str(error)
        assert "TWILIO_ACCOUNT_SID" not in str(error)

    def test_failure_rates_adding_up_past_one_are_refused(self) -> None:
        error = refused(
            SIMULATED_TRANSIENT_FAILURE_RATE="0.6", SIMULATED_PERMANENT_FAILURE_RATE="0.5"
        )

        assert "SIMULATED_PERMANENT_FAILURE_RATE" == error.variable

    def test_a_config_error_is_a_value_error(self) -> None:
        assert issubclass(ConfigError, ValueError)


class TestDatabaseUrls:
    @pytest.mark.parametrize(
        "url",
        [
            "postgres://app:pw@db.neon.tech/livesell",
            "postgresql://app:pw@db.neon.tech/livesell",
            "postgresql+psycopg://app:pw@db.neon.tech/livesell",
        ],
    )
    def test_a_postgres_url_is_normalised_to_psycopg(self, url: str) -> None:
        settings = Settings.from_env({"DATABASE_URL": url})

        assert "postgresql+psycopg://app:pw@db.neon.tech/livesell" == settings.database_url
        assert not settings.is_sqlite

    def test_a_sqlite_url_is_kept(self) -> None:
        assert (
            "sqlite:////tmp/x.db"
            == Settings.from_env({"DATABASE_URL": "sqlite:////tmp/x.db"}).database_url
        )


class TestSecrets:
    def environ(self) -> dict[str, str]:
        return {
            **TWILIO,
            "DATABASE_URL": "postgres://app:db-secret-pw@db.neon.tech/livesell",
            "REDIS_URL": "rediss://default:redis-secret-pw@up.upstash.io:6379",
            "REDIS_TOKEN": "redis-secret-token",
            "SENTRY_DSN": "https://sentry-secret@o1.ingest.sentry.io/1",
        }

    SECRETS = (
        "tw-secret-token",
        "db-secret-pw",
        "redis-secret-pw",
        "redis-secret-token",
        "sentry-secret",
    )

    def test_describe_masks_every_secret(self) -> None:
        described = repr(Settings.from_env(self.environ()).describe())

        assert [] == [s for s in self.SECRETS if s in described]

    def test_describe_keeps_what_an_operator_needs(self) -> None:
        described = Settings.from_env(self.environ()).describe()

        assert (
            "postgresql+psycopg://app:***@db.neon.tech/livesell",
            "***",
            "***",
            "+14155238886",
            45,
        ) == (
            described["DATABASE_URL"],
            described["TWILIO_AUTH_TOKEN"],
            described["SENTRY_DSN"],
            described["TWILIO_WHATSAPP_NUMBER"],
            described["LIVE_SESSION_INACTIVITY_WINDOW_MINUTES"],
        )

    def test_the_settings_repr_shows_no_token_or_dsn(self) -> None:
        text = repr(Settings.from_env(self.environ()))

        assert [] == [
            s for s in ("tw-secret-token", "redis-secret-token", "sentry-secret") if s in text
        ]

    def test_a_refused_database_url_does_not_print_its_password(self) -> None:
        error = refused(DATABASE_URL="mysql://app:db-secret-pw@localhost/livesell")

        assert "db-secret-pw" not in str(error)


INCOMPLETE = [
    dict(subset) for size in (1, 2) for subset in itertools.combinations(TWILIO.items(), size)
]


class TestNoSilentSimulatedProvider:
    """ADR 0011: an incomplete Twilio set never reads as "simulated"."""

    @pytest.mark.parametrize("environ", INCOMPLETE, ids=lambda e: "+".join(sorted(e)))
    def test_an_incomplete_twilio_set_is_refused_where_messages_are_sent_naming_the_missing_one(
        self, environ: dict[str, str]
    ) -> None:
        settings = Settings.from_env(environ)
        first_missing = next(name for name in TWILIO if name not in environ)

        with pytest.raises(ConfigError) as caught:
            build(settings, store="memory").messaging_provider()

        assert "twilio" == settings.messaging_provider
        assert first_missing == caught.value.variable
        assert str(caught.value).startswith(f"{first_missing}: is required to send with Twilio")
        assert "tw-secret-token" not in str(caught.value)

    def test_the_seen_case_sid_and_token_without_a_number_stops_the_worker_at_start(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.delenv("MESSAGING_PROVIDER", raising=False)
        monkeypatch.delenv("TWILIO_WHATSAPP_NUMBER", raising=False)
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", TWILIO["TWILIO_ACCOUNT_SID"])
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO["TWILIO_AUTH_TOKEN"])

        code = main(["worker", "--check-config"])

        assert 2 == code
        assert "TWILIO_WHATSAPP_NUMBER: is required to send with Twilio" in capsys.readouterr().err

    def test_a_process_that_sends_nothing_starts_with_the_webhook_token_alone(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for name in ("MESSAGING_PROVIDER", "TWILIO_ACCOUNT_SID", "TWILIO_WHATSAPP_NUMBER"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO["TWILIO_AUTH_TOKEN"])

        code = main(["worker", "--only", "webhook,closer", "--check-config"])

        assert 0 == code, capsys.readouterr().err

    def test_the_complete_set_selects_twilio(self) -> None:
        provider = build(Settings.from_env(TWILIO), store="memory").messaging_provider()

        assert isinstance(provider, TwilioMessagingProvider)

    def test_simulated_beside_twilio_credentials_must_be_asked_for_and_warns_at_start(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        settings = Settings.from_env({**TWILIO, "MESSAGING_PROVIDER": "simulated"})

        with caplog.at_level(logging.WARNING, logger="livesell.container"):
            provider = build(settings, store="memory").messaging_provider()

        assert isinstance(provider, SimulatedMessagingProvider)
        assert [
            "Simulated messaging provider selected although Twilio is configured: outbound "
            "messages are marked sent and go nowhere"
        ] == [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert "tw-secret-token" not in caplog.text

    def test_without_any_twilio_variable_the_simulated_provider_is_quiet(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="livesell.container"):
            provider = build(Settings.from_env({}), store="memory").messaging_provider()

        assert isinstance(provider, SimulatedMessagingProvider)
        assert [] == caplog.records
