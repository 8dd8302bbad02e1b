# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""``RqInboundQueue`` and the Redis connection factory against real Redis servers: the shared one
(a database of its own), a private password-protected one started by the test, and a proxy the
test cuts."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from redis.connection import SSLConnection
from rq import Queue
from rq.job import Job

from adapters.rq import connection as rq_connection
from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import (
    FAILURE_CALLBACK,
    JOB_FUNCTION,
    JOB_TIMEOUT_SECONDS,
    QUEUE_NAME,
    JobSpec,
)
from domain.retry import RetryPolicy
from ports.queue import QueueUnavailable
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
from tests.support.webhook import payload, redis_db, redis_test_db  # noqa: F401 - fixtures

PASSWORD = "s3cret-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A password-protected redis-server of this module's own, on a free port of 127.0.0.1."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is needed for the password tests"
    port = free_port()
    workdir = tmp_path_factory.mktemp("private-redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the private redis-server did not start")
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def spec() -> JobSpec:
    return JobSpec.webhook_processing(RetryPolicy())


class TestEnqueue:
    def test_a_job_is_enqueued_in_one_round_trip(
        self, redis_db: RedisTestDb, spec: JobSpec, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The webhook's enqueue is one MULTI/EXEC pipeline: one write to Redis per request, not
        the two of RQ's ``enqueue_call`` (ADR 0027)."""
        queue = RqInboundQueue(redis_connection(redis_db.url), spec)
        queue.enqueue(payload("t", "+33612345678", message_id="SM-warm"))  # RQ caches the version
        writes: list[int] = []
        send = redis.connection.AbstractConnection.send_packed_command

        def counted(self: redis.connection.AbstractConnection, *args: object, **kw: object) -> None:
            writes.append(1)
            send(self, *args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
        job_id = queue.enqueue(payload("t", "+33612345678", message_id="SM-one-trip"))
        monkeypatch.undo()

        assert len(writes) == 1
        assert Queue(QUEUE_NAME, connection=redis_db.client).job_ids[-1] == job_id
        assert Job.fetch(job_id, connection=redis_db.client).get_status() == "queued"

    def test_a_payload_becomes_a_job_with_the_one_set_of_options(
        self, redis_db: RedisTestDb, spec: JobSpec
    ) -> None:
        message = payload("boutique-lea", "+33612345678", message_id="SM-options")
        job_id = RqInboundQueue(redis_connection(redis_db.url), spec).enqueue(message)

        job = Job.fetch(job_id, connection=redis_db.client)
        assert (job.origin, job.func_name, job.args) == (QUEUE_NAME, JOB_FUNCTION, (message,))
        assert (job.timeout, job.result_ttl, job.failure_ttl) == (
            JOB_TIMEOUT_SECONDS,
            spec.result_ttl,
            spec.failure_ttl,
        )
        assert (job.retries_left, job.retry_intervals) == (4, [1, 2, 4, 8])
        assert job._failure_callback_name == FAILURE_CALLBACK
        assert job.description == "webhook-processing boutique-lea/SM-options"
        assert "+336" not in (job.description or "")
        assert Queue(QUEUE_NAME, connection=redis_db.client).job_ids == [job_id]

    def test_enqueue_many_gives_every_job_the_same_options(
        self, redis_db: RedisTestDb, spec: JobSpec
    ) -> None:
        queue = RqInboundQueue(redis_connection(redis_db.url), spec)
        ids = queue.enqueue_many([payload("t", "+33612345678") for _ in range(3)])
        single = Job.fetch(queue.enqueue(payload("t", "+33612345678")), connection=redis_db.client)

        jobs = Job.fetch_many(ids, connection=redis_db.client)
        for job in jobs:
            assert job is not None
            assert (
                job.timeout,
                job.result_ttl,
                job.failure_ttl,
                job.retries_left,
                job.retry_intervals,
                job._failure_callback_name,
            ) == (
                single.timeout,
                single.result_ttl,
                single.failure_ttl,
                single.retries_left,
                single.retry_intervals,
                single._failure_callback_name,
            )

    def test_the_retry_intervals_follow_the_domain_policy(self) -> None:
        assert JobSpec.webhook_processing(RetryPolicy(max_attempts=5)).retry_intervals == (
            1,
            2,
            4,
            8,
        )
        assert JobSpec.webhook_processing(RetryPolicy(max_attempts=7)).retry_intervals == (
            1,
            2,
            4,
            8,
            16,
            30,
        )
        assert JobSpec.webhook_processing(RetryPolicy(max_attempts=1)).retry() is None


class TestRedisUnavailable:
    def test_enqueue_raises_queue_unavailable_when_redis_is_cut_off(
        self, redis_db: RedisTestDb, spec: JobSpec
    ) -> None:
        with TcpProxy("127.0.0.1", 6379) as proxy:
            url = f"redis://{proxy.host}:{proxy.port}/{redis_db.db}"
            queue = RqInboundQueue(redis_connection(url), spec)
            queue.enqueue(payload("t", "+33612345678"))
            proxy.cut()
            with pytest.raises(QueueUnavailable) as raised:
                queue.enqueue(payload("t", "+33612345678"))
            assert isinstance(raised.value.__cause__, redis.exceptions.ConnectionError)
            proxy.restore()
            queue.enqueue(payload("t", "+33612345678"))
        assert Queue(QUEUE_NAME, connection=redis_db.client).count == 2

    def test_enqueue_raises_queue_unavailable_when_nothing_listens(self, spec: JobSpec) -> None:
        queue = RqInboundQueue(redis_connection(f"redis://127.0.0.1:{free_port()}/0"), spec)
        with pytest.raises(QueueUnavailable):
            queue.enqueue(payload("t", "+33612345678"))

    @pytest.mark.parametrize(
        "error",
        [
            redis.exceptions.ConnectionError("reset"),
            redis.exceptions.TimeoutError("slow"),
            redis.exceptions.AuthenticationError("wrong password"),
            redis.exceptions.BusyLoadingError("loading"),
            redis.exceptions.ReadOnlyError("replica"),
            ConnectionRefusedError(111, "refused"),
        ],
        ids=type,
    )
    def test_every_unavailability_error_of_redis_becomes_queue_unavailable(
        self, error: Exception
    ) -> None:
        with pytest.raises(QueueUnavailable) as raised, rq_connection.queue_errors():
            raise error
        assert raised.value.__cause__ is error


class TestCredentials:
    def test_the_password_in_redis_url_is_used(self, private_redis: int) -> None:
        client = redis_connection(f"redis://:{PASSWORD}@127.0.0.1:{private_redis}/0")
        assert client.ping() is True

    def test_redis_token_is_the_password_when_the_url_has_none(self, private_redis: int) -> None:
        client = redis_connection(f"redis://127.0.0.1:{private_redis}/0", PASSWORD)
        assert client.ping() is True
        named_user = redis_connection(f"redis://default@127.0.0.1:{private_redis}/0", PASSWORD)
        assert named_user.ping() is True

    def test_the_url_password_wins_over_redis_token(self, private_redis: int) -> None:
        client = redis_connection(f"redis://:{PASSWORD}@127.0.0.1:{private_redis}/0", "wrong")
        assert client.ping() is True

    def test_a_wrong_password_is_queue_unavailable_at_enqueue(
        self, private_redis: int, spec: JobSpec
    ) -> None:
        queue = RqInboundQueue(
            redis_connection(f"redis://127.0.0.1:{private_redis}/0", "not-the-token"), spec
        )
        with pytest.raises(QueueUnavailable):
            queue.enqueue(payload("t", "+33612345678"))

    def test_rediss_urls_connect_with_tls_and_verify_certificates(self) -> None:
        client = redis_connection("rediss://default@example.upstash.io:6379", "token")
        pool = client.connection_pool
        assert pool.connection_class is SSLConnection
        assert pool.connection_kwargs["password"] == "token"
        connection = pool.make_connection()
        assert (connection.cert_reqs, connection.check_hostname) == (ssl.CERT_REQUIRED, True)

    def test_every_connection_has_timeouts_keepalive_and_a_health_check(self) -> None:
        kwargs = redis_connection("redis://127.0.0.1:6379/0").connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == rq_connection.SOCKET_TIMEOUT_SECONDS
        assert kwargs["socket_connect_timeout"] == rq_connection.CONNECT_TIMEOUT_SECONDS
        assert kwargs["health_check_interval"] == rq_connection.HEALTH_CHECK_INTERVAL_SECONDS
        assert kwargs["socket_keepalive"] is True
