"""``InboundQueue`` on RQ: webhook payloads become jobs of the webhook-processing ``JobSpec``
(``entrypoints.jobs.process_webhook_message`` on queue ``webhook-processing``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from rq import Queue

from adapters.rq.connection import queue_errors
from adapters.rq.spec import JobSpec


def describe_payload(payload: dict[str, Any]) -> str:
    """The job description RQ shows (``rq info``, the dashboard, its own log lines): the message's
    ids, never its phone numbers or body."""
    tenant = payload.get("tenantId") if isinstance(payload, dict) else None
    message = payload.get("providerMessageId") if isinstance(payload, dict) else None
    return f"webhook-processing {tenant!s}/{message!s}"


class RqInboundQueue:
    """Enqueues inbound payloads for the webhook-processor.

    Enqueuing the same ``providerMessageId`` twice makes two jobs; the use case records it once.
    Raises ``ports.queue.QueueUnavailable`` when Redis cannot be reached.
    """

    def __init__(self, connection: Redis, spec: JobSpec) -> None:
        self.spec = spec
        self.queue = Queue(spec.queue, connection=connection, default_timeout=spec.timeout)

    def enqueue(self, payload: dict[str, Any]) -> str:
        """One job, in one Redis round trip (one MULTI/EXEC pipeline: RQ's ``enqueue_call``
        takes two, ADR 0027)."""
        return self.enqueue_many([payload])[0]

    def enqueue_many(self, payloads: Sequence[dict[str, Any]]) -> list[str]:
        """Enqueue several payloads in one round trip (replays, benchmarks)."""
        options = self.spec.enqueue_options()
        data = [
            Queue.prepare_data(
                self.spec.function,
                args=(payload,),
                description=describe_payload(payload),
                **options,
            )
            for payload in payloads
        ]
        with queue_errors(), self.queue.connection.pipeline() as pipeline:
            jobs = self.queue.enqueue_many(data, pipeline=pipeline)
            pipeline.execute()
        return [str(job.id) for job in jobs]
