# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""The webhook-processor on the real Redis and Postgres: jobs enqueued through ``RqInboundQueue``,
run by the worker part as ``livesell worker`` runs it (in a thread here), end state read back from
the database and from RQ's registries (SPEC §2, §3)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from rq.job import Job, JobStatus

from adapters.rq.queue import RqInboundQueue
from entrypoints.container import Container
from tests.support.redis_db import RedisTestDb
from tests.support.webhook import (  # noqa: F401 - fixtures
    OTHER_SELLER_PHONE,
    SELLER_PHONE,
    RqState,
    RunningWorker,
    client_phone,
    count,
    inbound_queue,
    payload,
    redis_db,
    redis_test_db,
    rows,
    rq_state,
    seed_tenant,
    wait_until,
    webhook_container,
)

TENANT = "boutique-lea"


def job_result(redis_db: RedisTestDb, job_id: str) -> object:
    job = Job.fetch(job_id, connection=redis_db.client)
    assert job.get_status() == JobStatus.FINISHED
    return job.return_value()


def processed(engine: sa.Engine) -> int:
    return count(engine, "SELECT count(*) FROM inbound_messages WHERE status = 'processed'")


class TestSenderClassification:
    def test_a_seller_message_opens_a_session_and_is_recorded_as_seller(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        job_id = inbound_queue.enqueue(payload(TENANT, SELLER_PHONE, message_id="SM-seller-1"))

        with RunningWorker(webhook_container):
            wait_until(lambda: processed(pg_engine) == 1 and rq_state.idle())

        [message] = rows(pg_engine, "SELECT * FROM inbound_messages")
        [session] = rows(pg_engine, "SELECT * FROM live_sessions")
        assert (message["message_type"], message["live_session_id"]) == ("seller", session["id"])
        assert (message["from_phone"], message["from_e164"]) == (
            f"whatsapp:{SELLER_PHONE}",
            SELLER_PHONE,
        )
        assert session["status"] == "active"
        result = job_result(redis_db, job_id)
        assert isinstance(result, dict)
        assert (result["messageType"], result["liveSessionId"]) == ("seller", session["id"])
        assert result["providerMessageId"] == "SM-seller-1"

    def test_a_client_message_joins_the_current_session(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        inbound_queue.enqueue(payload(TENANT, SELLER_PHONE))

        with RunningWorker(webhook_container):
            wait_until(lambda: processed(pg_engine) == 1)
            inbound_queue.enqueue(payload(TENANT, client_phone(1), message_id="SM-client-1"))
            wait_until(lambda: processed(pg_engine) == 2 and rq_state.idle())

        [session] = rows(pg_engine, "SELECT * FROM live_sessions")
        [client] = rows(
            pg_engine, "SELECT * FROM inbound_messages WHERE provider_message_id = 'SM-client-1'"
        )
        assert (client["message_type"], client["live_session_id"]) == ("client", session["id"])
        assert (session["seller_message_count"], session["client_message_count"]) == (1, 1)

    def test_a_client_message_with_no_current_session_joins_none_and_opens_none(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        job_id = inbound_queue.enqueue(payload(TENANT, client_phone(2)))

        with RunningWorker(webhook_container):
            wait_until(lambda: processed(pg_engine) == 1 and rq_state.idle())

        [message] = rows(pg_engine, "SELECT * FROM inbound_messages")
        assert (message["message_type"], message["live_session_id"]) == ("client", None)
        assert count(pg_engine, "SELECT count(*) FROM live_sessions") == 0
        result = job_result(redis_db, job_id)
        assert isinstance(result, dict)
        assert (result["messageType"], result["liveSessionId"]) == ("client", None)

    def test_a_second_seller_of_the_tenant_is_a_seller_too(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT, sellers=(SELLER_PHONE, OTHER_SELLER_PHONE))
        inbound_queue.enqueue(payload(TENANT, OTHER_SELLER_PHONE, message_id="SM-other-seller"))

        with RunningWorker(webhook_container):
            wait_until(lambda: processed(pg_engine) == 1 and rq_state.idle())

        [message] = rows(pg_engine, "SELECT * FROM inbound_messages")
        assert message["message_type"] == "seller"

    def test_a_seller_message_after_the_window_closes_the_stale_session_and_opens_a_new_one(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        window = webhook_container.window()
        with RunningWorker(webhook_container):
            inbound_queue.enqueue(payload(TENANT, SELLER_PHONE, message_id="SM-first"))
            wait_until(lambda: processed(pg_engine) == 1)
            [first] = rows(pg_engine, "SELECT * FROM live_sessions")
            with pg_engine.begin() as connection:
                connection.execute(
                    sa.text(
                        "UPDATE live_sessions SET started_at = started_at - :idle,"
                        " last_activity_at = last_activity_at - :idle WHERE id = :id"
                    ),
                    {"idle": timedelta(minutes=window.minutes + 1), "id": first["id"]},
                )
            inbound_queue.enqueue(payload(TENANT, client_phone(3), message_id="SM-late-client"))
            wait_until(lambda: processed(pg_engine) == 2)
            inbound_queue.enqueue(payload(TENANT, SELLER_PHONE, message_id="SM-back"))
            wait_until(lambda: processed(pg_engine) == 3 and rq_state.idle())

        sessions = {s["id"]: s for s in rows(pg_engine, "SELECT * FROM live_sessions")}
        assert len(sessions) == 2
        stale = sessions[first["id"]]
        assert (stale["status"], stale["close_reason"]) == ("closed", "inactivity")
        [fresh] = [s for s in sessions.values() if s["id"] != first["id"]]
        assert fresh["status"] == "active"
        by_id = {
            m["provider_message_id"]: m for m in rows(pg_engine, "SELECT * FROM inbound_messages")
        }
        assert by_id["SM-late-client"]["live_session_id"] is None
        assert by_id["SM-back"]["live_session_id"] == fresh["id"]
        closed_events = count(
            pg_engine,
            "SELECT count(*) FROM event_logs WHERE event_type = 'live_session.closed'"
            " AND subject_id = :id",
            {"id": first["id"]},
        )
        assert closed_events == 1


class TestIdempotency:
    def test_a_message_enqueued_twice_is_recorded_once_and_both_jobs_return_it(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        message = payload(TENANT, SELLER_PHONE, message_id="SM-twice")
        first = inbound_queue.enqueue(message)
        second = inbound_queue.enqueue(dict(message))
        assert first != second

        with RunningWorker(webhook_container):
            wait_until(lambda: rq_state.idle() and processed(pg_engine) == 1)

        assert count(pg_engine, "SELECT count(*) FROM inbound_messages") == 1
        assert (
            count(
                pg_engine,
                "SELECT count(*) FROM event_logs WHERE event_type = 'message.classified'",
            )
            == 1
        )
        assert count(pg_engine, "SELECT count(*) FROM live_sessions") == 1
        assert job_result(redis_db, first) == job_result(redis_db, second)

    def test_a_duplicate_enqueued_after_the_first_ran_returns_the_first_result(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        message = payload(TENANT, client_phone(4), message_id="SM-later-duplicate")
        with RunningWorker(webhook_container):
            first = inbound_queue.enqueue(message)
            wait_until(lambda: processed(pg_engine) == 1 and rq_state.idle())
            inbound_queue.enqueue(payload(TENANT, SELLER_PHONE))  # a session opens meanwhile
            wait_until(lambda: processed(pg_engine) == 2 and rq_state.idle())
            second = inbound_queue.enqueue(dict(message))
            wait_until(
                lambda: Job.fetch(second, connection=redis_db.client).get_status() == "finished"
            )

        assert job_result(redis_db, second) == job_result(redis_db, first)
        assert count(pg_engine, "SELECT count(*) FROM inbound_messages") == 2


class TestConcurrentSlots:
    def test_a_burst_of_200_jobs_for_one_tenant_on_five_slots_leaves_exactly_one_active_session(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT, sellers=(SELLER_PHONE, OTHER_SELLER_PHONE))
        assert webhook_container.settings().webhook_worker_concurrency == 5  # type: ignore[union-attr]
        burst = [
            payload(
                TENANT,
                (SELLER_PHONE, OTHER_SELLER_PHONE)[n % 2] if n % 3 == 0 else client_phone(n),
                message_id=f"SM-burst-{n:03d}",
            )
            for n in range(200)
        ]
        inbound_queue.enqueue_many(burst)

        peak = 0
        with RunningWorker(webhook_container) as running:
            engine = running.part.worker
            assert engine is not None

            def drained() -> bool:
                nonlocal peak
                peak = max(peak, engine.in_flight())
                return processed(pg_engine) == 200 and rq_state.idle()

            wait_until(drained, timeout=60, interval=0.005)
        assert 1 < peak <= 5

        assert (
            count(
                pg_engine,
                "SELECT count(*) FROM live_sessions WHERE tenant_id = :t AND status = 'active'",
                {"t": TENANT},
            )
            == 1
        )
        assert count(pg_engine, "SELECT count(*) FROM live_sessions") == 1
        sellers = rows(
            pg_engine,
            "SELECT DISTINCT live_session_id FROM inbound_messages WHERE message_type = 'seller'",
        )
        assert len(sellers) == 1
        [session] = rows(pg_engine, "SELECT * FROM live_sessions")
        seller_count = sum(1 for n in range(200) if n % 3 == 0)
        assert session["seller_message_count"] == seller_count
        assert count(pg_engine, "SELECT count(*) FROM dead_letter_jobs") == 0
        assert rq_state.failed() == 0


class TestRejectedPayloads:
    @pytest.mark.parametrize(
        ("case", "bad_payload", "reason", "error_mentions"),
        [
            (
                "missing field",
                {"tenantId": TENANT, "providerMessageId": "SM-missing", "from": SELLER_PHONE},
                "invalid_payload",
                "body",
            ),
            (
                "wrong type",
                {
                    "tenantId": TENANT,
                    "providerMessageId": "SM-type",
                    "from": SELLER_PHONE,
                    "body": 42,
                    "correlationId": "corr-type",
                },
                "invalid_payload",
                "must be a string",
            ),
            (
                "body over 4096 characters",
                {
                    "tenantId": TENANT,
                    "providerMessageId": "SM-long",
                    "from": SELLER_PHONE,
                    "body": "x" * 4097,
                    "correlationId": "corr-long",
                },
                "invalid_payload",
                "4096",
            ),
            (
                "invalid phone",
                {
                    "tenantId": TENANT,
                    "providerMessageId": "SM-phone",
                    "from": "whatsapp:+3361",
                    "body": "hello",
                    "correlationId": "corr-phone",
                },
                "invalid_phone",
                "",
            ),
            (
                "unknown tenant",
                {
                    "tenantId": "nobody",
                    "providerMessageId": "SM-tenant",
                    "from": SELLER_PHONE,
                    "body": "hello",
                    "correlationId": "corr-tenant",
                },
                "unknown_tenant",
                "nobody",
            ),
            ("non-object payload", ["not", "an", "object"], "invalid_payload", "JSON object"),
        ],
    )
    def test_a_bad_payload_is_dead_lettered_with_its_reason_and_the_worker_keeps_going(
        self,
        case: str,
        bad_payload: object,
        reason: str,
        error_mentions: str,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        bad_job = inbound_queue.enqueue(bad_payload)  # type: ignore[arg-type]
        good = payload(TENANT, SELLER_PHONE, message_id="SM-after-the-bad-one")
        inbound_queue.enqueue(good)

        with RunningWorker(webhook_container):
            wait_until(lambda: processed(pg_engine) == 1 and rq_state.idle())

        [dead] = rows(pg_engine, "SELECT * FROM dead_letter_jobs")
        assert (dead["source"], dead["error_code"], dead["attempts"]) == (
            "webhook-processing",
            reason,
            1,
        )
        assert error_mentions in dead["error"]
        expected_payload = bad_payload if isinstance(bad_payload, dict) else {"raw": bad_payload}
        assert dead["payload"] == expected_payload
        names_no_known_tenant = case in ("unknown tenant", "non-object payload")
        assert dead["tenant_id"] == (None if names_no_known_tenant else TENANT)
        [event] = rows(pg_engine, "SELECT * FROM event_logs WHERE event_type = 'inbound.rejected'")
        assert event["payload"]["reason"] == reason
        result = job_result(redis_db, bad_job)
        assert result == {
            "status": "rejected",
            "reason": reason,
            "error": dead["error"],
            "deadLetterId": dead["id"],
        }
        assert rq_state.failed() == 0, f"{case}: a rejected payload is not an RQ failure"
        assert count(pg_engine, "SELECT count(*) FROM inbound_messages") == 1
