"""The newcomer's demo: ``livesell simulate --engine embedded`` as a real process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from entrypoints.embedded import EmbeddedOptions, run_embedded


class TestEmbeddedDemo:
    def test_the_demo_runs_the_real_code_path_and_every_invariant_holds(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "entrypoints.cli", "simulate", "--engine", "embedded", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert 0 == result.returncode, result.stderr[-2000:]
        report = json.loads(result.stdout)
        assert report["ok"] is True, report["violations"]
        assert (1, 1) == (report["sessions"]["opened"], report["sessions"]["closed_by_job"])
        assert 2 == report["inbound"]["rejected"]
        assert report["outbound"]["queued"] == (
            report["outbound"]["sent"] + report["outbound"]["dead"]
        )

    @pytest.mark.parametrize("seed", [1, 2])
    def test_a_flaky_provider_still_ends_every_message_sent_or_dead(self, seed: int) -> None:
        report = run_embedded(
            EmbeddedOptions(clients=20, products=2, transient_failure_rate=0.4, seed=seed)
        )

        assert report.ok, report.violations
        assert report.outbound["retried"] > 0
