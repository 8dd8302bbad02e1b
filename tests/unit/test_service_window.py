"""The customer-service window (ADR 0021): WhatsApp accepts a free-form message only within 24
hours of the customer's last message to the business; outside it only an approved template
(Twilio: https://www.twilio.com/docs/api/errors/63016 "Outside messaging window. For WhatsApp, use
a Message Template instead": "a free-form WhatsApp message more than 24 hours after the user's
last inbound message"; Meta's definition of the window:
https://developers.facebook.com/docs/whatsapp/conversation-types#customer-service-window).

The rule in the domain, then the production sender (``OutboxSender.run_once``) on the memory
store under the fixed clock, for each tenant policy, at 23 h 59 min, 24 h 01 min and "never
wrote"."""

from __future__ import annotations

from datetime import timedelta

import pytest

from application.tenants import set_window_policy
from domain.errors import InvalidSetting, UnknownTenant
from domain.outbox import OutboxStatus
from domain.phones import phone_forms, phone_key
from domain.service_window import (
    OUTSIDE_WINDOW_CODE,
    SERVICE_WINDOW,
    DropOutsideWindow,
    FallbackTemplate,
    SendAsWritten,
    SendTemplate,
    WindowPolicy,
    decide_window,
    inside_window,
)
from domain.tenants import Tenant
from tests.unit.builders import CLIENT_PHONE, START, ScriptedProvider, World

TEMPLATE_SID = "HX" + "0123456789abcdef" * 2
FALLBACK = FallbackTemplate(content_sid=TEMPLATE_SID)
JUST_INSIDE = timedelta(hours=23, minutes=59)
JUST_OUTSIDE = timedelta(hours=24, minutes=1)


def decide(
    policy: WindowPolicy, since_last: timedelta | None, *, is_template: bool = False
) -> object:
    return decide_window(
        is_template=is_template,
        body="Article réservé",
        last_inbound_at=None if since_last is None else START,
        now=START + (since_last or timedelta(0)),
        policy=policy,
        fallback=FALLBACK,
    )


class TestTheWindow:
    def test_the_window_lasts_exactly_24_hours_after_the_customer_s_last_message(self) -> None:
        assert inside_window(START, START + SERVICE_WINDOW - timedelta(microseconds=1))
        assert not inside_window(START, START + SERVICE_WINDOW)

    def test_a_customer_who_never_wrote_is_outside(self) -> None:
        assert not inside_window(None, START)

    @pytest.mark.parametrize("policy", list(WindowPolicy))
    def test_inside_the_window_every_policy_sends_as_written(self, policy: WindowPolicy) -> None:
        assert SendAsWritten() == decide(policy, JUST_INSIDE)

    @pytest.mark.parametrize("since_last", [JUST_OUTSIDE, None])
    def test_outside_the_window_each_policy_does_what_it_says(
        self, since_last: timedelta | None
    ) -> None:
        assert SendAsWritten() == decide(WindowPolicy.SEND, since_last)
        assert SendTemplate(TEMPLATE_SID, {"1": "Article réservé"}) == decide(
            WindowPolicy.TEMPLATE, since_last
        )
        last = None if since_last is None else START
        assert DropOutsideWindow(last) == decide(WindowPolicy.DROP, since_last)

    @pytest.mark.parametrize("policy", list(WindowPolicy))
    def test_a_template_message_is_never_changed(self, policy: WindowPolicy) -> None:
        assert SendAsWritten() == decide(policy, None, is_template=True)

    def test_the_body_fills_the_variable_the_tenant_named(self) -> None:
        fallback = FallbackTemplate(content_sid=TEMPLATE_SID, variable="2")
        assert {"2": "Paid!"} == fallback.variables_for("Paid!")


