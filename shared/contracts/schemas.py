"""`make contracts`: write the JSON Schema of every event, inbound and domain, one file per topic and event.

    python -m shared.contracts.schemas docs/contracts
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from shared.contracts.domain import DOMAIN, GiftCardActivityRejected
from shared.contracts.pos import INBOUND
from shared.contracts.topics import GIFTCARD_REJECTIONS


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema (validation mode: what a producer must send)."""
    out: dict[str, dict[str, Any]] = {}
    for topic, union in {**INBOUND, **DOMAIN}.items():
        schema = TypeAdapter(union).json_schema(mode="validation")
        schema["title"] = f"Events on {topic}"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        out[f"{topic}.schema.json"] = schema
    rejected = TypeAdapter(GiftCardActivityRejected).json_schema()
    rejected["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out[f"{GIFTCARD_REJECTIONS}.schema.json"] = rejected
    return out


def main(target: str) -> None:
    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (folder / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(folder / name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/contracts")
