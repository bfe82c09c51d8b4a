"""Keep full card numbers off every topic but ``pos.giftcard-activity.v1`` (SPEC §5, issue 10).

Dead letters keep "the original bytes" (SPEC §7), except for one thing: a dead-lettered gift card message has its
card number replaced by a mask that keeps only the last 4 characters, in the value and in the key (the POS keys
that topic by card number). Everything else in the bytes stays as it was, byte for byte, so an operator can still
see what was wrong with the message. The reason header is masked too (a validation error may quote an input).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson

from shared.contracts import topics

DLQ_MASK = "****"  # ASCII, so that the masked bytes stay valid in any encoding the POS might have sent
# A run of 8 to 20 digits on its own: what a card number looks like when it cannot be found by its field name.
_CARDLIKE = re.compile(rb"(?<![0-9A-Za-z])[0-9]{8,20}(?![0-9A-Za-z])")
_KEY_LIKE_A_NUMBER = re.compile(rb"^\s*[0-9A-Za-z]{8,20}\s*$")

Redactor = Callable[[bytes | None, bytes | None], tuple[bytes | None, bytes | None]]


def mask_bytes(number: bytes) -> bytes:
    return DLQ_MASK.encode() + number.strip()[-4:]


def mask_card_like(text: str) -> str:
    """Mask every free-standing run of 8 to 20 digits in ``text`` (keeps the last 4)."""
    return _CARDLIKE.sub(lambda m: mask_bytes(m.group(0)), text.encode()).decode()


def redact_gift_card_message(value: bytes | None, key: bytes | None) -> tuple[bytes | None, bytes | None]:
    """The message with every occurrence of its card number masked, and the key masked if it is a number."""
    numbers: set[bytes] = set()
    located = False  # the value's card number was found by its field name
    if value is not None:
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("card_number"), str | int) \
                and not isinstance(parsed.get("card_number"), bool):
            found = str(parsed["card_number"]).strip()
            if found:
                numbers.add(found.encode())
                located = True
    if key is not None and _KEY_LIKE_A_NUMBER.match(key):
        numbers.add(key.strip())
    if value is not None:
        for number in sorted(numbers, key=len, reverse=True):
            value = _replace_ignoring_case(value, number)
        if not located:  # no card_number field tells where the number is: mask whatever looks like one
            value = _CARDLIKE.sub(lambda m: mask_bytes(m.group(0)), value)
    if key is not None:
        if key.strip() in numbers or _CARDLIKE.search(key):
            key = mask_bytes(key)
    return value, key


def _replace_ignoring_case(value: bytes, number: bytes) -> bytes:
    """Numbers are compared case-insensitively by the ledger, so a differently-cased copy is the same number."""
    if len(number) < 4:  # too short to be a number of 8 to 20 characters: nothing to hide
        return value
    return re.sub(re.escape(number), lambda m: mask_bytes(m.group(0)), value, flags=re.IGNORECASE)


DLQ_REDACTORS: dict[str, Redactor] = {topics.POS_GIFTCARD_ACTIVITY: redact_gift_card_message}


def for_dead_letter(logical_topic: str, value: bytes | None, key: bytes | None) -> tuple[bytes | None, bytes | None]:
    """What a dead letter of ``logical_topic`` may carry: the original bytes, minus what must never leave it."""
    redactor = DLQ_REDACTORS.get(logical_topic)
    return redactor(value, key) if redactor is not None else (value, key)
