# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""Real Twilio traffic end to end (issue 11 §3, §4, §8; ADR 0010): requests shaped and signed
exactly as Twilio sends them to the real webhook app, then the real RQ job
(``entrypoints.jobs.process_webhook_message``, performed from the job RQ stored), on the real
Postgres and Redis; every assertion reads the database.

The parameter sets come from Twilio's documentation:

- every inbound message: ``MessageSid``, ``SmsSid``, ``SmsMessageSid``, ``AccountSid``,
  ``MessagingServiceSid``, ``From``, ``To``, ``Body``, ``NumMedia``, ``NumSegments``,
  ``MediaContentTypeN`` / ``MediaUrlN``, and for WhatsApp ``ProfileName``, ``WaId``,
  ``Forwarded``, ``FrequentlyForwarded``, ``ButtonText``, and the location parameters
  ``Latitude``, ``Longitude``, ``Address``, ``Label`` (Body empty):
  https://www.twilio.com/docs/messaging/guides/webhook-request ("Twilio's request to your
  incoming message Webhook URL", its WhatsApp sections); that page also warns that Twilio adds
  parameters without notice, which is why the whole signed set is kept;
- ``MessageType`` (text, image, video, audio, document, sticker, location, contacts,
  interactive, button, reaction, order, unsupported), ``ButtonPayload``,
  ``OriginalRepliedMessageSid`` / ``OriginalRepliedMessageSender`` (a reply to a business
  message: which product post the client answered), as Twilio posts them for WhatsApp:
  https://support.huaweicloud.com/api-ccfs-cec/cec_07_0996.html (a Twilio WhatsApp adapter's
  parameter table: MessageType, MediaContentType0/MediaUrl0, Address, Label, Latitude,
  Longitude, OriginalRepliedMessageSid ...);
- the click-to-WhatsApp ad referral: ``ReferralBody``, ``ReferralHeadline``,
  ``ReferralSourceId``, ``ReferralSourceType``, ``ReferralSourceUrl``, ``ReferralMediaId``,
  ``ReferralMediaContentType``, ``ReferralMediaUrl``, ``ReferralNumMedia``,
  ``ReferralCtwaClid``: https://www.twilio.com/docs/messaging/guides/webhook-request and the
  inbound-message event (``referralCtwaClid``):
  https://www.twilio.com/docs/events/event-types/messaging/inbound-message;
- the 4,096-character body limit of a WhatsApp text (SPEC §2).
The signature is the SDK's ``RequestValidator.compute_signature`` over the URL and the form
(``tests.support.twilio_webhook``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from rq import Queue

from adapters.rq.spec import QUEUE_NAME
from application.tenants import add_seller, add_tenant
from domain.inbound import MAX_PROVIDER_ID_LENGTH
from entrypoints import webhook_app
from entrypoints.container import Container
from entrypoints.jobs import install_container
from entrypoints.webhook_app import MESSAGES_PATH, create_app
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.redis_db import RedisTestDb
from tests.support.testclient import TestClient
from tests.support.twilio_webhook import BASE, CLIENT, SHOP_NUMBER, TOKEN, sign, twilio_form
from tests.support.webhook import (  # noqa: F401 - fixtures
    container_on,
    redis_db,
    redis_test_db,
    rows,
    webhook_settings,
)

SELLER = "+33699000001"
PRODUCT_POST_SID = "SM" + "5" * 32
MEDIA = "https://api.twilio.com/2010-04-01/Accounts/AC" + "1" * 32 + "/Messages/{sid}/Media/ME{n}"
FAMILY = "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 👩‍👩‍👧‍👦, 7 code points
HEART = "\u2764\ufe0f\u200d\U0001f525"  # ❤️‍🔥, 4 code points


@pytest.fixture
def container(
    postgres_url: str, pg_uow_factory: UnitOfWorkFactory, redis_db: RedisTestDb
) -> Iterator[Container]:
    settings = webhook_settings(postgres_url, redis_db.url, TWILIO_AUTH_TOKEN=TOKEN)
    made = container_on(settings, pg_uow_factory)
    clock, ids = made.clock(), made.ids()
    add_tenant(
        uow_factory=pg_uow_factory,
        clock=clock,
        tenant_id="shop-a",
        name="Shop A",
        whatsapp_number=SHOP_NUMBER,
    )
    add_seller(uow_factory=pg_uow_factory, clock=clock, ids=ids, tenant_id="shop-a", phone=SELLER)
    install_container(made)
    yield made
    install_container(None)


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), base_url=BASE) as test_client:
        yield test_client


