"""Card numbers: generated or supplied, kept only as a keyed HMAC plus the last 4 characters.

The full number exists in memory while a request or an event is handled, and in the one response that
issues a card. Look-ups compute the HMAC of the presented number under the current key and every previous
key (rotation), and match any. ``key_version`` is a fingerprint of the key (derived with the key itself, so
it reveals nothing), stored with each card so a rotation can tell which cards still use an old key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Sequence

CARD_ID_PATTERN = r"^gc_[A-Za-z0-9]{22}$"
_CARD_ID = re.compile(CARD_ID_PATTERN)
_BASE62 = string.digits + string.ascii_letters
GENERATED_LENGTH = 16
MASK_PREFIX = "•••• •••• •••• "


def new_card_id() -> str:
    """An opaque id (about 131 random bits), never derived from the number."""
    return "gc_" + "".join(secrets.choice(_BASE62) for _ in range(22))


def is_card_id(value: str) -> bool:
    return bool(_CARD_ID.match(value))


def normalize(number: str) -> str:
    """Numbers are compared without regard to letter case (typed at a till, scanned, printed)."""
    return number.strip().upper()


def last4(number: str) -> str:
    return normalize(number)[-4:]


def mask(last_four: str) -> str:
    """``•••• •••• •••• 4821``: only the last 4 characters are real."""
    return MASK_PREFIX + last_four


def luhn_check_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # every second digit from the right, counting the check digit to come as position 0
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def generate_number() -> str:
    """16 digits, the last a Luhn check digit (catches a mistyped digit at the till)."""
    body = str(secrets.randbelow(9) + 1) + "".join(str(secrets.randbelow(10)) for _ in range(GENERATED_LENGTH - 2))
    return body + luhn_check_digit(body)


def key_version(key: bytes) -> str:
    return "k" + hmac.new(key, b"giftcard-ledger key fingerprint", hashlib.sha256).hexdigest()[:12]


class CardNumberHasher:
    """HMAC-SHA256 of card numbers under the current key and, for look-ups, the previous keys."""

    def __init__(self, current_key: bytes, previous_keys: Sequence[bytes] = ()) -> None:
        if len(current_key) < 16:
            raise ValueError("the card HMAC key must be at least 16 bytes long")
        keys = [current_key, *(k for k in previous_keys if k != current_key)]
        self._keys = [(key_version(k), k) for k in keys]

    @property
    def current_version(self) -> str:
        return self._keys[0][0]

    def digest(self, number: str) -> bytes:
        """The HMAC under the current key: what a new card stores."""
        return self._hmac(self._keys[0][1], number)

    def candidates(self, number: str) -> list[tuple[str, bytes]]:
        """(key_version, HMAC) under every key, current first: what a look-up matches."""
        return [(version, self._hmac(key, number)) for version, key in self._keys]

    def request_hashes(self, canonical: bytes) -> list[bytes]:
        """Fingerprints of an API request for the idempotency store, current key first (keyed, because a body
        may hold a card number; every key, so that a retry still matches across a key rotation)."""
        return [hmac.new(key, b"request:" + canonical, hashlib.sha256).digest() for _, key in self._keys]

    @staticmethod
    def _hmac(key: bytes, number: str) -> bytes:
        return hmac.new(key, b"card-number:" + normalize(number).encode(), hashlib.sha256).digest()
