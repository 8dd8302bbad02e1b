"""``livesell worker --only ...``: which parts run, and the errors an operator gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from entrypoints import runner
from entrypoints.cli import build_parser
from entrypoints.commands.support import UsageError
from entrypoints.commands.worker import DEFAULT_PARTS, parse_parts

LIVESELL = str(Path(sys.executable).with_name("livesell"))


class TestOnly:
    def test_every_part_runs_by_default(self) -> None:
        args = build_parser().parse_args(["worker"])
        assert parse_parts(args.only) == list(DEFAULT_PARTS)
        assert {"webhook", "outbox", "closer"} <= set(DEFAULT_PARTS)

    def test_only_names_the_parts_in_order_once_each(self) -> None:
        assert parse_parts(" Webhook, outbox,webhook ") == ["webhook", "outbox"]

    def test_an_unknown_part_is_a_usage_error_naming_the_choices(self) -> None:
        with pytest.raises(UsageError, match=r"unknown worker part 'inbox'; choose from webhook, "):
            parse_parts("webhook,inbox")

    def test_a_part_missing_from_the_build_is_an_error_only_when_asked_for(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(runner.PARTS, "later", "entrypoints.not_written_yet")
        assert parse_parts("webhook") == ["webhook"]
        with pytest.raises(UsageError, match=r"'later' \(module entrypoints\.not_written_yet\)"):
            parse_parts("webhook,later")

    def test_the_command_line_exits_2_with_one_line_for_a_bad_part(self) -> None:
        done = subprocess.run(
            [LIVESELL, "worker", "--only", "webhook,nope"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"livesell worker: unknown worker part 'nope'; choose from {', '.join(runner.PARTS)}"
        ]

    def test_an_unreachable_redis_stops_the_worker_at_start_with_one_line(
        self, postgres_url: str
    ) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        done = subprocess.run(
            [LIVESELL, "worker", "--only", "webhook"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={
                "PATH": "/usr/bin:/bin",
                "DATABASE_URL": postgres_url,
                "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            },
        )
        assert done.returncode == 1
        assert "livesell worker: Redis is unavailable" in done.stderr.splitlines()[-1]
