"""Scenario tests through the simulation harness: the whole core, end to end, on fakes."""

from __future__ import annotations

import json

import pytest

from entrypoints.cli import main
from entrypoints.demo.simulation import Scenario, run_scenario


class TestSimulatedLive:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_a_one_hour_live_keeps_every_invariant(self, seed: int) -> None:
        report = run_scenario(Scenario(tenants=2, clients=300, live_minutes=60, seed=seed))

        assert [] == report.violations
        assert report.ok
        assert 2 == report.sessions["opened"]
        assert report.inbound["client"] > 500
        assert report.outbound["queued"] == report.outbound["sent"] + report.outbound["dead"]

    def test_one_tenant_on_each_provider_keeps_every_invariant_and_uses_both(self) -> None:
        report = run_scenario(Scenario(tenants=2, clients=100, meta_tenants=1, seed=7))

        assert report.ok, report.violations
        assert {"twilio", "meta"} == set(report.providers)
        assert report.outbound["sent"] == sum(report.providers.values())
        assert "providers twilio=" in report.render()

    def test_without_tenants_on_meta_the_report_is_as_before(self) -> None:
        report = run_scenario(Scenario(tenants=2, clients=100, seed=7))

        assert not report.providers
        assert "providers" not in report.render()

    def test_a_flaky_provider_retries_then_dead_letters(self) -> None:
        report = run_scenario(
            Scenario(
                tenants=1,
                clients=100,
                live_minutes=20,
                transient_failure_rate=0.5,
                permanent_failure_rate=0.05,
                seed=11,
            )
        )

        assert report.ok, report.violations
        assert report.outbound["retried"] > 0
        assert report.outbound["dead"] > 0

    def test_the_session_closes_once_everyone_is_quiet(self) -> None:
        report = run_scenario(Scenario(tenants=3, clients=60, live_minutes=10, seed=5))

        assert report.ok, report.violations
        assert 3 == report.sessions["opened"]
        assert 3 == report.sessions["closed_by_job"] + report.sessions["closed_stale"]

    def test_the_same_seed_gives_the_same_report(self) -> None:
        first = run_scenario(Scenario(tenants=1, clients=50, live_minutes=10, seed=9)).as_dict()
        second = run_scenario(Scenario(tenants=1, clients=50, live_minutes=10, seed=9)).as_dict()
        first.pop("wallSeconds")
        second.pop("wallSeconds")

        assert first == second


class TestSimulateCommand:
    def test_prints_a_json_report_and_exits_zero(self, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(["simulate", "--tenants", "1", "--clients", "30", "--minutes", "10", "--json"])

        report = json.loads(capsys.readouterr().out)
        assert 0 == code
        assert report["ok"] is True
        assert {"inbound", "sessions", "outbound", "invariants"} <= set(report)

    def test_a_bad_size_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(["simulate", "--tenants", "0"])

        assert 2 == code
        assert "at least one tenant" in capsys.readouterr().err
