"""Webhook latency and throughput: ``livesell webhook`` (uvicorn, production settings) on its own
Postgres database and Redis database, loaded on 127.0.0.1 with signed Twilio requests.

Two loads, each request a new MessageSid signed as Twilio signs it (so every request is verified,
recorded ``received`` in Postgres and enqueued on ``webhook-processing`` in Redis):

- **burst**: ``--requests`` (20,000) as fast as ``--concurrency`` (32) connections allow;
  prints requests/s and latency percentiles. Target (issue 16 §5): at least 1,000 requests/s.
- **steady**: ``--rate`` (200) requests/s for ``--seconds`` (30), open loop (each request starts
  at its scheduled instant whatever the previous ones do); prints the latency percentiles.
  Target (issue 16 §5): p99 at most 20 ms.

Each load prints the CPU the client (this process) and the server (its process tree) spent,
per request: they share the machine's cores. The client is an asyncio httpx client in this
process (``--client httpx``, the default), or ``--client raw``: the same requests as bytes on
keep-alive asyncio connections, ~40 times cheaper than httpx (ADR 0027). The server runs in a
child process with
``--workers`` uvicorn workers. No worker drains the queue during the run (the webhook's cost is
measured, not the processor's). The Redis database (``--redis-db``, default 7: the test suites
claim 8-15) must be empty; it is emptied at the end. Everything started here is stopped by its pid.

    .venv/bin/python bench/webhook_latency.py [--workers 2] [--requests 20000] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from redis import Redis
from support import ROOT, bench_database, json_output
from twilio.request_validator import RequestValidator

from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from adapters.system.clock import SystemClock
from application.tenants import add_tenant

TOKEN = "b" * 32
PUBLIC = "https://hooks.bench.example"
PATH = "/webhooks/twilio/messages"
SHOP_NUMBER = "+14155238886"
CLIENT = "+33612345678"
STEADY_IN_FLIGHT = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def signed_requests(count: int, prefix: str) -> list[tuple[bytes, str]]:
    """(body, signature) pairs, each a new MessageSid, signed before the clock starts."""
    validator = RequestValidator(TOKEN)
    requests = []
    for n in range(count):
        sid = f"SM{prefix}{n:030d}"[:34]
        form = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": "AC" + "1" * 32,
            "From": f"whatsapp:{CLIENT}",
            "To": f"whatsapp:{SHOP_NUMBER}",
            "Body": f"Je prends le {n % 40} !",
            "ProfileName": "Bob",
            "WaId": CLIENT.lstrip("+"),
            "NumMedia": "0",
            "ApiVersion": "2010-04-01",
        }
        signature = validator.compute_signature(PUBLIC + PATH, form)
        requests.append((urlencode(form).encode(), signature))
    return requests


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


FIGURES: dict[str, Any] = {}
ERRORS: Counter[str] = Counter()
"""Why a request got no answer (status 0), by exception and message, since the last report."""


def no_answer(exc: BaseException) -> int:
    """Count why a request got no answer; its status, 0."""
    ERRORS[f"{type(exc).__name__}: {exc}"[:120]] += 1
    return 0


SERVER_PID: list[int] = []
"""The webhook's pid, once started: its process tree's CPU time is reported with each load."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its live descendants (uvicorn's workers), from
    /proc; 0 where /proc cannot tell."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in tree)


class CpuMeter:
    """CPU seconds this client process and the server's process tree spent between
    ``start`` and ``stop``: on 2 cores shared by both, a client that needs most of a core
    bounds what the server is offered."""

    def start(self) -> None:
        self.client = time.process_time()
        self.server = tree_cpu_seconds(SERVER_PID[0]) if SERVER_PID else 0.0

    def stop(self) -> tuple[float, float]:
        server = tree_cpu_seconds(SERVER_PID[0]) if SERVER_PID else 0.0
        return time.process_time() - self.client, server - self.server


def report(
    name: str,
    latencies: list[float],
    statuses: dict[int, int],
    elapsed: float,
    cpu: tuple[float, float] = (0.0, 0.0),
) -> None:
    ms = [v * 1000 for v in latencies]
    client_cpu, server_cpu = cpu
    FIGURES[name.strip()] = {
        "requests": len(ms),
        "requests_per_s": len(ms) / elapsed,
        "p50_ms": percentile(ms, 0.50),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
        "statuses": statuses,
        "client_errors": dict(ERRORS),
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
    }
    print(
        f"{name:>7}: {len(ms)} requests in {elapsed:.2f} s = {len(ms) / elapsed:,.0f} requests/s;"
        f" latency ms p50 {percentile(ms, 0.50):.1f}  p90 {percentile(ms, 0.90):.1f}"
        f"  p99 {percentile(ms, 0.99):.1f}  max {max(ms):.1f}  mean {statistics.fmean(ms):.1f};"
        f" statuses {dict(sorted(statuses.items()))}\n"
        f"{'':>9}CPU: client {client_cpu:.1f} s ({client_cpu / elapsed:.0%} of a core,"
        f" {client_cpu / len(ms) * 1e6:,.0f} us/request), server {server_cpu:.1f} s"
        f" ({server_cpu / elapsed:.0%}, {server_cpu / len(ms) * 1e6:,.0f} us/request)"
    )
    for error, count in ERRORS.items():  # status 0: the client got no answer; this is why
        print(f"{'':>9}client error x{count}: {error}")
    ERRORS.clear()


