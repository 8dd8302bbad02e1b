"""Sentry is on exactly when SENTRY_DSN is set and the ``sentry`` extra is installed."""

from __future__ import annotations

import importlib.util
import logging

import pytest
import sentry_sdk

from entrypoints.observability import init_sentry
from entrypoints.settings import Settings

DSN = "https://public@sentry.example/1"


class TestSentry:
    def test_without_a_dsn_sentry_stays_off(self) -> None:
        assert init_sentry(Settings.from_env({}), component="worker") is False

    def test_a_dsn_with_the_extra_installed_turns_on_the_rq_integration(self) -> None:
        try:
            assert init_sentry(Settings.from_env({"SENTRY_DSN": DSN}), component="worker")
            client = sentry_sdk.get_client()
            assert client.is_active()
            assert "rq" in client.integrations
        finally:
            sentry_sdk.init(dsn=None)

    def test_a_dsn_without_the_extra_says_so_clearly_and_runs_on(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        real_find_spec = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == "sentry_sdk" else real_find_spec(name, *a),
        )

        with caplog.at_level(logging.ERROR):
            enabled = init_sentry(Settings.from_env({"SENTRY_DSN": DSN}), component="worker")

        assert enabled is False
        assert any("pip install 'livesell[sentry]'" in r.getMessage() for r in caplog.records)
