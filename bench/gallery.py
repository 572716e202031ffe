"""`make bench` (gallery): the gallery at 100,000 assets, first page and page 1,000 by cursor, against the
raw SQL query for the same page.

One user owns `--n` assets (100,000 by default) and nine others own `--others` more, so the index that
starts with the owner has to do its job. Rows are inserted with bulk_create (no files: the list never
opens them), with tags, ratings, favourites, a trash, ready previews, ties in created_at (bulk imports
share timestamps) and prompts drawn from a skewed vocabulary.

Measured, median and p95 of `--repeat` runs after a warm-up, each against the same page's baseline:

- **raw SQL (the baseline)**: the page query written by hand (`owner_id = … AND deleted_at IS NULL AND
  (created_at, id) < (…) ORDER BY created_at DESC, id DESC LIMIT 51`), run with a cursor on the same
  connection, rows fetched as tuples;
- **selector**: `assets.library.selectors.asset_gallery_for_user`, what both the API and the page call: the
  same page as model instances, with its tags (a second query);
- **API**: `GET /api/v1/assets` through DRF's APIClient with a Bearer token, DEBUG off: token
  authentication, the plan's rate limit, the query, serialization and JSON included; on PostgreSQL
  also the part of it spent executing its queries; and the same request for an empty project, which is
  what any authenticated API call costs before it has rows to read (its fixed cost).

Page 1,000 is reached by walking the 999 pages before it with their `next` cursors (which also checks
that the walk saw every asset once). The same for `sort=rating`, and for one filtered and searched page
(kind + tag + full-text `q`), whose baseline is the SQL the ORM ran, re-run raw. Also printed: the
number of queries an API page runs at depth 1 and 1,000, and EXPLAIN for the main queries.

Flavours: `postgres` (the default; a database of its own, `studio_gallery_bench`, created and dropped on
the server named by DATABASE_URL, default postgres://postgres@127.0.0.1:5432; without a reachable
server it says so and exits 0) and `sqlite` (`--sqlite`, a file under var/bench/gallery/, or
$BENCH_VAR_DIR/gallery/). Django's settings are fixed at import, so the script re-runs itself once per
flavour (`--flavour`). The measured user is on the bench's unlimited plan (bench/plans.py): the API
part alone makes thousands of calls a minute. The suite's smoke test runs it with a few hundred assets
and `--depth 3`, on a database named after the test database (`--db-name`, which must contain "bench").

    .venv/bin/python bench/gallery.py [--n 100000] [--others 50000] [--repeat 40] [--sqlite | --sqlite-only] [--db-name NAME] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB_NAME = "studio_gallery_bench"
PAGE_SIZE = 50
DEPTH = 1000
OTHER_USERS = 9
BATCH = 5000
TIES = 5  # assets per shared created_at, as a bulk import writes them

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.paths import bench_var_dir  # noqa: E402
from bench.scratch_db import database_recreate, reachable, scratch_name_check, server_url, with_db_name  # noqa: E402

BENCH_DIR = bench_var_dir("gallery")

# A prompt vocabulary drawn with Zipf-like weights: a few words are everywhere, most are rare.
VOCAB = """portrait landscape cinematic lighting neon city night rain street reflection golden hour sunset
forest mountain river ocean wave storm cloud fog mist desert dune canyon glacier aurora galaxy nebula
planet moon star astronaut robot android cyborg dragon castle knight wizard witch elf dwarf goblin
samurai ninja pirate ship harbor lighthouse bridge tower skyscraper alley market cafe kitchen library
studio bedroom garden greenhouse flower rose tulip orchid cherry blossom maple oak pine bamboo fox wolf
bear owl eagle raven cat dog horse deer whale octopus jellyfish butterfly beetle watercolor oil
painting sketch charcoal ink pastel photograph film grain bokeh macro wide angle telephoto isometric
lowpoly voxel pixel anime manga comic noir vaporwave synthwave cyberpunk steampunk baroque gothic
minimalist surreal abstract ethereal moody vibrant pastel muted monochrome sepia red blue green
amber violet teal crimson silver gold marble glass chrome velvet""".split()
TAGS = ["hero", "keyframe", "moodboard", "reference", "final", "draft", "client", "approved", "rejected",
        "poster", "thumbnail", "storyboard", "character", "environment", "prop", "texture", "logo", "color",
        "lighting", "composition", "v1", "v2", "v3", "alt", "wip", "print", "social", "banner", "icon", "bg",
        "night", "day", "interior", "exterior", "closeup", "wide", "portrait", "landscape", "square", "pick"]
KINDS = [("image", "image/png", 90), ("video", "video/mp4", 5), ("audio", "audio/mpeg", 3), ("text", "text/plain", 2)]
FRAMES = [(1024, 1024), (1344, 768), (768, 1344), (1920, 1080), (1080, 1920), (2048, 2048), (1216, 832)]
MODELS = [("local/sketch", "local"), ("fal-ai/flux/schnell", "fal"), ("fal-ai/flux/dev", "fal"),
          ("black-forest-labs/flux-1.1-pro", "replicate"), ("stability-ai/sdxl", "replicate")]
BLURHASH = "LEHV6nWB2yk8pyo0adR*.7kCMdnj"


# --- the parent: one child process per flavour ------------------------------------------------------









def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="the measured user's assets")
    parser.add_argument("--others", type=int, default=50_000, help="other users' assets, in the same table")
    parser.add_argument("--repeat", type=int, default=40, help="timed runs per measurement")
    parser.add_argument("--depth", type=int, default=DEPTH, help="the deep page's number")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--sqlite", action="store_true", help="also run on SQLite")
    group.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--db-name", default=BENCH_DB_NAME,
                        help=f"the scratch PostgreSQL database, dropped and created (default {BENCH_DB_NAME})")
    parser.add_argument("--keep", action="store_true", help="keep the scratch PostgreSQL database afterwards")
    parser.add_argument("--flavour", choices=["postgres", "sqlite"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    scratch_name_check(args.db_name)
    if args.n < 1 or args.others < 0 or args.repeat < 1 or args.depth < 2:
        parser.error("--n and --repeat must be at least 1, --others at least 0, --depth at least 2")
    if args.flavour:
        return run_flavour(args)

    flavours = ["sqlite"] if args.sqlite_only else ["postgres", "sqlite"] if args.sqlite else ["postgres"]
    status = 0
    for flavour in flavours:
        command = [sys.executable, __file__, "--flavour", flavour, "--n", str(args.n), "--others", str(args.others),
                   "--repeat", str(args.repeat), "--depth", str(args.depth), "--db-name", args.db_name]
        command += ["--keep"] if args.keep else []
        status = max(status, subprocess.run(command, cwd=ROOT).returncode)
    return status


# --- the child: one database, populated, measured ---------------------------------------------------

def _configure_django(flavour: str, db_name: str) -> None:
    var = BENCH_DIR / flavour
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "MEDIA_ROOT", "DB_CONN_MAX_AGE"):
        os.environ.pop(name, None)  # no Redis needed: see the cache below
    if flavour == "postgres":
        os.environ["DATABASE_URL"] = with_db_name(server_url(), db_name)
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{var / 'studio.sqlite3'}"  # production's has no default
    os.environ.update({
        # The production settings (DEBUG off): with DEBUG on, Django keeps every query in memory.
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "STUDIO_VAR_DIR": str(var),
        "SECURE_SSL_REDIRECT": "0",  # the test client speaks plain HTTP
        "SECRET_KEY": "bench-only-not-a-secret",
        "KEY_ENCRYPTION_KEYS": "bench:" + base64.b64encode(b"g" * 32).decode(),
        "ALLOWED_HOSTS": "testserver",
        "LOG_LEVEL": "WARNING",
    })
    import django
    from django.conf import settings

    django.setup()
    # The plan's rate-limit counters, which every API call bumps: in memory, as in Redis in production,
    # rather than in the development file cache, whose writes would be timed here too.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def run_flavour(args: argparse.Namespace) -> int:
    admin_url = with_db_name(server_url(), "postgres")
    if args.flavour == "postgres":
        if not reachable(admin_url):
            host = urllib.parse.urlsplit(server_url()).hostname
            print(f"Gallery bench (PostgreSQL) skipped: PostgreSQL at {host} is not reachable.")
            return 0
        database_recreate(admin_url, args.db_name)
    try:
        _configure_django(args.flavour, args.db_name)
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        owner, token = populate(args.n, args.others)
        print(f"\nGallery on {_vendor_label()}: {args.n:,} assets of one user + {args.others:,} of "
              f"{OTHER_USERS} others, inserted in {time.perf_counter() - started:.0f} s; page size {PAGE_SIZE}, "
              f"{args.repeat} timed runs each (median / p95, ms)")
        status = measure(owner, token, repeat=args.repeat, depth=args.depth)
        connections.close_all()
    finally:
        if args.flavour == "postgres" and not args.keep:
            database_recreate(admin_url, args.db_name, drop_only=True)
    return status


def _vendor_label() -> str:
    from django.db import connection

    if connection.vendor == "postgresql":
        return f"PostgreSQL {connection.pg_version // 10000}"
    import sqlite3

    return f"SQLite {sqlite3.sqlite_version}"


def populate(n: int, others: int, seed: int = 5) -> tuple[Any, str]:
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import User
    from accounts.services import api_token_create
    from assets.models import Asset, Tag
    from bench.plans import bench_plan_assign
    from projects.models import Project

    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(VOCAB))]
    owner = User.objects.create_user(email="gallery-owner@example.com", password=None)
    users = [owner] + [User.objects.create_user(email=f"gallery-other-{i}@example.com", password=None)
                       for i in range(OTHER_USERS)]
    # API calls are rate limited per plan; the bench makes thousands in a minute.
    bench_plan_assign(user=owner)
    _, token = api_token_create(user=owner, name="bench")
    projects = {u.pk: [Project.objects.create(owner=u, name=f"Project {i}") for i in range(5 if u == owner else 1)]
                for u in users}
    tags = {u.pk: [Tag.objects.create(owner=u, name=name) for name in (TAGS if u == owner else TAGS[:5])]
            for u in users}

    created_at = Asset._meta.get_field("created_at")
    created_at.auto_now_add = False  # rows carry their own history (auto_now_add would stamp "now")
    now = timezone.now()
    start = now - timedelta(days=730)
    plan_rows = [(owner, i) for i in range(n)] + [(users[1 + i % OTHER_USERS], i) for i in range(others)]
    rng.shuffle(plan_rows)  # users' uploads interleave in the table, as they do in life
    through = Asset.tags.through
    try:
        for offset in range(0, len(plan_rows), BATCH):
            assets, links = [], []
            for user, i in plan_rows[offset:offset + BATCH]:
                asset, tag_names = _row(rng, weights, user, i, projects[user.pk], tags[user.pk], start, n + others, now)
                assets.append(asset)
                links += [through(asset_id=asset.pk, tag_id=tag.pk) for tag in tag_names]
            with transaction.atomic():
                Asset.objects.bulk_create(assets)
                through.objects.bulk_create(links)
    finally:
        created_at.auto_now_add = True
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE" if connection.vendor == "sqlite" else "VACUUM ANALYZE assets_asset")
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE assets_asset_tags")
    return owner, token


def _row(rng: random.Random, weights: list[float], user: Any, i: int, projects: list[Any], tags: list[Any],
         start: Any, total: int, now: Any) -> tuple[Any, list[Any]]:
    from assets.models import Asset

    kind, mime, _ = rng.choices(KINDS, weights=[k[2] for k in KINDS])[0]
    width, height = rng.choice(FRAMES) if kind in ("image", "video") else (None, None)
    generated = rng.random() < 0.7
    model_id, provider = rng.choice(MODELS) if generated else ("", "")
    prompt = " ".join(rng.choices(VOCAB, weights=weights, k=rng.randint(5, 14))) if generated else ""
    chosen = rng.sample(tags, rng.randint(1, 3)) if rng.random() < 0.3 else []
    notes = "client liked this one" if rng.random() < 0.02 else ""
    name = f"{rng.choice(VOCAB)}_{i:06d}.{mime.split('/')[1].replace('mpeg', 'mp3').replace('plain', 'txt')}"
    ready = kind != "text" and rng.random() < 0.95
    asset_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    asset = Asset(
        id=asset_id, owner_id=user.pk, project=rng.choice(projects), kind=kind, name=name,
        file=f"bench/{asset_id.hex}.bin", mime=mime, size=rng.randint(10_000, 8_000_000),
        sha256=hashlib.sha256(asset_id.bytes).hexdigest(), width=width, height=height,
        source="generation" if generated else "upload", prompt=prompt, model_id=model_id, provider=provider,
        aspect=(width / height) if width and height else None, favourite=rng.random() < 0.05,
        rating=rng.randint(1, 5) if rng.random() < 0.3 else None, notes=notes,
        deleted_at=now if rng.random() < 0.01 else None,
        preview_status="ready" if ready else "none",
        thumb_small=f"previews/bench/{asset_id.hex}-small.webp" if ready else "",
        thumb_large=f"previews/bench/{asset_id.hex}-large.webp" if ready else "",
        blurhash=BLURHASH if ready else "",
        created_at=start + timedelta(seconds=(i // TIES) * (730 * 86400 // max(total // TIES, 1))),
    )
    asset.search_text = " ".join(part for part in (name, prompt, notes, *[t.name for t in chosen]) if part)
    return asset, chosen


# --- measuring -------------------------------------------------------------------------------------

def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]


def _walk(owner: Any, params: dict[str, Any], page: int) -> tuple[str | None, int, int]:
    """The cursor of page `page` (or of the last page, if there are fewer), reached by following `next`
    from the first page; that page's number; and how many distinct assets the pages before it held."""
    from assets.library.selectors import asset_gallery_for_user

    cursor, seen, number = None, set(), 1
    while number < page:
        result = asset_gallery_for_user(owner, {**params, **({"cursor": cursor} if cursor else {})})
        if result.next_cursor is None:
            break
        seen.update(a.pk for a in result.assets)
        cursor, number = result.next_cursor, number + 1
    return cursor, number, len(seen)


