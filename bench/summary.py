"""Every benchmark in one command (``make bench``): each runs as a subprocess with ``--json`` and
settings that keep the whole run under about 15 minutes on a 2-CPU machine; then one table of the
figures, ratios and targets (issue 16), met or missed.

    .venv/bin/python bench/summary.py [--only vs_original,inbound,...] [--json] [--full]

``--full`` runs each benchmark on its own defaults instead (much longer). A benchmark that fails
or times out is reported as such in the table and the others still run. Each benchmark makes its
own database (and Redis database or server) and stops what it starts; this script only starts
them one after the other, stops any that outlives its ``--timeout`` by its pid, and reads their
JSON. ``bench/soak.py`` is not run here: it has its own target (``make soak``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
TIMEOUT_SECONDS = 420.0


class Benchmark:
    def __init__(self, name: str, script: str, quick: Sequence[str]) -> None:
        self.name, self.script, self.quick = name, script, list(quick)


# Settings for `make bench`: short runs of every measurement a target needs.
BENCHMARKS = (
    Benchmark("vs_original", "vs_original.py", ["--quick"]),
    Benchmark(
        "inbound",
        "inbound_throughput.py",
        ["--jobs", "2000", "--seconds", "20", "--only", "livesell,livesell-noop,steady"],
    ),
    Benchmark("webhook", "webhook_latency.py", ["--requests", "5000", "--seconds", "20"]),
    Benchmark("persistence", "persistence.py", ["--seconds", "1"]),
    Benchmark("outbox", "outbox_throughput.py", ["--messages", "5000"]),
    Benchmark("close_sessions", "close_sessions.py", ["--sessions", "5000"]),
    Benchmark("rate_limit", "rate_limit.py", ["--seconds", "12"]),
)
NOT_RUN = {
    "soak.py": "make soak",
    "soak_checks.py": "",  # parts of bench/soak.py
    "soak_load.py": "",
    "soak_services.py": "",
    "outbox_claim.py": ".venv/bin/python bench/outbox_claim.py",  # the claim alone (ADR 0025)
    "profiled.py": "",  # outbox_throughput.py --profile runs the senders under it
    "summary.py": "",
    "support.py": "",
}

Row = tuple[str, str, float | None, str, str]  # bench, figure, value, target, verdict


def run(benchmark: Benchmark, full: bool, timeout: float) -> tuple[dict[str, Any] | None, str]:
    """The benchmark's JSON, or None and why not."""
    command = [sys.executable, str(BENCH / benchmark.script), "--json"]
    if not full:
        command += benchmark.quick
    print(f"\n=== {benchmark.name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGINT: the benchmark's own clean-up runs (it stops its workers by pid, drops its
        # database); SIGKILL by pid only if that does not end it
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        return None, f"timed out after {timeout:.0f} s"
    took = time.monotonic() - started
    print(f"=== {benchmark.name}: {took:.0f} s, exit {process.returncode}", file=sys.stderr)
    if process.returncode != 0:
        return None, f"failed (exit {process.returncode})"
    try:
        document = json.loads(out[out.index("{") :])
    except ValueError:
        return None, "printed no JSON"
    if not isinstance(document, dict):
        return None, "printed no JSON object"
    document["_seconds"] = took
    return document, ""


def verdict(value: float | None, ok: Callable[[float], bool]) -> str:
    if value is None:
        return "not measured"
    return "met" if ok(value) else "MISSED"


def get(document: dict[str, Any] | None, *path: str) -> float | None:
    value: Any = document
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def first_key(document: dict[str, Any] | None, prefix: str) -> str:
    return next((k for k in (document or {}) if k.startswith(prefix)), prefix)


def rows(results: dict[str, dict[str, Any] | None]) -> list[Row]:
    out: list[Row] = []
    vs = results.get("vs_original")
    for scenario in ("20 tenants", "hot live"):
        best = (vs or {}).get("scenarios", {}).get(scenario, {}).get("best_bullmq") or "bullmq"
        ours = get(vs, "scenarios", scenario, "runs", "livesell", "msg_per_s")
        theirs = get(vs, "scenarios", scenario, "runs", best, "msg_per_s")
        out.append(("vs_original", f"{scenario}: livesell msg/s", ours, "", "info"))
        out.append(("vs_original", f"{scenario}: best BullMQ ({best}) msg/s", theirs, "", "info"))
        ratio = get(vs, "scenarios", scenario, "ratio")
        out.append(
            ("vs_original", f"{scenario}: livesell / best BullMQ", ratio, ">= 1.5x",
             verdict(ratio, lambda v: v >= 1.5))
        )  # fmt: skip
    if vs and "skipped" in vs:
        out.append(("vs_original", str(vs["skipped"]), None, "", "skipped"))

    inbound = results.get("inbound")
    out.append(
        ("inbound", "livesell msg/s (burst)", get(inbound, "livesell", "msg_per_s"), "", "info")
    )
    out.append(("inbound", "livesell-noop msg/s (engine floor)",
                get(inbound, "livesell-noop", "msg_per_s"), "", "info"))  # fmt: skip
    steady = first_key(inbound, "steady")
    p99 = get(inbound, steady, "p99_ms")
    out.append(("inbound", f"{steady}: p99 enqueue-to-recorded ms", p99, "<= 20",
                verdict(p99, lambda v: v <= 20)))  # fmt: skip

    webhook = results.get("webhook")
    burst = get(webhook, "burst", "requests_per_s")
    out.append(
        ("webhook", "burst requests/s", burst, ">= 1000", verdict(burst, lambda v: v >= 1000))
    )
    p99 = get(webhook, "steady", "p99_ms")
    out.append(("webhook", "steady 200/s: p99 ms", p99, "<= 20", verdict(p99, lambda v: v <= 20)))

    persistence = results.get("persistence")
    claim = get(persistence, "claim a batch of 100 (50 tenants)", "per_s")
    mark = get(persistence, "mark sent (one message per commit)", "per_s")
    per_row = 1 / (1 / claim + 1 / mark) if claim and mark else None
    out.append(("persistence", "per-row outbox msg/s (claim, one UPDATE per row)", per_row, "",
                "info"))  # fmt: skip
    whole = get(persistence, "process_inbound_message (whole job)", "per_s")
    out.append(("persistence", "process_inbound_message msg/s, one connection", whole, "", "info"))

    outbox = results.get("outbox")
    defaults = get(outbox, "defaults-0ms", "rate")
    ratio = defaults / per_row if defaults and per_row else None
    out.append(("outbox", "defaults at 0 ms msg/s", defaults, "", "info"))
    out.append(
        ("outbox", "defaults / per-row figure", ratio, ">= 3x", verdict(ratio, lambda v: v >= 3))
    )
    # every other outbox figure it printed (issue 15's scenarios among them), as figures
    for name, figures in (outbox or {}).items():
        if name == "defaults-0ms" or not isinstance(figures, dict):
            continue
        for key in ("rate", "p99_ms"):
            if isinstance(figures.get(key), int | float):
                unit = "msg/s" if key == "rate" else "p99 ms"
                out.append(("outbox", f"{name} {unit}", float(figures[key]), "", "info"))

    closing = results.get("close_sessions")
    out.append(("close_sessions", "one closer sessions/s",
                get(closing, "one_closer_sessions_per_s"), "", "info"))  # fmt: skip
    once = (closing or {}).get("each_closed_once")
    out.append(("close_sessions", "two closers: each session closed once", None, "true",
                "not measured" if once is None else ("met" if once else "MISSED")))  # fmt: skip

    # the shared per-number limit (ADR 0018): every number and run within 95..100 % of 80/s
    limits = results.get("rate_limit")
    for run_name, number, value, ok in (limits or {}).get("checks", []):
        out.append(("rate_limit", f"{run_name}: {number} % of 80/s", float(value), "95..100",
                    "met" if ok else "MISSED"))  # fmt: skip
    if limits is None:
        out.append(("rate_limit", "% of 80/s per number, 1 and 3 senders", None, "95..100",
                    "not measured"))  # fmt: skip
    return out


def table(rows_: list[Row], failures: dict[str, str]) -> str:
    lines = [f"{'benchmark':<15} {'figure':<52} {'value':>10}  {'target':<8} result", "-" * 98]
    for bench, figure, value, target, result in rows_:
        shown = "" if value is None else f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
        failed = bench in failures and result in ("info", "not measured")
        outcome = failures[bench] if failed else result
        lines.append(f"{bench:<15} {figure:<52} {shown:>10}  {target:<8} {outcome}")
    targets = [r for r in rows_ if r[3]]
    met = sum(1 for r in targets if r[4] == "met")
    lines.append("-" * 98)
    lines.append(f"targets met: {met} of {len(targets)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--only", default="", help="comma-separated: " + ",".join(b.name for b in BENCHMARKS)
    )
    parser.add_argument("--full", action="store_true", help="each benchmark on its own defaults")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS, help="per benchmark")
    parser.add_argument("--json", action="store_true", help="every benchmark's JSON on stdout")
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only.split(",")]
    known = {b.script for b in BENCHMARKS} | set(NOT_RUN)
    unknown = sorted(p.name for p in BENCH.glob("*.py") if p.name not in known)
    started = time.monotonic()
    results: dict[str, dict[str, Any] | None] = {}
    failures: dict[str, str] = {}
    for benchmark in chosen:
        results[benchmark.name], why = run(benchmark, args.full, args.timeout)
        if why:
            failures[benchmark.name] = why
    total = time.monotonic() - started
    if args.json:
        print(json.dumps({"results": results, "failures": failures}, indent=2, default=str))
        return 0
    print(f"\nlivesell benchmarks ({os.cpu_count()} CPUs, {total / 60:.1f} min,"
          f" load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}):\n")  # fmt: skip
    print(table(rows(results), failures))
    for name, why in failures.items():
        print(f"{name}: {why}")
    for name in unknown:
        print(f"{name}: not run by bench/summary.py yet (add it to BENCHMARKS)")
    for name, where in NOT_RUN.items():
        if where and (BENCH / name).exists():
            print(f"{name}: run by `{where}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
