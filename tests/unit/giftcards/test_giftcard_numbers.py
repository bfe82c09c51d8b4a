"""Card numbers: generated with a check digit, kept as a keyed HMAC, looked up across key rotations."""

from __future__ import annotations

import re

import pytest

from services.giftcard_ledger.cardnumbers import (
    CARD_ID_PATTERN,
    CardNumberHasher,
    generate_number,
    is_card_id,
    key_version,
    last4,
    luhn_valid,
    mask,
    new_card_id,
)

KEY = b"k" * 32
OLD = b"o" * 32


def test_generated_numbers_have_16_digits_and_a_valid_check_digit() -> None:
    numbers = {generate_number() for _ in range(500)}
    assert len(numbers) == 500
    assert all(len(n) == 16 and n.isdigit() and n[0] != "0" and luhn_valid(n) for n in numbers)
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def test_card_ids_are_opaque_and_never_look_like_a_card_number() -> None:
    ids = {new_card_id() for _ in range(200)}
    assert len(ids) == 200 and all(is_card_id(i) for i in ids)
    assert not is_card_id("6034932528974821") and not is_card_id("gc_6034932528974821")
    assert not re.match(CARD_ID_PATTERN, "ABCD1234EFGH5678")


def test_the_hmac_depends_on_the_key_and_ignores_letter_case() -> None:
    hasher = CardNumberHasher(KEY)
    assert hasher.digest("abcd1234") == hasher.digest("ABCD1234")
    assert hasher.digest("6034932528974821") != CardNumberHasher(OLD).digest("6034932528974821")
    assert len(hasher.digest("6034932528974821")) == 32
    assert b"6034932528974821" not in hasher.digest("6034932528974821")


def test_look_ups_try_the_current_key_then_the_previous_ones() -> None:
    before = CardNumberHasher(OLD)
    after = CardNumberHasher(KEY, [OLD])
    stored = before.digest("6034932528974821")
    candidates = after.candidates("6034932528974821")
    assert [v for v, _ in candidates] == [key_version(KEY), key_version(OLD)]
    assert candidates[1][1] == stored and candidates[0][1] == after.digest("6034932528974821")
    assert after.current_version == key_version(KEY) != key_version(OLD)
    assert key_version(KEY).encode() not in KEY


def test_request_fingerprints_survive_a_rotation() -> None:
    before = CardNumberHasher(OLD).request_hashes(b"body")[0]
    assert before in CardNumberHasher(KEY, [OLD]).request_hashes(b"body")
    assert before not in CardNumberHasher(KEY, [OLD]).request_hashes(b"other body")


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        CardNumberHasher(b"short")


def test_only_the_last_four_characters_are_shown() -> None:
    assert last4("6034932528974821") == "4821" and last4("ab12cd34") == "CD34"
    assert mask("4821") == "•••• •••• •••• 4821"
