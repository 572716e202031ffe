"""`make bench`: the generation pipeline's own overhead, against a bare Celery round trip.

A generation on a provider that answers at once (bench/instant.py) measures everything the studio
adds around a provider call: API accept, credit hold, broker hop, claim, asset ingest, settlement.
A no-op Celery task on the same broker and worker is the floor under it. Both run in one process
against one worker subprocess, on a scratch environment under var/bench/ that each run recreates.

Flavours: `sqlite` (the embedded defaults: SQLite, filesystem broker) and `postgres` (PostgreSQL +
Redis). Django's settings are fixed at import, so this script re-runs itself once per flavour with
the environment for it (`--flavour`); docs/BENCHMARKS.md explains the numbers.

The bench's user is on an unlimited plan (bench/plans.py): on the default Free plan the 11th job was
refused with a 429. `--smoke` allows a tiny N and looks for results less often, for the suite's smoke
test (tests/bench/), whose figures mean nothing; `--db-name`/`--redis-db` and BENCH_VAR_DIR keep such a
run apart from a real one.

    .venv/bin/python bench/run.py [--n 200] [--both | --sqlite-only]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB_NAME = "studio_bench"
BENCH_REDIS_DB = 14
DEFAULT_PG_URL = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB_NAME}"
DEFAULT_REDIS_URL = f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}"
MODEL_ID = "bench/instant"
STARTER_CREDITS = 10**6

# Settings that would point the scratch environment somewhere else, or change how tasks run.
FOREIGN_ENV = ("MEDIA_ROOT", "BROKER_DIR", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER",
               "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL", "DB_CONN_MAX_AGE")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.paths import bench_var_dir  # noqa: E402
from bench.scratch_db import scratch_name_check  # noqa: E402

BENCH_DIR = bench_var_dir()  # a folder per flavour below it


# --- the parent: pick flavours, run each in a fresh process ---------------------------------------------

def _with_db_name(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def _services_reachable(pg_url: str, redis_url: str) -> bool:
    import psycopg
    import redis

    try:
        with psycopg.connect(_with_db_name(pg_url, "postgres"), connect_timeout=2) as conn:
            conn.execute("select 1")
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except (psycopg.Error, redis.RedisError):
        return False
    return True


def _flavour_env(name: str, database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update({
        "STUDIO_VAR_DIR": str(BENCH_DIR / name),
        # The production settings (DEBUG off): with DEBUG on, Django keeps every query in memory, in both
        # processes. They take no default database, so the embedded flavour names its SQLite file.
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DATABASE_URL": database_url or f"sqlite:///{BENCH_DIR / name / 'studio.sqlite3'}",
        "SECURE_SSL_REDIRECT": "0",  # the test client speaks plain HTTP
        "SECRET_KEY": "bench-only-not-a-secret",
        # Production settings refuse to start without master keys for users' provider keys; the bench stores none.
        "KEY_ENCRYPTION_KEYS": "bench:" + base64.b64encode(b"b" * 32).decode(),
        "ALLOWED_HOSTS": "testserver",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def parent(args: argparse.Namespace) -> int:
    caller_db = os.environ.get("DATABASE_URL", "")
    caller_redis = os.environ.get("REDIS_URL", "")
    flavours: list[tuple[str, str, str]] = []  # (name, DATABASE_URL, REDIS_URL)
    if caller_db or caller_redis:
        # The caller's servers, but never the caller's data: our own database name and Redis db number.
        flavours.append(("postgres" if caller_db else "sqlite-redis",
                         _with_db_name(caller_db, args.db_name) if caller_db else "",
                         _with_db_name(caller_redis, str(args.redis_db)) if caller_redis else ""))
    else:
        flavours.append(("sqlite", "", ""))
        if not args.sqlite_only:
            pg_url = _with_db_name(DEFAULT_PG_URL, args.db_name)
            redis_url = _with_db_name(DEFAULT_REDIS_URL, str(args.redis_db))
            if _services_reachable(pg_url, redis_url):
                flavours.append(("postgres", pg_url, redis_url))
            elif args.both:
                print("--both: PostgreSQL at 127.0.0.1:5432 or Redis at 127.0.0.1:6379 is not reachable.",
                      file=sys.stderr)
                return 2
            else:
                print("PostgreSQL or Redis is not reachable: running the SQLite flavour only.", file=sys.stderr)

    # Each child recreates its own folder; the other benchmarks' folders beside it (the previews' images
    # take a while to make) are left alone.
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name, database_url, redis_url in flavours:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--flavour", name, "--n", str(args.n),
               "--warmup", str(args.warmup), "--polling-interval", str(args.polling_interval),
               "--as-configured-n", str(args.as_configured_n), "--db-name", args.db_name,
               "--redis-db", str(args.redis_db)]
        cmd += ["--keep"] if args.keep else []
        cmd += ["--smoke"] if args.smoke else []
        result = subprocess.run(cmd, cwd=ROOT, env=_flavour_env(name, database_url, redis_url))
        if result.returncode != 0:
            print(f"The {name} flavour failed (exit {result.returncode}); logs in {BENCH_DIR / name}.",
                  file=sys.stderr)
            failed += 1
    return 1 if failed else 0


# --- the child: one flavour ---------------------------------------------------------------------------------

@dataclass
class Stats:
    samples_ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.samples_ms, n=100, method="inclusive")[94]


class Worker:
    """`python -m bench.worker` in its own process group, so stopping it stops its pool children too."""

    def __init__(self, label: str, options: list[str], log_dir: Path, env: dict[str, str], *,
                 kill: bool = False) -> None:
        self.label = label
        self.options = options
        # A smoke run kills its workers outright (SIGKILL) instead of asking them to stop: by then their
        # work is done and checked, and Celery's warm shutdown on the filesystem broker takes 3-4 s (its
        # loop for polling transports drains for 2 s between looks at the shutdown flag), four times a run.
        self.kill = kill
        self.log_path = log_dir / f"worker-{label}.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", *self.options, "--loglevel=WARNING", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-n", f"bench-{self.label}-{os.getpid()}@%h"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL if self.kill else signal.SIGTERM)
            self.proc.wait(10 if self.kill else 15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"The {self.label} worker exited ({self.proc.returncode}); see {self.log_path}.")


def _prepare_servers(keep: bool, db_name: str) -> Callable[[], None]:
    """Recreate the bench's own PostgreSQL database and empty its Redis db; return the cleanup."""
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    admin_url = ""
    if database_url.startswith("postgres"):  # the embedded flavour names its SQLite file
        import psycopg
        from psycopg import sql

        name = urllib.parse.urlsplit(database_url).path.lstrip("/")
        if name != db_name:  # parent() renames it; refuse anything else rather than drop it
            raise SystemExit(f"Refusing to recreate database {name!r}: this run uses {db_name!r}.")
        admin_url = _with_db_name(database_url, "postgres")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()

    def cleanup() -> None:
        if admin_url and not keep:
            import psycopg
            from django.db import connections
            from psycopg import sql

            connections.close_all()
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(db_name)))
        if redis_url and not keep:
            import redis

            redis.Redis.from_url(redis_url).flushdb()

    return cleanup


