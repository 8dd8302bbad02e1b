# mypy: disable-error-code="no-untyped-call"
"""Reading a batch of job hashes one job at a time, so one bad job fails alone (ADR 0014).

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
from rq.job import Job

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
