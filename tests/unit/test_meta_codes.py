"""Meta's error codes as data, and their one translation into the port's failure (issue 17 §1,
ADR 0019): every listed code classified, unknown codes falling back on Meta's ``is_transient``
then the HTTP status, every ``httpx`` error mapped on purpose.

Codes and their meaning: "Cloud API Error Codes",
https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes;
the error object: https://developers.facebook.com/docs/graph-api/guides/error-handling;
throughput and the pair rate limit: https://developers.facebook.com/docs/whatsapp/throughput.
"""

from __future__ import annotations

import inspect
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from adapters.meta.codes import (
    MAX_RETRY_AFTER,
    META_CODES,
    PAIR_RATE_LIMIT_WAIT,
    PERMISSION_CODES,
    REQUIRED_CODES,
    TRANSLATED_TYPES,
    Kind,
    classify,
    classify_status,
    lookup,
    translate,
)

URL = "https://graph.facebook.com/v25.0/106540352242922/messages"
TOKEN = "EAAJB-secret-token"


def graph_error(
    code: int | None,
    status: int = 400,
    *,
    message: str = "refused",
    details: str | None = "details",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    """A refused Graph API answer shaped as the error codes page's sample response."""
    error: dict[str, Any] = {
        "message": f"(#{code}) {message}",
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details},
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        **extra,
    }
    return httpx.Response(
        status,
        json={"error": error},
        headers=headers,
        request=httpx.Request("POST", URL, headers={"Authorization": f"Bearer {TOKEN}"}),
    )


EXPECTED = {
    130429: (Kind.TRANSIENT, True),
    131056: (Kind.TRANSIENT, True),
    4: (Kind.TRANSIENT, True),
    80007: (Kind.TRANSIENT, True),
    131000: (Kind.TRANSIENT, False),
    1: (Kind.TRANSIENT, False),
    2: (Kind.TRANSIENT, False),
    131016: (Kind.TRANSIENT, False),
    131047: (Kind.PERMANENT, False),
    131026: (Kind.PERMANENT, False),
    100: (Kind.PERMANENT, False),
    132000: (Kind.PERMANENT, False),
    132001: (Kind.CONFIGURATION, False),
    190: (Kind.CONFIGURATION, False),
    10: (Kind.CONFIGURATION, False),
    200: (Kind.CONFIGURATION, False),
    368: (Kind.CONFIGURATION, False),
    131031: (Kind.CONFIGURATION, False),
}
"""What issue 17 asks of each code it names: (kind, rate limited)."""


class TestTheCodeTable:
    def test_every_code_the_issue_names_is_in_the_table(self) -> None:
        assert set() == {code for code in REQUIRED_CODES if lookup(code) is None}
        assert REQUIRED_CODES <= set(EXPECTED)

    @pytest.mark.parametrize(("code", "expected"), sorted(EXPECTED.items()))
    def test_each_named_code_is_classified_as_the_issue_says(
        self, code: int, expected: tuple[Kind, bool]
    ) -> None:
        entry = lookup(code)

        assert entry is not None
        assert expected == (entry.kind, entry.rate_limited)

    @pytest.mark.parametrize("code", sorted(META_CODES))
    def test_every_listed_code_has_a_kind_a_meaning_and_its_documentation_page(
        self, code: int
    ) -> None:
        entry = META_CODES[code]

        assert isinstance(entry.kind, Kind)
        assert entry.meaning.strip()
        assert entry.doc.startswith("https://developers.facebook.com/")

    def test_every_api_permission_code_200_to_299_is_a_configuration_error(self) -> None:
        kinds = {classify(code, 403)[0] for code in PERMISSION_CODES}

        assert {Kind.CONFIGURATION} == kinds
        assert (200, 299) == (PERMISSION_CODES[0], PERMISSION_CODES[-1])

    def test_only_transient_codes_are_rate_limited(self) -> None:
        limited = {code for code, entry in META_CODES.items() if entry.rate_limited}

        assert {4, 80007, 130429, 131056} == limited
        assert all(META_CODES[code].kind is Kind.TRANSIENT for code in limited)

    def test_the_pair_rate_limit_suggests_metas_six_seconds(self) -> None:
        assert timedelta(seconds=6) == PAIR_RATE_LIMIT_WAIT == META_CODES[131056].retry_after

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (None, Kind.TRANSIENT),
            (400, Kind.PERMANENT),
            (404, Kind.PERMANENT),
            (401, Kind.CONFIGURATION),
            (403, Kind.CONFIGURATION),
            (408, Kind.TRANSIENT),
            (429, Kind.TRANSIENT),
            (500, Kind.TRANSIENT),
            (503, Kind.TRANSIENT),
        ],
    )
    def test_an_unknown_code_falls_back_on_its_http_status(
        self, status: int | None, expected: Kind
    ) -> None:
        assert (expected, None) == classify(999999, status)
        assert expected == classify_status(status)

    @pytest.mark.parametrize(
        ("is_transient", "expected"), [(True, Kind.TRANSIENT), (False, Kind.PERMANENT)]
    )
    def test_an_unknown_code_follows_metas_is_transient_first(
        self, is_transient: bool, expected: Kind
    ) -> None:
        assert expected == classify(999999, 500 if not is_transient else 400, is_transient)[0]

    def test_a_listed_code_wins_over_its_status_and_over_is_transient(self) -> None:
        assert Kind.PERMANENT == classify(131026, 500, True)[0]
        assert Kind.TRANSIENT == classify(131000, 400, False)[0]