def _setup_data() -> tuple[Any, Any, str]:
    """The catalog plus the bench model, a user with plenty of credits on an unlimited plan, a project and
    an API token."""
    from datetime import date
    from decimal import Decimal

    from django.core.management import call_command

    from accounts.services import api_token_create
    from bench.plans import bench_plan_assign
    from billing.signup import user_create
    from generations.models import AIModel, Operation, PriceCard, PriceUnit
    from projects.services import project_create

    with redirect_stdout(io.StringIO()):
        call_command("migrate", verbosity=0, interactive=False)
        call_command("catalog_load")
    model = AIModel.objects.create(
        id=MODEL_ID, provider="bench", provider_model="instant", name="Bench instant",
        description="Returns a pre-made 64x64 PNG at once (bench/instant.py).",
        operation=Operation.TEXT_TO_IMAGE, output_kind="image", timeout_seconds=60,
        input_schema={"type": "object", "additionalProperties": False, "required": ["prompt"],
                      "properties": {"prompt": {"type": "string", "minLength": 1, "maxLength": 200}}},
    )
    PriceCard.objects.create(model=model, version=1, unit=PriceUnit.IMAGE, usd_per_unit=Decimal("0.01"),
                             effective_from=date(2026, 1, 1), source="bench")
    user = user_create(email="bench@example.com", password=None, starter_credits=STARTER_CREDITS)
    bench_plan_assign(user=user)
    project = project_create(owner=user, name="Bench")
    _, token = api_token_create(user=user, name="bench")
    return user, project, token


