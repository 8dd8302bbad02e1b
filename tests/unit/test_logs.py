"""Log lines (SPEC §4): ``[timestamp] [LEVEL] [worker-name] message {json context}``, phones masked
to their last four digits where they stand as phones, text or JSON; identifiers and amounts never
altered (ADR 0011).

Identifier shapes are the real ones: RQ job ids and correlation ids are uuid4 strings (RFC 9562),
outbox ids ULIDs (26 Crockford base32 characters, https://github.com/ulid/spec), Twilio SIDs two
capital letters and 32 hex digits (SM/MM messages, AC accounts, HX content templates, MG messaging
services: https://www.twilio.com/docs/glossary/what-is-a-sid). Phone numbers are E.164 (ITU-T:
at most 15 digits after ``+``), Twilio's ``whatsapp:+14155238886`` addresses
(https://www.twilio.com/docs/whatsapp/api) and numbers as people type them.
"""

from __future__ import annotations

import json
import logging
import random
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.phones import mask_phones_in
from entrypoints.logs import LivesellFormatter, current_worker

LINE = re.compile(
    r"^\[(?P<stamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00)\] \[(?P<level>[A-Z]+)\] "
    r"\[(?P<worker>[\w-]+)\] (?P<message>.*?)(?: (?P<context>\{.*\}))?$"
)


@pytest.fixture
def worker() -> Iterator[None]:
    token = current_worker.set("webhook-processor")
    yield
    current_worker.reset(token)


def record(
    message: str, *args: object, level: int = logging.INFO, **context: Any
) -> logging.LogRecord:
    made = logging.getLogger("livesell.test").makeRecord(
        "livesell.test",
        level,
        __file__,
        1,
        message,
        args,
        None,
        extra={"context": context} if context else None,
    )
    made.created = 1772474400.123  # 2026-03-02T18:00:00.123Z
    return made


def text(line_record: logging.LogRecord) -> re.Match[str]:
    line = LivesellFormatter("text").format(line_record)
    match = LINE.match(line)
    assert match is not None, line
    return match


@pytest.mark.usefixtures("worker")
class TestTextLines:
    def test_a_line_has_the_spec_shape(self) -> None:
        match = text(record("Job completed", correlationId="corr-1", jobId="job-1"))

        assert (
            "2026-03-02T18:00:00.123+00:00",
            "INFO",
            "webhook-processor",
            "Job completed",
            {"correlationId": "corr-1", "jobId": "job-1"},
        ) == (
            match["stamp"],
            match["level"],
            match["worker"],
            match["message"],
            json.loads(match["context"]),
        )

    def test_a_line_without_context_ends_with_the_message(self) -> None:
        match = text(record("Worker started successfully", level=logging.WARNING))

        assert ("WARNING", "Worker started successfully", None) == (
            match["level"],
            match["message"],
            match["context"],
        )

    def test_the_worker_name_comes_from_the_current_worker(self) -> None:
        token = current_worker.set("outbox-sender")
        try:
            match = text(record("Batch processed"))
        finally:
            current_worker.reset(token)

        assert "outbox-sender" == match["worker"]

    def test_phones_in_the_context_keep_only_their_last_four_digits(self) -> None:
        match = text(
            record(
                "Processing outbound message",
                to="+33612345678",
                **{"from": "whatsapp:+33698765432"},
                note="client +14155552671 asked",
                nested={"phone": "+447911123456"},
            )
        )

        assert {
            "to": "********5678",
            "from": "********5432",
            "note": "client ********2671 asked",
            "nested": {"phone": "*********3456"},
        } == json.loads(match["context"])

    def test_phones_in_the_message_keep_only_their_last_four_digits(self) -> None:
        match = text(record("Message sent to %s", "whatsapp:+33612345678"))

        assert "Message sent to whatsapp:********5678" == match["message"]

    def test_no_full_phone_survives_anywhere_in_the_line(self) -> None:
        line = LivesellFormatter("text").format(
            record(
                "from +33612345678",
                to="+33612345678",
                error="invalid phone number '06 12 34 56 78': not a valid number",
            )
        )

        assert [] == [p for p in ("33612345678", "0612345678") if p in re.sub(r"\D", "", line)]

    def test_timestamps_and_provider_ids_in_the_context_are_not_masked(self) -> None:
        context = {
            "nextAttemptAt": "2026-03-02T18:00:08+00:00",
            "providerMessageId": "SM0123456789abcdef0123456789abcdef",
            "outboxId": "01KJ0000000000000000000000",
        }

        match = text(record("Message send failed, will retry", **context))

        assert context == json.loads(match["context"])

    def test_an_exception_is_logged_in_the_context_with_phones_masked(self) -> None:
        error = ValueError("cannot reach +33612345678")
        failing = record("Job failed")
        failing.exc_info = (ValueError, error, None)

        context = json.loads(text(failing)["context"])

        assert "ValueError: cannot reach ********5678" in context["error"]


