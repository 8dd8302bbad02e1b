"""The command line's conventions (ADR 0016): every usage error is one line that starts with the
full sub-command name and exits 2; ``--version`` names the build; ``--help`` imports only the
command it describes; simulations show their progress on stderr; ``livesell health`` probes the
service's health endpoint.

argparse's own errors normally print the usage block before the message
(https://docs.python.org/3/library/argparse.html#argparse.ArgumentParser.error); ours print one
line. ``PORT`` is what Railway injects and health-checks
(https://docs.railway.com/reference/healthchecks).
"""

from __future__ import annotations

import argparse
import http.server
import io
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from domain.errors import InvalidSetting
from domain.tenants import Tenant
from entrypoints import build_info
from entrypoints.cli import COMMANDS, build_parser, main
from entrypoints.commands.health import ports_to_probe
from entrypoints.commands.simulate import Progress
from entrypoints.commands.webhook import resolve_port
from entrypoints.heartbeat import Heartbeat
from entrypoints.metrics import scrape_registry
from entrypoints.runner import Runner
from entrypoints.settings import ConfigError

T0 = datetime(2026, 3, 14, 18, 0, tzinfo=UTC)
HEAVY = {"sqlalchemy", "alembic", "fakeredis", "rq", "redis", "twilio", "phonenumbers"}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    for name in ("LIVESELL_BUILD_COMMIT", "RAILWAY_GIT_COMMIT_SHA", "HEALTH_PORT", "PORT"):
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own exits
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("argv", "line"),
        [
            (
                ("simulate", "--transient-rate", "2"),
                "livesell simulate: --transient-rate must be within 0..1, got 2",
            ),
            (
                ("simulate", "--transient-rate", "0.6", "--permanent-rate", "0.5"),
                "livesell simulate: --transient-rate plus --permanent-rate must not exceed 1",
            ),
            (
                ("simulate", "--engine", "embedded", "--tenants", "3", "--minutes", "90"),
                "livesell simulate: --tenants, --minutes only apply to --engine memory: the "
                "embedded demo runs one shop, one product a minute (--products) and a 1-minute "
                "window",
            ),
            (
                ("simulate", "--clients", "many"),
                "livesell simulate: argument --clients: invalid int value: 'many' "
                "(see livesell simulate --help)",
            ),
            (
                ("tenants", "add", "--name", "Boutique"),
                "livesell tenants add: the following arguments are required: --id "
                "(see livesell tenants add --help)",
            ),
            (
                ("tenants", "add", "--id", "bad id!", "--name", "Boutique"),
                "livesell tenants add: tenant id 'bad id!' is not valid: use 1 to 63 lower-case "
                "letters, digits, '-' or '_', starting with a letter or digit",
            ),
            (
                ("dlq", "replay"),
                "livesell dlq replay: name the dead letter ids to replay (see `livesell dlq "
                "list`), or --all for every one not replayed yet",
            ),
            (
                ("dlq",),
                "livesell dlq: the following arguments are required: ACTION "
                "(see livesell dlq --help)",
            ),
            (
                ("migrate", "--revision", "nope"),
                "livesell migrate: --revision 'nope': Can't locate revision identified by 'nope'",
            ),
            (
                ("health", "--port", "0"),
                "livesell health: --port must be a port number in 1..65535, got '0'",
            ),
        ],
    )
    def test_a_usage_error_is_one_line_with_the_full_command_name_and_exit_2(
        self, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], line: str
    ) -> None:
        code, out, err = run(capsys, *argv)

        assert (2, "", [line]) == (code, out, err.splitlines())

    def test_an_unknown_command_is_one_line_too(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = run(capsys, "tenant", "list")

        assert 2 == code
        assert 1 == len(err.splitlines())
        assert err.startswith("livesell: argument COMMAND: invalid choice: 'tenant'")

    def test_a_port_that_is_not_a_number_names_the_variable(self) -> None:
        with pytest.raises(ConfigError, match=r"^PORT: must be a port number in 1..65535"):
            resolve_port(None, {"PORT": "$PORT"})


class TestTheWebhookPort:
    def test_port_comes_from_the_option_then_the_environment_then_8000(self) -> None:
        assert [9000, 4321, 8000, 8000] == [
            resolve_port(9000, {"PORT": "4321"}),
            resolve_port(None, {"PORT": " 4321 "}),
            resolve_port(None, {"PORT": ""}),
            resolve_port(None, {}),
        ]


class TestTenantIds:
    @pytest.mark.parametrize("tenant_id", ["shop-a", "boutique_lea", "7", "a" * 63, "shop-2026"])
    def test_lower_case_letters_digits_dashes_and_underscores_are_accepted(
        self, tenant_id: str
    ) -> None:
        assert tenant_id == Tenant.register(id=tenant_id, name="Boutique", now=T0).id

    @pytest.mark.parametrize(
        "tenant_id", ["bad id!", "Shop-A", "-shop", "_shop", "a" * 64, "shop/a", "shop.a", "é"]
    )
    def test_anything_else_is_refused_naming_the_rule(self, tenant_id: str) -> None:
        with pytest.raises(InvalidSetting, match="lower-case letters, digits, '-' or '_'"):
            Tenant.register(id=tenant_id, name="Boutique", now=T0)


class TestVersionAndBuildInfo:
    def test_version_prints_the_release_and_an_unknown_commit(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert (0, f"livesell {build_info.version()} (commit unknown)\n", "") == run(
            capsys, "--version"
        )

    def test_the_commit_comes_from_the_build_variable_then_railways(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RAILWAY_GIT_COMMIT_SHA", "ABCDEF1234567890")
        railway = build_info.commit()
        monkeypatch.setenv("LIVESELL_BUILD_COMMIT", "5938c75e1d2a")

        assert ("abcdef1234567890", "5938c75e1d2a") == (railway, build_info.commit())

    def test_a_commit_that_is_not_hex_is_ignored_not_printed(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LIVESELL_BUILD_COMMIT", "$(git rev-parse HEAD)")

        assert build_info.commit() is None
        assert build_info.describe().endswith("(commit unknown)")

    def test_the_metric_names_the_version_and_the_commit(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LIVESELL_BUILD_COMMIT", "5938c75")

        text = generate_latest(scrape_registry()).decode()

        line = f'livesell_build_info{{commit="5938c75",version="{build_info.version()}"}} 1.0'
        assert line in text.splitlines()

    def test_the_worker_s_start_up_line_carries_the_version_and_commit(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LIVESELL_BUILD_COMMIT", "5938c75")

        class Done:
            name = "done"
            heartbeat = Heartbeat()

            def start(self) -> None:
                pass

            def run(self, stop: threading.Event) -> None:
                stop.wait(0.5)  # the line is not logged once a stop has been asked for
                stop.set()

        with caplog.at_level(logging.INFO):
            assert 0 == Runner([Done()], grace_seconds=5).run()

        (started,) = [r for r in caplog.records if r.getMessage() == "Worker started successfully"]
        context = started.context  # type: ignore[attr-defined]
        assert (build_info.version(), "5938c75") == (context["version"], context["commit"])

    def test_the_webhook_s_start_up_line_carries_the_version_and_commit(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from entrypoints.container import build
        from entrypoints.settings import Settings
        from entrypoints.webhook_app import create_app
        from tests.support.testclient import TestClient

        monkeypatch.setenv("LIVESELL_BUILD_COMMIT", "5938c75")
        container = build(Settings.from_env({}), store="memory")

        with (
            caplog.at_level(logging.INFO),
            TestClient(create_app(container, verify_signatures=False)),
        ):
            pass

        (started,) = [r for r in caplog.records if r.getMessage() == "Webhook started successfully"]
        context = started.context  # type: ignore[attr-defined]
        assert (build_info.version(), "5938c75") == (context["version"], context["commit"])


class TestHelp:
    def test_help_lists_every_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run(capsys, "--help")

        assert 0 == code
        listed = re.findall(r"^ {4}([a-z]+) ", out, re.MULTILINE)
        assert list(COMMANDS) == listed

    def test_the_one_line_summaries_are_the_commands_own(self) -> None:
        parser = build_parser()  # every command fully registered
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]

        own = {action.dest: action.help for action in commands._choices_actions}
        assert {name: summary for name, (_module, summary) in COMMANDS.items()} == own

    def test_help_imports_none_of_the_engines_or_adapters(self) -> None:
        imported = modules_after("--help")

        assert set() == HEAVY & imported
        ours = {m for m in imported if m.split(".")[0] in {"entrypoints", "adapters", "domain"}}
        assert {"entrypoints", "entrypoints.cli"} == ours

    def test_a_command_s_help_imports_that_command_only(self) -> None:
        imported = modules_after("health", "--help")

        commands = {m for m in imported if m.startswith("entrypoints.commands.")}
        assert {"entrypoints.commands.health", "entrypoints.commands.support"} == commands

    def test_what_the_commands_share_imports_only_the_standard_library(self) -> None:
        script = (
            "import sys\n"
            "before = set(sys.modules)\n"
            "import entrypoints.commands.support\n"
            "print('\\n'.join(sorted(set(sys.modules) - before)), file=sys.stderr)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )

        outside = {m for m in done.stderr.split() if m.split(".")[0] not in sys.stdlib_module_names}
        assert {"entrypoints", "entrypoints.commands", "entrypoints.commands.support"} == outside


def modules_after(*argv: str) -> set[str]:
    """The modules a fresh interpreter has loaded once ``livesell *argv`` has run."""
    script = (
        "import sys\n"
        "from entrypoints.cli import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(done.stderr.split())


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestProgress:
    def test_a_short_run_shows_nothing(self) -> None:
        stream = io.StringIO()
        progress = Progress(stream, label="livesell simulate", after=60)

        for done in range(100):
            progress(done, 100)
        progress.finish()

        assert "" == stream.getvalue()

    def test_off_a_terminal_a_long_run_prints_whole_lines(self) -> None:
        stream = io.StringIO()
        progress = Progress(stream, label="livesell simulate", after=0, every=3600)

        progress(250, 1000)
        progress(500, 1000)  # within `every`: not printed
        progress(1000, 1000)  # the end is always printed

        lines = stream.getvalue().splitlines()
        assert 2 == len(lines)
        assert lines[0].startswith("livesell simulate:  25% (250 of 1,000 steps")
        assert lines[1].startswith("livesell simulate: 100% (1,000 of 1,000 steps")

    def test_on_a_terminal_a_bar_is_redrawn_in_place(self) -> None:
        stream = _Terminal()
        progress = Progress(stream, label="livesell simulate", after=0)

        progress(1000, 1000)
        progress.finish()

        text = stream.getvalue()
        assert text.startswith("\rlivesell simulate [" + "#" * Progress.WIDTH + "] 100%")
        assert text.endswith("\n")


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    _Health.status = 200


class TestHealthProbe:
    def test_the_worker_port_comes_first_then_the_webhook_port(self) -> None:
        assert [8081, 8000] == ports_to_probe(None, {"HEALTH_PORT": "8081", "PORT": "8000"})
        assert [8000] == ports_to_probe(None, {"PORT": "8000"})
        assert [9] == ports_to_probe(9, {"HEALTH_PORT": "8081"})

    def test_healthy_when_one_of_the_ports_answers_200(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        health_server: http.server.HTTPServer,
    ) -> None:
        monkeypatch.setenv("HEALTH_PORT", "9")  # nothing listens there: the webhook's PORT does
        monkeypatch.setenv("PORT", str(health_server.server_port))

        code, out, err = run(capsys, "health")

        assert (0, "") == (code, err)
        assert out.endswith("/healthz 200\n")

    def test_unhealthy_in_one_line_naming_each_answer(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        health_server: http.server.HTTPServer,
    ) -> None:
        _Health.status = 503
        port = health_server.server_port
        monkeypatch.setenv("HEALTH_PORT", str(port))

        code, _, err = run(capsys, "health")

        assert [1, [f"livesell health: unhealthy: http://127.0.0.1:{port}/healthz 503"]] == [
            code,
            err.splitlines(),
        ]

    def test_no_port_at_all_is_unhealthy_and_says_what_to_set(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run(capsys, "health")

        assert 1 == code
        assert "set HEALTH_PORT (worker) or PORT (webhook)" in err