class Bench:
    def __init__(self, project: Any, token: str, *, check_every: float = 0.002) -> None:
        from rest_framework.test import APIClient

        # How often the bench looks for a result: 2 ms, so that a latency is not rounded up by the
        # look. Each look is a query (or a result-file read) on the machine being measured; a smoke
        # run, whose figures are not measurements, looks less often and leaves the cores to the work.
        self.check_every = check_every
        self.project_id = str(project.pk)
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        self.submitted: list[str] = []
        self.worker: Worker | None = None

    # -- the two operations --

    def submit(self, i: int) -> str:
        response = self.client.post("/api/v1/generations", {"project": self.project_id, "model": MODEL_ID,
                                                            "inputs": {"prompt": f"bench {i}"}}, format="json")
        if response.status_code != 202:
            raise RuntimeError(f"POST /api/v1/generations: {response.status_code} {response.content[:500]!r}")
        gid = response.json()["id"]
        self.submitted.append(gid)
        return gid

    def wait_succeeded(self, gid: str, *, timeout: float = 90) -> None:
        # A generous limit: a cold worker process's first job loads the pipeline's modules, which on a
        # busy 2-core machine (the suite's smoke run beside the other test leg) has taken over 15 s.
        from generations.models import Generation, Status

        deadline = time.monotonic() + timeout
        while True:
            state = Generation.objects.filter(pk=gid).values_list("status", flat=True).first()
            if state == Status.SUCCEEDED:
                return
            if state in (Status.FAILED, Status.CANCELED):
                raise RuntimeError(f"Generation {gid} {state}: {self._error(gid)}")
            if time.monotonic() > deadline:
                self._worker_check()
                raise RuntimeError(f"Generation {gid} still {state} after {timeout}s.")
            time.sleep(self.check_every)

    @staticmethod
    def _error(gid: str) -> str:
        from generations.models import Generation

        row = Generation.objects.filter(pk=gid).values("error_code", "error_message").first() or {}
        return f"{row.get('error_code')}: {row.get('error_message')}"

    def _worker_check(self) -> None:
        if self.worker is not None:
            self.worker.check_alive()

    @staticmethod
    def verify_one(gid: str) -> None:
        """Outcome, not just status: one stored asset and a settled hold."""
        from django.core.files.storage import default_storage

        from assets.models import Asset
        from billing.models import Hold, HoldStatus

        assets = list(Asset.objects.filter(generation_id=gid).values_list("file", flat=True))
        if len(assets) != 1 or not default_storage.exists(assets[0]):
            raise RuntimeError(f"Generation {gid}: expected one stored asset, found {assets}.")
        hold = Hold.objects.filter(reference=f"generation:{gid}").values_list("status", flat=True).first()
        if hold != HoldStatus.SETTLED:
            raise RuntimeError(f"Generation {gid}: hold is {hold}, not settled.")

    # -- measurements --

    def noop_latency(self, n: int) -> Stats:
        from bench.worker import noop

        stats = Stats()
        for _ in range(n):
            t0 = time.perf_counter()
            noop.apply_async().get(timeout=30, interval=self.check_every)
            stats.samples_ms.append((time.perf_counter() - t0) * 1000)
        return stats

    def generation_latency(self, n: int) -> Stats:
        stats = Stats()
        for i in range(n):
            t0 = time.perf_counter()
            gid = self.submit(i)
            self.wait_succeeded(gid)
            stats.samples_ms.append((time.perf_counter() - t0) * 1000)
            self.verify_one(gid)
        return stats

    def noop_throughput(self, n: int) -> float:
        from bench.worker import noop

        t0 = time.perf_counter()
        results = [noop.apply_async() for _ in range(n)]
        for result in results:
            result.get(timeout=120, interval=self.check_every)
        return n / (time.perf_counter() - t0)

    def generation_throughput(self, n: int) -> tuple[float, float]:
        """Generations per second from the first POST to the last success, with the API and the worker
        sharing the machine, and the API's accept rate meanwhile."""
        t0 = time.perf_counter()
        ids = [self.submit(i) for i in range(n)]
        accepted = n / (time.perf_counter() - t0)
        self.wait_all_succeeded(ids)
        return n / (time.perf_counter() - t0), accepted

    def wait_all_succeeded(self, ids: list[str], *, timeout: float = 300) -> None:
        from generations.models import Generation, Status

        deadline = time.monotonic() + timeout
        while True:
            counts = _status_counts(ids)
            if counts.get(Status.SUCCEEDED, 0) == len(ids):
                return
            if counts.get(Status.FAILED) or counts.get(Status.CANCELED):
                bad = Generation.objects.filter(pk__in=ids).exclude(status=Status.SUCCEEDED).first()
                raise RuntimeError(f"Generation {bad.pk} {bad.status}: {self._error(str(bad.pk))}")
            if time.monotonic() > deadline:
                self._worker_check()
                raise RuntimeError(f"Only {counts.get(Status.SUCCEEDED, 0)} of {len(ids)} succeeded in {timeout}s.")
            time.sleep(0.01)

    def generation_drain(self, n: int, start_worker: Callable[[], Worker]) -> tuple[float, float]:
        """Queue n generations with no worker running (the API alone: accepted per second), then start
        the worker and time the backlog from the rows' own timestamps (worker only: gen/s)."""
        from django.db.models import Max, Min

        from generations.models import Generation

        t0 = time.perf_counter()
        ids = [self.submit(i) for i in range(n)]
        accepted = n / (time.perf_counter() - t0)
        worker = start_worker()
        self.worker = worker
        self.wait_all_succeeded(ids)
        worker.stop()
        span = Generation.objects.filter(pk__in=ids).aggregate(first=Min("started_at"), last=Max("finished_at"))
        return n / (span["last"] - span["first"]).total_seconds(), accepted

    def noop_drain(self, n: int, start_worker: Callable[[], Worker]) -> float:
        """n no-ops queued with no worker running, then drained: tasks/s between the first and last
        result's date_done (n - 1 intervals)."""
        from bench.worker import noop

        results = [noop.apply_async() for _ in range(n)]
        worker = start_worker()
        self.worker = worker
        for result in results:
            result.get(timeout=120, interval=self.check_every)
        worker.stop()
        done = sorted(result.date_done for result in results)
        return (n - 1) / (done[-1] - done[0]).total_seconds()

    def wait_ready(self, worker: Worker) -> None:
        from bench.worker import noop

        self.worker = worker
        deadline = time.monotonic() + 90
        while True:
            worker.check_alive()
            try:
                noop.apply_async().get(timeout=5, interval=0.05)
                return
            except Exception as exc:  # celery's TimeoutError: the worker is still starting
                if time.monotonic() > deadline:
                    raise RuntimeError(f"The {worker.label} worker did not answer in 90s; see "
                                       f"{worker.log_path}.") from exc


