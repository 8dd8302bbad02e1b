"""``RateLimiter`` on Redis (ADR 0018): one limit per sender number shared by every sender process.

The limit is the generic cell rate algorithm (GCRA) of redis-cell
(https://github.com/brandur/redis-cell; Brandur Leach, "Rate Limiting, Cells, and GCRA",
https://brandur.org/rate-limiting), written as the Lua script go-redis/redis_rate
(``script_allow_n.lua``) and rwz/redis-gcra (``vendor/perform_gcra_ratelimit.lua``) use: one key
per sender number holds its *theoretical arrival time* (TAT); a send is allowed when
``max(TAT, now) + T - burst * T <= now`` (T = 1 / rate), and then TAT becomes
``max(TAT, now) + T``. The script reads ``now`` from Redis' ``TIME``, so the clocks of the
instances do not matter, and runs atomically, so two senders never take one slot. Unlike those
scripts it counts whole microseconds (exact in a Lua double), and it grants as many of the slots
asked for as are free (their ``cost``, here chosen by the limit): in a process, one caller per
sender number asks at a time, for every caller waiting there, or for what the process sent in
``LOOKAHEAD_SECONDS`` lately when that is more; the others take the granted slots without a round
trip (one per send cost the sender about a quarter more CPU at 0 ms latency; ADR 0018).

``burst`` is ``BURST_SECONDS`` of sends (20 at 80/s; ADR 0030, superseding ADR 0018's 50 ms).
It is not there for traffic (Twilio queues what exceeds a sender's throughput anyway) but so that
a sender that runs late does not lose its slots: a waiter that wakes a few milliseconds late, or a
lone process the machine deschedules for 100 to 240 ms (what ADR 0018 saw under load), takes the
slots it missed when it runs again. A burst of 1 loses every late slot for good (about 4 % at 80/s
for 0.5 ms late); 50 ms left a loaded lone sender with four numbers at 86 to 94 % of its rate.
Over any L seconds a number still sends at most ``rate * L + burst``.

When Redis cannot be reached (or refuses the script) the limiter falls back to an in-process
limiter at ``rate / instances`` (``OUTBOX_SENDER_INSTANCES``; the container gives the token bucket
of ``adapters.system``, as adapters do not import each other), says so once per outage
(WARNING), asks Redis again at most once per ``PROBE_INTERVAL_SECONDS`` (one probe at a time, in
a thread of its own, so no send waits on it; on a client with short socket timeouts) and goes back
to Redis, saying so, as soon as it answers.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ports.messaging import RateLimiter

log = logging.getLogger("livesell.outbox.rate_limit")

KEY_PREFIX = "livesell:ratelimit"
PROVIDER = "twilio"
PROBE_KEY = f"{KEY_PREFIX}:probe"
BURST_SECONDS = 0.25
# Slots granted beyond the caller's own (burst - 1 at most) are kept this long for the next
# callers, then dropped: in any L seconds a number sends at most rate * L + burst, plus what the
# processes hold (burst - 1 each, and only while they send below the rate).
LOOKAHEAD_SECONDS = 0.25
DEMAND_WINDOW_SECONDS = 0.5
PROBE_INTERVAL_SECONDS = 1.0
# A rate-limit answer takes well under a millisecond; a Redis that takes longer than this is
# treated as down for this send rather than holding a send slot for the queue's 10 s.
SOCKET_TIMEOUT_SECONDS = 0.25
CONNECT_TIMEOUT_SECONDS = 0.5
# Everything that means "no answer from Redis now": connection and timeout errors, a server
# loading or read-only, and any other redis error (a script refused, OOM): the sends go on at the
# fallback rate rather than stop.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)

# KEYS[1] the sender's key; ARGV[1] the emission interval T in microseconds, ARGV[2] the burst,
# ARGV[3] how many sends the caller would take now (its process's callers waiting for this key).
# Slot k (1, 2 ...) is allowed when max(TAT, now) + k * T - burst * T <= now. Returns {granted, 0}
# (TAT moved on by granted * T) or, when no slot is allowed yet, {0, microseconds to wait}.
GCRA_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = (tonumber(clock[1]) - 1735689600) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local free = math.floor((now - tat) / interval) + burst
if free < 1 then return {0, tat + interval - burst * interval - now} end
local granted = math.min(wanted, free)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
           'PX', math.floor((new_tat - now) / 1000) + 1)
return {granted, 0}
"""


def sender_key(sender: str, provider: str = PROVIDER) -> str:
    """The Redis key of one sender number's limit: ``livesell:ratelimit:<provider>:<sender>``.
    A key that names its provider already (``meta:<id>``, the provider router's
    ``sender_key``) keeps it; a bare number is ``provider``'s."""
    if ":" in sender:
        return f"{KEY_PREFIX}:{sender}"
    return f"{KEY_PREFIX}:{provider}:{sender}"


def rate_limit_client(client: Redis) -> Redis:
    """A client on ``client``'s server (its pool's connection class and options, so an in-process
    fakeredis carries over) with short socket timeouts and no retries: the rate limit's own."""
    pool = client.connection_pool
    options: dict[str, Any] = {
        **pool.connection_kwargs,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "retry": Retry(NoBackoff(), 0),
        "client_name": "outbox-rate-limit",
    }
    return Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **options))


