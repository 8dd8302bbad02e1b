"""Templates and media through the Meta provider, against the Graph API's HTTP shape
(``httpx.MockTransport``; no network), issue 17 §1 and ADR 0023.

Sources:
- a media message by ``link`` with a ``caption`` for image, video and document, none for audio
  and stickers, a document's ``filename``: "Image messages",
  https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/image-messages
  and "Document messages",
  https://developers.facebook.com/docs/whatsapp/cloud-api/messages/document-messages;
- the kind by file type (image JPEG/PNG, video MP4/3GPP, audio AAC/AMR/MP3/M4A/OGG, sticker
  WebP, documents): "Supported media types",
  https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media#supported-media-types;
- a template by ``name`` and ``language.code`` with its body parameters, positional or named:
  "Sending Message Templates",
  https://developers.facebook.com/docs/whatsapp/message-templates/creation.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from adapters.meta.provider import MetaMessagingProvider, media_kind
from ports.messaging import DeliveryFailed, SendRequest

NUMBER_ID = "106540352242922"
TWILIO_TEMPLATE = "HX" + "b" * 32


class Graph:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"messages": [{"id": "wamid.X"}]})


def send(**fields: Any) -> tuple[Graph, Any]:
    graph = Graph()
    provider = MetaMessagingProvider(
        access_token="EAAJB-test",
        phone_number_id=NUMBER_ID,
        transport=httpx.MockTransport(graph),
    )
    values: dict[str, Any] = {
        "outbox_id": "01OUTBOX",
        "tenant_id": "shop-a",
        "to_phone": "whatsapp:+33612345678",
        "body": "",
        "correlation_id": "corr-1",
    }
    values.update(fields)
    try:
        return graph, provider.send(SendRequest(**values))
    except DeliveryFailed as exc:
        return graph, exc.failure
    finally:
        provider.close()


def sent(graph: Graph) -> dict[str, Any]:
    (body,) = graph.bodies
    return {key: value for key, value in body.items() if key != "biz_opaque_callback_data"}


class TestMedia:
    def test_an_image_goes_by_link_with_the_body_as_its_caption(self) -> None:
        graph, _ = send(body="La robe", media_urls=("https://shop.example/robe.JPG",))

        assert {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+33612345678",
            "type": "image",
            "image": {"link": "https://shop.example/robe.JPG", "caption": "La robe"},
        } == sent(graph)

    def test_a_document_carries_its_file_name_and_caption(self) -> None:
        graph, _ = send(body="Facture", media_urls=("https://shop.example/f/facture-12.pdf",))

        assert {
            "link": "https://shop.example/f/facture-12.pdf",
            "caption": "Facture",
            "filename": "facture-12.pdf",
        } == sent(graph)["document"]

    def test_media_without_a_body_has_no_caption(self) -> None:
        graph, _ = send(media_urls=("https://shop.example/defile.mp4?v=2",))

        assert ("video", {"link": "https://shop.example/defile.mp4?v=2"}) == (
            sent(graph)["type"],
            sent(graph)["video"],
        )

    @pytest.mark.parametrize(
        ("url", "kind"),
        [
            ("https://s.example/a.jpeg", "image"),
            ("https://s.example/a.png", "image"),
            ("https://s.example/a.3gp", "video"),
            ("https://s.example/a.ogg", "audio"),
            ("https://s.example/a.mp3", "audio"),
            ("https://s.example/a.webp", "sticker"),
            ("https://s.example/a.xlsx", "document"),
            ("https://s.example/a.gif", "document"),
            ("https://s.example/catalogue", "document"),
            ("https://s.example/a.jpg.d/notice", "document"),
        ],
    )
    def test_the_kind_comes_from_the_extension_and_unknown_is_a_document(
        self, url: str, kind: str
    ) -> None:
        assert kind == media_kind(url)

    @pytest.mark.parametrize("url", ["https://s.example/voix.ogg", "https://s.example/s.webp"])
    def test_a_body_beside_audio_or_a_sticker_is_refused_without_a_request(self, url: str) -> None:
        graph, failure = send(body="Écoutez", media_urls=(url,))

        assert (False, "invalid-request", []) == (failure.transient, failure.code, graph.bodies)
        assert "takes no caption" in failure.message

    def test_audio_alone_goes_as_audio(self) -> None:
        graph, _ = send(media_urls=("https://s.example/voix.ogg",))

        assert {"link": "https://s.example/voix.ogg"} == sent(graph)["audio"]


class TestTemplates:
    def test_a_template_goes_by_name_and_language_with_positional_parameters(self) -> None:
        graph, receipt = send(
            content_sid="order_ready:pt_BR", content_variables={"2": "M", "1": "Robe"}
        )

        assert "wamid.X" == receipt.provider_message_id
        assert {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+33612345678",
            "type": "template",
            "template": {
                "name": "order_ready",
                "language": {"code": "pt_BR"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Robe"},
                            {"type": "text", "text": "M"},
                        ],
                    }
                ],
            },
        } == sent(graph)

    def test_named_variables_are_named_parameters(self) -> None:
        graph, _ = send(content_sid="order_ready:fr", content_variables={"article": "Robe"})

        assert [
            {
                "type": "body",
                "parameters": [{"type": "text", "parameter_name": "article", "text": "Robe"}],
            }
        ] == sent(graph)["template"]["components"]

    def test_a_template_without_variables_has_no_components(self) -> None:
        graph, _ = send(content_sid="hello_world:en_US")

        assert {"name": "hello_world", "language": {"code": "en_US"}} == sent(graph)["template"]

    def test_a_twilio_content_sid_is_a_permanent_configuration_error_without_a_request(
        self,
    ) -> None:
        graph, failure = send(content_sid=TWILIO_TEMPLATE, content_variables={"1": "Robe"})

        assert (False, "meta-template", []) == (failure.transient, failure.code, graph.bodies)
        assert failure.message.startswith("configuration error:")
        assert "Twilio Content SID" in failure.message

    def test_gapped_positional_variables_are_refused_permanently(self) -> None:
        graph, failure = send(content_sid="order_ready:fr", content_variables={"1": "a", "3": "b"})

        assert (False, "invalid-request", []) == (failure.transient, failure.code, graph.bodies)
