"""Reading Twilio's form and making it storable (issue 11 §3 §4, ADR 0010): the rule holds for any
text, and the Twilio names land in the right fields. Parameter names from
https://www.twilio.com/docs/messaging/guides/webhook-request (WhatsApp sections)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from application.webhook_input import WebhookMessage, cleaned
from domain.inbound import MAX_BODY_LENGTH, InboundMessage
from domain.inbound_content import InputFlag, clean_text
from entrypoints.twilio_form import read_twilio_message
from tests.unit.builders import START

CONTROL = {chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"} | {chr(0x7F)}


def message(body: str, params: tuple[tuple[str, str], ...] = ()) -> WebhookMessage:
    return WebhookMessage(
        provider_message_id="SM1",
        from_address="whatsapp:+33612345678",
        to_address="whatsapp:+14155238886",
        body=body,
        params=params or (("MessageSid", "SM1"), ("Body", body)),
    )


class TestCleaningRule:
    @given(st.text(max_size=5000))
    def test_any_body_becomes_storable_and_the_flags_say_exactly_what_changed(
        self, body: str
    ) -> None:
        result = cleaned(message(body))

        assert len(result.body) <= MAX_BODY_LENGTH
        assert not CONTROL & set(result.body)
        changed = result.body != body
        assert changed == bool(result.flags)
        assert (result.content.raw_form is not None) == changed
        if result.content.raw_form is not None:
            assert body == dict(parse_qsl(result.content.raw_form, keep_blank_values=True))["Body"]
        assert "\x00" not in str(result.content.provider_params)

    @given(st.text(max_size=5000))
    def test_a_cleaned_message_always_meets_the_payload_contract(self, body: str) -> None:
        result = cleaned(message(body))
        payload = {
            "tenantId": "shop-a",
            "providerMessageId": result.provider_message_id,
            "from": result.from_address,
            "body": result.body,
            "correlationId": "corr-1",
            **result.content.to_payload(),
        }

        assert result.body == InboundMessage.from_payload(payload, START).body

    def test_text_within_its_limit_and_without_controls_is_untouched(self) -> None:
        assert ("Je prends le 3 ! 👩‍👩‍👧‍👦\n", set()) == clean_text(
            "Je prends le 3 ! 👩‍👩‍👧‍👦\n", 4096
        )

    def test_cutting_never_separates_a_character_from_its_marks_or_a_zwj_sequence(self) -> None:
        family = "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"

        assert [
            ("caf", {InputFlag.FIELD_TRUNCATED}),
            ("ok ", {InputFlag.FIELD_TRUNCATED}),
            ("ok " + family, {InputFlag.FIELD_TRUNCATED}),
        ] == [
            clean_text("cafe\u0301", 4),
            clean_text("ok " + family, 6),
            clean_text("ok " + family + "!", 10),
        ]


class TestReadingTwilioForms:
    def test_media_are_read_in_index_order_with_their_content_types(self) -> None:
        read = read_twilio_message(
            [
                ("MessageSid", "MM1"),
                ("NumMedia", "2"),
                ("MediaUrl1", "https://api.twilio.com/m/1"),
                ("MediaContentType1", "video/mp4"),
                ("MediaUrl0", "https://api.twilio.com/m/0"),
                ("MediaContentType0", "image/jpeg"),
            ]
        )

        assert (2, ("https://api.twilio.com/m/0", "https://api.twilio.com/m/1")) == (
            read.num_media,
            read.media_urls,
        )
        assert ("image/jpeg", "video/mp4") == read.content.media_content_types

    def test_referral_fields_lose_their_prefix_and_the_empty_media_count_is_dropped(self) -> None:
        plain = read_twilio_message([("MessageSid", "SM1"), ("ReferralNumMedia", "0")])
        ad = read_twilio_message(
            [("MessageSid", "SM2"), ("ReferralCtwaClid", "ARAk"), ("ReferralSourceType", "ad")]
        )

        assert ({}, {"ctwaClid": "ARAk", "sourceType": "ad"}) == (
            plain.content.referral,
            ad.content.referral,
        )

    def test_an_unreadable_media_count_is_the_number_of_media_with_a_flag(self) -> None:
        read = read_twilio_message(
            [("MessageSid", "SM1"), ("NumMedia", "lots"), ("MediaUrl0", "https://m/0")]
        )

        assert (1, ("num_media_unreadable",)) == (read.num_media, read.flags)

    def test_every_pair_is_kept_in_order_repeated_names_included(self) -> None:
        pairs = [("MessageSid", "SM1"), ("X", "1"), ("X", "2")]

        read = read_twilio_message(pairs)

        assert tuple(pairs) == read.params
        assert {"MessageSid": "SM1", "X": ["1", "2"]} == cleaned(read).content.provider_params