class _Sender:
    """One sender number's callers in this process: the lock they take turns on, how many wait
    (or hold it), the slots Redis granted that the next of them may use until ``stock_until``,
    and how many sends a second this process asked for lately (``demand``)."""

    def __init__(self, now: float) -> None:
        self.lock = threading.Lock()
        self.waiting = 0
        self.stock = 0
        self.stock_until = 0.0
        self.demand = 0.0
        self._window_start = now
        self._window_count = 0

    def count(self, now: float) -> None:
        self._window_count += 1
        elapsed = now - self._window_start
        if elapsed >= DEMAND_WINDOW_SECONDS:
            self.demand = self._window_count / elapsed
            self._window_start, self._window_count = now, 0


class RedisRateLimiter:
    """At most ``rate`` sends per second per sender number across every process on ``client``'s
    Redis; while Redis does not answer, ``fallback(rate / instances)`` paces this process alone.

    ``start_probe`` runs the probe of a Redis that did not answer (a daemon thread by default, so
    no send ever waits on it)."""

    def __init__(
        self,
        client: Redis,
        rate: float,
        *,
        fallback: Callable[[float], RateLimiter],
        instances: int = 1,
        burst: int | None = None,
        provider: str = PROVIDER,
        probe_interval: float = PROBE_INTERVAL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        start_probe: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if instances < 1:
            raise ValueError(f"instances must be at least 1, got {instances}")
        self.rate = rate
        self.instances = instances
        self.provider = provider
        self.interval_us = math.ceil(1_000_000 / rate)  # rounded up: never above the rate
        self.burst = burst if burst is not None else max(1, math.ceil(rate * BURST_SECONDS))
        self.fallback_rate = rate / instances
        self._script = client.register_script(GCRA_SCRIPT)  # nothing is sent until a call
        self._fallback = fallback(self.fallback_rate)
        self._probe_interval = probe_interval
        self._monotonic = monotonic
        self._sleep = sleep
        self._start_probe = start_probe or _in_a_daemon_thread
        self._state = threading.Lock()
        self._senders: dict[str, _Sender] = {}
        self._down_since: float | None = None
        self._probed_at = 0.0
        self._probing = False

    @property
    def on_fallback(self) -> bool:
        """True while Redis does not answer and this process paces itself alone."""
        return self._down_since is not None

    def acquire(self, key: str) -> None:
        sender = self._sender(key)
        try:
            # One caller per key in this process asks Redis at a time, for as many slots as there
            # are callers waiting here (at most the burst); the slots granted beyond its own go to
            # the next callers in line without another round trip.
            with sender.lock:
                if sender.stock and self._monotonic() <= sender.stock_until:
                    sender.stock -= 1
                    return
                sender.stock = 0
                while self._down_since is None:
                    wanted = self._wanted(sender)
                    try:
                        granted, wait_us = self._script(
                            keys=[sender_key(key, self.provider)],
                            args=[self.interval_us, self.burst, wanted],
                        )
                    except UNAVAILABLE_ERRORS as exc:
                        self._went_down(exc)
                        break
                    if granted:
                        sender.stock = int(granted) - 1
                        sender.stock_until = self._monotonic() + LOOKAHEAD_SECONDS
                        return
                    self._sleep(int(wait_us) / 1_000_000)
                self._probe_when_due()
                self._fallback.acquire(key)
        finally:
            with self._state:
                sender.waiting -= 1

    def _sender(self, key: str) -> _Sender:
        with self._state:
            now = self._monotonic()
            sender = self._senders.get(key)
            if sender is None:
                sender = self._senders[key] = _Sender(now)
            sender.waiting += 1
            sender.count(now)
            return sender

    def _wanted(self, sender: _Sender) -> int:
        """The slots to ask for: one per caller waiting here, or what this process's recent
        demand uses in ``LOOKAHEAD_SECONDS`` when that is more (at a high rate a round trip per
        send would cost more CPU than the send); never more than the burst."""
        ahead = math.ceil(sender.demand * LOOKAHEAD_SECONDS)
        return max(1, min(self.burst, max(sender.waiting, ahead)))

    def _went_down(self, exc: BaseException) -> None:
        with self._state:
            if self._down_since is not None:
                return
            self._down_since = self._probed_at = self._monotonic()
        log.warning(
            "Outbox rate limit falls back to this process: Redis does not answer",
            extra={
                "context": {
                    "error": f"{type(exc).__name__}: {exc}",
                    "ratePerSecond": self.rate,
                    "senderInstances": self.instances,
                    "fallbackRatePerSecond": round(self.fallback_rate, 3),
                    "probeIntervalSeconds": self._probe_interval,
                }
            },
        )

    def _probe_when_due(self) -> None:
        with self._state:
            now = self._monotonic()
            if self._probing or now - self._probed_at < self._probe_interval:
                return
            self._probing, self._probed_at = True, now
        self._start_probe(self._probe)

    def _probe(self) -> None:
        """Run the script once on a key of its own; back on Redis if it answers."""
        try:
            self._script(keys=[PROBE_KEY], args=[self.interval_us, self.burst, 1])
        except UNAVAILABLE_ERRORS:
            answered = False
        else:
            answered = True
        with self._state:
            self._probing, self._probed_at = False, self._monotonic()
            if not answered or self._down_since is None:
                return
            outage = self._probed_at - self._down_since
            self._down_since = None
        log.info(
            "Outbox rate limit is shared through Redis again",
            extra={"context": {"fallbackSeconds": round(outage, 3), "ratePerSecond": self.rate}},
        )


def _in_a_daemon_thread(probe: Callable[[], None]) -> None:
    threading.Thread(target=probe, name="outbox-rate-limit-probe", daemon=True).start()
