"""The fault soak's load: signed Twilio requests at a steady rate, and outbound messages written
to the outbox meanwhile, as another service writes them.

Requests carry the parameter set Twilio posts for an inbound WhatsApp message
(``tests/support/twilio_webhook.py``, from https://www.twilio.com/docs/messaging/guides/webhook-request)
signed with the SDK's ``RequestValidator`` (https://www.twilio.com/docs/usage/security). A share
of them repeat an earlier request exactly (same MessageSid): Twilio's retries and fallback URL.

A refused or reset connection is retried as Twilio does when the webhook URL carries connection
overrides (https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides): ``#rc=5``
(retry count, default 1, at most 5) with the default retry policy ``rp=ct`` (connection failures
only), all tries within the total time ``tt`` (15 s, its default and maximum). An HTTP answer,
whatever its status, is never retried.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
import support  # noqa: F401 - puts the repository on sys.path for tests.support

from tests.support.twilio_webhook import FORM, sign, twilio_form

TWILIO_RETRY_COUNT = 5
"""``#rc=5``: the most retries Twilio's connection overrides allow."""
TWILIO_TOTAL_SECONDS = 15.0
"""``tt``: every try of one request within 15 s, then Twilio gives up (the fallback URL)."""
TWILIO_RETRY_INTERVAL_SECONDS = 2.0
"""Twilio does not document the spacing of its retries; 2 s gives a restarting webhook ~10 s."""
TWILIO_READ_TIMEOUT_SECONDS = 15.0
"""Twilio waits 15 s for a messaging webhook's answer."""
SENDER_THREADS = 24
"""Requests in flight at most: a webhook that hangs does not slow the steady rate down."""

PROFILE_NAMES = ("Bob", "Camille", "Léa", "José", "Zoë", "Ahmed", "Mei", "")
CLIENT_BODIES = ("Je prends le 3 !", "Combien le sac bleu ?", "Moi aussi 🙋", "Taille M svp", "Ok")
SELLER_BODIES = ("Le n°3 : sac en cuir, 45 €", "Dernière pièce du 7 !", "On continue 🎉")


@dataclass(frozen=True)
class Shop:
    """One tenant of the soak and the people who write to it (real number formats)."""

    tenant_id: str
    whatsapp_number: str
    seller: str
    clients: tuple[str, ...]


def shops(count: int, clients_per_shop: int) -> list[Shop]:
    """French shops (Paris numbers), a French seller each, French and Spanish mobile clients."""
    result = []
    for n in range(count):
        clients = tuple(
            f"+336{21000000 + n * 1000 + c:08d}" if c % 3 else f"+346{12000000 + n * 1000 + c:08d}"
            for c in range(clients_per_shop)
        )
        result.append(
            Shop(
                tenant_id=f"soak-shop-{n + 1}",
                whatsapp_number=f"+3318488{n:04d}",
                seller=f"+3369876{n:04d}",
                clients=clients,
            )
        )
    return result


@dataclass
class Request:
    """One request and what became of it."""

    tenant_id: str
    sid: str
    params: dict[str, str]
    fault: str
    duplicate: bool
    status: int | None = None
    tries: int = 0
    error: str | None = None


