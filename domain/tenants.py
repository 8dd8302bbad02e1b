"""Tenants (sellers' shops) and their sellers."""

from __future__ import annotations

import re
from datetime import datetime

import attrs

from domain.errors import InvalidSetting
from domain.phones import is_valid_region, normalise_phone, phone_key
from domain.service_window import DEFAULT_FALLBACK_VARIABLE, FallbackTemplate, WindowPolicy

DEFAULT_REGION = "FR"
# A tenant id travels in URLs (the status callback), log lines, metric labels and Redis job ids:
# 1 to 63 lower-case letters, digits, ``-`` and ``_``, starting with a letter or a digit.
TENANT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TENANT_ID_RULE = "1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit"
TWILIO = "twilio"
META = "meta"
PROVIDERS = (TWILIO, META)
MAX_META_PHONE_NUMBER_ID_LENGTH = 32
"""The messaging providers a tenant can be served by (issue 17, ADR 0019): Twilio's WhatsApp
API with a WhatsApp number as sender, or Meta's Cloud API with a business phone-number id."""


@attrs.frozen(kw_only=True)
class Tenant:
    """A shop that goes live on WhatsApp. ``default_region`` reads numbers written without ``+``.

    ``window_policy`` says what its free-form messages do outside the customer-service window;
    ``fallback_content_sid`` (required by ``template``) is the template sent instead, its
    variable ``fallback_variable`` taking the message's body (``domain.service_window``)."""

    id: str
    name: str
    whatsapp_number: str | None = None
    default_region: str = DEFAULT_REGION
    created_at: datetime
    window_policy: WindowPolicy = WindowPolicy.SEND
    fallback_content_sid: str | None = None
    fallback_variable: str = DEFAULT_FALLBACK_VARIABLE

    def __attrs_post_init__(self) -> None:
        if self.window_policy is WindowPolicy.TEMPLATE and self.fallback_content_sid is None:
            raise InvalidSetting("window policy 'template' needs a fallback template (HX...)")
        self.fallback_template()  # checks the SID and the variable

    def fallback_template(self) -> FallbackTemplate | None:
        if self.fallback_content_sid is None:
            return None
        return FallbackTemplate(
            content_sid=self.fallback_content_sid, variable=self.fallback_variable
        )

    def with_window_policy(
        self,
        policy: WindowPolicy | None = None,
        *,
        fallback_content_sid: str | None = None,
        fallback_variable: str | None = None,
    ) -> Tenant:
        """This tenant with another window policy and/or fallback template (None: unchanged).
        Raises InvalidSetting for ``template`` without a fallback or a malformed SID."""
        return attrs.evolve(
            self,
            window_policy=self.window_policy if policy is None else policy,
            fallback_content_sid=fallback_content_sid or self.fallback_content_sid,
            fallback_variable=fallback_variable or self.fallback_variable,
        )

    provider: str = TWILIO
    meta_phone_number_id: str | None = None
    """The Meta business phone-number id the tenant sends from and receives on (``meta``)."""

    @property
    def sender(self) -> str | None:
        """Who the tenant's messages go out from on its provider: the WhatsApp number (Twilio)
        or the phone-number id (Meta); None: the provider's default sender."""
        return self.meta_phone_number_id if self.provider == META else self.whatsapp_number

    @classmethod
    def register(
        cls,
        *,
        id: str,
        name: str,
        now: datetime,
        whatsapp_number: str | None = None,
        default_region: str = DEFAULT_REGION,
        window_policy: WindowPolicy = WindowPolicy.SEND,
        fallback_content_sid: str | None = None,
        fallback_variable: str = DEFAULT_FALLBACK_VARIABLE,
        provider: str = TWILIO,
        meta_phone_number_id: str | None = None,
    ) -> Tenant:
        """A new tenant; the region is checked and the WhatsApp number normalised to E.164. A
        ``meta`` tenant needs its phone-number id (digits); a ``twilio`` tenant has none."""
        check_tenant_id(id)
        phone_number_id = _meta_phone_number_id(provider, meta_phone_number_id)
        if not name.strip():
            raise InvalidSetting("tenant name must not be empty")
        region = default_region.upper()
        if not is_valid_region(region):
            raise InvalidSetting(f"unknown region {default_region!r} (expected e.g. FR, US)")
        number = normalise_phone(whatsapp_number, region) if whatsapp_number else None
        return cls(
            id=id.strip(),
            name=name.strip(),
            whatsapp_number=number,
            default_region=region,
            created_at=now,
            window_policy=window_policy,
            fallback_content_sid=fallback_content_sid,
            fallback_variable=fallback_variable,
            provider=provider,
            meta_phone_number_id=phone_number_id,
        )


def _meta_phone_number_id(provider: str, value: str | None) -> str | None:
    if provider not in PROVIDERS:
        raise InvalidSetting(
            f"unknown provider {provider!r} (expected one of {', '.join(PROVIDERS)})"
        )
    phone_number_id = value.strip() if value else None
    if provider == TWILIO:
        if phone_number_id:
            raise InvalidSetting("a Meta phone-number id is only for a tenant on the meta provider")
        return None
    if not phone_number_id:
        raise InvalidSetting("a tenant on the meta provider needs its Meta phone-number id")
    if not phone_number_id.isdigit() or len(phone_number_id) > MAX_META_PHONE_NUMBER_ID_LENGTH:
        raise InvalidSetting(
            f"a Meta phone-number id is 1 to {MAX_META_PHONE_NUMBER_ID_LENGTH} digits, "
            f"got {phone_number_id!r}"
        )
    return phone_number_id


def _key_of(seller: Seller) -> str:
    return phone_key(seller.phone_e164)


@attrs.frozen(kw_only=True)
class Seller:
    """A phone that belongs to one of the tenant's sellers, stored in E.164 as registered.

    ``phone_key`` is the number's canonical key (``domain.phones.phone_key``): the sender
    classification looks sellers up by it, so every form WhatsApp may send matches, and a tenant
    cannot have two sellers for two forms of one number.
    """

    id: str
    tenant_id: str
    phone_e164: str
    name: str | None = None
    created_at: datetime
    phone_key: str = attrs.field(default=attrs.Factory(_key_of, takes_self=True))

    @classmethod
    def register(
        cls, *, id: str, tenant: Tenant, phone: str, now: datetime, name: str | None = None
    ) -> Seller:
        """A new seller of ``tenant``; ``phone`` is normalised with the tenant's region."""
        return cls(
            id=id,
            tenant_id=tenant.id,
            phone_e164=normalise_phone(phone, tenant.default_region),
            name=name,
            created_at=now,
        )


def check_tenant_id(id: str) -> None:
    """Raises InvalidSetting unless ``id`` follows ``TENANT_ID_PATTERN``."""
    if not id.strip():
        raise InvalidSetting("tenant id must not be empty")
    if not TENANT_ID_PATTERN.match(id.strip()):
        raise InvalidSetting(f"tenant id {id.strip()!r} is not valid: use {TENANT_ID_RULE}")
