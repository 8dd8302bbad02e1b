"""Tenant isolation (SPEC §2): no code path reads or changes another tenant's rows."""

from __future__ import annotations

import copy

import pytest

from domain.live_sessions import SessionStatus
from domain.outbox import OutboxStatus
from domain.senders import SenderType
from tests.unit.builders import CLIENT_PHONE, SELLER_PHONE, ScriptedProvider, World, permanent


@pytest.fixture
def two_shops(world: World) -> World:
    for tenant_id in ("shop-a", "shop-b"):
        world.tenant(tenant_id)
        world.seller(tenant_id, SELLER_PHONE)
    return world


def snapshot(world: World, tenant_id: str) -> dict[str, object]:
    """Every row of one tenant, deep-copied."""
    store = world.store
    return copy.deepcopy(
        {
            "sessions": {k: v for k, v in store.sessions.items() if v.tenant_id == tenant_id},
            "inbound": {k: v for k, v in store.inbound.items() if k[0] == tenant_id},
            "outbox": {k: v for k, v in store.outbox.items() if v.tenant_id == tenant_id},
            "dead": {k: v for k, v in store.dead_letters.items() if v.tenant_id == tenant_id},
            "events": [e for e in store.events if e.tenant_id == tenant_id],
        }
    )


class TestTenantIsolation:
    def test_one_tenants_live_does_not_touch_anothers_session(self, two_shops: World) -> None:
        two_shops.message_from(SELLER_PHONE, tenant_id="shop-b")
        before = snapshot(two_shops, "shop-b")
        two_shops.advance(minutes=10)

        two_shops.message_from(SELLER_PHONE, tenant_id="shop-a")
        two_shops.message_from(CLIENT_PHONE, tenant_id="shop-a")

        assert before == snapshot(two_shops, "shop-b")
        assert 1 == len(two_shops.active_sessions("shop-a"))

    def test_a_stale_session_of_one_tenant_is_closed_without_closing_anothers(
        self, two_shops: World
    ) -> None:
        two_shops.message_from(SELLER_PHONE, tenant_id="shop-a")
        two_shops.advance(minutes=30)
        two_shops.message_from(SELLER_PHONE, tenant_id="shop-b")
        two_shops.advance(minutes=16)
        before = snapshot(two_shops, "shop-b")

        two_shops.message_from(SELLER_PHONE, tenant_id="shop-a")

        assert before == snapshot(two_shops, "shop-b")
        assert [SessionStatus.CLOSED, SessionStatus.ACTIVE] == [
            s.status for s in two_shops.sessions("shop-a")
        ]

    def test_a_client_never_joins_another_tenants_session(self, two_shops: World) -> None:
        two_shops.message_from(SELLER_PHONE, tenant_id="shop-b")

        outcome = two_shops.message_from(CLIENT_PHONE, tenant_id="shop-a")

        assert None is outcome.enriched["liveSessionId"]
        assert 0 == two_shops.active_sessions("shop-b")[0].client_message_count

    def test_inbound_records_are_per_tenant(self, two_shops: World) -> None:
        two_shops.message_from(CLIENT_PHONE, tenant_id="shop-a", provider_message_id="SM1")

        with two_shops.uow_factory() as uow:
            assert None is uow.inbound.get("shop-b", "SM1")
            record = uow.inbound.get("shop-a", "SM1")
            assert "shop-a" == (record.tenant_id if record else None)

    def test_repositories_do_not_hand_out_another_tenants_rows(self, two_shops: World) -> None:
        session_id = two_shops.message_from(SELLER_PHONE, tenant_id="shop-a").enriched[
            "liveSessionId"
        ]
        message_id = two_shops.queue(tenant_id="shop-a")
        before = snapshot(two_shops, "shop-a")

        with two_shops.uow_factory() as uow:
            found = (
                uow.sessions.get("shop-b", session_id),
                uow.sessions.touch("shop-b", session_id, two_shops.now, SenderType.SELLER),
                uow.outbox.get("shop-b", message_id),
                uow.sellers.find_by_key("shop-b", CLIENT_PHONE),
            )
            uow.commit()

        assert (None, None, None, None) == found
        assert before == snapshot(two_shops, "shop-a")

    def test_a_failing_message_of_one_tenant_leaves_anothers_outbox_alone(
        self, two_shops: World
    ) -> None:
        doomed = two_shops.queue(tenant_id="shop-a")
        fine = two_shops.queue(tenant_id="shop-b")
        provider = ScriptedProvider(permanent("21610"))

        two_shops.send_due(provider)

        assert [doomed, fine] == [r.outbox_id for r in provider.requests]
        assert (OutboxStatus.DEAD, OutboxStatus.SENT) == (
            two_shops.outbox(doomed).status,
            two_shops.outbox(fine).status,
        )
        assert ["shop-a"] == [d.tenant_id for d in two_shops.store.dead_letters.values()]
        assert [("message.dead_lettered", "shop-a"), ("message.sent", "shop-b")] == [
            (e.event_type, e.tenant_id)
            for e in two_shops.store.events
            if e.subject_id in (doomed, fine)
        ]

    def test_the_event_log_lists_only_the_asked_tenants_events(self, two_shops: World) -> None:
        two_shops.message_from(SELLER_PHONE, tenant_id="shop-a")
        two_shops.message_from(SELLER_PHONE, tenant_id="shop-b")

        with two_shops.uow_factory() as uow:
            tenants = {row[1] for row in uow.events.list(tenant_id="shop-b")}

        assert {"shop-b"} == tenants
