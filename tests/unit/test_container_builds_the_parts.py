"""The container is the one composition root (ADR 0017): it builds every worker part with its
collaborators, and one Settings object configures them."""

from __future__ import annotations

import attrs
from dependency_injector import providers

from entrypoints.container import Container, build, rebuildable_from_settings
from entrypoints.runner import PART_PROVIDERS, PARTS, build_parts
from entrypoints.settings import Settings


def memory_container(**changes: object) -> Container:
    return build(attrs.evolve(Settings.from_env({}), **changes), store="memory")


def holds_a_container(part: object) -> bool:
    return any(isinstance(value, Container) for value in vars(part).values())


class TestPartsBuiltByTheContainer:
    def test_every_part_named_in_parts_has_a_provider(self) -> None:
        assert list(PARTS) == list(PART_PROVIDERS)

    def test_every_part_is_built_with_its_collaborators_and_holds_no_container(self) -> None:
        parts = build_parts(memory_container(), list(PARTS))

        assert [
            "webhook-processor",
            "outbox-sender",
            "close-inactive-live-sessions",
            "inbox-reconciler",
            "spool-drainer",
        ] == [part.name for part in parts]
        assert [] == [part.name for part in parts if holds_a_container(part)]

    def test_the_parts_share_the_containers_store_and_clock(self) -> None:
        container = memory_container()
        closer, reconciler = build_parts(container, ["closer", "reconciler"])

        assert container.uow_factory() is closer.uow_factory is reconciler.uow_factory  # type: ignore[attr-defined]
        assert container.clock() is closer.clock is reconciler.clock  # type: ignore[attr-defined]

    def test_an_override_of_the_settings_reaches_every_part_built_after_it(self) -> None:
        container = memory_container()
        settings = attrs.evolve(
            container.settings(), close_interval_minutes=7, close_batch_limit=11
        )
        container.settings.override(providers.Object(settings))

        closer = container.closer_part()

        assert (7 * 60, 11) == (closer.interval_seconds, closer.batch_limit)

    def test_parts_count_their_events_only_when_metrics_are_served(self) -> None:
        assert [] == memory_container().closer_part().run_observers
        assert 1 == len(memory_container(metrics_port=9464).closer_part().run_observers)


class TestChildProcessesRebuildTheContainer:
    def test_a_container_built_from_settings_on_the_sql_store_is_rebuildable(self) -> None:
        assert rebuildable_from_settings(build(Settings.from_env({})))

    def test_the_memory_store_stays_in_one_process(self) -> None:
        container = memory_container(webhook_worker_concurrency=4)

        assert not rebuildable_from_settings(container)
        assert [4] == container.webhook_part(processes=None).plan

    def test_an_overridden_queue_connection_stays_in_one_process(self) -> None:
        container = build(Settings.from_env({}))
        container.worker_redis.override(providers.Object(object()))

        assert not rebuildable_from_settings(container)
