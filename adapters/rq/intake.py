# mypy: disable-error-code="no-untyped-call"
"""Taking jobs from the queue in batches, and reading each batch's hashes one job at a time, so
one bad job fails alone (ADR 0007, 0014).

``JobIntake.take`` moves up to ``count`` ids to the intermediate queue (RQ's LMOVE dequeue),
reads their hashes (``fetch_jobs``) and marks the good ones started in one transaction
(``adapters.rq.lifecycle.prepare_job_execution``), where RQ spends about a dozen round trips per
job; the undecodable ones go, in the same transaction, to the parked list for their dead letter.

RQ's ``Job.fetch_many`` restores every hash of a batch in one loop and decodes ``data`` lazily,
so a hash another producer wrote with its own serializer raises ``DeserializationError`` later,
out of whatever touched it first, and takes the batch (and, before ADR 0014, the engine) with it.
``fetch_jobs`` reads the hashes in the same one round trip, then restores and decodes each job on
its own: a job that cannot be decoded, or that names a function other than the queue's, comes
back as an ``UndecodableJob`` holding its raw hash, for a dead letter.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import attrs
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.worker import WorkerStatus

from adapters.rq import lifecycle
from adapters.rq.spec import JobSpec
from adapters.rq.watchdog import Running

DEQUEUE_BLOCK_SECONDS = 1
"""Longest blocking wait for a job, so a stop request is seen within a second."""

TAKE_SCRIPT = """
local taken = {}
for _ = 1, tonumber(ARGV[1]) do
    local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
    if not id then break end
    taken[#taken + 1] = id
    taken[#taken + 1] = redis.call('HGETALL', ARGV[2] .. id)
end
return taken
"""
"""RQ's dequeue (``LMOVE`` from the queue to its intermediate queue, ``Queue.dequeue_any``) of up
to ``ARGV[1]`` ids, each followed by its job hash (``HGETALL``, what ``Job.fetch_many`` reads):
the ids and the hashes of a batch in one round trip where a pipeline of LMOVEs then one of
HGETALLs take two (ADR 0026). The hash keys are built in the script from RQ's prefix, so this
is for a single Redis server (RQ supports no cluster either)."""

UNDECODABLE = "undecodable_job"
"""The hash cannot be restored or its ``data`` cannot be decoded (another producer's serializer)."""
FOREIGN = "foreign_job"
"""The job decodes but names a function this queue does not run."""


@attrs.frozen
class UndecodableJob:
    """A job the engine will not run: why (``reason``, ``error``) and its hash as stored."""

    job_id: str
    reason: str
    error: str
    raw: dict[str, str]
    """Every field of the hash; values that are not UTF-8 text are ``base64:`` followed by the
    base64 of the bytes (RQ's ``data`` is zlib-compressed pickle)."""


def raw_hash_text(raw: dict[Any, Any]) -> dict[str, str]:
    """A Redis hash as JSON-safe text, nothing dropped."""
    return {_field(key): _value(value) for key, value in raw.items()}


def _field(key: object) -> str:
    return key.decode(errors="replace") if isinstance(key, bytes) else str(key)


def _value(value: object) -> str:
    if not isinstance(value, bytes):
        return str(value)
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        text += f" ({type(cause).__name__}: {cause})"
    return text


def decode_job(
    job_id: str, raw: dict[Any, Any], connection: Redis, serializer: Any, function: str
) -> Job | UndecodableJob:
    """Restore one job and decode its ``data`` now (RQ: ``Job.restore``, then the lazy
    ``Job._deserialize_data`` forced through ``func_name``, ``args`` and ``kwargs``)."""
    try:
        job = Job(job_id, connection=connection, serializer=serializer)
        job.restore(raw)
        func_name = job.func_name
        _ = (job.args, job.kwargs)
    except Exception as exc:
        return UndecodableJob(
            job_id, UNDECODABLE, f"cannot decode the job: {_describe(exc)}", raw_hash_text(raw)
        )
    if func_name != function:
        return UndecodableJob(
            job_id,
            FOREIGN,
            f"the job runs {func_name!r}; this queue runs only {function!r}",
            raw_hash_text(raw),
        )
    return job


def fetch_jobs(
    connection: Redis, ids: Sequence[str], serializer: Any, function: str
) -> list[Job | UndecodableJob | None]:
    """The jobs ``ids`` name, in order: a ``Job``, an ``UndecodableJob``, or None when the hash
    is gone (RQ: ``Job.fetch_many``, one pipelined HGETALL per job)."""
    with connection.pipeline() as pipe:
        for job_id in ids:
            pipe.hgetall(Job.key_for(job_id))
        results = pipe.execute()
    return [
        decode_job(job_id, raw, connection, serializer, function) if raw else None
        for job_id, raw in zip(ids, results, strict=True)
    ]


class JobIntake:
    """Takes the jobs of one queue for one worker, a batch at a time."""

    def __init__(
        self,
        connection: Redis,
        queue: Queue,
        spec: JobSpec,
        *,
        worker_name: str,
        execution_ttl: int,
        parked_key: str,
    ) -> None:
        self.connection = connection
        self.queue = queue
        self.spec = spec
        self.worker_name = worker_name
        self.execution_ttl = execution_ttl
        self.parked_key = parked_key
        self.intermediate_key = queue.intermediate_queue_key
        self._taken: list[str] = []
        self._take_script = connection.register_script(TAKE_SCRIPT)

    def take(
        self, count: int, registration: SimpleWorker
    ) -> tuple[list[Running], list[UndecodableJob]]:
        """Up to ``count`` jobs, started (RQ: ``Worker.dequeue_job_and_maintain_ttl`` then
        ``prepare_job_execution``, per job), and the undecodable ones, parked."""
        # Ids moved to the intermediate queue by a take that Redis failed half way are ours:
        # start them first (RQ's intermediate-queue cleanup would otherwise fail them after 1 min).
        ids, self._taken = self._taken[:count], self._taken[count:]
        raws: list[dict[Any, Any]] | None = None
        if not ids:
            ids, raws = self._dequeue(count)
        if not ids:
            return [], []
        try:
            if raws is None:
                fetched = fetch_jobs(
                    self.connection, ids, self.queue.serializer, self.spec.function
                )
            else:
                fetched = [self._decode(job_id, raw) for job_id, raw in zip(ids, raws, strict=True)]
            return self._start(ids, fetched, registration)
        except BaseException:
            self._taken = ids + self._taken
            raise

    def _decode(self, job_id: str, raw: dict[Any, Any]) -> Job | UndecodableJob | None:
        if not raw:
            return None
        return decode_job(job_id, raw, self.connection, self.queue.serializer, self.spec.function)

    def _dequeue(self, count: int) -> tuple[list[str], list[dict[Any, Any]] | None]:
        """Move up to ``count`` job ids to the intermediate queue, as RQ's LMOVE dequeue does, and
        read their hashes in the same round trip (``TAKE_SCRIPT``); when the queue is empty, wait
        for one id (BLMOVE), whose hash is read next. Returns the ids and, when read, the
        hashes."""
        reply = self._take_script(
            keys=[self.queue.key, self.intermediate_key],
            args=[count, Job.redis_job_namespace_prefix],
        )
        if reply:
            ids = [_text(item) for item in reply[0::2]]
            return ids, [_pairs(flat) for flat in reply[1::2]]
        item = self.connection.blmove(self.queue.key, self.intermediate_key, DEQUEUE_BLOCK_SECONDS)
        return ([], None) if item is None else ([_text(item)], None)

    def _start(
        self,
        ids: list[str],
        fetched: list[Job | UndecodableJob | None],
        registration: SimpleWorker,
    ) -> tuple[list[Running], list[UndecodableJob]]:
        """Mark the batch's jobs started, in one transaction that also moves the undecodable ones
        from the intermediate queue to the parked list."""
        started: list[Running] = []
        undecodable: list[UndecodableJob] = []
        with self.connection.pipeline() as pipe:
            for job_id, job in zip(ids, fetched, strict=True):
                if job is None:
                    pipe.lrem(self.intermediate_key, 1, job_id)
                    continue
                if isinstance(job, UndecodableJob):
                    pipe.lrem(self.intermediate_key, 1, job_id)
                    pipe.rpush(self.parked_key, job_id)
                    undecodable.append(job)
                    continue
                lifecycle.apply_spec_defaults(job, self.spec, pipe)
                execution = lifecycle.prepare_job_execution(
                    job,
                    pipe,
                    worker_name=self.worker_name,
                    execution_ttl=self.execution_ttl,
                    intermediate_key=self.intermediate_key,
                )
                started.append(Running(job, execution))
            if started:
                registration.set_state(WorkerStatus.BUSY, pipeline=pipe)
                registration.set_current_job_id(started[-1].job.id, pipeline=pipe)
            pipe.execute()
        return started, undecodable


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    """A hash as a script returns it (field, value, field, value ...) as HGETALL's dict."""
    return dict(zip(flat[0::2], flat[1::2], strict=True))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
