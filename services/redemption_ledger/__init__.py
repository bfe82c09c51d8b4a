"""redemption_ledger: coupon catalog and append-only coupon redemption ledger (SPEC §2.2, §4)."""
