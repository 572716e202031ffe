"""`make bench` (ledger): ledger postings per second on PostgreSQL, against a bare single-row UPDATE.

N workers, each with its own connection, post for a fixed time in two shapes:

- **one wallet**: every thread posts to the same user's wallet, so every posting queues behind that
  wallet's row lock (the worst case: one busy user or one API key submitting in parallel);
- **spread**: each thread posts to wallets of its own, so nothing queues on a row lock.

Measured per shape: a bare `UPDATE … SET n = n + 1` of one row per transaction (the floor: one row lock
and one commit; on one shared row in the first shape, one row per thread in the second), a credit grant
(one posting: lock the wallet, insert the transaction and two entries, update the cached balance, commit)
and a job's ledger work (hold at submit, settle at the end: two wallet-locking transactions, one
posting). Printed as rates and as ratios to the baseline of the same shape, from the same run. After the
run the ledger is verified: every posting balances and no wallet's cached balance drifted.

Workers are processes by default (forked after setup), as web and Celery workers are: threads in one
process share the GIL, so with `--mode threads` the ORM's Python work, not the database's row locks,
sets the pace, and the two shapes come out nearly the same.

The bench creates and drops its own database, `studio_ledger_bench` (`--db-name`, which must contain
"bench"), on the server named by DATABASE_URL (default postgres://postgres@127.0.0.1:5432); it never
touches another database. Without a reachable PostgreSQL it says so and exits 0. The suite's smoke test
runs it with `--workers 2 --seconds 0.2` and a database named after the test database.

    .venv/bin/python bench/ledger.py [--workers 8] [--mode processes|threads] [--seconds 3] [--db-name NAME] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import queue
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB_NAME = "studio_ledger_bench"
WALLETS_PER_WORKER = 4
STARTING_CREDITS = 10**12  # holds never run out during a run

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.paths import bench_var_dir  # noqa: E402
from bench.scratch_db import database_recreate, reachable, scratch_name_check, server_url, with_db_name  # noqa: E402


def _configure_django(database_url: str) -> None:
    os.environ.update({
        "DATABASE_URL": database_url,
        # The production settings (DEBUG off): with DEBUG on, Django keeps every query in memory.
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "STUDIO_VAR_DIR": str(bench_var_dir("ledger")),
        "SECRET_KEY": "bench-only-not-a-secret",
        "KEY_ENCRYPTION_KEYS": "bench:" + base64.b64encode(b"b" * 32).decode(),
        "ALLOWED_HOSTS": "testserver",
        "LOG_LEVEL": "WARNING",
    })
    # A persistent connection per thread, as a worker process has; the bench measures the ledger, not connects.
    os.environ.setdefault("DB_CONN_MAX_AGE", "60")
    import django

    django.setup()


def _run(workers: int, seconds: float, op: Callable[[int, int], None], mode: str) -> float:
    """Run `op(worker_index, n)` in `workers` threads or processes for `seconds`; return operations per
    second across all of them."""
    from django.db import connection, connections

    if mode == "processes":
        ctx: Any = multiprocessing.get_context("fork")
        connections.close_all()  # a forked child must not share the parent's socket
    else:
        ctx = threading
    barrier = ctx.Barrier(workers + 1)
    stop = ctx.Event()
    results: Any = ctx.Queue() if mode == "processes" else queue.Queue()

    def loop(index: int) -> None:
        count, error = 0, ""
        try:
            op(index, -1)  # warm the connection and the statement caches outside the timed window
            barrier.wait(60)
            while not stop.is_set():
                op(index, count)
                count += 1
        except BaseException as exc:  # reported after the run, not swallowed
            error = repr(exc)
            stop.set()
        finally:
            connection.close()
            results.put((count, error))

    runners = [(ctx.Process if mode == "processes" else threading.Thread)(target=loop, args=(i,))
               for i in range(workers)]
    for runner in runners:
        runner.start()
    barrier.wait(60)
    started = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    outcomes = [results.get(timeout=120) for _ in runners]
    elapsed = time.perf_counter() - started
    for runner in runners:
        runner.join()
    errors = [error for _, error in outcomes if error]
    if errors:
        raise RuntimeError(f"A worker failed: {errors[0]}")
    return sum(count for count, _ in outcomes) / elapsed


def bench(workers: int, seconds: float, mode: str) -> int:
    from django.db import connection

    from accounts.models import User
    from billing.selectors import unbalanced_transactions, wallet_drift
    from billing.services import credits_grant, credits_hold, hold_settle

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_counter (id integer PRIMARY KEY, n bigint NOT NULL DEFAULT 0)")
        cursor.execute("INSERT INTO bench_counter (id) SELECT generate_series(0, %s)", [workers])
    wallets = workers * WALLETS_PER_WORKER
    users = [User.objects.create_user(email=f"bench-{i}@example.com", password=None) for i in range(wallets)]
    for user in users:
        credits_grant(user=user, amount=STARTING_CREDITS, reason="bench", idempotency_key=f"bench-start:{user.pk}")

    def user_for(shape: str, index: int, n: int) -> Any:
        return users[0] if shape == "one" else users[index + (n % WALLETS_PER_WORKER) * workers]

    def bare_update(shape: str) -> Callable[[int, int], None]:
        def op(index: int, n: int) -> None:
            with connection.cursor() as cursor:  # autocommit: one transaction per statement
                cursor.execute("UPDATE bench_counter SET n = n + 1 WHERE id = %s", [0 if shape == "one" else index + 1])
        return op

    def grant(shape: str) -> Callable[[int, int], None]:
        def op(index: int, n: int) -> None:
            credits_grant(user=user_for(shape, index, n), amount=1, reason="bench", idempotency_key=uuid.uuid4().hex)
        return op

    def job(shape: str) -> Callable[[int, int], None]:
        def op(index: int, n: int) -> None:
            ref = f"bench:{uuid.uuid4().hex}"
            credits_hold(user=user_for(shape, index, n), amount=5, reference=ref)
            hold_settle(reference=ref, amount=3)
        return op

    shapes = [("one", "one wallet"), ("spread", f"spread over {wallets} wallets")]
    cases = [("bare UPDATE of one row (baseline)", bare_update), ("grant: one posting", grant),
             ("job: hold + settle (one posting)", job)]
    results: dict[tuple[str, str], float] = {}
    for label, make in cases:
        for shape, _ in shapes:
            results[(label, shape)] = _run(workers, seconds, make(shape), mode)

    print(f"\nLedger on PostgreSQL ({connection.pg_version // 10000}), {workers} {mode}, {seconds:g} s per case; "
          "operations per second (ratio to the baseline of the same shape)\n")
    width = max(len(label) for label, _ in cases) + 2
    print(" " * width + "".join(f"{title:>32}" for _, title in shapes))
    baseline_label = cases[0][0]
    for label, _ in cases:
        cells = []
        for shape, _ in shapes:
            rate = results[(label, shape)]
            ratio = rate / results[(baseline_label, shape)]
            cells.append(f"{rate:>12,.0f}/s" + ("" if label == baseline_label else f" ({ratio:.2f}×)"))
        print(f"{label:<{width}}" + "".join(f"{cell:>32}" for cell in cells))

    drift, unbalanced = wallet_drift(), unbalanced_transactions()
    print(f"\nLedger check: {len(unbalanced)} unbalanced postings, {len(drift)} wallets with drift.")
    return 1 if drift or unbalanced else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--mode", choices=["processes", "threads"], default="processes")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--db-name", default=BENCH_DB_NAME,
                        help=f"the scratch database, dropped and created (default {BENCH_DB_NAME})")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database afterwards")
    args = parser.parse_args()
    if args.workers < 1 or args.seconds <= 0:
        parser.error("--workers must be at least 1 and --seconds more than 0")
    db_name = scratch_name_check(args.db_name)

    server = server_url()
    admin_url = with_db_name(server, "postgres")
    if not reachable(admin_url):
        host = urllib.parse.urlsplit(server).hostname
        print(f"Ledger bench skipped: PostgreSQL at {host} is not reachable (it measures PostgreSQL row locks).")
        return 0
    database_recreate(admin_url, db_name)
    try:
        _configure_django(with_db_name(server, db_name))
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        status = bench(args.workers, args.seconds, args.mode)
        connections.close_all()
    finally:
        if not args.keep:
            database_recreate(admin_url, db_name, drop_only=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
