"""Meta's webhook read as livesell reads Twilio's (issue 17 §2, ADR 0019): the verification
request, the signature, every kind of message into the same ``WebhookMessage`` and
``InboundMessage``, and every status into the same delivery-report rules.

Payloads: Meta's messages webhook reference pages, cited in ``tests.support.meta_webhook``.
Verification and signature: "Verification Requests" and "Validating Payloads",
https://developers.facebook.com/docs/graph-api/webhooks/getting-started.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.memory.queue import MemoryInboundQueue
from application.dead_letters import ReplayStatus, replay_dead_letter
from application.inbox import Recorded, UnknownNumber, receive_inbound_message
from application.webhook_input import cleaned
from domain.delivery import DeliveryReport, DeliveryStatus
from domain.inbound import InboundMessage
from entrypoints.meta_webhook import (
    InvalidMetaPayload,
    read_notification,
    signature_is_valid,
    signature_of,
    verification_challenge,
)
from tests.support.meta_webhook import (
    APP_SECRET,
    CONTEXT_ID,
    DISPLAY_NUMBER,
    MESSAGE_ID,
    OTHER_DISPLAY_NUMBER,
    OTHER_PHONE_NUMBER_ID,
    OTHER_USER,
    PHONE_NUMBER_ID,
    REFERRAL,
    USER,
    USER_NAME,
    body_of,
    change,
    contact,
    inbound,
    message,
    metadata,
    notification,
    sign,
    status,
    statuses,
)
from tests.unit.builders import START, World

USER_ADDRESS = f"whatsapp:+{USER}"
SHOP_ADDRESS = f"whatsapp:+{DISPLAY_NUMBER}"


def read_one(*items: dict[str, Any], **kw: Any) -> Any:
    (only,) = read_notification(body_of(inbound(*items, **kw))).messages
    return only


class TestVerificationRequest:
    def test_the_challenge_is_answered_when_the_token_is_ours(self) -> None:
        params = {
            "hub.mode": "subscribe",
            "hub.challenge": "1158201444",
            "hub.verify_token": "meatyhamhock",
        }

        assert "1158201444" == verification_challenge(params, "meatyhamhock")

    @pytest.mark.parametrize(
        "params",
        [
            {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "other"},
            {"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": "meatyhamhock"},
            {"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock"},
            {"hub.mode": "subscribe", "hub.challenge": "1"},
            {},
        ],
    )
    def test_anything_else_is_refused(self, params: dict[str, str]) -> None:
        assert verification_challenge(params, "meatyhamhock") is None

    def test_no_token_configured_refuses_even_an_empty_one(self) -> None:
        params = {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": ""}

        assert verification_challenge(params, "") is None


class TestSignature:
    BODY = body_of(inbound(message("reaction", {"message_id": CONTEXT_ID, "emoji": "\U0001f44d"})))

    def test_meta_signs_the_escaped_bytes_it_sends(self) -> None:
        assert b"\\ud83d\\udc4d" in self.BODY
        assert signature_is_valid(self.BODY, sign(self.BODY), APP_SECRET)

    def test_our_signature_is_metas(self) -> None:
        assert sign(self.BODY) == signature_of(self.BODY, APP_SECRET)

    def test_hex_digits_in_upper_case_are_the_same_signature(self) -> None:
        header = "sha256=" + sign(self.BODY).removeprefix("sha256=").upper()

        assert signature_is_valid(self.BODY, header, APP_SECRET)

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "",
            sign(b"another body"),
            sign(BODY, "another-secret"),
            sign(BODY).removeprefix("sha256="),
            "sha1=" + sign(BODY).removeprefix("sha256="),
            "sha256=",
        ],
    )
    def test_a_missing_or_wrong_signature_is_refused(self, header: str | None) -> None:
        assert not signature_is_valid(self.BODY, header, APP_SECRET)

    def test_a_changed_byte_breaks_the_signature(self) -> None:
        tampered = self.BODY.replace(b"\\ud83d\\udc4d", b"\\ud83d\\udc4e")

        assert not signature_is_valid(tampered, sign(self.BODY), APP_SECRET)

    def test_without_an_app_secret_nothing_is_valid(self) -> None:
        assert not signature_is_valid(self.BODY, sign(self.BODY, ""), "")


class TestEveryKindOfMessage:
    def test_a_text_is_the_same_message_a_twilio_form_gives(self) -> None:
        read = read_one(message("text", {"body": "Je prends le 3 !"}))

        assert PHONE_NUMBER_ID == read.phone_number_id
        assert (MESSAGE_ID, USER_ADDRESS, SHOP_ADDRESS, "Je prends le 3 !", USER_NAME) == (
            read.message.provider_message_id,
            read.message.from_address,
            read.message.to_address,
            read.message.body,
            read.message.profile_name,
        )
        assert ("text", USER) == (read.message.content.kind, read.message.content.wa_id)
        assert () == read.missing

    @pytest.mark.parametrize("kind", ["image", "video", "document"])
    def test_a_captioned_media_keeps_its_id_type_and_caption_as_the_body(self, kind: str) -> None:
        media = {
            "caption": "This is a caption",
            "mime_type": "image/jpeg",
            "sha256": "81d3bd8a8db4868c9520ed47186e8b7c5789e61ff79f7f834be6950b808a90d3",
            "id": "2754859441498128",
        }

        read = read_one(message(kind, media))

        assert ("This is a caption", 1, ("2754859441498128",), kind) == (
            read.message.body,
            read.message.num_media,
            read.media_ids,
            read.message.content.kind,
        )
        assert ("2754859441498128", "image/jpeg") == (
            dict(read.message.params)[f"{kind}.id"],
            dict(read.message.params)[f"{kind}.mime_type"],
        )

    @pytest.mark.parametrize(
        ("kind", "mime"), [("audio", "audio/ogg; codecs=opus"), ("sticker", "image/webp")]
    )
    def test_audio_and_stickers_have_no_body(self, kind: str, mime: str) -> None:
        read = read_one(message(kind, {"mime_type": mime, "sha256": "abc", "id": "9876"}))

        assert ("", 1, ("9876",)) == (read.message.body, read.message.num_media, read.media_ids)

    def test_a_media_url_when_meta_sends_one_is_kept_with_its_content_type(self) -> None:
        url = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=2754859441498128"
        media = {"mime_type": "image/jpeg", "sha256": "abc", "id": "2754859441498128", "url": url}

        read = read_one(message("image", media))

        assert ((url,), ("image/jpeg",)) == (
            read.message.media_urls,
            read.message.content.media_content_types,
        )

    def test_a_location_lands_where_twilios_latitude_longitude_address_label_do(self) -> None:
        location = {
            "address": "101 Forest Ave, Palo Alto, CA 94301",
            "latitude": 37.44221496582,
            "longitude": -122.16162109375,
            "name": "Philz Coffee",
            "url": "https://philzcoffee.com",
        }

        content = read_one(message("location", location)).message.content

        assert ("37.44221496582", "-122.16162109375", location["address"], "Philz Coffee") == (
            content.latitude,
            content.longitude,
            content.address,
            content.label,
        )
        assert content.has_location

    def test_shared_contacts_are_kept_whole_in_the_parameter_set(self) -> None:
        card = {
            "name": {"formatted_name": "Barbara J. Johnson", "first_name": "Barbara"},
            "phones": [{"phone": "+1 (650) 555-1234", "wa_id": "16505551234", "type": "MOBILE"}],
            "emails": [{"email": "bjohnson@luckyshrub.com", "type": "WORK"}],
        }

        read = read_one(message("contacts", [card]))

        params = dict(read.message.params)
        assert ("contacts", "") == (read.message.content.kind, read.message.body)
        assert "Barbara J. Johnson" == params["contacts.0.name.formatted_name"]
        assert "16505551234" == params["contacts.0.phones.0.wa_id"]

    @pytest.mark.parametrize(
        ("reply_type", "reply"),
        [
            ("button_reply", {"id": "cancel-button", "title": "Cancel"}),
            (
                "list_reply",
                {
                    "id": "priority_express",
                    "title": "Priority Mail Express",
                    "description": "Next Day to 2 Days",
                },
            ),
        ],
    )
    def test_an_interactive_reply_is_a_button_with_the_replied_to_message(
        self, reply_type: str, reply: dict[str, str]
    ) -> None:
        read = read_one(
            message(
                "interactive",
                {"type": reply_type, reply_type: reply},
                context={"from": DISPLAY_NUMBER, "id": CONTEXT_ID},
            )
        )

        content = read.message.content
        assert (reply["title"], reply["title"], reply["id"]) == (
            read.message.body,
            content.button_text,
            content.button_payload,
        )
        assert (CONTEXT_ID, SHOP_ADDRESS) == (
            content.replied_to_message_id,
            content.replied_to_sender,
        )

    def test_a_template_quick_reply_button_keeps_its_text_and_payload(self) -> None:
        read = read_one(
            message(
                "button",
                {"payload": "Unsubscribe", "text": "Unsubscribe"},
                context={"from": DISPLAY_NUMBER, "id": CONTEXT_ID},
            )
        )

        content = read.message.content
        assert ("button", "Unsubscribe", "Unsubscribe", CONTEXT_ID) == (
            content.kind,
            content.button_text,
            content.button_payload,
            content.replied_to_message_id,
        )

    def test_a_reaction_names_the_message_reacted_to(self) -> None:
        read = read_one(message("reaction", {"message_id": CONTEXT_ID, "emoji": "\U0001f44d"}))

        assert ("reaction", "\U0001f44d", CONTEXT_ID) == (
            read.message.content.kind,
            read.message.body,
            read.message.content.replied_to_message_id,
        )

    def test_a_removed_reaction_has_no_emoji(self) -> None:
        read = read_one(message("reaction", {"message_id": CONTEXT_ID}))

        assert "" == read.message.body

    def test_a_forwarded_text_says_so(self) -> None:
        often = read_one(message("text", {"body": "x"}, context={"frequently_forwarded": True}))
        once = read_one(message("text", {"body": "x"}, context={"forwarded": True}))

        assert (False, True) == (
            often.message.content.forwarded,
            often.message.content.frequently_forwarded,
        )
        assert (True, False) == (
            once.message.content.forwarded,
            once.message.content.frequently_forwarded,
        )

    def test_a_product_inquiry_names_the_post_and_keeps_the_product(self) -> None:
        context = {
            "from": DISPLAY_NUMBER,
            "id": CONTEXT_ID,
            "referred_product": {
                "catalog_id": "194836987003835",
                "product_retailer_id": "di9ozbzfi4",
            },
        }

        read = read_one(message("text", {"body": "Dispo en M ?"}, context=context))

        assert CONTEXT_ID == read.message.content.replied_to_message_id
        assert (
            "di9ozbzfi4"
            == dict(read.message.params)["context.referred_product.product_retailer_id"]
        )

    def test_an_ad_referral_keeps_every_field_camel_case_as_twilios(self) -> None:
        read = read_one(message("text", {"body": "Hello"}, referral=REFERRAL))

        referral = read.message.content.referral
        assert {
            "sourceUrl": "https://fb.me/3cr4Wqqkv",
            "sourceId": "120226305854810726",
            "sourceType": "ad",
            "body": "Summer succulents are here!",
            "headline": "Chat with us",
            "mediaType": "image",
            "imageUrl": "https://scontent.xx.fbcdn.net/v/t45.1...",
            "ctwaClid": REFERRAL["ctwa_clid"],
            "welcomeMessageText": "Hi there! Let us know how we can help!",
        } == referral

    def test_a_system_message_and_an_unsupported_one_are_read_not_refused(self) -> None:
        system = read_one(
            message(
                "system",
                {
                    "body": "User Sheena Nelson changed from 16505551234 to 12195555358",
                    "wa_id": "12195555358",
                    "type": "user_changed_number",
                },
            )
        )
        unsupported = read_one(
            message(
                "unsupported",
                None,
                errors=[{"code": 131051, "title": "Message type unknown"}],
            )
        )

        assert ("system", "user_changed_number") == (
            system.message.content.kind,
            dict(system.message.params)["system.type"],
        )
        assert ("unsupported", "131051") == (
            unsupported.message.content.kind,
            dict(unsupported.message.params)["errors.0.code"],
        )

    def test_a_message_without_id_or_sender_says_which_is_missing(self) -> None:
        item = message("text", {"body": "x"})
        del item["id"]
        del item["from"]

        read = read_one(item, contacts=[])

        assert ("id", "from") == read.missing

    def test_a_number_the_phone_rules_cannot_read_is_kept_as_received(self) -> None:
        read = read_one(message("text", {"body": "x"}, **{"from": "not-a-number"}), contacts=[])

        assert "whatsapp:not-a-number" == read.message.from_address


class TestOnePostManyMessages:
    def test_every_message_of_every_entry_is_read_for_its_own_business_number(self) -> None:
        second = message("text", {"body": "Et le 4"}, id=MESSAGE_ID + "2")
        payload = notification(
            change(
                {
                    "metadata": metadata(),
                    "contacts": [contact(), contact("33612345678", "Ana")],
                    "messages": [
                        message("text", {"body": "Je prends le 3"}),
                        second,
                        message(
                            "text",
                            {"body": "Moi le 5"},
                            id="wamid.other",
                            **{"from": "33612345678"},
                        ),
                    ],
                }
            ),
            change(
                {
                    "metadata": metadata(OTHER_DISPLAY_NUMBER, OTHER_PHONE_NUMBER_ID),
                    "contacts": [contact(OTHER_USER, "test user name")],
                    "messages": [
                        {
                            "from": OTHER_USER,
                            "id": "ABGGFlA5Fpa",
                            "timestamp": "1504902988",
                            "type": "text",
                            "text": {"body": "this is a text message"},
                        }
                    ],
                }
            ),
        )

        read = read_notification(body_of(payload)).messages

        assert [
            (PHONE_NUMBER_ID, "Je prends le 3", USER_NAME, USER_ADDRESS),
            (PHONE_NUMBER_ID, "Et le 4", USER_NAME, USER_ADDRESS),
            (PHONE_NUMBER_ID, "Moi le 5", "Ana", "whatsapp:+33612345678"),
            (
                OTHER_PHONE_NUMBER_ID,
                "this is a text message",
                "test user name",
                "whatsapp:+16315551181",
            ),
        ] == [
            (m.phone_number_id, m.message.body, m.message.profile_name, m.message.from_address)
            for m in read
        ]
        assert f"whatsapp:+{OTHER_DISPLAY_NUMBER}" == read[3].message.to_address

    def test_other_fields_are_named_and_skipped(self) -> None:
        payload = notification(
            change(
                {"event": "APPROVED", "message_template_id": 1},
                field="message_template_status_update",
            )
        )

        read = read_notification(body_of(payload))

        assert ((), ("message_template_status_update",)) == (read.messages, read.ignored)

    def test_errors_about_the_business_number_are_reported(self) -> None:
        payload = notification(
            change(
                {
                    "metadata": metadata(),
                    "errors": [
                        {
                            "code": 130429,
                            "title": "Rate limit hit",
                            "message": "Rate limit hit",
                            "error_data": {
                                "details": "Message failed to send because there were too many "
                                "messages sent from this phone number in a short period of time"
                            },
                        }
                    ],
                }
            )
        )

        (error,) = read_notification(body_of(payload)).errors

        assert (PHONE_NUMBER_ID, "130429", "Rate limit hit") == (
            error.phone_number_id,
            error.code,
            error.title,
        )

    @pytest.mark.parametrize(
        "body",
        [b"not json", b"[1, 2]", body_of({"object": "page", "entry": []}), b"\xff\xfe"],
    )
    def test_a_body_that_is_no_whatsapp_notification_is_invalid(self, body: bytes) -> None:
        with pytest.raises(InvalidMetaPayload):
            read_notification(body)

    def test_odd_shapes_inside_a_notification_are_skipped_not_refused(self) -> None:
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": "?"}, "x"]}, 3],
        }

        assert read_notification(body_of(payload)).messages == ()


class TestDeliveryReports:
    def test_each_status_carries_what_the_twilio_callback_carries(self) -> None:
        failed = status(
            "failed",
            errors=[
                {
                    "code": 131026,
                    "title": "Message undeliverable",
                    "message": "Message undeliverable",
                    "error_data": {"details": "Message Undeliverable."},
                }
            ],
            biz_opaque_callback_data="tenantId=shop-a&outboxId=01OUTBOX",
        )

        (update,) = read_notification(body_of(statuses(failed))).statuses

        assert {
            "status": "failed",
            "error_code": "131026",
            "tenant_id": "shop-a",
            "outbox_id": "01OUTBOX",
            "provider_message_id": MESSAGE_ID,
            "sender": f"+{DISPLAY_NUMBER}",
        } == update.report_arguments()
        assert (DeliveryStatus.FAILED, f"+{USER}", "Message undeliverable") == (
            update.delivery_status,
            update.recipient,
            update.error_title,
        )

    def test_a_documented_sent_status_with_pricing_is_read(self) -> None:
        sent = status(
            "sent",
            wamid="wamid.HBgNNTUxNjk5MjMxODIyMhUCABEYEjgxQkVFRDVBQTVDODFDOTg3MQA=",
            recipient="5516992318222",
            conversation={
                "id": "a75d17ad06104c51166f948319b03c6a",
                "expiration_timestamp": "1750943820",
                "origin": {"type": "service"},
            },
            pricing={"billable": True, "pricing_model": "CBP", "category": "service"},
        )

        (update,) = read_notification(body_of(statuses(sent))).statuses

        assert (DeliveryStatus.SENT, "+5516992318222", None, None) == (
            update.delivery_status,
            update.recipient,
            update.error_code,
            update.tenant_id,
        )

    @pytest.mark.parametrize(
        "order", list(itertools.permutations(["sent", "delivered", "read", "failed"]))
    )
    def test_every_order_of_metas_four_statuses_gives_the_same_report(
        self, order: tuple[str, ...]
    ) -> None:
        items = [
            status(
                s,
                errors=[{"code": 131026, "title": "Message undeliverable"}]
                if s == "failed"
                else [],
            )
            for s in order
        ]
        stored: DeliveryReport | None = None
        for update in read_notification(body_of(statuses(*items))).statuses:
            assert update.delivery_status is not None
            report = DeliveryReport.of(update.delivery_status, START, update.error_code)
            stored = report.merged_into(stored) or stored

        assert stored is not None
        assert (DeliveryStatus.READ, "131026") == (stored.status, stored.error_code)

    @pytest.mark.parametrize("order", [("sent", "failed"), ("failed", "sent")])
    def test_a_failure_after_or_before_sent_is_the_outcome(self, order: tuple[str, str]) -> None:
        items = [status(s, errors=[{"code": 131047}] if s == "failed" else []) for s in order]
        stored: DeliveryReport | None = None
        for update in read_notification(body_of(statuses(*items))).statuses:
            assert update.delivery_status is not None
            stored = (
                DeliveryReport.of(update.delivery_status, START, update.error_code).merged_into(
                    stored
                )
                or stored
            )

        assert stored is not None
        assert (DeliveryStatus.FAILED, "131047") == (stored.status, stored.error_code)

    def test_a_status_meta_adds_is_not_an_outbound_status(self) -> None:
        (update,) = read_notification(body_of(statuses(status("deleted")))).statuses

        assert update.delivery_status is None


class TestRecordedAsTwilioMessagesAre:
    def test_a_meta_message_goes_into_the_durable_inbox_as_the_same_inbound_message(self) -> None:
        world = World()
        world.tenant("shop-a", meta_phone_number_id=PHONE_NUMBER_ID)
        queue = MemoryInboundQueue()
        read = read_one(message("button", {"payload": "buy:sku-3", "text": "Je prends"}))

        outcome = receive_inbound_message(
            read.message,
            correlation_id="corr-1",
            uow_factory=world.uow_factory,
            queue=queue,
            clock=world.clock,
            ids=world.ids,
        )

        assert isinstance(outcome, Recorded)
        stored = world.store.inbound[("shop-a", MESSAGE_ID)].message
        assert (USER_ADDRESS, "Je prends", "button", "buy:sku-3", USER) == (
            stored.from_address,
            stored.body,
            stored.content.kind,
            stored.content.button_payload,
            stored.content.wa_id,
        )
        assert PHONE_NUMBER_ID == stored.content.provider_params["metadata.phone_number_id"]

    def test_the_tenant_is_found_by_phone_number_id_not_by_the_display_number(self) -> None:
        world = World()
        world.tenant("shop-twilio", whatsapp_number=f"+{DISPLAY_NUMBER}")
        world.tenant("shop-meta", meta_phone_number_id=PHONE_NUMBER_ID)
        read = read_one(message("text", {"body": "Je prends le 3"}))

        outcome = receive_inbound_message(
            read.message,
            correlation_id=None,
            uow_factory=world.uow_factory,
            queue=MemoryInboundQueue(),
            clock=world.clock,
            ids=world.ids,
        )

        assert isinstance(outcome, Recorded)
        assert "shop-meta" == outcome.tenant_id

    def test_a_phone_number_id_no_tenant_has_is_kept_as_a_dead_letter(self) -> None:
        world = World()
        world.tenant("shop-a", whatsapp_number=f"+{DISPLAY_NUMBER}")
        queue = MemoryInboundQueue()
        read = read_one(message("text", {"body": "Je prends le 3"}))

        outcome = receive_inbound_message(
            read.message,
            correlation_id=None,
            uow_factory=world.uow_factory,
            queue=queue,
            clock=world.clock,
            ids=world.ids,
        )

        assert isinstance(outcome, UnknownNumber)
        (dead_letter,) = world.store.dead_letters.values()
        assert (None, "unknown_number") == (dead_letter.tenant_id, dead_letter.error_code)
        assert "Meta phone-number id" in dead_letter.error
        assert (0, 0) == (len(world.store.inbound), len(queue))

    def test_a_dead_letter_for_an_unknown_phone_number_id_replays_to_the_tenant_added_since(
        self,
    ) -> None:
        world = World()
        read = read_one(message("text", {"body": "Je prends le 3"}))
        outcome = receive_inbound_message(
            read.message,
            correlation_id=None,
            uow_factory=world.uow_factory,
            queue=MemoryInboundQueue(),
            clock=world.clock,
            ids=world.ids,
        )
        assert isinstance(outcome, UnknownNumber)
        assert outcome.dead_letter_id is not None
        world.tenant("shop-m", meta_phone_number_id=PHONE_NUMBER_ID)
        queue = MemoryInboundQueue()

        result = replay_dead_letter(
            outcome.dead_letter_id, uow_factory=world.uow_factory, queue=queue, clock=world.clock
        )

        assert ReplayStatus.ENQUEUED == result.status
        (_job_id, payload) = queue.pop()
        assert ("shop-m", MESSAGE_ID) == (payload["tenantId"], payload["providerMessageId"])

    @given(st.text(max_size=5000))
    def test_any_text_meets_the_payload_contract_once_cleaned(self, text: str) -> None:
        read = read_one(message("text", {"body": text}))
        result = cleaned(read.message)
        payload = {
            "tenantId": "shop-a",
            "providerMessageId": result.provider_message_id,
            "from": result.from_address,
            "body": result.body,
            "correlationId": "corr-1",
            **result.content.to_payload(),
        }

        assert result.body == InboundMessage.from_payload(payload, START).body
