"""``livesell simulate``: a scripted live-selling scenario end to end, then a report.

Usage errors (a rate outside 0..1, a size below 1, a memory-engine option given to the embedded
engine) are one line and exit 2, before anything runs. A run that lasts more than a couple of
seconds shows its progress on stderr: a bar on a terminal, a line every few seconds otherwise
(stdout keeps only the report, so ``--json`` output stays parseable).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from entrypoints.commands.support import UsageError

EXIT_INVARIANT_BROKEN = 1
MEMORY_ONLY = ("tenants", "minutes", "window")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="run a scripted live-selling scenario and print a report",
        description=(
            "Run a live-selling scenario through the real use cases: clients writing before the"
            " live, a seller going live, bursts of orders, redeliveries, malformed payloads, a"
            " flaky provider, then silence past the inactivity window. Exits 1 if an invariant"
            " breaks, 2 on bad options."
        ),
    )
    parser.add_argument(
        "--engine",
        choices=("memory", "embedded"),
        default="memory",
        help=(
            "memory (default): the use cases on in-memory adapters under a virtual clock, for"
            " large scenarios; embedded: the real code path in one process: SQLite migrated by"
            " Alembic, fakeredis behind the real RQ queue and job function, the real worker loops,"
            " a clock sped up so the inactivity window passes in seconds"
        ),
    )
    parser.add_argument(
        "--tenants", type=int, default=None, help="number of shops (memory only; default 2)"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=None,
        help="clients in all (default: 300 memory, 40 embedded)",
    )
    parser.add_argument(
        "--minutes", type=int, default=None, help="length of the live (memory only; default 60)"
    )
    parser.add_argument(
        "--products", type=int, default=3, help="products posted (embedded; default 3)"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="inactivity window in minutes (memory only; default 45; the embedded demo's is 1)",
    )
    parser.add_argument(
        "--transient-rate",
        type=float,
        default=0.1,
        help="provider transient failure rate, 0..1 (default 0.1)",
    )
    parser.add_argument(
        "--permanent-rate",
        type=float,
        default=0.01,
        help="provider permanent failure rate, 0..1 (default 0.01)",
    )
    parser.add_argument(
        "--meta-tenants",
        type=int,
        default=None,
        help="how many of the shops are on Meta instead of Twilio (memory only; default 0): the"
        " simulated provider stands in for both",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--verbose", action="store_true", help="show the workers' log lines")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress on stderr")
    parser.set_defaults(handler=run)


def check_options(args: argparse.Namespace) -> None:
    """Raise UsageError for options the chosen engine cannot run."""
    for flag, rate in (
        ("--transient-rate", args.transient_rate),
        ("--permanent-rate", args.permanent_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise UsageError(f"{flag} must be within 0..1, got {rate:g}")
    if args.transient_rate + args.permanent_rate > 1.0:
        raise UsageError("--transient-rate plus --permanent-rate must not exceed 1")
    if args.clients is not None and args.clients < 1:
        raise UsageError(f"--clients must be at least 1, got {args.clients}")
    if args.seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {args.seed}")
    if args.engine == "embedded":
        given = [f"--{name}" for name in MEMORY_ONLY if getattr(args, name) is not None]
        if args.meta_tenants is not None:
            given.append("--meta-tenants")
        if given:
            raise UsageError(
                f"{', '.join(given)} only apply to --engine memory: the embedded demo runs one "
                "shop, one product a minute (--products) and a 1-minute window"
            )
        if args.products < 1:
            raise UsageError(f"--products must be at least 1, got {args.products}")
    elif args.window is not None and not 1 <= args.window <= 1440:
        raise UsageError(f"--window must be 1..1440 minutes, got {args.window}")


class Progress:
    """Progress on ``stream`` once a run has lasted ``after`` seconds: a bar redrawn in place on a
    terminal, else one line every ``every`` seconds. Silent for short runs."""

    WIDTH = 30

    def __init__(
        self, stream: TextIO, *, label: str, after: float = 2.0, every: float = 5.0
    ) -> None:
        self.stream = stream
        self.label = label
        self.after = after
        self.every = every
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._shown_at: float | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        if elapsed < self.after:
            return
        interval = 0.1 if self.tty else self.every
        if self._shown_at is not None and now - self._shown_at < interval and done < total:
            return
        self._shown_at = now
        fraction = done / total if total else 1.0
        figures = f"{fraction:4.0%} ({done:,} of {total:,} steps, {elapsed:.0f} s)"
        if self.tty:
            filled = round(fraction * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {figures}")
        else:
            self.stream.write(f"{self.label}: {figures}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._shown_at is not None:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    check_options(args)
    from entrypoints.logs import configure_logging

    configure_logging(level="info" if args.verbose else "critical")
    progress = None if args.no_progress else Progress(sys.stderr, label=args.command_name)
    try:
        if args.engine == "embedded":
            try:
                from entrypoints.demo.embedded import EmbeddedOptions, run_embedded
            except ModuleNotFoundError as exc:
                if exc.name != "fakeredis":
                    raise
                raise UsageError(
                    "the embedded engine needs fakeredis, from the demo extra: "
                    "pip install 'livesell[demo]'"
                ) from exc
            report = run_embedded(
                EmbeddedOptions(
                    clients=args.clients or 40,
                    products=args.products,
                    transient_failure_rate=args.transient_rate,
                    permanent_failure_rate=args.permanent_rate,
                    seed=args.seed,
                ),
                progress=progress,
            )
        else:
            from entrypoints.demo.scenario import Scenario
            from entrypoints.demo.simulation import run_scenario

            try:
                scenario = Scenario(
                    tenants=2 if args.tenants is None else args.tenants,
                    clients=args.clients or 300,
                    live_minutes=60 if args.minutes is None else args.minutes,
                    window_minutes=45 if args.window is None else args.window,
                    transient_failure_rate=args.transient_rate,
                    permanent_failure_rate=args.permanent_rate,
                    seed=args.seed,
                    meta_tenants=args.meta_tenants or 0,
                )
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
            report = run_scenario(scenario, progress=progress)
    finally:
        if progress is not None:
            progress.finish()
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.render())
    return 0 if report.ok else EXIT_INVARIANT_BROKEN