def _columns() -> str:
    from assets.models import Asset

    return ", ".join(f'"assets_asset"."{f.column}"' for f in Asset._meta.concrete_fields if f.name != "search_text")


def _raw_newest(owner: Any, cursor: str | None) -> tuple[str, list[Any]]:
    """The page query as one would write it by hand."""
    from django.db import connection

    from assets.library.gallery import SORTS, cursor_decode
    from assets.models import Asset

    sql = f'SELECT {_columns()} FROM "assets_asset" WHERE "assets_asset"."owner_id" = %s AND "assets_asset"."deleted_at" IS NULL'
    params: list[Any] = [owner.pk]
    if cursor:
        created, pk = cursor_decode(cursor, SORTS["newest"]).values
        sql += ' AND ("assets_asset"."created_at", "assets_asset"."id") < (%s, %s)'
        params += [Asset._meta.get_field("created_at").get_db_prep_value(created, connection),
                   Asset._meta.pk.get_db_prep_value(pk, connection)]
    sql += f' ORDER BY "assets_asset"."created_at" DESC, "assets_asset"."id" DESC LIMIT {PAGE_SIZE + 1}'
    return sql, params


def _orm_sql(owner: Any, params: dict[str, Any]) -> str:
    """The SQL of the selector's page query, as the database received it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from assets.library.selectors import asset_gallery_for_user

    with CaptureQueriesContext(connection) as ctx:
        asset_gallery_for_user(owner, params)
    return next(q["sql"] for q in ctx.captured_queries if 'FROM "assets_asset"' in q["sql"])


def _run_raw(sql: str, params: list[Any] | None = None) -> Callable[[], Any]:
    from django.db import connection

    def run() -> Any:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    return run


def _explain(sql: str, params: list[Any] | None = None) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params)
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join("    " + " ".join(str(c) for c in row if c is not None) for row in cursor.fetchall())


def measure(owner: Any, token: str, *, repeat: int, depth: int) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from assets.library.selectors import asset_gallery_for_user
    from assets.models import Asset
    from projects.models import Project

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    live = Asset.objects.filter(owner=owner, deleted_at__isnull=True).count()  # setup only, not measured
    status = 0

    def api(params: dict[str, Any]) -> Callable[[], Any]:
        def run() -> Any:
            response = client.get("/api/v1/assets", {**params, "page_size": PAGE_SIZE})
            assert response.status_code == 200, response.content[:300]
            return response
        return run

    def selector(params: dict[str, Any]) -> Callable[[], Any]:
        return lambda: asset_gallery_for_user(owner, {**params, "page_size": PAGE_SIZE})

    def database_time(params: dict[str, Any]) -> tuple[float, float]:
        """Of an API request's time, the part spent in the database (every query it ran)."""
        spent: list[float] = []

        def clock(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                spent.append(time.perf_counter() - started)

        def run() -> None:
            spent.clear()
            api(params)()
            totals.append(sum(spent) * 1000)

        totals: list[float] = []
        with connection.execute_wrapper(clock):
            _timed(run, repeat)
        totals = sorted(totals[3:])  # after the warm-up
        return statistics.median(totals), totals[min(len(totals) - 1, int(round(0.95 * (len(totals) - 1))))]

    def queries(params: dict[str, Any]) -> int:
        api(params)()  # the token's last-use stamp is written at most once a minute: not the page's cost
        with CaptureQueriesContext(connection) as ctx:
            api(params)()
        if any("COUNT(" in q["sql"].upper() for q in ctx.captured_queries):
            raise AssertionError("a gallery page ran a COUNT")
        return len(ctx)

    rows: list[tuple[str, str, dict[int, tuple[float, float]]]] = []
    query_counts: list[tuple[str, int, int]] = []
    explains: list[tuple[str, str]] = []

    # Newest first: the gallery as it opens.
    started = time.perf_counter()
    deep, reached, seen = _walk(owner, {"page_size": PAGE_SIZE}, depth)
    walk_seconds = time.perf_counter() - started
    if reached != depth or seen != (depth - 1) * PAGE_SIZE:
        print(f"!! the walk to page {depth} reached page {reached} and saw {seen:,} distinct assets")
        return 1
    cursors = {1: None, depth: deep}
    results: dict[str, dict[int, tuple[float, float]]] = {"raw": {}, "selector": {}, "api": {}}
    for page, cursor in cursors.items():
        params = {"cursor": cursor} if cursor else {}
        sql, sql_params = _raw_newest(owner, cursor)
        expected = [r[0] for r in _run_raw(sql, sql_params)()][:PAGE_SIZE]
        got = [a.pk for a in asset_gallery_for_user(owner, {**params, "page_size": PAGE_SIZE}).assets]
        if [Asset._meta.pk.to_python(x) for x in expected] != got:
            print(f"!! page {page}: the selector's rows differ from the raw query's")
            status = 1
        results["raw"][page] = _timed(_run_raw(sql, sql_params), repeat)
        results["selector"][page] = _timed(selector(params), repeat)
        results["api"][page] = _timed(api(params), repeat)
        if connection.vendor == "postgresql":  # psycopg has the rows when execute returns; sqlite3 not yet
            results.setdefault("api_db", {})[page] = database_time(params)
    # What any authenticated API call costs before there is a page to read: the same request for an
    # empty project (token, plan throttle, DRF, one index probe that finds nothing, JSON).
    empty = Project.objects.create(owner=owner, name="Empty")
    results["api_empty"] = {page: _timed(api({"project": str(empty.pk)}), repeat) for page in cursors}
    rows += [("raw SQL, page query (baseline)", "raw", results["raw"]),
             ("selector: page + its tags", "selector", results["selector"]),
             ("API: GET /api/v1/assets", "api", results["api"])]
    if "api_db" in results:
        rows.append(("API: of which in its 5 queries", "api_db", results["api_db"]))
    rows.append(("API: an empty page (fixed cost)", "api_empty", results["api_empty"]))
    query_counts.append(("newest", queries({}), queries({"cursor": deep})))
    explains.append((f"newest, page {depth} (raw page query)", _explain(*_raw_newest(owner, deep))))

    # The rating sort: six distinct keys, where an OFFSET-on-ties cursor would crawl.
    rated_deep, _, _ = _walk(owner, {"sort": "rating", "page_size": PAGE_SIZE}, depth)
    rating = {"raw": {}, "api": {}}
    for page, cursor in {1: None, depth: rated_deep}.items():
        params = {"sort": "rating", **({"cursor": cursor} if cursor else {})}
        rating["raw"][page] = _timed(_run_raw(_orm_sql(owner, {**params, "page_size": PAGE_SIZE})), repeat)
        rating["api"][page] = _timed(api(params), repeat)
    rows += [("sort=rating: raw SQL (baseline)", "raw", rating["raw"]), ("sort=rating: API", "api", rating["api"])]
    query_counts.append(("sort=rating", queries({"sort": "rating"}), queries({"sort": "rating", "cursor": rated_deep})))

    # One filtered and searched page: images with a tag, matching a word, and a page deeper by cursor.
    word, tag = VOCAB[0], TAGS[0]
    search = {"kind": "image", "tag": tag, "q": word}
    search_deep, search_deep_page, found = _walk(owner, {**search, "page_size": PAGE_SIZE}, 10)
    filtered = {"raw": {}, "api": {}}
    for page, cursor in {1: None, search_deep_page: search_deep}.items():
        params = {**search, **({"cursor": cursor} if cursor else {})}
        filtered["raw"][page] = _timed(_run_raw(_orm_sql(owner, {**params, "page_size": PAGE_SIZE})), repeat)
        filtered["api"][page] = _timed(api(params), repeat)
    rows += [("kind+tag+q: raw SQL (baseline)", "raw", filtered["raw"]), ("kind+tag+q: API", "api", filtered["api"])]
    query_counts.append((f"kind=image&tag={tag}&q={word}", queries(search),
                         queries({**search, **({"cursor": search_deep} if search_deep else {})})))
    explains.append((f"kind=image&tag={tag}&q={word}, page 1 (the ORM's SQL)",
                     _explain(_orm_sql(owner, {**search, "page_size": PAGE_SIZE}))))

    # --- report ---
    print(f"The user has {live:,} assets outside the trash; page {depth} starts after {(depth - 1) * PAGE_SIZE:,} "
          f"of them (the walk there through the selector: {walk_seconds:.1f} s, every asset seen once). The filtered "
          f"search matched {found:,} assets before its page {search_deep_page}.\n")
    width = max(len(label) for label, _, _ in rows) + 2
    print(f"{'':<{width}}{'first page':>24}{'deep page':>24}{'deep / first':>14}")
    baseline: dict[int, tuple[float, float]] = {}
    for label, kind, timings in rows:
        pages = sorted(timings)
        if kind == "raw":
            baseline = timings
        cells = []
        for page in pages:
            median, p95 = timings[page]
            ratio = "" if kind == "raw" else f" {median / baseline[page][0]:.1f}×"
            cells.append(f"{median:6.2f} / {p95:6.2f}{ratio:>6}")
        if len(cells) == 1:  # a filtered list of one page has no deeper page
            print(f"{label:<{width}}{cells[0]:>24}{'—':>24}{'—':>14}")
            continue
        depth_ratio = timings[pages[1]][0] / timings[pages[0]][0]
        print(f"{label:<{width}}{cells[0]:>24}{cells[1]:>24}{depth_ratio:>13.2f}×")
    print(f"\n(deep page: {depth} for newest and rating, {search_deep_page} for the filtered search; "
          "n.n× after a timing is its ratio to the baseline of the same page)")
    print("\nQueries per API request (token, plan, page, tags; no COUNT):")
    for label, first, deep_count in query_counts:
        same = "same" if first == deep_count else "DIFFERENT"
        print(f"  {label:<40} first page {first}, deep page {deep_count} ({same})")
        if first != deep_count:
            status = 1
    for label, plan in explains:
        print(f"\nEXPLAIN {label}:\n{plan}")
    return status


if __name__ == "__main__":
    sys.exit(main())