def _status_counts(ids: list[str]) -> dict[str, int]:
    from django.db.models import Count

    from generations.models import Generation

    return {row["status"]: row["n"] for row in
            Generation.objects.filter(pk__in=ids).values("status").annotate(n=Count("id"))}


def _verify_ledger(user: Any, generations: int) -> str:
    from django.core.management import call_command
    from django.db.models import Sum

    from assets.models import Asset
    from billing.models import LedgerAccount
    from generations.models import Generation, Status

    out = io.StringIO()
    call_command("ledger_verify", stdout=out)  # raises CommandError on any drift
    succeeded = Generation.objects.filter(status=Status.SUCCEEDED).count()
    charged = Generation.objects.aggregate(total=Sum("credits_charged"))["total"] or 0
    wallet = LedgerAccount.objects.get(user=user)
    assets = Asset.objects.filter(generation__isnull=False).count()
    problems = []
    if succeeded != generations:
        problems.append(f"{succeeded} of {generations} generations succeeded")
    if charged != generations:
        problems.append(f"{charged} credits charged for {generations} generations")
    if wallet.balance != STARTER_CREDITS - generations or wallet.held != 0:
        problems.append(f"wallet balance {wallet.balance}, held {wallet.held}")
    if assets != generations:
        problems.append(f"{assets} assets for {generations} generations")
    if problems:
        raise RuntimeError("Ledger check failed: " + "; ".join(problems))
    return out.getvalue().strip()


