"""The Meta provider against the Graph API's HTTP shape (``httpx.MockTransport``; no network).

The request and the success answer are those of Meta's "Text messages" page
(https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/text-messages:
``POST https://graph.facebook.com/v25.0/106540352242922/messages``, ``Authorization: Bearer``,
the JSON body, and ``{"messaging_product": "whatsapp", "contacts": [{"input": "+16505551234",
"wa_id": "16505551234"}], "messages": [{"id": "wamid..."}]}``); the refusals are the error
object of "Cloud API Error Codes"
(https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes).
The provider contract suite (issue 17 §4) will run these cases on every provider.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from adapters.meta.provider import DEFAULT_GRAPH_BASE_URL, GRAPH_API_VERSION, MetaMessagingProvider
from ports.messaging import DeliveryFailed, SendRequest

TOKEN = "EAAJB-test-access-token"
NUMBER_ID = "106540352242922"
WAMID = "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA"
Handler = Callable[[httpx.Request], httpx.Response]


class Graph:
    """A fake Graph API: records every request and answers with ``handler``."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler or (lambda _request: accepted())
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        return self.handler(request)

    @property
    def last_body(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.requests[-1].content)
        return body


def accepted(wamid: str = WAMID, to: str = "+33612345678") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to.removeprefix("+")}],
            "messages": [{"id": wamid}],
        },
    )


def refused(code: int, status: int, headers: dict[str, str] | None = None) -> Handler:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            headers=headers,
            json={
                "error": {
                    "message": f"(#{code}) refused",
                    "type": "OAuthException",
                    "code": code,
                    "error_data": {"messaging_product": "whatsapp", "details": "refused"},
                    "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
                }
            },
        )

    return handler


def raising(exc: Exception) -> Handler:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def provider(graph: Graph, **kwargs: Any) -> MetaMessagingProvider:
    options: dict[str, Any] = {
        "access_token": TOKEN,
        "phone_number_id": NUMBER_ID,
        "timeout_seconds": 7.5,
        "transport": httpx.MockTransport(graph),
    }
    options.update(kwargs)
    return MetaMessagingProvider(**options)


def request(from_phone: str | None = None, **fields: Any) -> SendRequest:
    values: dict[str, Any] = {
        "outbox_id": "01OUTBOX",
        "tenant_id": "shop-a",
        "to_phone": "+33612345678",
        "body": "Article réservé 10 minutes",
        "correlation_id": "corr-1",
        "from_phone": from_phone,
    }
    values.update(fields)
    return SendRequest(**values)


def failure_of(graph: Graph, **kwargs: Any) -> Any:
    with pytest.raises(DeliveryFailed) as caught:
        provider(graph, **kwargs).send(request())
    return caught.value.failure