class TestTranslatingARefusedAnswer:
    def test_the_rate_limit_is_transient_rate_limited_and_keeps_its_code(self) -> None:
        failure = translate(graph_error(130429, 400, message="Rate limit hit"))

        assert (True, True, "130429", None) == (
            failure.transient,
            failure.rate_limited,
            failure.code,
            failure.retry_after,
        )
        assert "(#130429)" in failure.message

    def test_the_pair_rate_limit_waits_six_seconds_without_a_retry_after(self) -> None:
        failure = translate(graph_error(131056, 400))

        assert (True, True, timedelta(seconds=6)) == (
            failure.transient,
            failure.rate_limited,
            failure.retry_after,
        )

    def test_a_retry_after_in_seconds_wins_and_is_bounded_to_an_hour(self) -> None:
        short = translate(graph_error(131056, 429, headers={"Retry-After": "20"}))
        long = translate(graph_error(130429, 429, headers={"Retry-After": "86400"}))

        assert (timedelta(seconds=20), MAX_RETRY_AFTER) == (short.retry_after, long.retry_after)

    def test_any_429_is_rate_limited_even_without_a_listed_code(self) -> None:
        failure = translate(graph_error(613, 429))

        assert (True, True, "613") == (failure.transient, failure.rate_limited, failure.code)

    def test_outside_the_window_is_permanent_and_ignores_a_retry_after(self) -> None:
        failure = translate(graph_error(131047, 400, headers={"Retry-After": "30"}))

        assert (False, False, "131047", None) == (
            failure.transient,
            failure.rate_limited,
            failure.code,
            failure.retry_after,
        )
        assert "24-hour window" in failure.message

    def test_an_expired_token_is_a_configuration_error_never_retried(self) -> None:
        failure = translate(graph_error(190, 401, message="Access token has expired"))

        assert (False, "190") == (failure.transient, failure.code)
        assert failure.message.startswith("configuration error: ")

    def test_a_service_error_is_transient(self) -> None:
        assert translate(graph_error(131000, 500)).transient
        assert translate(graph_error(2, 503)).transient

    def test_a_body_that_is_no_graph_error_is_classified_by_its_status(self) -> None:
        gateway = httpx.Response(502, text="<html>Bad Gateway</html>")
        refused = httpx.Response(400, json={"unexpected": True})

        assert (True, "http-502") == (translate(gateway).transient, translate(gateway).code)
        assert (False, "http-400") == (translate(refused).transient, translate(refused).code)

    def test_the_message_names_the_details_and_the_trace_id_for_metas_support(self) -> None:
        failure = translate(graph_error(131026, 400, details="Message Undeliverable."))

        assert "Message Undeliverable." in failure.message
        assert "Az8or2yhqkZfEZ-_4Qn_Bam" in failure.message

    def test_the_message_names_no_secret(self) -> None:
        failure = translate(graph_error(190, 401))
        exc = translate(httpx.ConnectError("refused", request=graph_error(1).request))

        assert TOKEN not in json.dumps([failure.message, exc.message])

    def test_an_http_status_error_is_read_through_its_response(self) -> None:
        response = graph_error(131026, 400)
        error = httpx.HTTPStatusError("refused", request=response.request, response=response)

        assert (False, "131026") == (translate(error).transient, translate(error).code)


def _subclasses(root: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    pending = [root]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


class TestEveryHttpxErrorIsTranslated:
    def test_every_exception_class_of_httpx_is_mapped_on_purpose(self) -> None:
        public = {
            cls
            for _, cls in inspect.getmembers(httpx, inspect.isclass)
            if issubclass(cls, Exception)
        }
        vendor = public | _subclasses(httpx.HTTPError)

        unmapped = sorted(cls.__name__ for cls in vendor if not issubclass(cls, TRANSLATED_TYPES))

        assert [] == unmapped

    @pytest.mark.parametrize(
        ("exc", "code"),
        [
            (httpx.ReadTimeout("slow"), "timeout"),
            (httpx.ConnectTimeout("slow"), "timeout"),
            (httpx.PoolTimeout("busy"), "timeout"),
            (httpx.ConnectError("refused"), "connection-error"),
            (httpx.ReadError("reset"), "connection-error"),
            (httpx.RemoteProtocolError("cut"), "http-error"),
            (httpx.UnsupportedProtocol("ftp"), "http-error"),
            (httpx.DecodingError("gzip"), "http-error"),
            (httpx.InvalidURL("bad"), "http-error"),
            (RuntimeError("surprise"), "unexpected"),
        ],
    )
    def test_each_branch_is_a_transient_failure_with_its_code(
        self, exc: BaseException, code: str
    ) -> None:
        failure = translate(exc)

        assert (True, code, False) == (failure.transient, failure.code, failure.rate_limited)
