"""Defence in depth: a card-like digit run that reaches a log line anyway is masked to its last 4."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from shared.logging import configure_logging


def test_card_like_numbers_are_masked_in_logs(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("security-test")
    try:
        structlog.get_logger("t").warning("oops", detail="card 6034931200457781 refused", invoice="INV-2026-000184")
        logging.getLogger("stdlib").warning("stdlib says 60349312004577810001")
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    text = json.dumps(lines)
    assert "6034931200457781" not in text and "60349312004577810001" not in text
    assert "7781" in text and "0001" in text and "INV-2026-000184" in text
