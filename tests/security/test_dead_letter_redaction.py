"""Dead letters of pos.giftcard-activity.v1 keep their bytes except the card number (last 4 only)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from shared.contracts import topics
from shared.redaction import DLQ_MASK, for_dead_letter, mask_card_like, redact_gift_card_message

NUMBER = "6034931200457781"


def test_json_card_number_is_masked_and_the_rest_kept_byte_for_byte() -> None:
    raw = b'{"event_type": "giftcard.redeemed",  "card_number": "' + NUMBER.encode() + b'", "amount": 4.5}'
    value, key = for_dead_letter(topics.POS_GIFTCARD_ACTIVITY, raw, NUMBER.encode())
    assert value == raw.replace(NUMBER.encode(), (DLQ_MASK + "7781").encode())
    assert key == (DLQ_MASK + "7781").encode()


def test_alphanumeric_numbers_are_masked_whatever_their_case() -> None:
    raw = orjson.dumps({"card_number": "abcd-ignored", "note": "x"})
    assert redact_gift_card_message(raw, None)[0] == raw.replace(b"abcd-ignored", b"****ored")
    raw = orjson.dumps({"card_number": "GcAbC12345", "echo": "gcabc12345"})
    value, _ = redact_gift_card_message(raw, b"GCABC12345")
    assert b"abc12345" not in value.lower() and value.count(b"****") == 2


def test_not_json_masks_anything_that_looks_like_a_number() -> None:
    raw = b"{card_number: " + NUMBER.encode() + b", broken"
    value, _ = redact_gift_card_message(raw, None)
    assert NUMBER.encode() not in value and b"****7781" in value


def test_other_topics_keep_the_original_bytes() -> None:
    raw = orjson.dumps({"invoice_number": NUMBER})
    assert for_dead_letter(topics.POS_SALES, raw, b"C-1") == (raw, b"C-1")


def test_reasons_are_masked() -> None:
    assert mask_card_like(f"card_number: bad input_value='{NUMBER}'") == "card_number: bad input_value='****7781'"


@given(number=st.from_regex(r"[0-9A-Z]{8,20}", fullmatch=True), extra=st.dictionaries(
    st.text(max_size=5), st.one_of(st.text(max_size=10), st.integers(-10**6, 10**6), st.none()), max_size=4))
def test_the_number_never_survives(number: str, extra: dict[str, object]) -> None:
    for raw in (orjson.dumps({**extra, "card_number": number}), orjson.dumps({**extra, "card_number": number.lower()})):
        value, key = redact_gift_card_message(raw, number.encode())
        assert value is not None and key is not None
        assert number.encode() not in value.upper() and number.encode() not in key
        assert orjson.loads(value)["card_number"] == DLQ_MASK + number.lower()[-4:] or \
            orjson.loads(value)["card_number"] == DLQ_MASK + number[-4:]
