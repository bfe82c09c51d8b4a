"""marketing_view: the Redis read model of each customer's Marketing tab, and its read API (SPEC §2, §6)."""