class HttpxPoster:
    """The default client: httpx's ``AsyncClient`` (HTTP/1.1 keep-alive, ``connections``
    pooled), as a Python caller of the webhook would post."""

    def __init__(self, base_url: str, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30)

    async def post(self, body: bytes, signature: str) -> int:
        try:
            response = await self.client.post(
                PATH,
                content=body,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                },
            )
        except httpx.HTTPError as exc:
            return no_answer(exc)
        return response.status_code

    async def aclose(self) -> None:
        await self.client.aclose()


class RawPoster:
    """``--client raw``: the same requests written as bytes on ``connections`` keep-alive
    asyncio connections, the response read up to its Content-Length; a few tens of
    microseconds of CPU per request where httpx takes milliseconds, so on 2 shared cores the
    figure is the server's, not the client's."""

    def __init__(self, base_url: str, connections: int) -> None:
        host, _, port = base_url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.opened = 0
        self.connections = connections
        self.all: list[asyncio.StreamWriter] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle.empty() and self.opened < self.connections:
            self.opened += 1
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.all.append(writer)
            return reader, writer
        return await self.idle.get()

    async def post(self, body: bytes, signature: str) -> int:
        reader, writer = await self._connection()
        try:
            writer.write(
                b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: " + self.host.encode()
                + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: "
                + signature.encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\n\r\n" + body
            )  # fmt: skip
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.opened -= 1
            writer.close()
            return no_answer(exc)
        self.idle.put_nowait((reader, writer))
        return status

    async def aclose(self) -> None:
        for writer in self.all:
            writer.close()


CLIENTS = {"httpx": HttpxPoster, "raw": RawPoster}


async def one(
    client: HttpxPoster | RawPoster,
    body: bytes,
    signature: str,
    latencies: list[float],
    statuses: dict[int, int],
    scheduled: float | None = None,
) -> None:
    """One signed POST; its latency counts from ``scheduled`` when given (the steady mode's
    intended start, so time spent waiting for a free connection counts too)."""
    started = time.perf_counter() if scheduled is None else scheduled
    status = await client.post(body, signature)
    latencies.append(time.perf_counter() - started)
    statuses[status] = statuses.get(status, 0) + 1


async def burst(
    base_url: str,
    requests: list[tuple[bytes, str]],
    concurrency: int,
    name: str = "burst",
    client_kind: str = "httpx",
) -> None:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pending = iter(requests)
    client = CLIENTS[client_kind](base_url, concurrency)
    try:

        async def lane() -> None:
            for body, signature in pending:
                await one(client, body, signature, latencies, statuses)

        meter = CpuMeter()
        meter.start()
        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
    finally:
        await client.aclose()
    report(name, latencies, statuses, elapsed, cpu)


async def steady(
    base_url: str, requests: list[tuple[bytes, str]], rate: float, client_kind: str = "httpx"
) -> None:
    """Open loop at ``rate``: each request is due at its instant whatever the others do. At most
    ``STEADY_IN_FLIGHT`` are in flight (an unbounded backlog makes httpx's pool, not the server,
    the bottleneck); a request that waits for a free slot is late, and its latency counts from
    the instant it was due."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    slots = asyncio.Semaphore(STEADY_IN_FLIGHT)
    client = CLIENTS[client_kind](base_url, STEADY_IN_FLIGHT)
    try:

        async def due(body: bytes, signature: str, at: float) -> None:
            async with slots:
                await one(client, body, signature, latencies, statuses, scheduled=at)

        tasks = []
        meter = CpuMeter()
        meter.start()
        started = time.perf_counter()
        for n, (body, signature) in enumerate(requests):
            at = started + n / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(due(body, signature, at)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
    finally:
        await client.aclose()
    report("steady", latencies, statuses, elapsed, cpu)


WRK_SCRIPT = """
local bodies = {%(bodies)s}
local signatures = {%(signatures)s}
local threads = {}
function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end
function init(args)
  stride = %(threads)d
  index = offset + 1
end
function request()
  local n = index
  index = index + stride
  if index > #bodies then index = offset + 1 end
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["X-Twilio-Signature"] = signatures[n]
  return wrk.format("POST", "%(path)s", wrk.headers, bodies[n])
