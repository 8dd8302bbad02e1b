"""The installed package is the product: the image's file set and install, reproduced, then run.

No container engine runs on these machines (DEPLOYMENT.md), so this test is the image's check: it
copies the build context (``.dockerignore``) the way the Dockerfile's COPY lines do into a
temporary directory outside the checkout, runs the Dockerfile's RUN lines there against a fresh
virtual environment (``/opt/venv`` in the image), and runs the commands an operator and Railway
run, from another directory, with nothing of the checkout on ``sys.path``: ``livesell --version``,
``livesell migrate`` on SQLite and on a fresh Postgres database, ``livesell simulate --engine
embedded``, ``livesell worker --check-config`` and ``livesell health``.

Before ADR 0016 ``livesell migrate`` failed exactly here: the migrations were looked up beside
the code, which in site-packages is the Alembic library's own folder.

References: https://docs.docker.com/reference/dockerfile/ (RUN, COPY, ENV, WORKDIR, USER),
https://pip.pypa.io/en/stable/topics/secure-installs/ (``--require-hashes``: every requirement
pinned with ``==`` and hashed; ``--no-deps`` with a complete lock file).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import attrs
import pytest

from adapters.sqlalchemy import migrations
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.support import dockerfile

# The reproduction installs every dependency: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
IMAGE_VENV = "/opt/venv"
REVISIONS = sorted(p.name for p in (ROOT / "alembic" / "versions").glob("*.py"))
# The image's ENV that a reproduction keeps out: pip's cache is off in the image (a smaller
# layer); here it makes the run take the wheels the machine already has.
NOT_REPRODUCED_ENV = frozenset({"PIP_NO_CACHE_DIR"})
# RUN lines that change the system rather than the application (the image's user).
SYSTEM_RUN = re.compile(r"^(groupadd|useradd)\b")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _expand(text: str, values: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), ""), text)


@attrs.frozen
class Image:
    """A reproduction of the image: its virtual environment and the environment it runs with."""

    venv: Path
    env: dict[str, str]
    workdir: Path  # where the container's command runs (not the copied sources)
    runs: list[str]
    copied: list[str]

    def livesell(self, *argv: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "livesell"), *argv],
            cwd=self.workdir,
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


def _base_env(venv: Path, home: Path, system_bin: Path) -> dict[str, str]:
    """A clean environment: no PYTHONPATH, none of the test run's livesell variables; ``python``
    is the machine's Python 3.11 (the base image's ``python``), not the test run's venv."""
    keep = {"LANG", "LC_ALL", "TMPDIR", "PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        PATH=f"{venv / 'bin'}:{system_bin}:/usr/local/bin:/usr/bin:/bin",
        VIRTUAL_ENV=str(venv),
        HOME=str(home),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        # the machine's pip cache, though HOME is the image user's own
        PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
    )
    return env


BUILD_REQUIRES = ("setuptools>=68", "wheel")  # pyproject.toml's build-system.requires