class FaultClock:
    """The fault in progress (``none`` between faults), read by every request when it is sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._label = "none"
        self.start = time.monotonic()
        self.wall_start = time.time()
        self.windows: list[tuple[str, float, float | None]] = []
        """(label, start, end) in seconds since ``start``; ``wall_start`` + those: epoch seconds."""

    def restart(self) -> None:
        """The load begins: elapsed times count from now."""
        self.start = time.monotonic()
        self.wall_start = time.time()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def begin(self, label: str) -> None:
        with self._lock:
            self._label = label
            self.windows.append((label, self.elapsed(), None))

    def end(self) -> None:
        with self._lock:
            label, began, _ = self.windows[-1]
            self.windows[-1] = (label, began, self.elapsed())
            self._label = "none"

    def label(self) -> str:
        with self._lock:
            return self._label


class TwilioLoad:
    """Posts signed requests to the webhook at ``rate`` per second until stopped."""

    def __init__(
        self,
        url: str,
        token: str,
        shop_list: list[Shop],
        faults: FaultClock,
        *,
        rate: float,
        duplicate_share: float,
        seller_share: float,
        seed: int,
        ends: dict[str, float] | None = None,
    ) -> None:
        """``ends``: tenant id -> seconds into the load after which its live is over (nobody
        writes to that shop any more)."""
        self.url = url
        self.token = token
        self.shops = shop_list
        self.faults = faults
        self.rate = rate
        self.duplicate_share = duplicate_share
        self.seller_share = seller_share
        self.ends = ends or {}
        self.random = random.Random(seed)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twilio-load", daemon=True)
        self._pool = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="twilio")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sending; wait for the requests in flight (their retries included)."""
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop at once (Ctrl-C): no new request, no retry, queued ones dropped."""
        self._abort.set()
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            request = self._next_request()
            with self._lock:
                self.requests.append(request)
            with contextlib.suppress(RuntimeError):  # the pool is shut down: aborted
                self._pool.submit(self._post, request)
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _next_request(self) -> Request:
        fault = self.faults.label()
        with self._lock:
            earlier = list(self.requests[-200:])
        if earlier and self.random.random() < self.duplicate_share:
            first = self.random.choice(earlier)
            return Request(first.tenant_id, first.sid, first.params, fault, duplicate=True)
        now = self.faults.elapsed()
        shop = self.random.choice([s for s in self.shops if now < self.ends.get(s.tenant_id, 1e9)])
        seller = self.random.random() < self.seller_share
        sender = shop.seller if seller else self.random.choice(shop.clients)
        sid = "SM" + uuid.UUID(int=self.random.getrandbits(128)).hex
        params = twilio_form(
            sid,
            From=f"whatsapp:{sender}",
            WaId=sender.lstrip("+"),
            To=f"whatsapp:{shop.whatsapp_number}",
            Body=self.random.choice(SELLER_BODIES if seller else CLIENT_BODIES),
            ProfileName=self.random.choice(PROFILE_NAMES),
        )
        return Request(shop.tenant_id, sid, params, fault, duplicate=False)

    def _post(self, request: Request) -> None:
        body = urllib.parse.urlencode(request.params).encode()
        headers = {
            "Content-Type": FORM,
            "X-Twilio-Signature": sign(self.url, request.params, self.token),
        }
        first_try = time.monotonic()
        for _ in range(1 + TWILIO_RETRY_COUNT):
            request.tries += 1
            http = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(http, timeout=TWILIO_READ_TIMEOUT_SECONDS) as answer:
                    request.status = answer.status
                    request.error = None
                    return
            except urllib.error.HTTPError as exc:
                request.status = exc.code
                request.error = None
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                request.error = type(exc).__name__
                if isinstance(exc, TimeoutError) or "timed out" in str(exc):
                    return  # a read timeout is not a connection failure: no retry (rp=ct)
                late = time.monotonic() + TWILIO_RETRY_INTERVAL_SECONDS - first_try
                if late > TWILIO_TOTAL_SECONDS or self._abort.wait(TWILIO_RETRY_INTERVAL_SECONDS):
                    return


@dataclass
class OutboxLoad:
    """Writes outbound messages as another service would: one INSERT per transaction, straight
    into ``messages_out`` (the outbox's contract, SPEC §2), at ``rate`` per second; plus one
    ``livesell outbox send`` every ``cli_every`` seconds through ``run_cli``."""

    database_url: str
    shop_list: list[Shop]
    rate: float
    cli_every: float
    run_cli: Callable[[list[str]], int]
    seed: int
    written: int = 0
    refused: int = 0
    cli_written: int = 0
    cli_failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._sql, name="outbox-sql", daemon=True),
            threading.Thread(target=self._cli, name="outbox-cli", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, wait: bool = True) -> None:
        self._stop.set()
        for thread in self._threads if wait else ():
            thread.join()

    def _sql(self) -> None:
        draw = random.Random(self.seed)
        while not self._stop.wait(1.0 / self.rate):
            self.write(1, draw)

    def write(self, count: int, draw: random.Random | None = None) -> None:
        """``count`` messages in one transaction (a batch when > 1)."""
        draw = draw or random.Random()
        rows = []
        for _ in range(count):
            shop = draw.choice(self.shop_list)
            number = self.written + self.refused + len(rows)
            oid = f"soak-{uuid.UUID(int=draw.getrandbits(128)).hex}"
            rows.append((oid, shop.tenant_id, draw.choice(shop.clients), f"soak-out-{number}"))
        try:
            with (
                psycopg.connect(self.database_url, connect_timeout=2) as conn,
                conn.cursor() as cur,
            ):
                cur.executemany(
                    "INSERT INTO messages_out (id, tenant_id, to_phone, body, status, attempts,"
                    " next_attempt_at, correlation_id, created_at, updated_at)"
                    " VALUES (%s, %s, %s, 'Votre commande est confirmée ✅', 'pending', 0, now(),"
                    " %s, now(), now())",
                    rows,
                )
            self.written += count
        except psycopg.Error:
            self.refused += count  # the other service's transaction failed; it retries later

    def _cli(self) -> None:
        n = 0
        while not self._stop.wait(self.cli_every):
            shop = self.shop_list[n % len(self.shop_list)]
            n += 1
            argv = ["outbox", "send", "--tenant", shop.tenant_id, "--to", shop.clients[0]]
            if self.run_cli([*argv, "--body", f"Merci pour l'achat n°{n} !"]) == 0:
                self.cli_written += 1
            else:
                self.cli_failed += 1
