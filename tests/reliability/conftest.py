"""Fault-tolerance suite: fixtures, and outage tests ordered last (they disturb the shared infrastructure)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.reliability.harness import World


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "outage: stops shared infrastructure (Kafka, Postgres, Redis); runs last")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # Stable sort: everything else keeps its order, outage tests go to the very end of the whole run.
    items.sort(key=lambda item: item.get_closest_marker("outage") is not None)


@pytest.fixture
async def world(stack) -> AsyncIterator[World]:
    w = World(stack)
    await w.create_topics()
    try:
        yield w
    finally:
        w.stop_all()
        await w.drop()
