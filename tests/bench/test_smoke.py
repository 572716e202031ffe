"""Every benchmark `make bench` runs, run here with a tiny N: a broken benchmark fails the suite.

`make bench` once stopped at its first script's 11th job (a 429 from the Free plan) and nothing noticed
until someone ran it by hand. Each script runs as `make bench` runs it, as a subprocess of its own with
its own settings, and must exit 0 having printed its ratio lines; the figures of so small a run mean
nothing and are not checked.

Which leg runs what (the two legs of `make test` run side by side):

- SQLite leg: bench/run.py's SQLite flavour (filesystem broker) and bench/gallery.py on SQLite;
- PostgreSQL leg: bench/run.py's PostgreSQL + Redis flavour, bench/ledger.py and bench/gallery.py on
  PostgreSQL, on the leg's server with databases named after its test database (`test_studio_bench_…`,
  never the real bench's `studio_*_bench`) and the leg's own Redis db (which its tests flush anyway);
- the four scripts that use no database of the leg's (they set up their own SQLite or none) run once,
  split between the legs so that each leg pays about the same: adapters, previews and export in the
  SQLite leg, uploads in the PostgreSQL leg.

Scratch files go under this leg's STUDIO_VAR_DIR (`bench-smoke/`, through BENCH_VAR_DIR), apart from
the other leg's and from a real `make bench`'s var/bench/. The scripts run two at a time, so one's
waits (worker start-up, broker polling) overlap another's work.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
LEG = "postgres" if ON_POSTGRES else "sqlite"
SCRIPT_TIMEOUT = 600  # seconds; a script that hangs fails with its output rather than stalling the leg

pytestmark = [pytest.mark.worker, pytest.mark.timeout(1200)]


def _scratch_db(suffix: str) -> str:
    """A database name of this leg's own, derived from its test database's."""
    test_name = settings.DATABASES["default"].get("TEST", {}).get("NAME") or f"test_{settings.DATABASES['default']['NAME']}"
    return f"{test_name}_bench_{suffix}"


def _redis_db() -> str:
    return urllib.parse.urlsplit(os.environ.get("REDIS_URL", "")).path.lstrip("/") or "0"


@dataclass(frozen=True)
class Smoke:
    script: str
    args: tuple[str, ...]
    ratio_lines: tuple[str, ...]  # regular expressions, each matched in the script's stdout
    servers: tuple[str, ...] = ()  # which of the leg's DATABASE_URL and REDIS_URL it is given


def _smokes() -> dict[str, Smoke]:
    ratio = r"[\d.]+(?:x|×)"
    run_lines = (rf"generation end to end .* ratio {ratio} \(p95 {ratio}\)",
                 rf"throughput: .*\(ratio {ratio}\)", rf"worker only: .*\(ratio {ratio}\)",
                 r"Ledger OK: every posting balances")
    gallery_args = ("--n", "300", "--others", "50", "--repeat", "2", "--depth", "3")
    gallery_lines = (rf"selector: page \+ its tags .* {ratio}", rf"API: GET /api/v1/assets .* {ratio}",
                     r"newest +first page \d+, deep page \d+ \(same\)")
    if ON_POSTGRES:
        return {
            "run": Smoke("run.py", ("--smoke", "--n", "3", "--warmup", "1", "--db-name", _scratch_db("run"),
                                    "--redis-db", _redis_db()), run_lines, ("DATABASE_URL", "REDIS_URL")),
            "ledger": Smoke("ledger.py", ("--workers", "2", "--seconds", "0.2", "--db-name", _scratch_db("ledger")),
                            (rf"grant: one posting .*\({ratio}\)", rf"job: hold \+ settle .*\({ratio}\)",
                             r"Ledger check: 0 unbalanced postings, 0 wallets with drift"), ("DATABASE_URL",)),
            "gallery": Smoke("gallery.py", (*gallery_args, "--db-name", _scratch_db("gallery")), gallery_lines,
                             ("DATABASE_URL",)),
            "uploads": Smoke("uploads.py", ("--base-mb", "1", "--big-mb", "2"),
                             (rf"peak RSS, 2 MB vs 1 MB: {ratio} for {ratio} the bytes",)),
        }
    return {
        # --as-configured-n 0: that phase is the latency phase again with another worker to start.
        # and the workers' broker polling at 50 ms: an idle worker polling every 5 ms takes CPU from the rest.
        "run": Smoke("run.py", ("--smoke", "--n", "3", "--warmup", "1", "--as-configured-n", "0",
                                "--polling-interval", "0.05", "--sqlite-only"), run_lines),
        "adapters": Smoke("adapters.py", ("--n", "3", "--warmup", "1"),
                          (rf"openai chat .* ratio {ratio}", rf"replicate prediction .* ratio {ratio}")),
        "previews": Smoke("previews.py", ("--n", "1", "--repeat", "1", "--size", "640x480"),
                          (rf"vs Pillow resize\(\) +{ratio} the rate", r"The floors: ")),
        "export": Smoke("export.py", ("--small-mb", "1", "--large-mb", "2"),
                        (rf"Peak RSS, 2 MB vs 1 MB: .* {ratio} for an archive", rf"Throughput 2 MB: .* {ratio}",
                         r"Check 2 MB: \d+ entries, sizes match")),
        "gallery": Smoke("gallery.py", (*gallery_args, "--sqlite-only"), gallery_lines),
    }


SMOKES = _smokes()
# Each benchmark and the leg it runs in; the test for one the other leg runs is skipped here.
EVERY = {"run": "both", "gallery": "both", "ledger": "postgres", "adapters": "sqlite", "previews": "sqlite",
         "export": "sqlite", "uploads": "postgres"}


@dataclass(frozen=True)
class Outcome:
    command: str
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return (f"$ {self.command}\nexit {self.returncode}\n--- stdout (end) ---\n{self.stdout[-4000:]}\n"
                f"--- stderr (end) ---\n{self.stderr[-4000:]}")


def _env(scratch: Path, smoke: Smoke) -> dict[str, str]:
    # The scripts set their own settings module and STUDIO_VAR_DIR; the leg's servers only where given.
    drop = {"DJANGO_SETTINGS_MODULE", "STUDIO_VAR_DIR", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL",
            "MEDIA_ROOT", "BROKER_DIR", "BENCH_N", "BENCH_ADAPTER_N"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({name: os.environ[name] for name in smoke.servers})
    env.update({"BENCH_VAR_DIR": str(scratch), "PYTHONUNBUFFERED": "1"})
    return env


def _run(scratch: Path, smoke: Smoke) -> Outcome:
    command = [sys.executable, f"bench/{smoke.script}", *smoke.args]
    try:
        done = subprocess.run(command, cwd=ROOT, env=_env(scratch, smoke), capture_output=True, text=True,
                              timeout=SCRIPT_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        return Outcome(" ".join(command), -1, str(exc.stdout or ""), f"timed out after {SCRIPT_TIMEOUT}s")
    return Outcome(" ".join(command), done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, Outcome]]:
    scratch = (Path(settings.VAR_DIR) / "bench-smoke").resolve()
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    # The slowest first, so the two lanes finish close together.
    order = sorted(SMOKES, key=lambda name: name != "run")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_run, scratch, SMOKES[name]) for name in order}
        results = {name: future.result() for name, future in futures.items()}
    yield results
    if all(result.returncode == 0 for result in results.values()):
        shutil.rmtree(scratch, ignore_errors=True)  # kept after a failure, for the workers' logs


def _leg_param(name: str) -> object:
    leg = EVERY[name]
    if leg == "both" or leg == LEG:
        return pytest.param(name, marks=[pytest.mark.postgres] if leg == "postgres" else [])
    reason = f"runs in the {'SQLite' if leg == 'sqlite' else 'PostgreSQL'} leg"
    return pytest.param(name, marks=[pytest.mark.skip(reason=reason)] +
                        ([pytest.mark.postgres] if leg == "postgres" else []))


@pytest.mark.parametrize("name", [_leg_param(name) for name in EVERY])
def test_the_benchmark_runs_to_the_end_and_prints_its_ratio_lines(name: str, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[name]
    assert outcome.returncode == 0, outcome.explain()
    missing = [line for line in SMOKES[name].ratio_lines if not re.search(line, outcome.stdout)]
    assert not missing, f"missing lines matching {missing}\n{outcome.explain()}"


def test_the_pipeline_benchmark_gets_past_the_free_plans_ten_generations_an_hour(outcomes: dict[str, Outcome]) -> None:
    """A new user's Free plan allows 10 generations an hour; bench/run.py's user is on an unlimited plan,
    so even this tiny run makes more than 10, all succeeded and charged (its ledger check)."""
    outcome = outcomes["run"]
    assert outcome.returncode == 0, outcome.explain()
    made = re.search(r"(\d+) generations in all", outcome.stdout)
    charged = re.search(r"Charged (\d+) credits for (\d+) generations", outcome.stdout)
    assert made and charged, outcome.explain()
    assert int(made[1]) > 10
    assert int(charged[1]) == int(charged[2]) == int(made[1])
