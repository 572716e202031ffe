"""A scratch PostgreSQL database for a benchmark: created fresh, dropped afterwards. The server is the
one in DATABASE_URL when that is PostgreSQL, else the local default; the database name is always the
bench's own, never the one in the URL."""

from __future__ import annotations

import os
import urllib.parse

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def with_db_name(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def server_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else DEFAULT_PG_URL


def scratch_name_check(name: str) -> str:
    """A database a benchmark drops and recreates must say so in its name (`--db-name`): a guard against
    pointing one at a real database by a typo."""
    if "bench" not in name:
        raise SystemExit(f"Refusing to use database {name!r} as a scratch database: its name must contain 'bench'.")
    return name


def reachable(admin_url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=2) as conn:
            conn.execute("select 1")
    except psycopg.Error:
        return False
    return True


def database_recreate(admin_url: str, name: str, *, drop_only: bool = False) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
