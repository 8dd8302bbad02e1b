"""The processes the fault soak starts, and can kill: a private Postgres cluster, a private
``redis-server`` and ``livesell`` processes, all on spare ports of 127.0.0.1.

Every process is started in its own session (process group) and recorded in ``Processes``;
``Processes.stop_all`` ends each of them by pid (its group: ``livesell worker`` has child
processes), so nothing outlives the soak, whatever way it ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 10.0


def spare_port() -> int:
    """A port of 127.0.0.1 nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``predicate()``; returns the seconds waited; raises RuntimeError on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - start
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {timeout:.0f} s")


def _as_postgres(command: Sequence[str]) -> list[str]:
    """``initdb`` and ``pg_ctl`` refuse to run as root: run them as the ``postgres`` user."""
    if os.geteuid() != 0:
        return list(command)
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *command]
    return ["su", "postgres", "-c", " ".join(command)]


class Managed:
    """One process the soak started (the leader of its own process group)."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.expected_exit = False
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.expected_exit = False
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, signum: int) -> None:
        """``signum`` to the process and its children (its group), by the pid we started."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL, as an OOM killer or a container runtime does; reaps it."""
        self.expected_exit = True
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=STOP_GRACE_SECONDS)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM to the group, as process managers send it, then SIGKILL after ``grace``;
        the exit code (None when it had to be killed)."""
        if self.popen is None:
            return None
        self.expected_exit = True
        self.signal_group(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        self.signal_group(signal.SIGTERM)
        code: int | None = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = self.popen.wait(timeout=grace)
        self.signal_group(signal.SIGKILL)  # the group's children too, whatever the leader did
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_GRACE_SECONDS)
        return code


class Processes:
    """Every process of the soak, to stop them all by pid at the end (idempotent)."""

    def __init__(self) -> None:
        self._items: list[Managed] = []
        self._cleanups: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stopped = False

    def add(self, process: Managed) -> Managed:
        with self._lock:
            self._items.append(process)
        return process

    def on_stop(self, cleanup: Callable[[], None]) -> None:
        with self._lock:
            self._cleanups.append(cleanup)

    def managed(self) -> list[Managed]:
        with self._lock:
            return list(self._items)

    def stop_all(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            items, cleanups = list(reversed(self._items)), list(reversed(self._cleanups))
        for item in items:
            with contextlib.suppress(Exception):
                item.stop()
        for cleanup in cleanups:
            with contextlib.suppress(Exception):
                cleanup()


class PrivatePostgres:
    """A throwaway cluster: ``initdb`` in a temporary directory owned by ``postgres``, served by
    ``pg_ctl`` on a spare port of 127.0.0.1 (no Unix socket outside its directory)."""

    def __init__(self, processes: Processes, log_dir: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("no /usr/lib/postgresql/*/bin/pg_ctl: install PostgreSQL")
        self.bin = Path(found[-1]).parent
        self.port = spare_port()
        self.data = Path(tempfile.mkdtemp(prefix="livesell-soak-pg-"))
        self.log = log_dir / "postgres.log"
        self.log.touch()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(self.log, "postgres", "postgres")
        self.url = f"postgresql://postgres@{HOST}:{self.port}/livesell"
        processes.on_stop(self.destroy)

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            _as_postgres([str(self.bin / args[0]), *args[1:]]),
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def create(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        self.start()
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE livesell")

    def admin_url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def start(self) -> None:
        # fsync off: the soak kills processes, not the machine; the OS keeps what was written
        # (synchronous_commit stays on, so a commit that returned is in the WAL the OS holds).
        options = (
            f"-p {self.port} -c listen_addresses={HOST} -c unix_socket_directories={self.data} "
            "-c fsync=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop_immediate(self) -> None:
        """``pg_ctl stop -m immediate``: every backend dies at once, no checkpoint (a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def answers(self) -> bool:
        with psycopg.connect(self.url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def destroy(self) -> None:
        pid = self.postmaster_pid()
        with contextlib.suppress(Exception):
            self.stop_immediate()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.data, ignore_errors=True)


def redis_server(processes: Processes, log_dir: Path) -> tuple[Managed, str]:
    """A ``redis-server`` of the soak's own: no RDB, no AOF, so a SIGKILL loses everything."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is needed (apt-get install redis-server)")
    port = spare_port()
    argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    process = processes.add(Managed("redis", argv, dict(os.environ), log_dir / "redis.log"))
    return process, f"redis://{HOST}:{port}/0"


def redis_answers(url: str) -> bool:
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    with socket.create_connection((host, int(port)), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