class TestTheTenantsPolicy:
    def test_a_tenant_sends_as_written_by_default(self) -> None:
        assert WindowPolicy.SEND is Tenant.register(id="shop-a", name="A", now=START).window_policy

    def test_the_template_policy_needs_a_fallback_template(self) -> None:
        with pytest.raises(InvalidSetting, match="needs a fallback template"):
            Tenant.register(id="shop-a", name="A", now=START, window_policy=WindowPolicy.TEMPLATE)

    @pytest.mark.parametrize("sid", ["HX123", "MG" + "0" * 32, "hx" + "0" * 33])
    def test_a_fallback_template_must_be_a_content_sid(self, sid: str) -> None:
        with pytest.raises(InvalidSetting, match="not a Twilio Content SID"):
            Tenant.register(id="shop-a", name="A", now=START, fallback_content_sid=sid)

    @pytest.mark.parametrize("reference", ["HX" + "0" * 32, "order_update:fr", "robe:pt_BR"])
    def test_a_fallback_template_is_a_twilio_sid_or_a_meta_template(self, reference: str) -> None:
        tenant = Tenant.register(
            id="shop-a",
            name="A",
            now=START,
            window_policy=WindowPolicy.TEMPLATE,
            fallback_content_sid=reference,
        )

        assert reference == tenant.fallback_content_sid

    def test_changing_the_policy_keeps_the_fallback_template(self) -> None:
        tenant = Tenant.register(
            id="shop-a", name="A", now=START, fallback_content_sid=TEMPLATE_SID
        )
        changed = tenant.with_window_policy(WindowPolicy.TEMPLATE).with_window_policy(
            fallback_variable="3"
        )
        assert (WindowPolicy.TEMPLATE, TEMPLATE_SID, "3") == (
            changed.window_policy,
            changed.fallback_content_sid,
            changed.fallback_variable,
        )

    def test_an_operator_changes_a_stored_tenant_s_policy(self, world: World) -> None:
        world.tenant("shop-a")
        set_window_policy(
            uow_factory=world.uow_factory,
            tenant_id="shop-a",
            policy=WindowPolicy.TEMPLATE,
            fallback_content_sid=TEMPLATE_SID,
        )
        assert WindowPolicy.TEMPLATE is world.store.tenants["shop-a"].window_policy

    def test_the_policy_of_an_unknown_tenant_cannot_be_changed(self, world: World) -> None:
        with pytest.raises(UnknownTenant):
            set_window_policy(uow_factory=world.uow_factory, tenant_id="nope", policy=None)


class TestTheFormsOfANumber:
    @pytest.mark.parametrize(
        ("number", "other"),
        [
            ("+5592981723241", "+559281723241"),  # Brazil, with and without the ninth digit
            ("+5215512345678", "+525512345678"),  # Mexico, with and without the mobile "1"
            ("+5491123456789", "+541123456789"),  # Argentina, with and without the "9"
        ],
    )
    def test_both_whatsapp_forms_of_a_number_are_its_forms(self, number: str, other: str) -> None:
        assert {number, other} == phone_forms(number) == phone_forms(other)
        assert phone_key(number) == phone_key(other)

    def test_any_other_number_is_its_only_form(self) -> None:
        assert {CLIENT_PHONE} == phone_forms(CLIENT_PHONE)


def a_shop(world: World, policy: WindowPolicy) -> World:
    world.tenant("shop-a", whatsapp_number="+33180808080")
    set_window_policy(
        uow_factory=world.uow_factory,
        tenant_id="shop-a",
        policy=policy,
        fallback_content_sid=TEMPLATE_SID,
    )
    return world


def customer_wrote(world: World, ago: timedelta | None) -> None:
    """The customer wrote to the shop ``ago`` before now (None: never)."""
    if ago is not None:
        world.message_from(CLIENT_PHONE)
        world.clock.advance(ago)


