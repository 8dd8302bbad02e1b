"""Meta's settings (issue 17 §3): ``META_ACCESS_TOKEN``, ``META_APP_SECRET``,
``META_VERIFY_TOKEN`` validated at start-up like Twilio's, never printed; ``META_GRAPH_BASE_URL``
Meta's by default. Tenants on Meta make the set required where messages are sent."""

from __future__ import annotations

import pytest

from adapters.meta.provider import MetaMessagingProvider
from application.tenants import add_tenant
from entrypoints.container import build
from entrypoints.settings import ConfigError, Settings
from ports.messaging import SendRequest

META = {
    "META_ACCESS_TOKEN": "EAAJB-secret-access-token",
    "META_APP_SECRET": "meta-secret-app-secret",
    "META_VERIFY_TOKEN": "meta-secret-verify-token",
}
TWILIO = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "tw-secret-token",
    "TWILIO_WHATSAPP_NUMBER": "+14155238886",
}


def meta_request() -> SendRequest:
    return SendRequest(
        outbox_id="o-1",
        tenant_id="shop-m",
        to_phone="+33612345678",
        body="Merci",
        correlation_id="c",
        from_phone="106540352242922",
        provider="meta",
    )


class TestReading:
    def test_the_graph_api_is_metas_by_default_and_can_point_at_a_local_fake(self) -> None:
        assert "https://graph.facebook.com" == Settings.from_env({}).meta_graph_base_url
        local = Settings.from_env({"META_GRAPH_BASE_URL": "http://127.0.0.1:9000/"})
        assert "http://127.0.0.1:9000" == local.meta_graph_base_url

    def test_a_graph_api_url_that_is_not_http_is_refused(self) -> None:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"META_GRAPH_BASE_URL": "graph.facebook.com"})

        assert "META_GRAPH_BASE_URL" == caught.value.variable

    def test_metas_variables_alone_make_the_deployment_send_for_real(self) -> None:
        settings = Settings.from_env(META)

        assert ("twilio", False) == (settings.messaging_provider, settings.uses_twilio)
        settings.check_messaging_provider()  # no Twilio variable is asked for

    def test_no_meta_secret_is_ever_printed(self) -> None:
        settings = Settings.from_env({**META, **TWILIO})
        printed = repr(settings) + repr(settings.describe())

        assert [] == [value for value in META.values() if value in printed]
        assert "***" == settings.describe()["META_APP_SECRET"]


class TestValidatedAtStartUp:
    @pytest.mark.parametrize("left_out", sorted(META))
    def test_an_incomplete_meta_set_is_refused_naming_the_missing_variable(
        self, left_out: str
    ) -> None:
        settings = Settings.from_env({k: v for k, v in META.items() if k != left_out})

        with pytest.raises(ConfigError) as caught:
            settings.check_messaging_provider()

        assert left_out == caught.value.variable
        assert [] == [value for value in META.values() if value in str(caught.value)]

    def test_a_tenant_on_meta_without_metas_variables_stops_the_sender_at_start(self) -> None:
        container = build(Settings.from_env(TWILIO), store="memory")
        add_tenant(
            uow_factory=container.uow_factory(),
            clock=container.clock(),
            tenant_id="shop-m",
            name="M",
            provider="meta",
            meta_phone_number_id="106540352242922",
        )

        with pytest.raises(ConfigError) as caught:
            container.provider_router()

        assert "META_ACCESS_TOKEN" == caught.value.variable

    def test_both_providers_serve_one_deployment(self) -> None:
        container = build(Settings.from_env({**META, **TWILIO}), store="memory")

        router = container.provider_router()

        assert isinstance(router.provider_for(meta_request()), MetaMessagingProvider)
        assert "meta:106540352242922" == router.sender_key(meta_request())

    def test_the_simulated_provider_stands_in_for_meta(self) -> None:
        router = build(Settings.from_env({}), store="memory").provider_router()

        receipt = router.send(meta_request())

        assert receipt.provider_message_id.startswith("wamid.")
