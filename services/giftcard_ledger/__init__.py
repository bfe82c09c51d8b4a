"""giftcard_ledger: gift cards: issue, reload, redeem, refund, adjust, expire, deactivate (SPEC §2.3, §5)."""
