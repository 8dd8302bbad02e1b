"""The shared per-sender-number limit's fallback (ADR 0018), on fakeredis under a fake clock: while
Redis answers every send is paced there; when it does not, this process paces itself at the rate
divided by the instance count, says so once per outage, asks Redis again at most once a second
without any send waiting on that, and goes back to Redis when it answers.

The limit is WhatsApp's throughput per sender on Twilio: "80 MPS (messages per second) by default
per WhatsApp sender for outbound traffic"; faster sends are queued, for four hours at most
(https://www.twilio.com/docs/whatsapp/best-practices-and-faqs, "What is the MPS (Messages Per
Second) limit for outbound WhatsApp messages?")."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis
from dependency_injector import providers

from adapters.rq.rate_limit import (
    PROBE_INTERVAL_SECONDS,
    RedisRateLimiter,
    rate_limit_client,
    sender_key,
)
from adapters.system.rate_limit import TokenBucketRateLimiter
from entrypoints.container import build
from entrypoints.settings import ConfigError, Settings

SENDER = "+33180808080"
TWILIO = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "tw-secret-token",
    "TWILIO_WHATSAPP_NUMBER": "+14155238886",
}


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class OutageRedis(fakeredis.FakeRedis):
    """fakeredis that refuses every command while ``down``, counting what it was asked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.down = False
        self.asked = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.asked += 1
        if self.down:
            raise redis.exceptions.ConnectionError("Error 111 connecting to redis:6379. Refused.")
        return super().execute_command(*args, **options)


