"""The fault soak (issue 12 §11): real ``livesell`` processes under load while their services die.

    make soak                                   # about 5 minutes
    .venv/bin/python bench/soak.py --duration 240 --json

It starts a private Postgres cluster and a private ``redis-server`` on spare ports of 127.0.0.1
(so it may kill them), migrates, registers shops with the CLI, then runs ``livesell webhook`` and
two ``livesell worker`` on the simulated provider (transient failures, sends slow enough to be in
flight when a worker dies). Signed Twilio requests arrive at a steady rate, some repeated with
the same MessageSid; outbound messages are written to the outbox meanwhile. During the load, one
after the other (``FAULTS``): SIGKILL a worker and restart it; SIGKILL the webhook and restart
it; SIGKILL Redis (its data is lost) and restart it; ``pg_ctl stop -m immediate`` for 5 s; SIGSTOP
a worker for 20 s. After a bounded drain it prints what was lost, duplicated or stuck, and exits
1 when any of those counts is not zero. Every process it started is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from soak_checks import Findings, inbound_findings, outbox_findings
from soak_load import FaultClock, OutboxLoad, TwilioLoad, shops
from soak_services import (
    HOST,
    Managed,
    PrivatePostgres,
    Processes,
    redis_answers,
    redis_server,
    spare_port,
    wait_for,
)
from support import ROOT

# -- the load ------------------------------------------------------------------------------------
SHOPS = 3
CLIENTS_PER_SHOP = 25
REQUEST_RATE_PER_SECOND = 5.0
DUPLICATE_SHARE = 0.1  # requests that repeat an earlier one exactly (Twilio's retries, fallback)
SELLER_SHARE = 0.1  # the rest are clients replying
LIVE_ENDS_AFTER_REDIS_SECONDS = 2.0
"""The first shop's live ends this long after Redis is back: nobody writes to it any more, so
the messages it received during the outage are the last of its live, and processed late they
must still join that live (issue 12 §8), not a new one or none."""
OUTBOX_RATE_PER_SECOND = 2.0  # INSERTs into messages_out by "another service"
OUTBOX_CLI_EVERY_SECONDS = 20.0  # plus one `livesell outbox send` this often
TOKEN = "soak0auth0token0000000000000000a"  # TWILIO_AUTH_TOKEN of the webhook and the signer
WORKER_ENV = {
    "MESSAGING_PROVIDER": "simulated",
    "SIMULATED_TRANSIENT_FAILURE_RATE": "0.1",
    "SIMULATED_LATENCY_MS": "400",  # >= 300 ms: a killed worker always has sends in flight
    "SIMULATED_SEED": "12",
    "LIVE_SESSION_INACTIVITY_WINDOW_MINUTES": "1",  # lives close and reopen during the soak
    "CLOSE_INTERVAL_MINUTES": "0.25",  # the closing job every 15 s
}

# -- the faults and their timings ------------------------------------------------------------------
OUTBOX_BURST_BEFORE_KILL = 40  # messages written at once just before a worker or Postgres dies,
IN_FLIGHT_LEAD_SECONDS = 0.5  # this long before: the senders have claimed them and are sending
WORKER_DOWN_SECONDS = 2.0  # a SIGKILLed worker is restarted after this (a supervisor's delay)
WEBHOOK_DOWN_SECONDS = 2.0  # same for the webhook; Twilio's connection retries cover ~10 s
REDIS_DOWN_SECONDS = 3.0  # Redis SIGKILLed (no persistence: queues and registries are lost)
POSTGRES_DOWN_SECONDS = 5.0  # pg_ctl stop -m immediate, then start (crash recovery)
WORKER_STOP_SECONDS = 20.0  # SIGSTOP then SIGCONT: a frozen VM or a long GC pause
FAULTS = ("worker killed", "webhook killed", "redis killed", "postgres stopped", "worker stopped")
"""In this order, evenly spread over the load: fault n starts at n * duration / (len + 1)."""

# -- bounds --------------------------------------------------------------------------------------
DEFAULT_DURATION_SECONDS = 180.0  # of load; with set-up and drain the run takes about 5 minutes
MIN_DURATION_SECONDS = 150.0  # room for five faults, the longest 20 s, 25 s apart at least
MAX_DURATION_SECONDS = 360.0
DRAIN_SECONDS = 150.0
"""After the load, wait at most this for every message to be processed and every outbound one
to end: the inbox reconciler's default wait (60 s) and pass (30 s) plus the retries of the last
sends. The drain ends as soon as nothing is left."""
HARD_LIMIT_SECONDS = 600.0  # whatever happens, the soak stops everything after 10 minutes
SHUTDOWN_GRACE_SECONDS = 35.0  # SPEC §4: in-flight work finishes within 30 s, then exit 0
MONITOR_INTERVAL_SECONDS = 0.5
RESTART_AFTER_DEATH_SECONDS = 1.0  # an unexpected death is counted, then the process restarted

LIVESELL = str(ROOT / ".venv" / "bin" / "livesell")
OWN_ENV = (
    "TWILIO_",
    "SIMULATED_",
    "SENTRY_",
    "DATABASE_",
    "REDIS_",
    "OUTBOX_",
    "WEBHOOK_",
    "LIVE_SESSION_",
    "CLOSE_",
    "INBOX_",
    "METRICS_PORT",
    "HEALTH_PORT",
    "PORT",
    "MESSAGING_PROVIDER",
    "LIVESELL_",
)


class Soak:
    def __init__(self, duration: float, run_dir: Path) -> None:
        self.duration = duration
        self.run_dir = run_dir
        self.processes = Processes()
        self.faults = FaultClock()
        self.shops = shops(SHOPS, CLIENTS_PER_SHOP)
        self.deaths: list[str] = []
        self.in_flight: dict[str, set[str]] = {}
        self.sent_log = run_dir / "sent.jsonl"
        self.postgres = PrivatePostgres(self.processes, run_dir)
        self.redis, redis_url = redis_server(self.processes, run_dir)
        self.webhook_port = spare_port()
        self.webhook_url = f"http://{HOST}:{self.webhook_port}/webhooks/twilio/messages"
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_ENV)}
        self.env = {
            **env,
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": redis_url,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "SIMULATED_SENT_LOG": str(self.sent_log),
            "LOG_FORMAT": "text",
            **WORKER_ENV,
        }
        self.redis_url = redis_url
        self.webhook = self._livesell(
            "webhook", "webhook", "--host", HOST, "--port", str(self.webhook_port)
        )
        self.workers = [self._livesell(f"worker-{n}", "worker") for n in (1, 2)]
        self._monitoring = threading.Event()
        self.twilio: TwilioLoad | None = None
        self.outbox: OutboxLoad | None = None
        self._cli_count = 0

    def _livesell(self, name: str, *args: str) -> Managed:
        return self.processes.add(
            Managed(name, [LIVESELL, *args], self.env, self.run_dir / f"{name}.log")
        )

    def run_cli(self, args: list[str]) -> int:
        """One ``livesell`` command to its end (its own log file); its exit code."""
        self._cli_count += 1
        process = self._livesell(f"cli-{self._cli_count}-{args[0]}", *args)
        process.expected_exit = True
        process.start()
        assert process.popen is not None
        try:
            return process.popen.wait(timeout=60)
        except Exception:
            process.kill()
            return -1

    # -- set-up ---------------------------------------------------------------------------------

    def set_up(self) -> None:
        self.postgres.create()
        self.redis.start()
        wait_for(lambda: redis_answers(self.redis_url), 10, "redis-server")
        for args in self.registrations():
            if self.run_cli(args) != 0:
                raise RuntimeError(f"livesell {' '.join(args[:2])} failed (logs in {self.run_dir})")
        self.start_webhook()
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            wait_for(
                lambda w=worker: b"Worker started successfully" in w.log_path.read_bytes(),
                60,
                worker.name,
            )

    def registrations(self) -> list[list[str]]:
        """The commands an operator runs first: migrate, then each shop and its seller."""
        commands = [["migrate"]]
        for shop in self.shops:
            number, seller = shop.whatsapp_number, shop.seller
            commands.append(f"tenants add --id {shop.tenant_id} --name {shop.tenant_id}".split())
            commands[-1] += ["--whatsapp-number", number]
            commands.append(["sellers", "add", "--tenant", shop.tenant_id, "--phone", seller])
        return commands

    def start_webhook(self) -> None:
        self.webhook.start()
        url = f"http://{HOST}:{self.webhook_port}/healthz"
        wait_for(lambda: urllib.request.urlopen(url, timeout=1).status == 200, 60, "the webhook")

    # -- watching for deaths ----------------------------------------------------------------------

    def monitor(self) -> None:
        """Every process the soak did not kill itself must stay alive; a death is counted with
        the fault in progress, then the process is restarted so the soak goes on."""
        watched = [self.redis, self.webhook, *self.workers]
        while not self._monitoring.wait(MONITOR_INTERVAL_SECONDS):
            for process in watched:
                if process.popen is None or process.expected_exit or process.alive():
                    continue
                code = process.popen.returncode
                self.deaths.append(
                    f"{process.name} exit {code} at {self.faults.elapsed():.0f} s "
                    f"during {self.faults.label()}"
                )
                time.sleep(RESTART_AFTER_DEATH_SECONDS)
                if not self._monitoring.is_set():
                    process.start()

    # -- the faults ----------------------------------------------------------------------------

    def sending_now(self) -> set[str]:
        """Outbound rows claimed at this moment: sends that may be in flight."""
        import psycopg

        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.postgres.url, connect_timeout=2) as conn,
        ):
            return {
                row[0]
                for row in conn.execute("SELECT id FROM messages_out WHERE status = 'sending'")
            }
        return set()

    def fault(self, label: str) -> None:
        self.faults.begin(label)
        try:
            if label in ("worker killed", "postgres stopped") and self.outbox is not None:
                self.outbox.write(OUTBOX_BURST_BEFORE_KILL)
                time.sleep(IN_FLIGHT_LEAD_SECONDS)
            if label == "worker killed":
                self.in_flight[label] = self.sending_now()
                self.workers[0].kill()
                time.sleep(WORKER_DOWN_SECONDS)
                self.workers[0].start()
            elif label == "webhook killed":
                self.webhook.kill()
                time.sleep(WEBHOOK_DOWN_SECONDS)
                self.start_webhook()
            elif label == "redis killed":
                self.redis.kill()
                time.sleep(REDIS_DOWN_SECONDS)
                self.redis.start()
                wait_for(lambda: redis_answers(self.redis_url), 10, "redis-server")
            elif label == "postgres stopped":
                self.in_flight[label] = self.sending_now()
                self.postgres.stop_immediate()
                time.sleep(POSTGRES_DOWN_SECONDS)
                self.postgres.start()
                wait_for(self.postgres.answers, 30, "postgres")
            elif label == "worker stopped":
                self.workers[1].signal_group(signal.SIGSTOP)
                time.sleep(WORKER_STOP_SECONDS)
                self.workers[1].signal_group(signal.SIGCONT)
        finally:
            self.faults.end()

    # -- the run -------------------------------------------------------------------------------

    def drained(self) -> bool:
        import psycopg

        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.postgres.url, connect_timeout=2) as conn,
        ):
            left = conn.execute(
                "SELECT (SELECT count(*) FROM inbound_messages WHERE status = 'received') + (SELECT"
                " count(*) FROM messages_out WHERE status NOT IN ('sent', 'dead', 'expired'))"
            ).fetchone()
            return left is not None and int(left[0]) == 0
        return False

    def abort(self) -> None:
        """Ctrl-C, SIGTERM or the hard limit: stop the load and every process, now."""
        self._monitoring.set()
        if self.twilio is not None:
            self.twilio.abort()
        if self.outbox is not None:
            self.outbox.stop(wait=False)
        self.processes.stop_all()

    def shut_down(self) -> str:
        """SIGTERM to the webhook and the workers at once; how each ended."""
        ended: dict[str, str] = {}

        def stop(process: Managed) -> None:
            start = time.monotonic()
            code = process.stop(grace=SHUTDOWN_GRACE_SECONDS)
            ended[process.name] = f"{'killed' if code is None else code} in "
            ended[process.name] += f"{time.monotonic() - start:.1f} s"

        threads = [threading.Thread(target=stop, args=(p,)) for p in (self.webhook, *self.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return ", ".join(f"{name} {how}" for name, how in sorted(ended.items()))

    def first_live_end(self, slot: float) -> float:
        redis_back = (FAULTS.index("redis killed") + 1) * slot + REDIS_DOWN_SECONDS
        return redis_back + LIVE_ENDS_AFTER_REDIS_SECONDS

    def run(self) -> Findings:
        self.set_up()
        slot = self.duration / (len(FAULTS) + 1)
        monitor = threading.Thread(target=self.monitor, name="monitor", daemon=True)
        monitor.start()
        self.twilio = twilio = TwilioLoad(
            self.webhook_url,
            TOKEN,
            self.shops,
            self.faults,
            rate=REQUEST_RATE_PER_SECOND,
            duplicate_share=DUPLICATE_SHARE,
            seller_share=SELLER_SHARE,
            seed=11,
            ends={self.shops[0].tenant_id: self.first_live_end(slot)},
        )
        self.outbox = outbox = OutboxLoad(
            self.postgres.url,
            self.shops,
            OUTBOX_RATE_PER_SECOND,
            OUTBOX_CLI_EVERY_SECONDS,
            self.run_cli,
            seed=13,
        )
        self.faults.restart()
        load_start = self.faults.start
        twilio.start()
        outbox.start()
        for n, label in enumerate(FAULTS, start=1):
            time.sleep(max(0.0, load_start + n * slot - time.monotonic()))
            log(f"{self.faults.elapsed():6.1f} s  {label}")
            self.fault(label)
        time.sleep(max(0.0, load_start + self.duration - time.monotonic()))
        twilio.stop()
        outbox.stop()
        log(f"{self.faults.elapsed():6.1f} s  load over; draining (at most {DRAIN_SECONDS:.0f} s)")
        drain_start = time.monotonic()
        while time.monotonic() - drain_start < DRAIN_SECONDS and not self.drained():
            time.sleep(2)
        drain = time.monotonic() - drain_start
        self._monitoring.set()
        monitor.join()
        found = Findings()
        found.info("load, s / drain, s", f"{self.duration:.0f} / {drain:.0f}")
        inbound_findings(found, twilio.requests, self.postgres.url, self.faults)
        found.info(
            "outbox writes (SQL / CLI), refused while down",
            f"{outbox.written} / {outbox.cli_written}, {outbox.refused + outbox.cli_failed}",
        )
        outbox_findings(found, self.postgres.url, self.sent_log, self.in_flight)
        found.info("exit on SIGTERM at the end", self.shut_down())
        found.check("unexpected process deaths", len(self.deaths), "; ".join(self.deaths))
        found.info(
            "faults (start-end, s)",
            ", ".join(f"{label} {a:.0f}-{b or 0:.0f}" for label, a, b in self.faults.windows),
        )
        return found


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _stop_on_term(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION_SECONDS,
        help=f"seconds of load ({MIN_DURATION_SECONDS:.0f}..{MAX_DURATION_SECONDS:.0f},"
        f" default {DEFAULT_DURATION_SECONDS:.0f}); the drain adds at most "
        f"{DRAIN_SECONDS:.0f}",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the logs even when all is well"
    )
    args = parser.parse_args(argv)
    if not MIN_DURATION_SECONDS <= args.duration <= MAX_DURATION_SECONDS:
        parser.error(
            f"--duration must be within {MIN_DURATION_SECONDS:.0f}..{MAX_DURATION_SECONDS:.0f}"
        )
    if not Path(LIVESELL).exists():
        parser.error(f"{LIVESELL} is missing: run `make setup` first")
    run_dir = Path(tempfile.mkdtemp(prefix="livesell-soak-"))
    run_dir.chmod(0o755)  # postgres writes its log here
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job ignores it
        signal.signal(stop_signal, _stop_on_term)
    watchdog = threading.Timer(HARD_LIMIT_SECONDS, lambda: os.kill(os.getpid(), signal.SIGTERM))
    watchdog.daemon = True
    watchdog.start()
    soak = Soak(args.duration, run_dir)
    atexit.register(soak.processes.stop_all)
    failed = True
    try:
        found = soak.run()
        failed = found.failed
        if args.json:
            print(json.dumps(found.as_json(), indent=2, ensure_ascii=False))
        else:
            print(found.table())
    except KeyboardInterrupt:
        log("interrupted: stopping every process the soak started")
        soak.abort()
        return 130
    finally:
        watchdog.cancel()
        soak.processes.stop_all()
        if failed or args.keep_logs:
            log(f"logs: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
