"""Exit 0 when PostgreSQL and Redis answer at the given URLs (used by `make test-postgres`)."""

from __future__ import annotations

import sys

import psycopg
import redis


def main(pg_url: str, redis_url: str) -> int:
    try:
        with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        print(f"PostgreSQL at {pg_url}: {exc}", file=sys.stderr)
        return 1
    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
        client.ping()
        client.flushdb()  # the test database number only: stale broker messages from a previous run
    except redis.RedisError as exc:
        print(f"Redis at {redis_url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
