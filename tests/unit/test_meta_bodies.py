"""The Cloud API's message bodies, built pure (issue 17 §1; ready for issue 15's templates and
media). Shapes from Meta's "Sending messages" pages:
https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/text-messages,
https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/image-messages,
https://developers.facebook.com/docs/whatsapp/cloud-api/messages/document-messages, and for
templates https://developers.facebook.com/docs/whatsapp/message-templates/creation with the
Cloud API request shown at https://wa.expert/pages/docs/api-reference/send-a-template-message.html.
"""

from __future__ import annotations

import pytest

from adapters.meta.bodies import (
    MAX_CALLBACK_DATA_BYTES,
    MediaKind,
    callback_data,
    media_body,
    read_callback_data,
    template_body,
    text_body,
)

TO = "+16505551234"
ENVELOPE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": TO}


class TestText:
    def test_a_text_is_the_documented_body(self) -> None:
        assert {
            **ENVELOPE,
            "type": "text",
            "text": {"preview_url": False, "body": "As requested, here's the link"},
        } == text_body(TO, "As requested, here's the link")

    def test_a_link_preview_is_asked_for_explicitly(self) -> None:
        assert text_body(TO, "https://www.meta.com", preview_url=True)["text"]["preview_url"]

    def test_over_4096_characters_is_refused(self) -> None:
        assert 4096 == len(text_body(TO, "x" * 4096)["text"]["body"])
        with pytest.raises(ValueError, match="4096"):
            text_body(TO, "x" * 4097)


class TestMedia:
    def test_an_image_by_link_with_its_caption(self) -> None:
        assert {
            **ENVELOPE,
            "type": "image",
            "image": {
                "link": "https://www.luckyshrub.com/assets/succulents/aloe.png",
                "caption": "The best succulent ever?",
            },
        } == media_body(
            TO,
            MediaKind.IMAGE,
            "https://www.luckyshrub.com/assets/succulents/aloe.png",
            caption="The best succulent ever?",
        )

    def test_a_document_takes_a_file_name(self) -> None:
        body = media_body(
            TO,
            "document",
            "https://www.luckyshrub.com/invoices/lucky-shrub-invoice.pdf",
            caption="Lucky Shrub Invoice",
            filename="lucky-shrub-invoice.pdf",
        )

        assert {
            "link": "https://www.luckyshrub.com/invoices/lucky-shrub-invoice.pdf",
            "caption": "Lucky Shrub Invoice",
            "filename": "lucky-shrub-invoice.pdf",
        } == body["document"]

    @pytest.mark.parametrize("kind", list(MediaKind))
    def test_every_kind_is_sent_by_link_under_its_own_name(self, kind: MediaKind) -> None:
        body = media_body(TO, kind, "https://cdn.example.com/file")

        assert (kind.value, {"link": "https://cdn.example.com/file"}) == (body["type"], body[kind])

    @pytest.mark.parametrize(
        ("kind", "options", "problem"),
        [
            ("audio", {"caption": "hi"}, "no caption"),
            ("sticker", {"caption": "hi"}, "no caption"),
            ("image", {"filename": "a.png"}, "only a document"),
            ("image", {"caption": "x" * 1025}, "1024"),
        ],
    )
    def test_what_meta_would_refuse_is_refused_here(
        self, kind: str, options: dict[str, str], problem: str
    ) -> None:
        with pytest.raises(ValueError, match=problem):
            media_body(TO, kind, "https://cdn.example.com/file", **options)  # type: ignore[arg-type]

    @pytest.mark.parametrize("link", ["ftp://cdn.example.com/a.png", "/local/a.png", ""])
    def test_a_link_must_be_an_http_url(self, link: str) -> None:
        with pytest.raises(ValueError, match="http"):
            media_body(TO, "image", link)

    def test_an_unknown_kind_is_refused(self) -> None:
        with pytest.raises(ValueError):
            media_body(TO, "hologram", "https://cdn.example.com/a")


class TestTemplate:
    def test_positional_variables_are_the_body_parameters_in_order(self) -> None:
        body = template_body(
            TO, name="order_confirmation", language="en", variables=["Asha", "ORD-9271"]
        )

        assert {
            **ENVELOPE,
            "type": "template",
            "template": {
                "name": "order_confirmation",
                "language": {"code": "en"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Asha"},
                            {"type": "text", "text": "ORD-9271"},
                        ],
                    }
                ],
            },
        } == body

    def test_issue_15s_numbered_variables_are_ordered_as_numbers(self) -> None:
        variables = {str(n): f"v{n}" for n in (10, 2, 1, 3, 4, 5, 6, 7, 8, 9)}

        body = template_body(TO, name="t", language="fr", variables=variables)

        texts = [p["text"] for p in body["template"]["components"][0]["parameters"]]
        assert [f"v{n}" for n in range(1, 11)] == texts

    def test_named_variables_carry_their_parameter_name(self) -> None:
        body = template_body(
            TO, name="t", language="fr", variables={"article": "Robe", "taille": "M"}
        )

        assert [
            {"type": "text", "parameter_name": "article", "text": "Robe"},
            {"type": "text", "parameter_name": "taille", "text": "M"},
        ] == body["template"]["components"][0]["parameters"]

    def test_a_template_without_variables_has_no_components(self) -> None:
        assert {"name": "hello_world", "language": {"code": "en_US"}} == template_body(
            TO, name="hello_world", language="en_US"
        )["template"]

    @pytest.mark.parametrize(
        "variables",
        [{"1": "a", "3": "c"}, {"0": "a"}, {"1": "a", "name": "b"}],
    )
    def test_gapped_or_mixed_variables_are_refused(self, variables: dict[str, str]) -> None:
        with pytest.raises(ValueError):
            template_body(TO, name="t", language="fr", variables=variables)

    def test_one_string_is_not_a_list_of_variables(self) -> None:
        with pytest.raises(TypeError):
            template_body(TO, name="t", language="fr", variables="Robe")

    @pytest.mark.parametrize(("name", "language"), [("", "fr"), ("t", " ")])
    def test_a_template_needs_a_name_and_a_language(self, name: str, language: str) -> None:
        with pytest.raises(ValueError, match="name and a language"):
            template_body(TO, name=name, language=language)


class TestCallbackData:
    def test_the_ids_go_out_and_come_back(self) -> None:
        data = callback_data("shop-a", "01OUTBOX")

        assert "tenantId=shop-a&outboxId=01OUTBOX" == data
        assert ("shop-a", "01OUTBOX") == read_callback_data(data)

    def test_ids_with_separators_survive_the_round_trip(self) -> None:
        data = callback_data("shop&co=1", "id with spaces")

        assert ("shop&co=1", "id with spaces") == read_callback_data(data)

    def test_ids_too_long_for_512_bytes_are_not_sent(self) -> None:
        assert callback_data("t" * MAX_CALLBACK_DATA_BYTES, "o") is None

    @pytest.mark.parametrize("data", [None, "", "tenantId=shop-a", "free text", 42])
    def test_anything_else_names_no_message(self, data: object) -> None:
        assert (None, None) == read_callback_data(data)
