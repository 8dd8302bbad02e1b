"""``livesell simulate``: placeholder registration, replaced by the simulation harness."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("simulate", help="run a scripted live")
    parser.set_defaults(handler=lambda args: 0)
