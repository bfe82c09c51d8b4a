"""The view's e2e tests clean up their prefixed topics like its integration tests do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import Stack
from tests.integration.view.conftest import delete_topics


@pytest.fixture
async def topics(topics: str, stack: Stack) -> AsyncIterator[str]:
    yield topics
    await delete_topics(stack.kafka, topics)
