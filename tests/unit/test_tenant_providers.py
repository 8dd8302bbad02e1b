"""A tenant's provider (issue 17 §3, ADR 0019): Twilio by default with its WhatsApp number, or
Meta with its business phone-number id; the outbox writes each message for its tenant's
provider and sender."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from application.outbox import queue_outbound_message
from domain.errors import InvalidSetting
from domain.tenants import Tenant
from tests.unit.builders import World

NOW = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)


class TestRegisteringATenantOnAProvider:
    def test_a_tenant_is_on_twilio_by_default_and_sends_from_its_number(self) -> None:
        tenant = Tenant.register(id="shop-a", name="A", now=NOW, whatsapp_number="+14155238886")

        assert ("twilio", None, "+14155238886") == (
            tenant.provider,
            tenant.meta_phone_number_id,
            tenant.sender,
        )

    def test_a_tenant_on_meta_sends_from_its_phone_number_id(self) -> None:
        tenant = Tenant.register(
            id="shop-m", name="M", now=NOW, provider="meta", meta_phone_number_id=" 1065403 "
        )

        assert ("meta", "1065403", "1065403") == (
            tenant.provider,
            tenant.meta_phone_number_id,
            tenant.sender,
        )

    @pytest.mark.parametrize(
        ("provider", "phone_number_id", "error"),
        [
            ("meta", None, "needs its Meta phone-number id"),
            ("meta", "+14155238886", "is 1 to 32 digits"),
            ("meta", "1" * 33, "is 1 to 32 digits"),
            ("twilio", "1065403", "only for a tenant on the meta provider"),
            ("vonage", None, "unknown provider 'vonage'"),
        ],
    )
    def test_a_provider_without_its_sender_is_refused(
        self, provider: str, phone_number_id: str | None, error: str
    ) -> None:
        with pytest.raises(InvalidSetting, match=error):
            Tenant.register(
                id="shop-m",
                name="M",
                now=NOW,
                provider=provider,
                meta_phone_number_id=phone_number_id,
            )


class TestWritingForTheTenantsProvider:
    def test_each_outbox_message_carries_its_tenants_provider_and_sender(self) -> None:
        world = World()
        world.tenant("shop-t", whatsapp_number="+14155238886")
        world.tenant("shop-m", meta_phone_number_id="106540352242922")

        written = {
            tenant_id: queue_outbound_message(
                uow_factory=world.uow_factory,
                tenant_id=tenant_id,
                to="+33612345678",
                body="Merci !",
                correlation_id="corr-1",
                clock=world.clock,
                ids=world.ids,
            )
            for tenant_id in ("shop-t", "shop-m")
        }

        stored = {
            tenant_id: world.store.outbox[outbox_id] for tenant_id, outbox_id in written.items()
        }
        assert ("twilio", "+14155238886") == (
            stored["shop-t"].provider,
            stored["shop-t"].from_phone,
        )
        assert ("meta", "106540352242922") == (
            stored["shop-m"].provider,
            stored["shop-m"].from_phone,
        )
