"""Checking that Twilio signed a webhook request (``X-Twilio-Signature``).

The signature is computed over the public URL Twilio called (``WEBHOOK_PUBLIC_BASE_URL`` + path
+ query when set, since a proxy such as Railway's changes the scheme and host; else the URL the
request came to) and the form parameters, which is why the form is read (bounded, strictly
decoded: ``entrypoints.twilio_form.read_form``) before the check.
"""

from __future__ import annotations

from starlette.requests import Request
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from entrypoints.twilio_form import FormParams, read_form
from entrypoints.webhook_problems import HttpProblem


class SignedForms:
    """Reads the form of each request, verified against ``auth_token`` (not verified when it is
    None or empty: local development only)."""

    def __init__(
        self, auth_token: str | None, *, public_base_url: str | None, max_body_bytes: int
    ) -> None:
        self.validator = RequestValidator(auth_token) if auth_token else None
        self.public_base_url = public_base_url
        self.max_body_bytes = max_body_bytes

    @property
    def verifies(self) -> bool:
        return self.validator is not None

    async def read(self, request: Request) -> FormParams:
        """The form of a request Twilio signed. Raises HttpProblem: 403 (no or a wrong signature),
        415 (not a UTF-8 form), 413 (over ``WEBHOOK_MAX_BODY_BYTES``), 400 (unreadable)."""
        signature = request.headers.get(SIGNATURE_HEADER)
        if self.validator is not None and not signature:
            raise HttpProblem(403, f"missing {SIGNATURE_HEADER}")
        form = await read_form(request, self.max_body_bytes)
        if self.validator is not None:
            url = self.public_url(request)
            algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
            if not self.validator.validate(url, form, signature, algorithm):
                raise HttpProblem(403, f"invalid {SIGNATURE_HEADER}", url=url)
        return form

    def public_url(self, request: Request) -> str:
        """The URL Twilio signed: the public base URL + path + query when configured (behind a
        proxy), else the URL this request came to."""
        base = self.public_base_url
        if base is None:
            return str(request.url)
        query = request.scope.get("query_string", b"").decode("latin-1")
        return base + request.url.path + (f"?{query}" if query else "")
