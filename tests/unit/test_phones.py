"""Phones (SPEC §3, ADR 0012): `whatsapp:` stripped, national formats read in the tenant's
region, international numbers WhatsApp delivered never refused for the library's metadata, one
canonical key per number across WhatsApp's country variants; log masking keeps the last four digits.

Where the formats come from:

- What Twilio sends: ``From`` is ``whatsapp:`` + the E.164 number, ``WaId`` the sender's WhatsApp
  ID (the same digits without ``+``): https://www.twilio.com/docs/messaging/guides/webhook-request
- Mexico: WhatsApp IDs keep the mobile "1" (``+52 1 ...``) that Mexico stopped dialling on 3 August
  2019, together with the 044/045/01 prefixes:
  https://support.gupshup.io/hc/en-us/articles/4407840924953-A-brief-note-on-the-inconsistencies-for-mobile-numbers-and-their-WhatsApp-IDs-in-Brazil-digit-9-Mexico-digit-1
  https://www.commsupdate.com/articles/2019/07/18/mexico-to-introduce-10-digit-phone-numbers-on-3-august/
- Argentina: WhatsApp uses ``+54 9`` + area code + number, without the national "15" mobile
  prefix (``011 15 2345-6789``): https://support.whapi.cloud/help-desk/faq/specifics-of-sending-messages-to-numbers-of-different-countries
  https://green-api.com/en/docs/faq/features-of-sending-and-receiving-messages-from-different-countries
- Brazil: mobiles outside area codes 11-19, 21, 22, 24, 27, 28 usually keep their eight-digit
  WhatsApp ID from before the ninth digit (``+55 92 8172 3241`` for ``(92) 98172-3241``):
  https://www.zoko.io/learning-article/whatsapp-id-brazil-mexico
  https://help.zoho.com/portal/en/kb/marketing-automation-2-0/faqs/marketing-campaigns/whatsapp/articles/what-is-the-reason-for-inconsistencies-in-mobile-numbers-and-their-whatsapp-ids-in-brazil-and-mexico
- Russia: the domestic trunk "8" stands for +7 (same green-api page).
- National mobile formats, per country: https://en.wikipedia.org/wiki/Telephone_numbers_in_France,
  ..._in_Germany, ..._in_Spain, ..._in_Italy, ..._in_the_United_Kingdom, North American Numbering
  Plan (https://en.wikipedia.org/wiki/North_American_Numbering_Plan), ..._in_Colombia,
  ..._in_India, ..._in_Nigeria (https://wikimili.com/en/Telephone_numbers_in_Nigeria),
  ..._in_South_Africa, ..._in_Indonesia, ..._in_Turkey.
- ``whatsapp:+491511234567`` is the sender of a real Twilio capture (issue 11); the library's
  metadata calls it invalid (0151 numbers have eight subscriber digits there).
"""

from __future__ import annotations

import pytest

from domain.errors import InvalidPhoneNumber
from domain.phones import (
    mask_phone,
    mask_phones_in,
    normalise_international_sender,
    normalise_phone,
    normalise_sender,
    phone_key,
    strip_whatsapp_prefix,
)


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


# (country, tenant region, a seller's registration as typed nationally, Twilio's From)
REAL_FORMATS = [
    ("FR", "FR", "06 12 34 56 78", "whatsapp:+33612345678"),
    ("DE", "DE", "0151 23456789", "whatsapp:+4915123456789"),
    ("DE capture", "DE", "+49 151 1234567", "whatsapp:+491511234567"),
    ("ES", "ES", "612 34 56 78", "whatsapp:+34612345678"),
    ("IT", "IT", "312 345 6789", "whatsapp:+393123456789"),
    ("GB", "GB", "07400 123456", "whatsapp:+447400123456"),
    ("US", "US", "(415) 555-2671", "whatsapp:+14155552671"),
    ("MX", "MX", "55 1234 5678", "whatsapp:+5215512345678"),
    ("MX old 044", "MX", "044 55 1234 5678", "whatsapp:+5215512345678"),
    ("MX since 2019", "MX", "55 1234 5678", "whatsapp:+525512345678"),
    ("AR with 15", "AR", "011 15 2345-6789", "whatsapp:+5491123456789"),
    ("AR without 15", "AR", "011 2345-6789", "whatsapp:+5491123456789"),
    ("AR Córdoba", "AR", "0351 15 234-5678", "whatsapp:+5493512345678"),
    ("BR São Paulo", "BR", "(11) 98765-4321", "whatsapp:+5511987654321"),
    ("BR Manaus, old ID", "BR", "(92) 98172-3241", "whatsapp:+559281723241"),
    ("BR Manaus, 8 digits", "BR", "(92) 8172-3241", "whatsapp:+5592981723241"),
    ("CO", "CO", "321 1234567", "whatsapp:+573211234567"),
    ("IN", "IN", "098765 43210", "whatsapp:+919876543210"),
    ("NG", "NG", "0803 123 4567", "whatsapp:+2348031234567"),
    ("ZA", "ZA", "071 123 4567", "whatsapp:+27711234567"),
    ("ID", "ID", "0812-3456-789", "whatsapp:+628123456789"),
    ("TR", "TR", "0501 234 56 78", "whatsapp:+905012345678"),
    ("RU", "RU", "8 912 345-67-89", "whatsapp:+79123456789"),
]