def child(args: argparse.Namespace) -> int:
    var_dir = Path(os.environ["STUDIO_VAR_DIR"])
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    cleanup = _prepare_servers(args.keep, args.db_name)
    workers: list[Worker] = []

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        import logging

        import django

        django.setup()
        # kombu warns that a filesystem:// URL has no host, once per connection.
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)
        from django.conf import settings

        from bench.worker import configure, uses_filesystem_broker

        configure()
        filesystem = uses_filesystem_broker()
        db = "postgresql" if settings.DATABASES["default"]["ENGINE"].endswith("postgresql") else "sqlite"
        broker = "filesystem broker" if filesystem else "redis"
        user, project, token = _setup_data()
        bench = Bench(project, token, check_every=0.02 if args.smoke else 0.002)
        worker_env = dict(os.environ)
        if filesystem:
            worker_env["BENCH_BROKER_POLLING_INTERVAL"] = str(args.polling_interval)

        def start(label: str, options: list[str], env: dict[str, str]) -> Worker:
            worker = Worker(label, options, var_dir, env, kill=args.smoke).start()
            workers.append(worker)
            bench.wait_ready(worker)
            return worker

        started = time.perf_counter()

        def progress(message: str) -> None:
            print(f"[bench {args.flavour} {time.perf_counter() - started:5.1f}s] {message}", file=sys.stderr,
                  flush=True)

        progress("latency: starting a solo worker")
        # Latency: one job at a time on a solo worker, so only the pipeline itself is in the number.
        solo = start("solo", ["--pool=solo"], worker_env)
        bench.noop_latency(args.warmup)
        for i in range(args.warmup):
            bench.wait_succeeded(bench.submit(i))
        progress(f"latency: {args.n} no-ops")
        noop_lat = bench.noop_latency(args.n)
        progress(f"latency: {args.n} generations")
        gen_lat = bench.generation_latency(args.n)
        solo.stop()
        progress("throughput: starting a prefork worker")

        # Throughput: a burst of N on a prefork worker with one process per core.
        pool = start("prefork", ["--pool=prefork", "--concurrency=2"], worker_env)
        bench.noop_throughput(args.warmup)
        for i in range(args.warmup):
            bench.wait_succeeded(bench.submit(i))
        progress(f"throughput: bursts of {args.n} no-ops and {args.n} generations")
        noop_rate = bench.noop_throughput(args.n)
        gen_rate, accept_rate = bench.generation_throughput(args.n)
        pool.stop()
        progress("throughput: backlogs drained by a fresh worker")

        # Worker only: a backlog queued while no worker runs, then drained by the same prefork worker.
        def start_pool() -> Worker:
            worker = Worker("prefork-drain", ["--pool=prefork", "--concurrency=2"], var_dir, worker_env,
                            kill=args.smoke).start()
            workers.append(worker)
            return worker

        gen_drain, api_alone = bench.generation_drain(args.n, start_pool)
        noop_drain = bench.noop_drain(args.n, start_pool)

        # What `make run` users get: the studio's configured filesystem polling (no bench override).
        as_configured: tuple[Stats, Stats] | None = None
        if filesystem and args.as_configured_n > 0:
            progress(f"as configured: {args.as_configured_n} of each at the studio's broker polling")
            env = {k: v for k, v in worker_env.items() if k != "BENCH_BROKER_POLLING_INTERVAL"}
            default = start("default-polling", ["--pool=solo"], env)
            as_configured = bench.noop_latency(args.as_configured_n), bench.generation_latency(args.as_configured_n)
            default.stop()
        elapsed = time.perf_counter() - started

        ledger = _verify_ledger(user, len(bench.submitted))
        _report(db=db, broker=broker, n=args.n, noop_lat=noop_lat, gen_lat=gen_lat, noop_rate=noop_rate,
                gen_rate=gen_rate, accept_rate=accept_rate, gen_drain=gen_drain, noop_drain=noop_drain,
                api_alone=api_alone, as_configured=as_configured,
                polling=args.polling_interval if filesystem else None, generations=len(bench.submitted),
                ledger=ledger, elapsed=elapsed)
        return 0
    finally:
        for worker in workers:
            worker.stop()
        cleanup()