class Probes:
    """``start_probe`` that keeps the probes for the test to run (or not)."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def __call__(self, probe: Callable[[], None]) -> None:
        self.pending.append(probe)

    def run(self) -> None:
        while self.pending:
            self.pending.pop(0)()


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def client() -> OutageRedis:
    return OutageRedis(server=fakeredis.FakeServer())


@pytest.fixture
def probes() -> Probes:
    return Probes()


def limiter(
    client: OutageRedis, time: FakeTime, probes: Probes, rate: float = 90, instances: int = 3
) -> RedisRateLimiter:
    return RedisRateLimiter(
        client,
        rate,
        instances=instances,
        fallback=lambda r: TokenBucketRateLimiter(
            r, burst=1, monotonic=time.monotonic, sleep=time.sleep
        ),
        monotonic=time.monotonic,
        sleep=time.sleep,
        start_probe=probes,
    )


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "falls back to this process" in r.getMessage()
    ]


class TestWhileRedisAnswers:
    def test_each_send_is_counted_on_the_sender_numbers_key_in_redis(
        self, client: OutageRedis, time: FakeTime, probes: Probes
    ) -> None:
        shared = limiter(client, time, probes, rate=0.2)  # the key lives 5 s, one slot long

        shared.acquire(SENDER)

        assert "livesell:ratelimit:twilio:+33180808080" == sender_key(SENDER)
        assert 1 == client.exists(sender_key(SENDER))
        assert (False, 0.0) == (shared.on_fallback, time.now)

    def test_the_key_names_its_provider(self) -> None:
        assert "livesell:ratelimit:meta:+33180808080" == sender_key(SENDER, provider="meta")

    def test_the_burst_is_a_quarter_second_of_sends_and_at_least_one(
        self, client: OutageRedis, time: FakeTime, probes: Probes
    ) -> None:
        # ADR 0030: enough for a sender descheduled for up to 250 ms to take back its slots
        assert [20, 1, 2500] == [
            limiter(client, time, probes, rate=rate).burst for rate in (80, 2, 10000)
        ]


class TestWhenRedisDoesNotAnswer:
    def test_this_process_sends_at_the_rate_divided_by_the_instance_count(
        self, client: OutageRedis, time: FakeTime, probes: Probes
    ) -> None:
        shared = limiter(client, time, probes, rate=90, instances=3)
        client.down = True

        for _ in range(31):
            shared.acquire(SENDER)

        assert shared.on_fallback
        assert pytest.approx(30 / 30) == time.now  # 30/s: the first at once, 30 more in 1 s

    def test_the_outage_is_logged_once_as_a_warning_with_the_rates(
        self,
        client: OutageRedis,
        time: FakeTime,
        probes: Probes,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger="livesell.outbox.rate_limit")
        shared = limiter(client, time, probes, rate=80, instances=4)
        client.down = True

        for _ in range(100):  # five seconds at 20/s, a probe refused every second
            shared.acquire(SENDER)
            probes.run()

        [warning] = outage_warnings(caplog)
        context = warning.__dict__["context"]
        assert {
            "ratePerSecond": 80,
            "senderInstances": 4,
            "fallbackRatePerSecond": 20.0,
            "probeIntervalSeconds": PROBE_INTERVAL_SECONDS,
        } == {k: v for k, v in context.items() if k != "error"}
        assert context["error"].startswith("ConnectionError: Error 111")

    def test_redis_is_asked_again_at_most_once_a_second(
        self, client: OutageRedis, time: FakeTime, probes: Probes
    ) -> None:
        shared = limiter(client, time, probes, rate=80, instances=1)
        client.down = True
        shared.acquire(SENDER)
        asked = client.asked

        for _ in range(400):  # five seconds at 80/s
            shared.acquire(SENDER)
            probes.run()

        assert pytest.approx(400 / 80) == time.now
        assert 4 == client.asked - asked  # after 1, 2, 3 and 4 s; 400 sends asked nothing

    def test_no_send_waits_for_a_probe_and_one_probe_runs_at_a_time(
        self, client: OutageRedis, time: FakeTime, probes: Probes
    ) -> None:
        shared = limiter(client, time, probes, rate=10, instances=1)
        client.down = True
        shared.acquire(SENDER)

        for _ in range(30):  # three seconds at 10/s; the probe started after one never ends
            shared.acquire(SENDER)

        assert (1, True) == (len(probes.pending), shared.on_fallback)
        assert pytest.approx(3.0) == time.now

    def test_redis_is_used_again_once_a_probe_is_answered_and_that_is_logged(
        self,
        client: OutageRedis,
        time: FakeTime,
        probes: Probes,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger="livesell.outbox.rate_limit")
        shared = limiter(client, time, probes, rate=0.5, instances=1)
        client.down = True
        shared.acquire(SENDER)
        client.down = False
        time.sleep(1.0)

        shared.acquire(SENDER)  # starts the probe, sends on the fallback
        assert shared.on_fallback
        probes.run()
        shared.acquire(SENDER)

        assert (False, 1) == (shared.on_fallback, client.exists(sender_key(SENDER)))
        [back] = [r for r in caplog.records if "through Redis again" in r.getMessage()]
        assert (logging.INFO, time.now) == (
            back.levelno,
            back.__dict__["context"]["fallbackSeconds"],
        )

    def test_each_outage_is_logged_once(
        self,
        client: OutageRedis,
        time: FakeTime,
        probes: Probes,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        shared = limiter(client, time, probes)
        for _ in range(2):
            client.down = True
            for _ in range(5):
                shared.acquire(SENDER)
            client.down = False
            time.sleep(1.0)
            shared.acquire(SENDER)
            probes.run()

        assert 2 == len(outage_warnings(caplog))

    def test_a_script_refused_by_redis_falls_back_too(
        self, client: OutageRedis, time: FakeTime, probes: Probes
    ) -> None:
        shared = limiter(client, time, probes)
        client.set(sender_key(SENDER), "not a time")  # the script fails on it (no number)

        shared.acquire(SENDER)

        assert shared.on_fallback

    def test_an_instance_count_below_one_is_refused(
        self, client: OutageRedis, time: FakeTime, probes: Probes
    ) -> None:
        with pytest.raises(ValueError, match="instances"):
            limiter(client, time, probes, instances=0)


class TestTheClientAndTheContainer:
    def test_the_rate_limit_client_reaches_the_same_server_with_short_timeouts(self) -> None:
        queue = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        queue.set("seen", "yes")

        own = rate_limit_client(queue)

        options = own.connection_pool.connection_kwargs
        assert (b"yes", 0.25, 0.5) == (
            own.get("seen"),
            options["socket_timeout"],
            options["socket_connect_timeout"],
        )

    def test_the_database_backed_container_shares_the_limit_through_the_queues_redis(
        self,
    ) -> None:
        settings = Settings.from_env(
            {
                "OUTBOX_RATE_LIMIT_PER_SECOND": "1",
                "OUTBOX_SENDER_INSTANCES": "2",
                "OUTBOX_SEND_CONCURRENCY": "16",
            }
        )
        container = build(settings)
        queue = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        container.queue_redis.override(providers.Object(queue))

        shared = container.rate_limiter()
        shared.acquire(SENDER)

        assert isinstance(shared, RedisRateLimiter)
        assert (1.0, 0.5, 1) == (
            shared.rate,
            shared.fallback_rate,
            queue.exists(sender_key(SENDER)),
        )

    def test_the_in_memory_container_keeps_the_limit_in_the_process(self) -> None:
        container = build(Settings.from_env({}), store="memory")

        assert isinstance(container.rate_limiter(), TokenBucketRateLimiter)


class TestTheInstanceCountSetting:
    def test_one_instance_is_the_default(self) -> None:
        assert 1 == Settings.from_env({}).outbox_sender_instances

    @pytest.mark.parametrize("value", ["0", "-2", "three", "1.5", "1001"])
    def test_anything_but_a_whole_number_from_1_to_1000_is_refused(self, value: str) -> None:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"OUTBOX_SENDER_INSTANCES": value})

        assert "OUTBOX_SENDER_INSTANCES" == caught.value.variable

    def test_the_lease_must_outlast_the_wait_behind_every_instances_send_slots(self) -> None:
        settings = Settings.from_env({**TWILIO, "OUTBOX_SENDER_INSTANCES": "3"})
        assert pytest.approx(64 * 3 / 80 + 10) == settings.longest_send_seconds()

        with pytest.raises(ConfigError) as caught:
            Settings.from_env(
                {**TWILIO, "OUTBOX_SENDER_INSTANCES": "3", "OUTBOX_LEASE_SECONDS": "12"}
            )

        assert "OUTBOX_SEND_CONCURRENCY 64 * OUTBOX_SENDER_INSTANCES 3 /" in str(caught.value)
        assert "= 12.4 s" in str(caught.value)
