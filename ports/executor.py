"""Where concurrent work runs, so that the core holds no thread code of its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Executor(Protocol):
    """Runs tasks: on a pool of threads (``adapters.system.executor.ThreadPool``) or at once in
    the caller (``adapters.system.executor.InlineExecutor``: deterministic, for the simulation
    and the unit tests). A task hands its result back itself (the sender's tasks post to a
    mailbox and wake the loop); an exception a task raises is not reported anywhere, so tasks
    catch what they expect."""

    def submit(self, task: Callable[[], None]) -> None:
        """Run ``task`` now or as soon as a worker is free. Never blocks on the task."""
        ...

    def shutdown(self) -> None:
        """Wait for every submitted task to finish; submit nothing afterwards."""
        ...
