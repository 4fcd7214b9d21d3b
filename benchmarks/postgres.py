"""A fresh PostgreSQL database for a benchmark run (dropped and created again each time)."""

from __future__ import annotations

import os

DEFAULT_URL = "postgresql://postgres@127.0.0.1:54329/gradesync_bench"


def bench_url() -> str:
    return os.environ.get("GRADESYNC_BENCH_POSTGRES_URL", DEFAULT_URL)


def fresh_database(url: str) -> str | None:
    """Recreate the database named in `url`; returns why not (None on success)."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database
    if not name:
        return "the URL names no database"
    admin = parsed.set(drivername="postgresql", database="postgres")
    try:
        with psycopg.connect(
            admin.render_as_string(hide_password=False), autocommit=True, connect_timeout=3
        ) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        return f"PostgreSQL not available at {admin.render_as_string()}: {exc}".strip()
    return None
