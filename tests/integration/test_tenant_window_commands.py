"""``livesell tenants add|set`` and the customer-service window policy on a real database (ADR
0021): what an operator types, what is stored, and the one clear line (exit 2) when it is wrong.

The window and its error: https://www.twilio.com/docs/api/errors/63016 (a free-form WhatsApp
message more than 24 hours after the user's last inbound message needs an approved template,
sent with ``ContentSid`` and ``ContentVariables``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from domain.service_window import WindowPolicy
from domain.tenants import Tenant
from entrypoints.cli import main
from entrypoints.settings import normalise_database_url

TEMPLATE_SID = "HX" + "0123456789abcdef" * 2


@pytest.fixture(params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """DATABASE_URL for the commands, migrated: a new SQLite file or the run's Postgres."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cli.db'}"
    else:
        request.getfixturevalue("pg_reset")
        url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("MESSAGING_PROVIDER", raising=False)
    assert 0 == run("migrate")
    return url


def run(*argv: str) -> int:
    return main(list(argv))


def stored(url: str, tenant_id: str) -> Tenant:
    engine = build_engine(normalise_database_url(url))
    try:
        with SqlUnitOfWorkFactory(engine)() as uow:
            tenant = uow.tenants.get(tenant_id)
    finally:
        engine.dispose()
    assert tenant is not None
    return tenant


def window(tenant: Tenant) -> tuple[WindowPolicy, str | None, str]:
    return tenant.window_policy, tenant.fallback_content_sid, tenant.fallback_variable


class TestTheWindowPolicyCommands:
    def test_a_tenant_added_without_a_policy_sends_as_written(self, database: str) -> None:
        assert 0 == run("tenants", "add", "--id", "shop-a", "--name", "Shop A")

        assert (WindowPolicy.SEND, None, "1") == window(stored(database, "shop-a"))

    def test_a_tenant_is_added_with_its_policy_and_fallback_template(
        self, database: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = run(
            "tenants", "add", "--id", "shop-a", "--name", "Shop A",
            "--window-policy", "template", "--fallback-template", TEMPLATE_SID,
        )  # fmt: skip
        run("tenants", "list")

        assert 0 == code
        assert (WindowPolicy.TEMPLATE, TEMPLATE_SID, "1") == window(stored(database, "shop-a"))
        assert f"window: template {TEMPLATE_SID} (body as {{{{1}}}})" in capsys.readouterr().out

    def test_an_operator_changes_an_existing_tenant_s_policy(
        self, database: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        run("tenants", "add", "--id", "shop-a", "--name", "Shop A")

        codes = [
            run("tenants", "set", "--id", "shop-a", "--window-policy", "drop"),
            run("tenants", "set", "--id", "shop-a", "--fallback-template", TEMPLATE_SID),
            run("tenants", "set", "--id", "shop-a", "--window-policy", "template",
                "--fallback-variable", "2"),
        ]  # fmt: skip

        out = capsys.readouterr().out
        assert [0, 0, 0] == codes
        assert (WindowPolicy.TEMPLATE, TEMPLATE_SID, "2") == window(stored(database, "shop-a"))
        assert "Tenant shop-a: outside the window, drop\n" in out
        assert f"Tenant shop-a: outside the window, template {TEMPLATE_SID}" in out

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (("add", "--id", "shop-b", "--name", "B", "--window-policy", "later"), "one of"),
            (("add", "--id", "shop-b", "--name", "B", "--window-policy", "template"), "needs"),
            (("add", "--id", "shop-b", "--name", "B", "--fallback-template", "HX1"), "Content"),
            (("set", "--id", "shop-a"), "nothing to change"),
            (("set", "--id", "shop-a", "--window-policy", "template"), "needs a fallback"),
            (("set", "--id", "shop-a", "--window-policy", "send!"), "one of send|template|drop"),
            (("set", "--id", "nope", "--window-policy", "drop"), "unknown tenant"),
        ],
    )
    def test_a_mistake_is_one_clear_line_and_exit_2(
        self,
        database: str,
        capsys: pytest.CaptureFixture[str],
        argv: tuple[str, ...],
        message: str,
    ) -> None:
        run("tenants", "add", "--id", "shop-a", "--name", "Shop A")
        capsys.readouterr()

        code = run("tenants", *argv)

        err = capsys.readouterr().err
        assert 2 == code
        assert 1 == len(err.strip().splitlines())
        assert message in err
        assert (WindowPolicy.SEND, None, "1") == window(stored(database, "shop-a"))
