"""Fixtures of the unit tier (fakes only): a fresh world per test, and a shop with its seller."""

from __future__ import annotations

import pytest

from tests.unit.builders import SELLER_PHONE, World


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def shop(world: World) -> World:
    """A world with tenant ``shop-a`` (region FR) and its seller ``+33612345678``."""
    world.tenant("shop-a")
    world.seller("shop-a", SELLER_PHONE)
    return world
