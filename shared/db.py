"""Postgres: one pool per service, bound to the service's own schema; versioned SQL migrations."""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg
import orjson
import structlog

log = structlog.get_logger(__name__)

PLUMBING_MIGRATIONS = Path(__file__).parent / "migrations"


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                                  schema="pg_catalog")


async def create_pool(url: str, schema: str, *, min_size: int = 1, max_size: int = 10,
                      application_name: str = "marketing") -> asyncpg.Pool:
    """A pool whose connections see the service's schema first (and nothing else unqualified)."""
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection,
        server_settings={"search_path": f"{schema},public", "application_name": application_name},
    )
    assert pool is not None
    return pool


def _lock_id(schema: str) -> int:
    return int.from_bytes(hashlib.sha256(f"migrate:{schema}".encode()).digest()[:8], "big", signed=True)


async def migrate(url: str, schema: str, migrations_dir: Path) -> list[str]:
    """Apply the shared plumbing migrations, then the service's own, each once, in file-name order.

    Safe to run from several replicas at once: an advisory lock serialises them.
    """
    conn = await asyncpg.connect(url)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_id(schema))
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}", public')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            files = sorted(PLUMBING_MIGRATIONS.glob("*.sql")) + sorted(migrations_dir.glob("*.sql"))
            for path in files:
                version = path.stem
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied.append(version)
                log.info("migration applied", schema=schema, version=version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _lock_id(schema))
    finally:
        await conn.close()
    return applied
