"""Requests as Twilio sends them to the webhook, signed as Twilio signs them (the SDK's
``RequestValidator.compute_signature`` over the URL and the form), for the webhook suites."""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator

TOKEN = "12345678901234567890123456789012"
BASE = "https://hooks.example.com"
FORM = "application/x-www-form-urlencoded"
SHOP_NUMBER = "+14155238886"
CLIENT = "+33612345678"


def twilio_form(sid: str = "SM" + "a" * 32, **fields: str) -> dict[str, str]:
    """An inbound WhatsApp message as Twilio posts it (``fields`` override or add)."""
    form = {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Bob",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": CLIENT.lstrip("+"),
        "SmsStatus": "received",
        "Body": "Je prends le 3 !",
        "To": f"whatsapp:{SHOP_NUMBER}",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": "AC" + "1" * 32,
        "From": f"whatsapp:{CLIENT}",
        "ApiVersion": "2010-04-01",
    }
    form.update(fields)
    return form


def sign(url: str, params: Mapping[str, str], token: str = TOKEN) -> str:
    """The X-Twilio-Signature Twilio sends for ``params`` posted to ``url``."""
    return str(RequestValidator(token).compute_signature(url, dict(params)))


def signed_headers(url: str, params: Mapping[str, str], token: str = TOKEN) -> dict[str, str]:
    return {"Content-Type": FORM, "X-Twilio-Signature": sign(url, params, token)}
