"""Run a module under cProfile in every thread, then write the merged profile.

    python bench/profiled.py OUT.prof -m entrypoints.cli worker --only outbox

cProfile profiles only the thread that enables it (Python 3.11: one profile hook per thread), and
the outbox sender sends on a pool of threads: each thread started here runs its target under a
profile of its own; at exit those of the threads that ended (the pool is shut down before the
sender returns) and the main thread's are merged into ``OUT.prof`` (``pstats`` reads it).

Times are each thread's CPU time (``time.thread_time``), not wall time: with hundreds of send
threads a wall-clock profile counts every thread's wait for the GIL or for work as its own time.
"""

from __future__ import annotations

import atexit
import cProfile
import pstats
import runpy
import sys
import threading
import time

_finished: list[cProfile.Profile] = []
_lock = threading.Lock()
_original_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        _original_run(self)
    finally:
        profile.disable()
        with _lock:
            _finished.append(profile)


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit(__doc__)
    out, module = sys.argv[1], sys.argv[3]
    threading.Thread.run = _profiled_run  # type: ignore[method-assign]
    main_profile = cProfile.Profile(time.thread_time)

    def dump() -> None:
        main_profile.disable()
        with _lock:
            stats = pstats.Stats(main_profile)
            for profile in _finished:
                stats.add(profile)
        stats.dump_stats(out)

    atexit.register(dump)
    sys.argv = [module, *sys.argv[4:]]
    main_profile.enable()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
