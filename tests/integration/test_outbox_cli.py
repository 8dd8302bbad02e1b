"""``livesell outbox send`` on the real Postgres, and which provider the environment selects."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.sqlalchemy.tables import messages_out
from adapters.twilio.provider import TwilioMessagingProvider
from domain.tenants import Tenant
from entrypoints import cli
from entrypoints.container import build
from entrypoints.settings import Settings
from ports.messaging import SendRequest
from ports.unit_of_work import UnitOfWorkFactory

NOW = datetime.now(UTC)


@pytest.fixture
def shop(
    pg_uow_factory: UnitOfWorkFactory, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    with pg_uow_factory() as uow:
        uow.tenants.add(
            Tenant.register(id="shop", name="Shop", now=NOW, whatsapp_number="+33199000001")
        )
        uow.commit()
    return "shop"


def outbox_rows(engine: Engine) -> list[sa.Row[tuple[object, ...]]]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(messages_out)).all())


class TestOutboxSend:
    def test_writes_one_pending_message_with_the_number_in_e164_and_prints_its_id(
        self, shop: str, pg_engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = cli.main(
            [
                "outbox",
                "send",
                "--tenant",
                shop,
                "--to",
                "06 12 34 56 78",
                "--body",
                "Merci !",
                "--correlation-id",
                "op-42",
            ]
        )

        printed = capsys.readouterr().out.strip()
        rows = outbox_rows(pg_engine)
        assert 0 == code
        assert [(printed, "shop", "+33612345678", "Merci !", "pending", 0, "op-42")] == [
            (r.id, r.tenant_id, r.to_phone, r.body, r.status, r.attempts, r.correlation_id)
            for r in rows
        ]

    def test_makes_a_correlation_id_when_none_is_given(
        self, shop: str, pg_engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        cli.main(["outbox", "send", "--tenant", shop, "--to", "+33612345678", "--body", "hi"])

        assert outbox_rows(pg_engine)[0].correlation_id.startswith("cli-")

    def test_an_invalid_phone_exits_2_with_a_clear_message_and_writes_nothing(
        self, shop: str, pg_engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = cli.main(["outbox", "send", "--tenant", shop, "--to", "12", "--body", "hi"])

        assert 2 == code
        assert "invalid phone number '12'" in capsys.readouterr().err
        assert [] == outbox_rows(pg_engine)

    def test_an_unknown_tenant_exits_2_with_a_clear_message(
        self, shop: str, pg_engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = cli.main(
            ["outbox", "send", "--tenant", "nobody", "--to", "+33612345678", "--body", "hi"]
        )

        assert 2 == code
        assert "unknown tenant 'nobody'" in capsys.readouterr().err
        assert [] == outbox_rows(pg_engine)

    def test_an_oversize_body_exits_2(
        self, shop: str, pg_engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = cli.main(
            ["outbox", "send", "--tenant", shop, "--to", "+33612345678", "--body", "x" * 4097]
        )

        assert 2 == code
        assert "at most 4096" in capsys.readouterr().err
        assert [] == outbox_rows(pg_engine)


class TestOutboxSendTemplatesMediaAndExpiry:
    """``--template``, ``--var``, ``--media`` and ``--expires-in`` (issue 15 §2, §4)."""

    TEMPLATE = "HX" + "b" * 32

    def send(self, shop: str, *extra: str) -> int:
        return cli.main(["outbox", "send", "--tenant", shop, "--to", "+33612345678", *extra])

    def test_a_template_is_written_with_its_variables_and_no_body(
        self, shop: str, pg_engine: Engine
    ) -> None:
        code = self.send(shop, "--template", self.TEMPLATE, "--var", "1=Robe", "--var", "2=39 €")

        [row] = outbox_rows(pg_engine)
        assert (0, "", self.TEMPLATE, {"1": "Robe", "2": "39 €"}, None) == (
            code,
            row.body,
            row.content_sid,
            row.content_variables,
            row.media_urls,
        )

    def test_a_meta_template_is_written_by_name_and_language(
        self, shop: str, pg_engine: Engine
    ) -> None:
        code = self.send(shop, "--template", "order_ready:pt_BR", "--var", "1=Robe")

        [row] = outbox_rows(pg_engine)
        assert (0, "", "order_ready:pt_BR", {"1": "Robe"}) == (
            code,
            row.body,
            row.content_sid,
            row.content_variables,
        )

    def test_a_media_url_is_written_beside_the_body(self, shop: str, pg_engine: Engine) -> None:
        self.send(shop, "--body", "La robe", "--media", "https://shop.example/robe.jpg")

        [row] = outbox_rows(pg_engine)
        assert ("La robe", ["https://shop.example/robe.jpg"]) == (row.body, row.media_urls)

    @pytest.mark.parametrize(("given", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200)])
    def test_expires_in_sets_the_expiry_from_now(
        self, shop: str, pg_engine: Engine, given: str, seconds: int
    ) -> None:
        self.send(shop, "--body", "Réservé", "--expires-in", given)

        [row] = outbox_rows(pg_engine)
        assert seconds == round((row.expires_at - row.created_at).total_seconds())

    @pytest.mark.parametrize("given", ["10", "10 minutes", "0s", "-5m", "1.5h", "m"])
    def test_a_malformed_duration_exits_2_with_one_line(
        self, shop: str, pg_engine: Engine, capsys: pytest.CaptureFixture[str], given: str
    ) -> None:
        code = self.send(shop, "--body", "x", f"--expires-in={given}")

        err = capsys.readouterr().err.strip()
        assert (2, 1) == (code, len(err.splitlines()))
        assert "expected a positive whole number of s, m or h" in err
        assert [] == outbox_rows(pg_engine)

    @pytest.mark.parametrize(
        ("extra", "says"),
        [
            (["--template", TEMPLATE, "--var", "Robe"], "expected NAME=VALUE"),
            (["--body", "x", "--var", "1=Robe"], "--var needs --template"),
            (["--template", TEMPLATE, "--body", "x"], "no body and no media"),
            ([], "needs a body, a media URL or a template"),
            (["--body", "x", "--media", "robe.jpg"], "not an http(s) URL"),
            (["--template", "robe"], "not a Twilio Content SID"),
            (["--template", "Robe:fr"], "nor a Meta template"),
        ],
    )
    def test_content_twilio_would_refuse_exits_2_with_one_line(
        self,
        shop: str,
        pg_engine: Engine,
        capsys: pytest.CaptureFixture[str],
        extra: list[str],
        says: str,
    ) -> None:
        code = self.send(shop, *extra)

        err = capsys.readouterr().err.strip()
        assert (2, 1) == (code, len(err.splitlines()))
        assert says in err
        assert [] == outbox_rows(pg_engine)


class TestProviderSelection:
    def test_twilio_is_selected_with_its_variables_and_sends_from_the_configured_number(
        self,
    ) -> None:
        settings = Settings.from_env(
            {
                "MESSAGING_PROVIDER": "twilio",
                "TWILIO_ACCOUNT_SID": "AC" + "2" * 32,
                "TWILIO_AUTH_TOKEN": "token",
                "TWILIO_WHATSAPP_NUMBER": "+14155238886",
                "WEBHOOK_PUBLIC_BASE_URL": "https://hooks.example.com",
            }
        )

        provider = build(settings, store="memory").messaging_provider()

        assert isinstance(provider, TwilioMessagingProvider)
        request = SendRequest(
            outbox_id="01X", tenant_id="t", to_phone="+33612345678", body="b", correlation_id="c"
        )
        assert "+14155238886" == provider.sender_key(request)
        assert "https://hooks.example.com/webhooks/twilio/status?tenantId=t&outboxId=01X" == (
            provider.status_callback(request)
        )

    def test_simulated_is_selected_with_its_variables(self, tmp_path: Path) -> None:
        settings = Settings.from_env(
            {
                "MESSAGING_PROVIDER": "simulated",
                "SIMULATED_LATENCY_MS": "7",
                "SIMULATED_TRANSIENT_FAILURE_RATE": "0.25",
                "SIMULATED_PERMANENT_FAILURE_RATE": "0.05",
                "SIMULATED_SEED": "11",
                "SIMULATED_SENT_LOG": f"{tmp_path}/sent.jsonl",
            }
        )

        provider = build(settings, store="memory").messaging_provider()

        assert isinstance(provider, SimulatedMessagingProvider)
        assert (7.0, 0.25, 0.05, 11) == (
            provider.latency_ms,
            provider.transient_failure_rate,
            provider.permanent_failure_rate,
            provider.seed,
        )
