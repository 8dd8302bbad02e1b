"""The SQL that DEPLOYMENT.md gives another service ("Writing outbound messages from another
service") runs on the real Postgres, and the rows it writes are the messages it says: a plain
one, a template with its variables, a photo that expires."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from domain.outbox import OutboxStatus
from domain.tenants import Tenant
from ports.unit_of_work import UnitOfWorkFactory

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Writing outbound messages from another service"


def documented_inserts() -> list[str]:
    text = (ROOT / "DEPLOYMENT.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def shop(pg_uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    with pg_uow_factory() as uow:
        uow.tenants.add(
            Tenant.register(
                id="shop-a", name="Shop", now=datetime.now(UTC), whatsapp_number="+33757000001"
            )
        )
        uow.commit()
    return pg_uow_factory


def test_the_documented_inserts_write_the_messages_they_describe(
    shop: UnitOfWorkFactory, pg_engine: Engine
) -> None:
    inserts = documented_inserts()
    with pg_engine.begin() as connection:
        for statement in inserts:
            connection.execute(sa.text(statement))

    with shop() as uow:
        plain, template, photo = (
            uow.outbox.get("shop-a", f"01JEXAMPLE000000000000000{n}") for n in (1, 2, 3)
        )
    assert 3 == len(inserts)
    assert plain is not None
    assert template is not None
    assert photo is not None
    assert ("Paiement reçu, merci !", None, (), None, OutboxStatus.PENDING) == (
        plain.body,
        plain.content_sid,
        plain.media_urls,
        plain.expires_at,
        plain.status,
    )
    assert ("", "HXb5b62575e6e4ff6129ad7c8efe1f983e", {"1": "Robe", "2": "39 €"}) == (
        template.body,
        template.content_sid,
        template.content_variables,
    )
    assert ("Article réservé 10 minutes", ("https://cdn.example.com/robe.jpg",)) == (
        photo.body,
        photo.media_urls,
    )
    assert photo.expires_at is not None
    assert timedelta(minutes=10) == photo.expires_at - photo.created_at
