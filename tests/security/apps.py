"""The four services built in-process with test API keys (hashed, as a deployment configures them)."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from shared.auth import hash_key

SERVICES = ("giftcard_ledger", "redemption_ledger", "segment_engine", "marketing_view")
READ_KEY = "sec-test-read-only-key-4f1c9a"
MANAGE_KEY = "sec-test-manage-only-key-77b2e0"
ALL_KEY = "sec-test-read-manage-key-0d93aa"
API_KEYS = ";".join([f"{hash_key(READ_KEY)}=read", f"{hash_key(MANAGE_KEY)}=manage",
                     f"{hash_key(ALL_KEY)}=read,manage"])
HMAC_KEY = "security-tests-hmac-key-0123456789"
OPS_PATHS = ("/healthz", "/readyz", "/metrics")

# A valid value for each path parameter name (an id of the right shape; nothing needs to exist).
PATH_VALUES = {"card_id": "gc_" + "A1b2C3d4E5f6G7h8I9j0Kl", "customer_id": "C-10042", "segment_id": "high-value",
               "code": "FALL10", "campaign": "fall-2026", "job_id": "1"}


def settings_for(service: str, **overrides: Any) -> Any:
    config = importlib.import_module(f"services.{service}.config")
    values: dict[str, Any] = {"api_keys": API_KEYS, "marketing_api_key": None, "api_keys_file": None}
    if service == "giftcard_ledger":
        values["card_hmac_key"] = HMAC_KEY
    values.update(overrides)
    return config.Settings(**values)


def build(service: str, **overrides: Any) -> FastAPI:
    module = importlib.import_module(f"services.{service}.app")
    app: FastAPI = module.create_app(settings_for(service, **overrides))
    return app


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    template: str

    @property
    def path(self) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], self.template)

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.template}"


def operations(service: str) -> list[Operation]:
    """Every operation of the service's OpenAPI document (which lists every route FastAPI serves)."""
    doc = build(service).openapi()
    return [Operation(service, method.upper(), path) for path, ops in doc["paths"].items() for method in ops]


ALL_OPERATIONS = [op for service in SERVICES for op in operations(service)]