@pytest.mark.usefixtures("worker")
class TestJsonLines:
    def test_a_json_line_holds_the_same_facts(self) -> None:
        line = LivesellFormatter("json").format(
            record("Job completed", correlationId="corr-1", to="+33612345678")
        )

        assert {
            "timestamp": "2026-03-02T18:00:00.123+00:00",
            "level": "INFO",
            "worker": "webhook-processor",
            "message": "Job completed",
            "correlationId": "corr-1",
            "to": "********5678",
        } == json.loads(line)


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULIDS = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("01234567"),
    st.text(alphabet=CROCKFORD, min_size=25, max_size=25),
)
SIDS = st.builds(
    lambda prefix, digits: prefix + digits,
    st.sampled_from(["SM", "MM", "AC", "HX", "MG", "XE", "CA"]),
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
)
UUIDS = st.uuids(version=4).map(str)
IDENTIFIERS = st.one_of(UUIDS, ULIDS, SIDS)
AROUND = st.sampled_from(["", " ", "job ", "id=", "(", '"', "[", "outbox ", "/jobs/"])
E164 = st.builds(
    lambda first, rest: f"+{first}{rest}",
    st.sampled_from("123456789"),
    st.text(alphabet="0123456789", min_size=7, max_size=14),
)


class TestMaskingNeverCorrupts:
    @given(IDENTIFIERS, AROUND, AROUND)
    def test_uuids_ulids_and_twilio_sids_in_free_text_are_never_altered(
        self, identifier: str, before: str, after: str
    ) -> None:
        text = f"{before}{identifier}{after[::-1]} done"

        assert text == mask_phones_in(text)

    @given(st.integers(min_value=0, max_value=10**15), st.sampled_from(["EUR", "XOF", "cents"]))
    def test_amounts_are_never_altered(self, amount: int, unit: str) -> None:
        text = f"total {amount} {unit}, {amount:,} {unit}, {amount / 100:.2f}"

        assert text == mask_phones_in(text)

    @given(st.lists(IDENTIFIERS, min_size=1, max_size=4))
    def test_identifiers_in_a_lines_context_and_message_come_out_as_they_went_in(
        self, identifiers: list[str]
    ) -> None:
        context = {f"id{n}": value for n, value in enumerate(identifiers)}
        line = LivesellFormatter("json").format(
            record("Job completed " + " ".join(identifiers), **context)
        )

        parsed = json.loads(line)
        assert ("Job completed " + " ".join(identifiers), context) == (
            parsed["message"],
            {key: parsed[key] for key in context},
        )

    def test_not_one_of_ten_thousand_random_uuid4_strings_is_altered(self) -> None:
        rng = random.Random(11)
        ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(10_000)]

        assert [] == [i for i in ids if mask_phones_in(f"jobId {i}") != f"jobId {i}"]

    @pytest.mark.parametrize(
        "text",
        [
            "total 1234567 EUR",
            "order 12 of 3 items, 1 234 567 EUR",
            "jobId 0b7c1d3e-4567-4890-8123-456789012345 enqueued",
            "outbox 01KJ5Z8V3W0000000000000000",
            "provider id SM0123456789abcdef0123456789abcdef",
            "template HX1234567890abcdef1234567890abcdef",
            "account AC00000000000000000000000000000000",
            "next attempt at 2026-03-02T18:00:08+00:00",
            "took 1234567 ms; pid 2345678",
        ],
    )
    def test_a_table_of_lines_without_phones_is_left_alone(self, text: str) -> None:
        assert text == mask_phones_in(text)


class TestPhonesStandingAsPhonesAreMasked:
    @given(E164, st.sampled_from(["to ", "whatsapp:", "(", '"', "From=", "client "]))
    def test_an_e164_number_keeps_only_its_last_four_digits(self, phone: str, before: str) -> None:
        masked = mask_phones_in(f"{before}{phone} asked")

        assert f"{before}{'*' * (len(phone) - 4)}{phone[-4:]} asked" == masked

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("sent to whatsapp:+491511234567", "sent to whatsapp:*********4567"),
            ("From=whatsapp%3A%2B5215512345678", "From=whatsapp%3A************5678"),
            ("client +1 (415) 555-2671 asked", "client *************2671 asked"),
            ("client +33 6 12 34 56 78", "client ************56 78"),
            (
                "invalid phone number '06 12 34 56 78': not a valid number",
                "invalid phone number '*********56 78': not a valid number",
            ),
            (
                "Key (tenant_id, phone_e164)=(shop-a, +33612345678) already exists",
                "Key (tenant_id, phone_e164)=(shop-a, ********5678) already exists",
            ),
        ],
    )
    def test_a_table_of_phones_in_free_text(self, text: str, expected: str) -> None:
        assert expected == mask_phones_in(text)

    @pytest.mark.parametrize(
        "key", ["to", "From", "to_phone", "fromPhone", "WaId", "phone_e164", "ChannelToAddress"]
    )
    def test_a_field_that_holds_a_phone_is_masked_in_any_form(self, key: str) -> None:
        line = LivesellFormatter("json").format(record("Inbound message", **{key: "5215512345678"}))

        assert "*********5678" == json.loads(line)[key]