class TestTheSenderAtTheBoundary:
    @pytest.mark.parametrize("policy", list(WindowPolicy))
    def test_at_23_h_59_min_a_free_form_message_is_sent_as_written(
        self, world: World, policy: WindowPolicy
    ) -> None:
        a_shop(world, policy)
        customer_wrote(world, JUST_INSIDE)
        message_id = world.queue(body="Article réservé")
        provider = ScriptedProvider()

        world.send_due(provider)

        [request] = provider.requests
        assert ("Article réservé", None, None) == (
            request.body,
            request.content_sid,
            request.content_variables,
        )
        assert OutboxStatus.SENT is world.outbox(message_id).status

    @pytest.mark.parametrize("ago", [JUST_OUTSIDE, None], ids=["24h01", "never-wrote"])
    def test_outside_the_window_policy_send_sends_it_as_written(
        self, world: World, ago: timedelta | None
    ) -> None:
        a_shop(world, WindowPolicy.SEND)
        customer_wrote(world, ago)
        message_id = world.queue(body="Article réservé")
        provider = ScriptedProvider()

        world.send_due(provider)

        [request] = provider.requests
        assert ("Article réservé", None) == (request.body, request.content_sid)
        assert OutboxStatus.SENT is world.outbox(message_id).status

    @pytest.mark.parametrize("ago", [JUST_OUTSIDE, None], ids=["24h01", "never-wrote"])
    def test_outside_the_window_policy_template_sends_the_fallback_template(
        self, world: World, ago: timedelta | None
    ) -> None:
        a_shop(world, WindowPolicy.TEMPLATE)
        customer_wrote(world, ago)
        message_id = world.queue(body="Article réservé")
        provider = ScriptedProvider()

        world.send_due(provider)

        [request] = provider.requests
        assert (TEMPLATE_SID, {"1": "Article réservé"}) == (
            request.content_sid,
            request.content_variables,
        )
        assert OutboxStatus.SENT is world.outbox(message_id).status

    @pytest.mark.parametrize("ago", [JUST_OUTSIDE, None], ids=["24h01", "never-wrote"])
    def test_outside_the_window_policy_drop_ends_it_dead_without_a_send(
        self, world: World, ago: timedelta | None
    ) -> None:
        a_shop(world, WindowPolicy.DROP)
        customer_wrote(world, ago)
        message_id = world.queue(body="Article réservé")
        provider = ScriptedProvider()

        report = world.send_due(provider)

        message = world.outbox(message_id)
        [dead_letter] = world.store.dead_letters.values()
        assert [] == provider.requests
        assert (1, 1) == (report.claimed, report.dead)
        assert (OutboxStatus.DEAD, OUTSIDE_WINDOW_CODE) == (message.status, message.last_error_code)
        assert (message_id, OUTSIDE_WINDOW_CODE) == (dead_letter.source_id, dead_letter.error_code)
        [event] = world.events("message.dead_lettered")
        assert OUTSIDE_WINDOW_CODE == event.payload["errorCode"]

    def test_a_message_the_customer_s_new_message_brings_inside_is_sent_as_written(
        self, world: World
    ) -> None:
        a_shop(world, WindowPolicy.DROP)
        customer_wrote(world, JUST_OUTSIDE)
        customer_wrote(world, timedelta(minutes=1))
        world.queue(body="Article réservé")
        provider = ScriptedProvider()

        world.send_due(provider)

        assert ["Article réservé"] == [r.body for r in provider.requests]

    def test_one_batch_holds_each_customer_to_its_own_window(self, world: World) -> None:
        a_shop(world, WindowPolicy.DROP)
        customer_wrote(world, JUST_INSIDE)
        inside = world.queue(to=CLIENT_PHONE, body="to the customer who wrote")
        outside = world.queue(to="+33611223344", body="to a customer who never wrote")
        provider = ScriptedProvider()

        world.send_due(provider)

        assert ["to the customer who wrote"] == [r.body for r in provider.requests]
        assert (OutboxStatus.SENT, OutboxStatus.DEAD) == (
            world.outbox(inside).status,
            world.outbox(outside).status,
        )
