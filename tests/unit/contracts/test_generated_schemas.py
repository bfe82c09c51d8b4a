"""docs/contracts/ holds the current JSON Schema of every topic's events (`make contracts` writes them)."""

from __future__ import annotations

import json

from shared.contracts import topics
from shared.contracts.schemas import schemas
from tests.conftest import ROOT


def test_committed_schemas_are_current_and_cover_every_topic() -> None:
    generated = schemas()
    expected_topics = {*topics.INBOUND_TOPICS, *topics.DOMAIN_TOPICS, topics.GIFTCARD_REJECTIONS}
    assert {name.removesuffix(".schema.json") for name in generated} == expected_topics
    for name, schema in generated.items():
        committed = json.loads((ROOT / "docs" / "contracts" / name).read_text())
        assert committed == json.loads(json.dumps(schema)), f"{name} is stale: run `make contracts`"