def _wheelhouse() -> Path:
    """The lock file's wheels (and the build backend's), downloaded once per machine and lock
    file, so the reproduction installs offline: the Dockerfile's own pip commands, with
    ``--no-index --find-links`` given by the environment. ``--require-hashes`` still checks
    every file against the lock."""
    key = (ROOT / "requirements.lock").read_bytes() + repr(BUILD_REQUIRES).encode()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    house = cache / "livesell-test-wheels" / hashlib.sha256(key).hexdigest()[:16]
    complete = house / ".complete"
    if not complete.exists():
        house.mkdir(parents=True, exist_ok=True)
        for argv in (
            ["--no-deps", "--require-hashes", "-r", str(ROOT / "requirements.lock")],
            list(BUILD_REQUIRES),
        ):
            subprocess.run(
                [
                    *(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:"),
                    *("-d", str(house), *argv),
                ],
                check=True,
                capture_output=True,
                timeout=900,
            )
        complete.touch()
    return house


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    base = tmp_path_factory.mktemp("image")
    assert ROOT not in base.parents, "the reproduction must live outside the checkout"
    venv, home, system_bin = base / "venv", base / "home", base / "system-bin"
    home.mkdir()
    system_bin.mkdir()
    (system_bin / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = _base_env(venv, home, system_bin)
    # Where pip finds the files, and no bytecode compiled at install (the image compiles it;
    # nothing here depends on it): the commands themselves are the Dockerfile's.
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(_wheelhouse()), PIP_COMPILE="false")
    args: dict[str, str] = {}
    workdir = base / "app"
    runs: list[str] = []
    copied: list[str] = []
    for step in dockerfile.instructions(ROOT / "Dockerfile"):
        if step.keyword == "ARG":
            name, _, default = step.arguments.partition("=")
            args[name] = _expand(shlex.split(default)[0] if default else "", {**args, **env})
        elif step.keyword == "ENV":
            for pair in shlex.split(step.arguments):
                name, _, value = pair.partition("=")
                if name not in NOT_REPRODUCED_ENV:
                    value = _expand(value, {**args, **env}).replace(IMAGE_VENV, str(venv))
                    env[name] = value
        elif step.keyword == "WORKDIR":
            workdir = base / step.arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif step.keyword == "COPY":
            copied += [str(f) for f in dockerfile.copy_sources(ROOT, step.arguments, workdir)]
        elif step.keyword == "RUN":
            if SYSTEM_RUN.match(step.arguments):
                continue
            command = step.arguments.replace(IMAGE_VENV, str(venv))
            runs.append(command)
            done = subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert 0 == done.returncode, f"RUN {command}\n{done.stderr[-3000:]}"
    return Image(venv=venv, env=env, workdir=workdir, runs=runs, copied=copied)


class TestTheImageIsBuiltAsTheDockerfileSays:
    def test_dependencies_come_from_the_lock_file_before_any_code_is_copied(self) -> None:
        steps = dockerfile.instructions(ROOT / "Dockerfile")
        copies = [s.arguments for s in steps if s.keyword == "COPY"]
        runs = [s.arguments for s in steps if s.keyword == "RUN"]

        assert "requirements.lock ./" == copies[0]
        assert "--require-hashes -r requirements.lock" in runs[0]
        assert "--no-deps" in runs[0]
        code_copies = [c for c in copies[1:] if "requirements" not in c]
        assert code_copies, "the code is copied after the dependency layer"
        assert "pip install --no-deps ." in runs[1]

    def test_the_image_runs_as_a_non_root_user_with_a_healthcheck(self) -> None:
        steps = {s.keyword: s.arguments for s in dockerfile.instructions(ROOT / "Dockerfile")}

        assert not steps["USER"].startswith(("root", "0"))
        assert '["livesell", "health"]' in steps["HEALTHCHECK"]

    def test_the_build_context_leaves_out_the_tests_the_venv_and_git(self) -> None:
        context = {str(p).split("/")[0] for p in dockerfile.build_context(ROOT)}

        assert {"domain", "alembic", "requirements.lock", "setup.py"} <= context
        assert not {"tests", ".venv", ".git", "bench"} & context

    def test_the_lock_file_pins_and_hashes_every_requirement(self) -> None:
        lock = (ROOT / "requirements.lock").read_text()
        entries = re.findall(
            r"^([A-Za-z0-9_.\-]+)==\S+ \\\n((?:\s+--hash=sha256:\w+.*\n)+)", lock, re.M
        )
        names = re.findall(r"^[A-Za-z0-9_.\-]+", lock, re.M)

        assert len(names) > 30
        assert len(names) == len(entries)
        assert {"sqlalchemy", "alembic", "rq", "twilio", "sentry-sdk", "mako", "greenlet"} <= {
            n.lower() for n in names
        }
        # the demo extra too: the image runs the embedded demo (ADR 0016)
        assert "fakeredis" in {n.lower() for n in names}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    directory = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(directory), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = directory.glob("livesell-*.whl")
    return zipfile.ZipFile(built)


class TestTheWheel:
    def test_the_wheel_carries_every_revision_and_no_alembic_folder(
        self, wheel: zipfile.ZipFile
    ) -> None:
        names = wheel.namelist()

        assert REVISIONS == sorted(
            n.rsplit("/", 1)[1] for n in names if n.startswith("livesell_migrations/versions/")
        )
        assert {"livesell_migrations/env.py", "livesell_migrations/script.py.mako"} <= set(names)
        assert not [n for n in names if n.startswith("alembic/")], "would shadow the library"

    def test_the_wheel_ships_the_demo_with_fakeredis_in_its_demo_extra_only(
        self, wheel: zipfile.ZipFile
    ) -> None:
        names = set(wheel.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in wheel.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist: ")
        ]

        assert {"entrypoints/demo/embedded.py", "entrypoints/demo/invariants.py"} <= names
        assert ['fakeredis[lua]==2.41.0; extra == "demo"'] == [
            r for r in requires if r.startswith("fakeredis")
        ]


class TestTheInstalledPackage:
    def test_the_code_and_the_migrations_are_the_installed_ones(self, image: Image) -> None:
        done = subprocess.run(
            [
                str(image.venv / "bin" / "python"),
                "-c",
                "import entrypoints, alembic; from adapters.sqlalchemy import migrations as m;"
                "print(entrypoints.__file__); print(m.script_location()); print(alembic.__file__)",
            ],
            cwd=image.workdir,
            env=image.env,
            capture_output=True,
            text=True,
            check=True,
        )
        code, scripts, library = done.stdout.splitlines()

        site = str(image.venv / "lib")
        assert [True, True, True] == [p.startswith(site) for p in (code, scripts, library)]
        assert scripts.endswith("site-packages/livesell_migrations")
        assert REVISIONS == sorted(p.name for p in (Path(scripts) / "versions").glob("*.py"))

    def test_version_names_the_release_and_the_build_commit_when_known(self, image: Image) -> None:
        plain = image.livesell("--version")
        built = image.livesell("--version", LIVESELL_BUILD_COMMIT="5938c75e1d2a9f0b")

        assert (0, "livesell 0.1.0 (commit unknown)\n") == (plain.returncode, plain.stdout)
        assert "livesell 0.1.0 (commit 5938c75e1d2a)\n" == built.stdout

    def test_migrate_brings_a_new_sqlite_file_to_head(self, image: Image, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"

        done = image.livesell("migrate", DATABASE_URL=url)

        assert 0 == done.returncode, done.stderr
        assert f"Database {url} is at revision {migrations.head()}\n" == done.stdout

    def test_migrate_brings_a_new_postgres_database_to_head(self, image: Image) -> None:
        url = create_postgres_database("livesell_image")
        try:
            done = image.livesell("migrate", DATABASE_URL=url)
            again = image.livesell("migrate", DATABASE_URL=url)
        finally:
            drop_postgres_database(url)

        assert 0 == done.returncode, done.stderr
        assert done.stdout.endswith(f"is at revision {migrations.head()}\n")
        assert (0, done.stdout) == (again.returncode, again.stdout)

    def test_the_embedded_demo_runs_from_the_installed_package(self, image: Image) -> None:
        done = image.livesell(
            "simulate", "--engine", "embedded", "--clients", "10", "--products", "1", "--json"
        )

        assert 0 == done.returncode, done.stderr[-2000:]
        report = json.loads(done.stdout)
        assert report["ok"] is True, report["violations"]
        assert report["outbound"]["queued"] > 0

    def test_worker_check_config_prints_the_configuration_and_exits_zero(
        self, image: Image
    ) -> None:
        done = image.livesell(
            "worker", "--check-config", DATABASE_URL="postgresql://u:secret@db.internal/app"
        )

        assert 0 == done.returncode, done.stderr
        lines = done.stdout.splitlines()
        assert ["DATABASE_URL", "postgresql+psycopg://u:***@db.internal/app"] == lines[0].split()
        assert "secret" not in done.stdout
        assert lines[-1].split() == ["PARTS", "webhook,outbox,closer,reconciler,spool"]

    def test_health_fails_in_one_line_when_nothing_answers(self, image: Image) -> None:
        done = image.livesell("health", HEALTH_PORT="9", PORT="")

        assert 1 == done.returncode
        assert 1 == len(done.stderr.splitlines())
        assert done.stderr.startswith("livesell health: unhealthy: http://127.0.0.1:9/healthz")