class TestRealFormatsFromFifteenCountries:
    @pytest.mark.parametrize(
        ("country", "region", "registered", "sent"), REAL_FORMATS, ids=[r[0] for r in REAL_FORMATS]
    )
    def test_a_seller_registered_nationally_has_the_key_of_what_whatsapp_sends(
        self, country: str, region: str, registered: str, sent: str
    ) -> None:
        seller = normalise_phone(registered, region)
        sender = normalise_sender(sent, region)

        assert phone_key(seller) == phone_key(sender)

    @pytest.mark.parametrize(
        ("country", "region", "registered", "sent"), REAL_FORMATS, ids=[r[0] for r in REAL_FORMATS]
    )
    def test_what_whatsapp_sends_is_kept_as_sent(
        self, country: str, region: str, registered: str, sent: str
    ) -> None:
        assert sent.removeprefix("whatsapp:") == normalise_sender(sent, region)

    @pytest.mark.parametrize(
        ("country", "region", "registered", "sent"), REAL_FORMATS, ids=[r[0] for r in REAL_FORMATS]
    )
    def test_the_sender_is_read_the_same_whatever_the_tenants_region(
        self, country: str, region: str, registered: str, sent: str
    ) -> None:
        assert normalise_sender(sent, region) == normalise_sender(sent, "FR")


class TestWhatsAppSenders:
    @pytest.mark.parametrize(
        "sent",
        ["whatsapp:+491511234567", "whatsapp:+5215512345678", "whatsapp:+559281723241"],
    )
    def test_a_number_the_library_calls_invalid_is_kept_when_whatsapp_sent_it(
        self, sent: str
    ) -> None:
        assert sent.removeprefix("whatsapp:") == normalise_sender(sent, "FR")

    def test_a_whatsapp_address_without_plus_is_a_whatsapp_id(self) -> None:
        assert "+491511234567" == normalise_sender("whatsapp:491511234567", "FR")

    def test_a_whatsapp_address_with_a_trunk_zero_is_national(self) -> None:
        assert "+33612345678" == normalise_sender("whatsapp:0612345678", "FR")

    def test_the_whatsapp_id_serves_when_from_cannot_be_read(self) -> None:
        assert "+5215512345678" == normalise_sender("", "MX", wa_id="5215512345678")

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            ("whatsapp:+33 6 12 AB 56 78", "not a phone number"),
            ("whatsapp:+1 800 FLOWERS", "not a phone number"),
            ("whatsapp:hello", "not a phone number"),
            ("whatsapp:+3361", "too few digits"),
            ("whatsapp:+33 6123456789012345", "more than 15 digits"),
            ("whatsapp:+999 123456789", "country"),
            ("whatsapp:", "empty"),
        ],
    )
    def test_what_is_not_a_phone_number_is_still_rejected(self, raw: str, problem: str) -> None:
        with pytest.raises(InvalidPhoneNumber, match=problem):
            normalise_sender(raw, "FR")


class TestTheCanonicalKey:
    @pytest.mark.parametrize(
        ("forms", "key"),
        [
            (("+5215512345678", "+525512345678"), "+525512345678"),
            (("+5491123456789", "+541123456789"), "+541123456789"),
            (("+5592981723241", "+559281723241"), "+5592981723241"),
        ],
    )
    def test_whatsapps_country_variants_share_one_key(
        self, forms: tuple[str, str], key: str
    ) -> None:
        assert [key, key] == [phone_key(f) for f in forms]

    def test_a_brazilian_landline_does_not_gain_a_ninth_digit(self) -> None:
        assert "+551133334444" == phone_key("+551133334444")

    def test_a_brazilian_mobile_and_a_landline_of_the_same_area_stay_apart(self) -> None:
        assert phone_key("+5511933334444") != phone_key("+551133334444")

    @pytest.mark.parametrize(
        "e164", ["+33612345678", "+14155552671", "+447400123456", "+5511987654321"]
    )
    def test_any_other_number_is_its_own_key(self, e164: str) -> None:
        assert e164 == phone_key(e164)


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


class TestInternationalSender:
    """``normalise_international_sender`` answers ``normalise_sender``'s E.164 for any region
    when the address is an international number, and None whenever the region may matter."""

    @pytest.mark.parametrize(
        ("raw", "wa_id"),
        [
            ("whatsapp:+33612345678", None),
            ("whatsapp:+5215512345678", None),
            ("whatsapp:+559281723241", None),
            ("whatsapp:33612345678", None),
            ("+1 (415) 555-2671", None),
            ("whatsapp:+491511234567", "491511234567"),
        ],
    )
    def test_an_international_number_reads_the_same_in_every_region(
        self, raw: str, wa_id: str | None
    ) -> None:
        got = normalise_international_sender(raw, wa_id=wa_id)

        assert got is not None
        for region in ("FR", "US", "MX", "BR", "DE", "GB"):
            assert normalise_sender(raw, region, wa_id=wa_id) == got

    @pytest.mark.parametrize(
        "raw",
        ["whatsapp:0612345678", "06 12 34 56 78", "0033612345678", "whatsapp:+999123456", "bob"],
    )
    def test_a_number_whose_reading_may_depend_on_the_region_gives_none(self, raw: str) -> None:
        assert normalise_international_sender(raw) is None
