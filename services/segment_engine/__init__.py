"""segment_engine: customer facts, segment rules, memberships (SPEC §2.1, §3)."""
