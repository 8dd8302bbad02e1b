"""Phones (SPEC §3): `whatsapp:` stripped, national formats read in the tenant's region, invalid
numbers rejected, E.164 out; log masking keeps the last four digits."""

from __future__ import annotations

import pytest

from domain.errors import InvalidPhoneNumber
from domain.phones import mask_phone, mask_phones_in, normalise_phone, strip_whatsapp_prefix


class TestNormalisingAPhone:
    def test_whatsapp_prefix_is_stripped(self) -> None:
        assert "+33612345678" == normalise_phone("whatsapp:+33612345678", "FR")

    def test_whatsapp_prefix_is_stripped_whatever_its_case_and_spacing(self) -> None:
        assert "+33612345678" == normalise_phone("  WhatsApp: +33612345678 ", "FR")

    def test_strip_leaves_a_bare_number_alone(self) -> None:
        assert "+33612345678" == strip_whatsapp_prefix("+33612345678")

    @pytest.mark.parametrize(
        ("raw", "region", "expected"),
        [
            ("06 12 34 56 78", "FR", "+33612345678"),
            ("0612345678", "FR", "+33612345678"),
            ("whatsapp:06 12 34 56 78", "FR", "+33612345678"),
            ("06 12 34 56 78", "fr", "+33612345678"),
            ("(415) 555-2671", "US", "+14155552671"),
            ("415.555.2671", "US", "+14155552671"),
            ("07911 123456", "GB", "+447911123456"),
        ],
    )
    def test_a_national_format_is_read_in_the_tenants_region(
        self, raw: str, region: str, expected: str
    ) -> None:
        assert expected == normalise_phone(raw, region)

    def test_an_international_number_ignores_the_region(self) -> None:
        assert "+447911123456" == normalise_phone("+44 7911 123456", "FR")

    def test_the_same_national_digits_mean_different_numbers_in_different_regions(self) -> None:
        assert "+14155552671" == normalise_phone("4155552671", "US")
        with pytest.raises(InvalidPhoneNumber):
            normalise_phone("4155552671", "FR")

    @pytest.mark.parametrize(
        "raw",
        ["", "   ", "whatsapp:", "hello", "12", "+33 1", "+999 123456789", "0612345678999999"],
    )
    def test_an_invalid_number_is_rejected(self, raw: str) -> None:
        with pytest.raises(InvalidPhoneNumber) as caught:
            normalise_phone(raw, "FR")
        assert raw == caught.value.raw

    def test_a_french_mobile_written_nationally_is_invalid_in_the_us(self) -> None:
        with pytest.raises(InvalidPhoneNumber):
            normalise_phone("0612345678", "US")

    def test_invalid_phone_number_is_a_value_error(self) -> None:
        assert issubclass(InvalidPhoneNumber, ValueError)


class TestMaskingAPhone:
    def test_masking_keeps_the_last_four_digits(self) -> None:
        assert "********5678" == mask_phone("+33612345678")

    def test_masking_ignores_the_whatsapp_prefix(self) -> None:
        assert "********5678" == mask_phone("whatsapp:+33612345678")

    def test_masking_a_formatted_number_keeps_its_last_four_digits(self) -> None:
        masked = mask_phone("06 12 34 56 78")
        assert "5678" == "".join(c for c in masked if c.isdigit())
        assert masked.endswith("56 78")

    def test_masking_a_very_short_value_hides_all_of_it(self) -> None:
        assert "****" == mask_phone("1234")

    def test_phones_inside_free_text_are_masked(self) -> None:
        text = "sent to +33612345678 and whatsapp:+14155552671"
        assert "sent to ********5678 and whatsapp:********2671" == mask_phones_in(text)

    def test_a_nationally_written_phone_in_free_text_is_masked(self) -> None:
        masked = mask_phones_in("invalid phone number '06 12 34 56 78': not a valid number")
        assert "0612" not in masked.replace(" ", "")
        assert "56 78'" in masked

    @pytest.mark.parametrize(
        "text",
        [
            "next attempt at 2026-03-02T18:00:08+00:00",
            "at 2026-03-02 18:00:08.123456+00:00",
            "provider id SM0123456789abcdef0123456789abcdef",
            "outbox 01KABCDXYZ1234567890QWERTY",
            "order 12 of 3 items",
        ],
    )
    def test_free_text_without_a_phone_is_left_alone(self, text: str) -> None:
        assert text == mask_phones_in(text)
