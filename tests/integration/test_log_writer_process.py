"""``LineWriter`` in a real process (ADR 0031): the lines that wait for the writer thread are
written when the interpreter exits, whether the program ends normally or by an uncaught error
(``logging.shutdown`` runs at exit: https://docs.python.org/3/library/logging.html
#logging.shutdown)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import logging, sys
from entrypoints.logs import configure_logging
configure_logging("text", "info")
log = logging.getLogger("livesell.test")
for n in range(1000):
    log.info("Message sent successfully", extra={"context": {"n": n}})
if sys.argv[1] == "raise":
    raise RuntimeError("an uncaught error")
"""


@pytest.mark.parametrize("ending", ["return", "raise"])
def test_every_line_is_written_when_the_process_exits(ending: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, ending],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )

    sent = [line for line in done.stderr.splitlines() if "Message sent successfully" in line]
    assert 1000 == len(sent), done.stderr[-2000:]
    assert sent[-1].endswith('{"n": 999}')
    assert (0 if ending == "return" else 1) == done.returncode