def _report(*, db: str, broker: str, n: int, noop_lat: Stats, gen_lat: Stats, noop_rate: float, gen_rate: float,
            accept_rate: float, gen_drain: float, noop_drain: float, api_alone: float, as_configured: tuple[Stats, Stats] | None, polling: float | None,
            generations: int, ledger: str, elapsed: float) -> None:
    import celery
    import django

    title = f"pipeline overhead ({db} + {broker})"
    if polling is not None:
        title += f", broker polling {polling * 1000:g} ms"
    lines = [
        "",
        title,
        f"{'':26}{'median ms':>10}{'p95 ms':>10}",
        f"{'celery no-op round trip':26}{noop_lat.median:>10.1f}{noop_lat.p95:>10.1f}",
        f"{'generation end to end':26}{gen_lat.median:>10.1f}{gen_lat.p95:>10.1f}"
        f"     ratio {gen_lat.median / noop_lat.median:.1f}x (p95 {gen_lat.p95 / noop_lat.p95:.1f}x)",
        f"throughput: {gen_rate:.1f} gen/s vs {noop_rate:.1f} no-op/s (ratio {noop_rate / gen_rate:.1f}x)"
        f"  [burst: API and worker together; API accepted {accept_rate:.1f}/s meanwhile]",
        f"worker only: {gen_drain:.1f} gen/s vs {noop_drain:.1f} no-op/s (ratio {noop_drain / gen_drain:.1f}x)"
        f"  [a queued backlog drained]; API alone: {api_alone:.1f} accepted/s",
    ]
    if as_configured is not None:
        noop_d, gen_d = as_configured
        lines += [
            f"as configured (BROKER_POLLING_INTERVAL, default 0.1 s), n={len(noop_d.samples_ms)}:",
            f"{'  celery no-op round trip':26}{noop_d.median:>10.1f}{noop_d.p95:>10.1f}",
            f"{'  generation end to end':26}{gen_d.median:>10.1f}{gen_d.p95:>10.1f}",
        ]
    lines += [
        f"n={n} sequential for latency (solo worker), n={n} burst for throughput (prefork, 2 processes); "
        f"{generations} generations in all",
        f"{ledger} Charged {generations} credits for {generations} generations.",
        f"Python {sys.version.split()[0]}, Django {django.get_version()}, Celery {celery.__version__}, "
        f"{os.cpu_count()} CPUs; measured in {elapsed:.0f}s",
    ]
    print("\n".join(lines), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", "200")),
                        help="jobs per measurement (env BENCH_N; default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="jobs of each kind before measuring")
    parser.add_argument("--both", action="store_true",
                        help="require the PostgreSQL + Redis flavour too (by default it runs when reachable)")
    parser.add_argument("--sqlite-only", action="store_true", help="run the embedded flavour only")
    parser.add_argument("--polling-interval", type=float, default=0.005,
                        help="filesystem broker polling, seconds (kombu's default is 1.0; see BENCHMARKS.md)")
    parser.add_argument("--as-configured-n", type=int, default=10,
                        help="jobs measured with the studio's configured polling as well (filesystem broker; 0 skips)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database and Redis db afterwards")
    parser.add_argument("--db-name", default=BENCH_DB_NAME,
                        help=f"the PostgreSQL database it drops and creates (default {BENCH_DB_NAME}; must contain 'bench')")
    parser.add_argument("--redis-db", type=int, default=BENCH_REDIS_DB,
                        help=f"the Redis db number it flushes (default {BENCH_REDIS_DB})")
    parser.add_argument("--smoke", action="store_true",
                        help="allow --n down to 2, look for results every 20 ms, not 2, and kill workers rather "
                             "than stop them: a check that the bench runs, not a measurement")
    parser.add_argument("--flavour", help=argparse.SUPPRESS)
    args = parser.parse_args()
    least = 2 if args.smoke else 20
    if args.n < least or args.warmup < 1:
        parser.error(f"--n must be at least {least} (for a p95) and --warmup at least 1")
    scratch_name_check(args.db_name)
    return child(args) if args.flavour else parent(args)


if __name__ == "__main__":
    sys.exit(main())
