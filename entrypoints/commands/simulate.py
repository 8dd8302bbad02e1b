"""``livesell simulate``: a scripted live-selling scenario end to end, then a report."""

from __future__ import annotations

import argparse
import json
from typing import Any

from entrypoints.cli import UsageError
from entrypoints.embedded import EmbeddedOptions, run_embedded
from entrypoints.logs import configure_logging
from entrypoints.simulation import Report, Scenario, run_scenario

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
        "--tenants", type=int, default=2, help="number of shops (memory; default 2)"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=None,
        help="clients in all (default: 300 memory, 40 embedded)",
    )
    parser.add_argument(
        "--minutes", type=int, default=60, help="length of the live (memory; default 60)"
    )
    parser.add_argument(
        "--products", type=int, default=3, help="products posted (embedded; default 3)"
    )
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
    if args.engine == "embedded":
        return _print(
            run_embedded(
                EmbeddedOptions(
                    clients=args.clients or 40,
                    products=args.products,
                    transient_failure_rate=args.transient_rate,
                    permanent_failure_rate=args.permanent_rate,
                    seed=args.seed,
                )
            ),
            args,
        )
    try:
        scenario = Scenario(
            tenants=args.tenants,
            clients=args.clients or 300,
            live_minutes=args.minutes,
            window_minutes=args.window,
            transient_failure_rate=args.transient_rate,
            permanent_failure_rate=args.permanent_rate,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return _print(run_scenario(scenario), args)


def _print(report: Report, args: argparse.Namespace) -> int:
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.render())
    return 0 if report.ok else EXIT_INVARIANT_BROKEN
