"""The inbound job payload (SPEC §2): InboundMessage.from_payload names every bad field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from domain.errors import FieldError, InvalidPayload
from domain.inbound import InboundMessage

NOW = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)


def payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tenantId": "shop-a",
        "providerMessageId": "SM0001",
        "from": "whatsapp:+33698765432",
        "body": "I'll take the blue one",
        "correlationId": "corr-1",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not MISSING}


MISSING: Any = object()


def errors_of(raw: object) -> dict[str, str]:
    with pytest.raises(InvalidPayload) as caught:
        InboundMessage.from_payload(raw, NOW)
    return {e.field: e.problem for e in caught.value.errors}


class TestAValidPayload:
    def test_a_minimal_payload_is_read_with_received_at_defaulting_to_now(self) -> None:
        message = InboundMessage.from_payload(payload(), NOW)

        expected = InboundMessage(
            tenant_id="shop-a",
            provider_message_id="SM0001",
            from_address="whatsapp:+33698765432",
            body="I'll take the blue one",
            correlation_id="corr-1",
            received_at=NOW,
        )
        assert expected == message

    def test_the_sender_address_is_kept_as_received(self) -> None:
        message = InboundMessage.from_payload(payload(**{"from": "whatsapp:06 98 76 54 32"}), NOW)

        assert "whatsapp:06 98 76 54 32" == message.from_address

    def test_an_empty_body_is_allowed(self) -> None:
        assert "" == InboundMessage.from_payload(payload(body=""), NOW).body

    def test_a_body_of_exactly_4096_characters_is_allowed(self) -> None:
        assert 4096 == len(InboundMessage.from_payload(payload(body="x" * 4096), NOW).body)

    def test_a_provider_message_id_of_exactly_64_characters_is_allowed(self) -> None:
        message = InboundMessage.from_payload(payload(providerMessageId="S" * 64), NOW)

        assert "S" * 64 == message.provider_message_id

    def test_received_at_with_an_offset_is_kept(self) -> None:
        message = InboundMessage.from_payload(payload(receivedAt="2026-03-02T19:30:00+01:00"), NOW)

        assert datetime(2026, 3, 2, 18, 30, tzinfo=UTC) == message.received_at
        assert timedelta(hours=1) == message.received_at.utcoffset()

    def test_received_at_in_z_notation_is_utc(self) -> None:
        message = InboundMessage.from_payload(payload(receivedAt="2026-03-02T17:59:00Z"), NOW)

        assert datetime(2026, 3, 2, 17, 59, tzinfo=UTC) == message.received_at

    def test_the_optional_fields_are_kept(self) -> None:
        message = InboundMessage.from_payload(
            payload(
                to="whatsapp:+14155238886",
                profileName="Alice",
                numMedia="2",
                mediaUrls=["https://m/1", "https://m/2"],
            ),
            NOW,
        )

        assert ("whatsapp:+14155238886", "Alice", 2, ("https://m/1", "https://m/2")) == (
            message.to_address,
            message.profile_name,
            message.num_media,
            message.media_urls,
        )

    def test_to_payload_round_trips(self) -> None:
        original = payload(
            receivedAt="2026-03-02T19:30:00+01:00",
            to="whatsapp:+14155238886",
            profileName="Alice",
            numMedia=1,
            mediaUrls=["https://m/1"],
        )
        message = InboundMessage.from_payload(original, NOW)

        assert message == InboundMessage.from_payload(message.to_payload(), NOW)
        assert {**original, "receivedAt": "2026-03-02T19:30:00+01:00"} == message.to_payload()

    def test_to_payload_writes_the_defaulted_received_at(self) -> None:
        message = InboundMessage.from_payload(payload(), NOW)

        assert NOW.isoformat() == message.to_payload()["receivedAt"]

    def test_received_at_keeps_another_offset_through_the_round_trip(self) -> None:
        paris = timezone(timedelta(hours=1))
        message = InboundMessage.from_payload(
            payload(receivedAt=datetime(2026, 3, 2, 19, 0, tzinfo=paris).isoformat()), NOW
        )

        assert (
            message.received_at
            == InboundMessage.from_payload(message.to_payload(), NOW).received_at
        )


class TestABadPayload:
    @pytest.mark.parametrize(
        "field", ["tenantId", "providerMessageId", "from", "body", "correlationId"]
    )
    def test_a_missing_required_field_is_named(self, field: str) -> None:
        assert {field: "is required"} == errors_of(payload(**{field: MISSING}))

    @pytest.mark.parametrize(
        "field", ["tenantId", "providerMessageId", "from", "body", "correlationId"]
    )
    def test_a_null_required_field_is_named(self, field: str) -> None:
        assert {field: "is required"} == errors_of(payload(**{field: None}))

    @pytest.mark.parametrize(
        ("field", "value", "type_name"),
        [
            ("tenantId", 42, "int"),
            ("providerMessageId", ["SM1"], "list"),
            ("from", 33612345678, "int"),
            ("body", {"text": "hi"}, "dict"),
            ("correlationId", True, "bool"),
            ("to", 1, "int"),
            ("receivedAt", 1767268800, "int"),
        ],
    )
    def test_a_field_of_the_wrong_type_is_named(
        self, field: str, value: object, type_name: str
    ) -> None:
        assert {field: f"must be a string, got {type_name}"} == errors_of(payload(**{field: value}))

    def test_an_empty_provider_message_id_is_rejected(self) -> None:
        assert {"providerMessageId": "must not be empty"} == errors_of(
            payload(providerMessageId="")
        )

    def test_a_provider_message_id_over_128_characters_is_rejected(self) -> None:
        assert {"providerMessageId": "is 129 characters, at most 128 allowed"} == errors_of(
            payload(providerMessageId="S" * 129)
        )

    def test_a_meta_wamid_of_66_characters_is_a_provider_message_id(self) -> None:
        # A 13-digit number (Brazil) and a 20-character id (ADR 0019's decoding of Meta's ids).
        wamid = "wamid.HBgNNTUxNjk5MjMxODIyMhUCABIYFDNBQURGODQ0MTM0N0U4NTcxQzEwAA=="
        assert 66 == len(wamid)
        message = InboundMessage.from_payload(payload(providerMessageId=wamid), NOW)
        assert wamid == message.provider_message_id

    def test_a_body_over_4096_characters_is_rejected(self) -> None:
        assert {"body": "is 4097 characters, at most 4096 allowed"} == errors_of(
            payload(body="x" * 4097)
        )

    @pytest.mark.parametrize("field", ["tenantId", "from", "correlationId"])
    def test_an_empty_identifier_is_rejected(self, field: str) -> None:
        assert {field: "must not be empty"} == errors_of(payload(**{field: ""}))

    def test_received_at_without_an_offset_is_rejected(self) -> None:
        assert ["receivedAt"] == list(errors_of(payload(receivedAt="2026-03-02T18:00:00")))

    def test_received_at_that_is_not_a_timestamp_is_rejected(self) -> None:
        assert {"receivedAt": "is not an ISO-8601 timestamp: 'yesterday'"} == errors_of(
            payload(receivedAt="yesterday")
        )

    @pytest.mark.parametrize("value", [-1, True, "two", 1.5])
    def test_num_media_must_be_a_whole_number(self, value: object) -> None:
        assert ["numMedia"] == list(errors_of(payload(numMedia=value)))

    @pytest.mark.parametrize("value", ["https://m/1", [1, 2], {"url": "x"}])
    def test_media_urls_must_be_a_list_of_strings(self, value: object) -> None:
        assert {"mediaUrls": "must be a list of strings"} == errors_of(payload(mediaUrls=value))

    @pytest.mark.parametrize(
        ("raw", "type_name"),
        [(["tenantId", "shop-a"], "list"), ("tenantId=shop-a", "str"), (None, "null"), (7, "int")],
    )
    def test_a_payload_that_is_not_an_object_is_rejected(self, raw: object, type_name: str) -> None:
        assert {"payload": f"must be a JSON object, got {type_name}"} == errors_of(raw)

    def test_every_bad_field_is_reported_at_once(self) -> None:
        raw = payload(
            tenantId=MISSING, providerMessageId="S" * 129, body=12, receivedAt="2026-03-02T18:00"
        )

        assert {"tenantId", "providerMessageId", "body", "receivedAt"} == set(errors_of(raw))

    def test_the_error_message_names_each_bad_field(self) -> None:
        with pytest.raises(InvalidPayload) as caught:
            InboundMessage.from_payload(payload(tenantId=MISSING, body=None), NOW)

        assert "invalid payload: tenantId: is required; body: is required" == str(caught.value)
        assert (FieldError("tenantId", "is required"), FieldError("body", "is required")) == (
            caught.value.errors
        )

    def test_invalid_payload_is_a_value_error(self) -> None:
        assert issubclass(InvalidPayload, ValueError)