end
function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "  burst: %%d requests in %%.2f s = %%.0f requests/s; latency ms p50 %%.1f  p90 %%.1f"
    .. "  p99 %%.1f  max %%.1f  mean %%.1f; non-2xx %%d, socket errors %%d\\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
"""


def wrk_burst(
    base_url: str, requests: list[tuple[bytes, str]], concurrency: int, seconds: float, tmp: Path
) -> None:
    """The burst load from wrk (C, 2 threads), which leaves the server more of the CPUs than an
    asyncio client; the pool of signed requests is larger than what the run can send."""
    script = tmp / "burst.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "bodies": ",".join(f'"{body.decode()}"' for body, _ in requests),
            "signatures": ",".join(f'"{signature}"' for _, signature in requests),
            "threads": 2,
            "path": PATH,
        }
    )
    command = ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds:.0f}s", "-s", str(script), base_url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("  burst:"))
    print(line)
    rate = float(line.split(" = ")[1].split()[0])
    p99 = float(line.split(" p99 ")[1].split()[0])
    FIGURES["burst"] = {"requests_per_s": rate, "p99_ms": p99, "client": "wrk"}


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the webhook exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the webhook did not become ready:\n{log.read_text()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis-db", type=int, default=7)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--client",
        choices=("httpx", "raw", "wrk"),
        default="httpx",
        help="load generator: httpx (default), raw (bytes on asyncio keep-alive connections, the"
        " cheapest Python client), wrk (the burst only; apt-get install wrk; runs"
        " --burst-seconds; the other loads use httpx)",
    )
    parser.add_argument("--burst-seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args()
    with json_output(args.json) as figures:
        run(args)
        figures.update(FIGURES)


def run(args: argparse.Namespace) -> None:

    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    redis = Redis.from_url(redis_url)
    if redis.dbsize():
        raise SystemExit(f"Redis database {args.redis_db} is not empty; pick another --redis-db")
    burst_requests = signed_requests(args.requests, "b")
    steady_requests = signed_requests(int(args.rate * args.seconds), "s")
    with (
        bench_database(prefix="livesell_bench_webhook") as database_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        engine = build_engine(database_url)
        add_tenant(
            uow_factory=SqlUnitOfWorkFactory(engine),
            clock=SystemClock(),
            tenant_id="shop-bench",
            name="Bench shop",
            whatsapp_number=SHOP_NUMBER,
        )
        port = free_port()
        log_path = Path(tmp) / "webhook.log"
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "WEBHOOK_"))},
            "DATABASE_URL": database_url,
            "DATABASE_POOL_SIZE": str(args.pool_size),
            "REDIS_URL": redis_url,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "WEBHOOK_PUBLIC_BASE_URL": PUBLIC,
            "LOG_LEVEL": args.log_level,
            "LOG_FORMAT": "json",
        }
        command = [
            sys.executable, "-m", "entrypoints.cli", "webhook",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers),
        ]  # fmt: skip
        with log_path.open("wb") as log:
            server = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=log, stderr=log)
        SERVER_PID[:] = [server.pid]
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base_url, server, log_path)
            print(
                f"livesell webhook --workers {args.workers} (uvicorn, LOG_LEVEL={args.log_level},"
                f" pool {args.pool_size}) on {os.cpu_count()} CPUs; burst client: {args.client}"
            )
            python_client = "raw" if args.client == "raw" else "httpx"
            asyncio.run(
                burst(base_url, burst_requests[:500], args.concurrency, "warmup", python_client)
            )
            asyncio.run(steady(base_url, steady_requests, args.rate, python_client))
            time.sleep(2)
            if args.client == "wrk":
                wrk_burst(
                    base_url, burst_requests[500:], args.concurrency, args.burst_seconds, Path(tmp)
                )
            else:
                asyncio.run(
                    burst(base_url, burst_requests[500:], args.concurrency, "burst", python_client)
                )
        finally:
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(40)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait(10)
            with engine.connect() as connection:
                recorded = connection.exec_driver_sql(
                    "SELECT count(*) FROM inbound_messages WHERE status = 'received'"
                ).scalar_one()
            queued = redis.llen("rq:queue:webhook-processing")
            engine.dispose()
            redis.flushdb()
            redis.close()
            problems = [
                line
                for line in log_path.read_text(errors="replace").splitlines()
                if '"level": "WARNING"' in line or '"level": "ERROR"' in line or "Traceback" in line
            ]
        print(f"recorded received: {recorded}; jobs queued: {queued}")
        print(f"server warnings/errors: {len(problems)}")
        for line in problems[:5]:
            print(f"  {line[:300]}")


if __name__ == "__main__":
    main()
