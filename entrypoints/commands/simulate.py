"""``livesell simulate``: a scripted live-selling scenario end to end, then a report."""

from __future__ import annotations

import argparse
import json
from typing import Any

from entrypoints.cli import UsageError
from entrypoints.logs import configure_logging
from entrypoints.simulation import Scenario, run_scenario

EXIT_INVARIANT_BROKEN = 1


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="run a scripted live-selling scenario and print a report",
        description=(
            "Run a live-selling scenario through the real use cases: clients writing before the"
            " live, a seller going live, bursts of orders, redeliveries, malformed payloads, a"
            " flaky provider, then silence past the inactivity window. Exits 1 if an invariant"
            " breaks."
        ),
    )
    parser.add_argument(
        "--engine",
        choices=("memory",),
        default="memory",
        help="memory: in-memory adapters under a virtual clock (default)",
    )
    parser.add_argument("--tenants", type=int, default=2, help="number of shops (default 2)")
    parser.add_argument("--clients", type=int, default=300, help="clients in all (default 300)")
    parser.add_argument("--minutes", type=int, default=60, help="length of the live (default 60)")
    parser.add_argument("--window", type=int, default=45, help="inactivity window in minutes")
    parser.add_argument(
        "--transient-rate",
        type=float,
        default=0.1,
        help="provider transient failure rate (default 0.1)",
    )
    parser.add_argument(
        "--permanent-rate",
        type=float,
        default=0.01,
        help="provider permanent failure rate (default 0.01)",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--verbose", action="store_true", help="show the workers' log lines")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    configure_logging(level="info" if args.verbose else "critical")
    try:
        scenario = Scenario(
            tenants=args.tenants,
            clients=args.clients,
            live_minutes=args.minutes,
            window_minutes=args.window,
            transient_failure_rate=args.transient_rate,
            permanent_failure_rate=args.permanent_rate,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    report = run_scenario(scenario)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.render())
    return 0 if report.ok else EXIT_INVARIANT_BROKEN