def post(client: TestClient, form: Mapping[str, str], path: str = MESSAGES_PATH) -> Any:
    return client.post(
        path,
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign(BASE + path, form),
        },
        follow_redirects=False,
    )


def run_jobs(redis_db: RedisTestDb) -> list[dict[str, Any]]:
    """Perform every job waiting on ``webhook-processing`` as RQ stored it (by its function's
    name), oldest first; returns their results."""
    queue = Queue(QUEUE_NAME, connection=redis_db.client)
    results = []
    for job in queue.get_jobs():
        assert "entrypoints.jobs.process_webhook_message" == job.func_name
        results.append(job.perform())
        queue.remove(job)
    return results


def stored(engine: sa.Engine, sid: str) -> Any:
    (row,) = rows(
        engine, "SELECT * FROM inbound_messages WHERE provider_message_id = :sid", {"sid": sid}
    )
    return row


def dead_letters(engine: sa.Engine) -> list[Any]:
    return rows(engine, "SELECT * FROM dead_letter_jobs ORDER BY created_at")


def media(sid: str, n: int) -> str:
    return MEDIA.format(sid=sid, n=str(n) * 32)


class TestWhatWhatsAppSends:
    def test_a_text_is_processed_with_its_kind_sender_id_and_whole_parameter_set(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        form = twilio_form("SM" + "1" * 32, MessagingServiceSid="MG" + "2" * 32)

        assert 200 == post(client, form).status_code
        (result,) = run_jobs(redis_db)

        row = stored(pg_engine, form["MessageSid"])
        assert ("processed", "client", "text", CLIENT.lstrip("+")) == (
            row.status,
            row.message_type,
            row.message_kind,
            row.wa_id,
        )
        assert form == row.provider_params
        assert ("client", "text", form) == (
            result["messageType"],
            result["messageKind"],
            result["providerParams"],
        )

    def test_an_image_without_text_keeps_its_url_and_content_type(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "MM" + "3" * 32
        form = twilio_form(
            sid,
            Body="",
            MessageType="image",
            NumMedia="1",
            MediaContentType0="image/jpeg",
            MediaUrl0=media(sid, 0),
        )

        post(client, form)
        (result,) = run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert ("processed", "", "image", 1, [media(sid, 0)], ["image/jpeg"]) == (
            row.status,
            row.body,
            row.message_kind,
            row.num_media,
            row.media_urls,
            row.media_content_types,
        )
        assert (["image/jpeg"], [media(sid, 0)]) == (
            result["mediaContentTypes"],
            result["mediaUrls"],
        )

    def test_a_voice_note_is_an_audio_message_with_its_ogg_media(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "MM" + "4" * 32
        form = twilio_form(
            sid,
            Body="",
            MessageType="audio",
            NumMedia="1",
            MediaContentType0="audio/ogg",
            MediaUrl0=media(sid, 0),
        )

        post(client, form)
        run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert ("processed", "audio", ["audio/ogg"]) == (
            row.status,
            row.message_kind,
            row.media_content_types,
        )

    def test_a_shared_location_keeps_its_coordinates_address_and_label(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "SM" + "6" * 32
        form = twilio_form(
            sid,
            Body="",
            MessageType="location",
            Latitude="48.858370",
            Longitude="2.294481",
            Address="Champ de Mars, 5 Av. Anatole France, 75007 Paris",
            Label="Tour Eiffel",
        )

        post(client, form)
        (result,) = run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert (
            "processed",
            "location",
            "48.858370",
            "2.294481",
            "Champ de Mars, 5 Av. Anatole France, 75007 Paris",
            "Tour Eiffel",
        ) == (
            row.status,
            row.message_kind,
            row.latitude,
            row.longitude,
            row.location_address,
            row.location_label,
        )
        assert "Tour Eiffel" == result["location"]["label"]

    def test_a_quick_reply_button_keeps_its_text_and_payload(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "SM" + "7" * 32
        form = twilio_form(
            sid,
            Body="Je prends",
            MessageType="button",
            ButtonText="Je prends",
            ButtonPayload="buy:sku-3",
            OriginalRepliedMessageSid=PRODUCT_POST_SID,
            OriginalRepliedMessageSender=f"whatsapp:{SHOP_NUMBER}",
        )

        post(client, form)
        (result,) = run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert ("button", "Je prends", "buy:sku-3") == (
            row.message_kind,
            row.button_text,
            row.button_payload,
        )
        assert {"text": "Je prends", "payload": "buy:sku-3"} == result["button"]

    def test_a_reply_to_a_product_post_names_the_post_and_its_sender(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "SM" + "8" * 32
        form = twilio_form(
            sid,
            Body="Je prends celui-ci en M",
            OriginalRepliedMessageSid=PRODUCT_POST_SID,
            OriginalRepliedMessageSender=f"whatsapp:{SHOP_NUMBER}",
        )

        post(client, form)
        (result,) = run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert (PRODUCT_POST_SID, f"whatsapp:{SHOP_NUMBER}") == (
            row.replied_to_message_id,
            row.replied_to_sender,
        )
        assert {"messageId": PRODUCT_POST_SID, "sender": f"whatsapp:{SHOP_NUMBER}"} == result[
            "repliedTo"
        ]

    def test_a_click_to_whatsapp_ad_keeps_every_referral_field(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "SM" + "9" * 32
        form = twilio_form(
            sid,
            Body="Bonjour, je viens de votre publicité",
            ReferralBody="Live ce soir 20h : robes d'été",
            ReferralHeadline="Live shopping",
            ReferralSourceId="120208815123456789",
            ReferralSourceType="ad",
            ReferralSourceUrl="https://fb.me/2ZulEu42P",
            ReferralMediaId="1234567890",
            ReferralMediaContentType="image/jpeg",
            ReferralMediaUrl="https://scontent.xx.fbcdn.net/v/t45.1600-4/ad.jpg",
            ReferralNumMedia="1",
            ReferralCtwaClid="ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4X",
        )

        post(client, form)
        run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert {
            "body": "Live ce soir 20h : robes d'été",
            "headline": "Live shopping",
            "sourceId": "120208815123456789",
            "sourceType": "ad",
            "sourceUrl": "https://fb.me/2ZulEu42P",
            "mediaId": "1234567890",
            "mediaContentType": "image/jpeg",
            "mediaUrl": "https://scontent.xx.fbcdn.net/v/t45.1600-4/ad.jpg",
            "numMedia": "1",
            "ctwaClid": "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4X",
        } == row.referral

    def test_forwarded_flags_and_a_parameter_twilio_adds_tomorrow_are_kept(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "SM" + "a" * 32
        form = twilio_form(sid, Forwarded="true", FrequentlyForwarded="true", ChannelMetadata="{}")

        post(client, form)
        run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert (True, True, "{}") == (
            row.forwarded,
            row.frequently_forwarded,
            row.provider_params["ChannelMetadata"],
        )

    def test_4096_emoji_with_zwj_sequences_are_kept_exactly(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        body = (FAMILY * 585)[:4092] + HEART
        assert 4096 == len(body)
        sid = "SM" + "b" * 32

        assert 200 == post(client, twilio_form(sid, Body=body)).status_code
        (result,) = run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert (body, None, None, "processed") == (
            row.body,
            row.input_flags,
            row.raw_form,
            row.status,
        )
        assert body == result["body"]

    def test_a_seller_message_opens_the_session_and_is_classified_seller(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "SM" + "c" * 32
        post(client, twilio_form(sid, From=f"whatsapp:{SELLER}", WaId=SELLER.lstrip("+")))
        (result,) = run_jobs(redis_db)

        assert ("seller", "text") == (result["messageType"], result["messageKind"])
        assert result["liveSessionId"] is not None


class TestRepeatsAndMisdirections:
    def test_a_repeated_message_sid_is_one_record_one_job_one_event(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        form = twilio_form("SM" + "d" * 32)

        answers = [post(client, form).status_code for _ in range(3)]
        results = run_jobs(redis_db)

        assert [200, 200, 200] == answers
        assert 1 == len(results)
        assert "processed" == stored(pg_engine, form["MessageSid"]).status
        (events,) = rows(
            pg_engine,
            "SELECT count(*) AS n FROM event_logs WHERE event_type = 'message.classified'",
        )
        assert 1 == events.n

    def test_a_to_no_tenant_has_is_a_dead_letter_without_tenant_a_metric_and_an_error(
        self,
        client: TestClient,
        pg_engine: sa.Engine,
        redis_db: RedisTestDb,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        form = twilio_form("SM" + "e" * 32, To="whatsapp:+14155550123", Body="Je prends le 7")
        before = _unknown_numbers(client)

        with caplog.at_level(logging.INFO, logger="livesell"):
            answers = [post(client, form).status_code for _ in range(2)]

        assert [200, 200] == answers
        (letter,) = dead_letters(pg_engine)
        assert (None, "webhook-processing", "unknown_number", form["MessageSid"]) == (
            letter.tenant_id,
            letter.source,
            letter.error_code,
            letter.source_id,
        )
        assert form == letter.payload["providerParams"]
        assert [] == rows(pg_engine, "SELECT id FROM inbound_messages")
        assert [] == run_jobs(redis_db)
        assert before + 2 == _unknown_numbers(client)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert ["Inbound message for a number no tenant has, kept as a dead letter"] * 2 == [
            r.getMessage() for r in errors
        ]
        _assert_no_body_logged(caplog, "Je prends le 7")

    def test_a_trailing_slash_on_the_messages_url_is_served_without_a_redirect(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        form = twilio_form("SM" + "f" * 32)

        response = post(client, form, MESSAGES_PATH + "/")

        assert 200 == response.status_code
        assert "received" == stored(pg_engine, form["MessageSid"]).status


class TestNothingSignedIsRefusedWithoutATrace:
    def test_a_body_over_4096_characters_is_recorded_cut_with_a_flag_and_the_exact_form(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "SM" + "0" * 31 + "1"
        body = "Je prends " + FAMILY * 700
        form = twilio_form(sid, Body=body)

        assert 200 == post(client, form).status_code
        run_jobs(redis_db)

        row = stored(pg_engine, sid)
        whole_emoji = body[: len("Je prends ") + 7 * 583]  # never half a ZWJ sequence
        assert (whole_emoji, ["body_truncated"], "processed") == (
            row.body,
            row.input_flags,
            row.status,
        )
        assert body == row.provider_params["Body"]
        assert urlencode(form) == row.raw_form

    def test_a_form_over_64_kib_within_the_cap_is_recorded_whole(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "SM" + "0" * 31 + "2"
        many = {f"ChannelParam{n}": str(n) for n in range(300)}  # more than 256 fields
        form = twilio_form(sid, Body="x" * 30_000, ReferralBody="y" * 50_000, **many)
        assert len(urlencode(form)) > 64 * 1024

        assert 200 == post(client, form).status_code
        run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert ("processed", 4096, ["body_truncated", "field_truncated"]) == (
            row.status,
            len(row.body),
            row.input_flags,
        )
        assert 50_000 == len(row.provider_params["ReferralBody"])
        assert form == row.provider_params

    def test_more_than_ten_media_are_all_recorded(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "MM" + "0" * 31 + "3"
        extra = {f"MediaUrl{n}": media(sid, n) for n in range(12)}
        extra |= {f"MediaContentType{n}": "image/jpeg" for n in range(12)}
        form = twilio_form(sid, Body="", MessageType="image", NumMedia="12", **extra)

        assert 200 == post(client, form).status_code
        run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert ("processed", 12, [media(sid, n) for n in range(12)]) == (
            row.status,
            row.num_media,
            row.media_urls,
        )

    def test_nul_and_control_characters_are_removed_with_a_flag_and_never_logged(
        self,
        client: TestClient,
        pg_engine: sa.Engine,
        redis_db: RedisTestDb,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        sid = "SM" + "0" * 31 + "4"
        form = twilio_form(sid, Body="Secret\x00 adresse\x1b[31m 12 rue\x07 Haute\n")

        with caplog.at_level(logging.DEBUG, logger="livesell"):
            assert 200 == post(client, form).status_code
            run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert ("Secret adresse[31m 12 rue Haute\n", ["control_characters_removed"]) == (
            row.body,
            row.input_flags,
        )
        assert "processed" == row.status
        assert urlencode(form) == row.raw_form
        assert "Secret\ufffd adresse\x1b[31m 12 rue\x07 Haute\n" == row.provider_params["Body"]
        _assert_no_body_logged(caplog, "adresse")

    def test_a_profile_name_over_its_size_is_cut_with_a_flag(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        sid = "SM" + "0" * 31 + "5"
        post(client, twilio_form(sid, ProfileName="B" * 300))
        run_jobs(redis_db)

        row = stored(pg_engine, sid)
        assert (256, ["field_truncated"], "processed") == (
            len(row.profile_name),
            row.input_flags,
            row.status,
        )

    def test_a_message_sid_over_its_size_is_400_and_kept_whole_as_a_dead_letter(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        form = twilio_form("SM" + "0" * (MAX_PROVIDER_ID_LENGTH - 1))  # one over the bound

        response = post(client, form)

        assert 400 == response.status_code
        (letter,) = dead_letters(pg_engine)
        assert ("shop-a", "invalid_payload", form) == (
            letter.tenant_id,
            letter.error_code,
            letter.payload["providerParams"],
        )

    def test_a_nul_in_the_sender_or_the_sid_is_400_and_kept_as_a_dead_letter_never_a_500(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        form = twilio_form("SM" + "0" * 31 + "\x00", From=f"whatsapp:{CLIENT}\x00")

        response = post(client, form)

        assert 400 == response.status_code
        (letter,) = dead_letters(pg_engine)
        assert ("shop-a", "invalid_payload", "SM" + "0" * 31 + "\ufffd") == (
            letter.tenant_id,
            letter.error_code,
            letter.source_id,
        )
        assert f"whatsapp:{CLIENT}\ufffd" == letter.payload["providerParams"]["From"]

    def test_missing_fields_are_400_and_kept_whole_as_a_dead_letter(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        form = twilio_form()
        del form["From"]

        response = post(client, form)

        assert (400, "missing field(s): From") == (response.status_code, response.text)
        (letter,) = dead_letters(pg_engine)
        assert ("shop-a", "missing_fields", form) == (
            letter.tenant_id,
            letter.error_code,
            letter.payload["providerParams"],
        )

    def test_an_unexpected_error_is_a_handled_500_with_the_form_kept_and_no_body_logged(
        self,
        client: TestClient,
        pg_engine: sa.Engine,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        def broken(*_args: object, **_kwargs: object) -> None:
            raise ValueError("boom: Je prends le rouge")

        monkeypatch.setattr(webhook_app, "accept_inbound_message", broken)
        form = twilio_form("SM" + "0" * 31 + "6", Body="Je prends le rouge")

        with caplog.at_level(logging.INFO, logger="livesell"):
            response = post(client, form)

        assert (500, "the message could not be recorded") == (response.status_code, response.text)
        (letter,) = dead_letters(pg_engine)
        assert ("shop-a", "webhook_error", form) == (
            letter.tenant_id,
            letter.error_code,
            letter.payload["providerParams"],
        )
        _assert_no_body_logged(caplog, "le rouge")

    def test_over_the_protective_cap_is_413_before_any_work(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        form = twilio_form(Body="x" * (1024 * 1024 + 1))

        assert 413 == post(client, form).status_code
        assert ([], []) == (
            rows(pg_engine, "SELECT id FROM inbound_messages"),
            dead_letters(pg_engine),
        )


def _unknown_numbers(client: TestClient) -> float:
    text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("livesell_webhook_unknown_number_total"):
            return float(line.split()[-1])
    return 0.0


def _assert_no_body_logged(caplog: pytest.LogCaptureFixture, fragment: str) -> None:
    for record in caplog.records:
        rendered = record.getMessage() + json.dumps(getattr(record, "context", {}), default=str)
        if record.exc_info:
            rendered += logging.Formatter().formatException(record.exc_info)
        assert fragment not in rendered, record.getMessage()
