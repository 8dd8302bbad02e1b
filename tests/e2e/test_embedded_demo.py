"""The newcomer's demo: ``livesell simulate --engine embedded`` as a real process; a seed gives
the same counts on every run, and the README shows them; both engines check the same invariants."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from entrypoints.cli import main
from entrypoints.closer import SessionCloser
from entrypoints.demo.embedded import EmbeddedOptions, run_embedded
from entrypoints.demo.invariants import INVARIANTS
from entrypoints.demo.scenario import Scenario
from entrypoints.demo.simulation import run_scenario


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

    def test_a_worker_part_that_dies_fails_the_run_at_once(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def die(_self: SessionCloser, _stop: threading.Event) -> None:
            raise RuntimeError("the closing job fell over")

        monkeypatch.setattr(SessionCloser, "run", die)

        report = run_embedded(EmbeddedOptions(clients=5, products=1, timeout_seconds=30))

        assert not report.ok
        assert report.failures[-1] == (
            "the worker parts did not stop cleanly (runner exit code 1)"
        ), report.failures
        assert report.wall_seconds < 20
        assert report.render().endswith("RUN FAILED")


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_sample() -> list[str]:
    """The demo report shown in the README, without its last line (the wall time varies)."""
    text = README.read_text()
    start = text.index("```\nlivesell demo (embedded")
    block = text[start + 4 : text.index("```", start + 4)]
    return block.strip().splitlines()[:-1]


class TestTheSeededDemo:
    def test_the_same_seed_gives_the_same_counts_and_the_readme_shows_them(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        reports = []
        for _ in range(2):  # `make demo`: livesell simulate --engine embedded
            assert 0 == main(["simulate", "--engine", "embedded", "--no-progress"])
            reports.append(capsys.readouterr().out.strip().splitlines()[:-1])

        assert reports[0] == reports[1]
        assert _readme_sample() == reports[0]

    def test_both_engines_check_the_same_invariants_and_the_readme_says_so(self) -> None:
        memory = run_scenario(Scenario())
        embedded = run_embedded(EmbeddedOptions(clients=10, products=1))

        names = [invariant.name for invariant in INVARIANTS]
        assert (names, names) == (list(memory.invariants), list(embedded.invariants))
        text = " ".join(README.read_text().split())
        assert f"Both engines check the same {len(names)} invariants" in text
