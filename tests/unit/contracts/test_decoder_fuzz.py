"""The event decoders, fuzzed: whatever bytes arrive, they return a model or raise ContractViolation."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contracts import topics
from shared.contracts.codec import ContractViolation, decode
from tests.conftest import FIXTURES

ALL_TOPICS = [*topics.INBOUND_TOPICS, *topics.DOMAIN_TOPICS]
EXAMPLES = [json.loads(p.read_text()) for p in sorted((FIXTURES / "events").glob("*.json"))]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def decodes_or_refuses(topic: str, value: bytes | None) -> None:
    try:
        decode(topic, value)
    except ContractViolation as exc:
        assert exc.reason


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(ALL_TOPICS), value=st.binary(max_size=300))
def test_arbitrary_bytes(topic: str, value: bytes) -> None:
    decodes_or_refuses(topic, value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(ALL_TOPICS), value=json_values)
def test_arbitrary_json(topic: str, value: object) -> None:
    decodes_or_refuses(topic, json.dumps(value).encode())


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(example=st.sampled_from(EXAMPLES), data=st.data())
def test_valid_events_with_one_field_mutated(example: dict, data: st.DataObject) -> None:
    mutated = dict(example)
    field = data.draw(st.sampled_from(sorted(mutated)))
    mutated[field] = data.draw(json_values)
    for topic in topics.INBOUND_TOPICS:
        decodes_or_refuses(topic, json.dumps(mutated).encode())