class TestTheRequest:
    def test_posts_the_text_to_the_phone_number_ids_messages_edge(self) -> None:
        graph = Graph()

        receipt = provider(graph).send(request())

        (sent,) = graph.requests
        assert ("POST", f"https://graph.facebook.com/v25.0/{NUMBER_ID}/messages") == (
            sent.method,
            str(sent.url),
        )
        assert {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+33612345678",
            "type": "text",
            "text": {"preview_url": False, "body": "Article réservé 10 minutes"},
            "biz_opaque_callback_data": "tenantId=shop-a&outboxId=01OUTBOX",
        } == graph.last_body
        assert WAMID == receipt.provider_message_id

    def test_authenticates_with_the_bearer_token_and_sends_json(self) -> None:
        graph = Graph()

        provider(graph).send(request())

        headers = graph.requests[0].headers
        assert (f"Bearer {TOKEN}", "application/json") == (
            headers["authorization"],
            headers["content-type"],
        )

    def test_the_graph_version_and_base_url_are_metas_by_default(self) -> None:
        assert ("https://graph.facebook.com", "v25.0") == (
            DEFAULT_GRAPH_BASE_URL,
            GRAPH_API_VERSION,
        )

    def test_a_configured_base_url_points_it_at_a_local_fake(self) -> None:
        graph = Graph()

        provider(graph, base_url="http://127.0.0.1:8089/").send(request())

        assert f"http://127.0.0.1:8089/v25.0/{NUMBER_ID}/messages" == str(graph.requests[0].url)

    def test_a_whatsapp_address_is_sent_as_its_number(self) -> None:
        graph = Graph()

        provider(graph).send(request(to_phone="whatsapp:+33612345678"))

        assert "+33612345678" == graph.last_body["to"]

    def test_every_request_carries_the_configured_timeout(self) -> None:
        graph = Graph()

        provider(graph).send(request())

        assert {"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5} == graph.requests[
            0
        ].extensions["timeout"]

    def test_sends_from_the_tenants_phone_number_id_else_the_default(self) -> None:
        graph = Graph()
        meta = provider(graph)

        meta.send(request(from_phone="123456123"))
        meta.send(request())

        assert [
            "/v25.0/123456123/messages",
            f"/v25.0/{NUMBER_ID}/messages",
        ] == [r.url.path for r in graph.requests]
        assert ("123456123", NUMBER_ID) == (
            meta.sender_key(request(from_phone="123456123")),
            meta.sender_key(request()),
        )

    def test_a_twilio_number_as_sender_is_refused_without_a_request(self) -> None:
        graph = Graph()

        failure = failure_of_send(graph, request(from_phone="+14155238886"))

        assert (False, "meta-sender", []) == (failure.transient, failure.code, graph.requests)
        assert failure.message.startswith("configuration error")

    def test_ids_too_long_for_the_callback_data_are_left_out(self) -> None:
        graph = Graph()

        provider(graph).send(request(tenant_id="t" * 600))

        assert "biz_opaque_callback_data" not in graph.last_body

    def test_one_provider_serves_many_threads(self) -> None:
        graph = Graph(lambda r: accepted(wamid="wamid." + json.loads(r.content)["to"]))
        meta = provider(graph)
        receipts: list[str] = []
        lock = threading.Lock()

        def send(n: int) -> None:
            receipt = meta.send(request(to_phone=f"+336000000{n:02d}"))
            with lock:
                receipts.append(receipt.provider_message_id)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

        assert sorted(f"wamid.+336000000{n:02d}" for n in range(40)) == sorted(receipts)

    @pytest.mark.parametrize(
        "options",
        [
            {"timeout_seconds": 0},
            {"access_token": " "},
            {"phone_number_id": "+15550783881"},
            {"base_url": "graph.facebook.com"},
        ],
    )
    def test_a_provider_cannot_be_built_misconfigured(self, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            provider(Graph(), **options)


def failure_of_send(graph: Graph, send_request: SendRequest) -> Any:
    with pytest.raises(DeliveryFailed) as caught:
        provider(graph).send(send_request)
    return caught.value.failure


class TestEachFailureClass:
    def test_the_rate_limit_is_transient_and_spends_no_attempt(self) -> None:
        failure = failure_of(Graph(refused(130429, 400)))

        assert (True, True, "130429") == (failure.transient, failure.rate_limited, failure.code)

    def test_the_pair_rate_limit_waits_metas_six_seconds(self) -> None:
        failure = failure_of(Graph(refused(131056, 400)))

        assert (True, True, timedelta(seconds=6)) == (
            failure.transient,
            failure.rate_limited,
            failure.retry_after,
        )

    def test_a_429_with_retry_after_is_honoured(self) -> None:
        failure = failure_of(Graph(refused(4, 429, {"Retry-After": "12"})))

        assert (True, True, timedelta(seconds=12)) == (
            failure.transient,
            failure.rate_limited,
            failure.retry_after,
        )

    @pytest.mark.parametrize(
        ("code", "status"), [(131047, 400), (131026, 400), (100, 400), (132000, 400)]
    )
    def test_a_refusal_of_this_message_is_permanent_with_its_code(
        self, code: int, status: int
    ) -> None:
        failure = failure_of(Graph(refused(code, status)))

        assert (False, str(code)) == (failure.transient, failure.code)

    @pytest.mark.parametrize(("code", "status"), [(190, 401), (10, 403), (200, 403), (368, 403)])
    def test_a_token_permission_or_account_error_is_a_configuration_error(
        self, code: int, status: int
    ) -> None:
        failure = failure_of(Graph(refused(code, status)))

        assert (False, str(code)) == (failure.transient, failure.code)
        assert failure.message.startswith("configuration error: ")
        assert TOKEN not in failure.message

    @pytest.mark.parametrize(("code", "status"), [(131000, 500), (2, 503), (131016, 503)])
    def test_a_service_error_is_transient(self, code: int, status: int) -> None:
        failure = failure_of(Graph(refused(code, status)))

        assert (True, False, str(code)) == (failure.transient, failure.rate_limited, failure.code)

    def test_a_gateway_page_is_transient_by_its_status(self) -> None:
        failure = failure_of(Graph(lambda _r: httpx.Response(502, text="<html>bad gateway</html>")))

        assert (True, "http-502") == (failure.transient, failure.code)

    @pytest.mark.parametrize(
        ("exc", "code"),
        [
            (httpx.ReadTimeout("slow"), "timeout"),
            (httpx.ConnectTimeout("slow"), "timeout"),
            (httpx.ConnectError("refused"), "connection-error"),
            (httpx.RemoteProtocolError("cut"), "http-error"),
        ],
    )
    def test_a_transport_error_is_transient_and_chains_the_original(
        self, exc: Exception, code: str
    ) -> None:
        with pytest.raises(DeliveryFailed) as caught:
            provider(Graph(raising(exc))).send(request())

        assert (True, code) == (caught.value.failure.transient, caught.value.failure.code)
        assert caught.value.__cause__ is exc

    @pytest.mark.parametrize(
        "answer",
        [
            httpx.Response(200, json={"messaging_product": "whatsapp", "messages": []}),
            httpx.Response(200, json={"messages": [{"id": ""}]}),
            httpx.Response(200, text="OK"),
        ],
    )
    def test_a_success_without_a_message_id_is_not_taken_for_a_send(
        self, answer: httpx.Response
    ) -> None:
        failure = failure_of(Graph(lambda _r: answer))

        assert (True, "no-message-id") == (failure.transient, failure.code)

    def test_no_redirect_is_followed(self) -> None:
        graph = Graph(
            lambda _r: httpx.Response(307, headers={"Location": "https://elsewhere.example/x"})
        )

        failure = failure_of(graph)

        assert (1, "http-307") == (len(graph.requests), failure.code)
