"""Bytes on a topic <-> contract models. Decoding either returns a model or raises ``ContractViolation``."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.contracts.domain import DOMAIN
from shared.contracts.pos import INBOUND

SUPPORTED_SCHEMA_VERSIONS = frozenset({1})


class ContractViolation(ValueError):
    """A message that is not JSON, breaks the contract, or has a schema version we do not know."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@cache
def _adapter(topic: str) -> TypeAdapter[Any]:
    union = INBOUND.get(topic) or DOMAIN.get(topic)
    if union is None:
        raise KeyError(f"no contract for topic {topic!r}")
    return TypeAdapter(union)


def _explain(error: ValidationError) -> str:
    parts = []
    for e in error.errors(include_url=False)[:5]:
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        # the offending amount helps the integrator; other inputs are not echoed (a card number could be one)
        got = f", got {e['input']!r:.40}" if e["type"] == "money" else ""
        parts.append(f"{path}: {e['msg']}{got}")
    return "; ".join(parts)


def decode(topic: str, value: bytes | None) -> Any:
    """Decode one message value of ``topic`` into its event model."""
    if value is None:
        raise ContractViolation("empty message value")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ContractViolation(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ContractViolation(f"not a JSON object but {type(raw).__name__}")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ContractViolation(f"unsupported schema_version {version!r} (supported: 1)")
    try:
        return _adapter(topic).validate_python(raw)
    except ValidationError as exc:
        event_type = raw.get("event_type")
        raise ContractViolation(f"{event_type or 'event'} breaks the contract: {_explain(exc)}") from None


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json().encode()
