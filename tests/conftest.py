"""Shared fixtures: personas, a loaded catalog, API clients, and a real Celery worker process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`postgres` tests need PostgreSQL. On SQLite they are skipped, except under CI=true, where the
    Makefile runs the PostgreSQL leg too and a missing server fails the run before tests start."""
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    if on_postgres:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (runs in the PostgreSQL leg of `make test`)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


# The test-time budget (README, "Contributing"): each leg of `make test` within this many seconds on
# the reference machine (2 cores, both legs side by side), so the whole run stays within 10 minutes
# with room to spare.
LEG_BUDGET_SECONDS = float(os.environ.get("TEST_LEG_BUDGET_SECONDS", "420"))
_SESSION_STARTED = time.monotonic()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say how this leg stands against the budget, so a slow addition shows in every CI log."""
    if config.option.collectonly or not terminalreporter.stats.get("passed"):
        return
    elapsed = time.monotonic() - _SESSION_STARTED
    verdict = "within" if elapsed <= LEG_BUDGET_SECONDS else "OVER"
    terminalreporter.write_line(f"test-time budget: this leg took {elapsed:.0f} s, {verdict} its "
                                f"{LEG_BUDGET_SECONDS:.0f} s budget (README, \"Contributing\"; --durations lists the slowest).")


@pytest.fixture
def catalog(db: Any) -> None:
    from generations.catalog import catalog_load

    catalog_load()


def _user(email: str, credits: int) -> Any:
    from billing.signup import user_create

    return user_create(email=email, password="correct horse battery", starter_credits=credits)


@pytest.fixture
def owner(db: Any) -> Any:
    return _user("owner@example.com", 500)


@pytest.fixture
def outsider(db: Any) -> Any:
    return _user("outsider@example.com", 500)


@pytest.fixture
def project(owner: Any) -> Any:
    from projects.services import project_create

    return project_create(owner=owner, name="Trailer")


def api_client_for(user: Any) -> APIClient:
    from accounts.services import api_token_create

    _, token = api_token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def signed_in(client: Any, owner: Any) -> Any:
    """The test client signed in as `owner` (the web pages' session)."""
    client.force_login(owner)
    return client


@pytest.fixture
def owner_api(owner: Any) -> APIClient:
    return api_client_for(owner)


@pytest.fixture
def outsider_api(outsider: Any) -> APIClient:
    return api_client_for(outsider)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Rate-limit counters and the circuit breaker live in the cache; test users reuse ids."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _isolated_media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _fast_local_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from generations.providers.local import sketch

    monkeypatch.setattr(sketch, "STEP_SECONDS", 0.0)


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


# Every queue the studio has (config.settings CELERY_TASK_ROUTES): by default one test worker consumes them all.
ALL_QUEUES = ("generations", "previews", "housekeeping")


class WorkerProcess:
    """A real `celery worker` process. By default one solo process on every queue; a test of the queues
    starts one per queue (`queues`), with a prefork pool of `concurrency` where it needs parallel slots,
    and `app` names another Celery app module (tests/e2e/fal_worker.py)."""

    def __init__(self, env: dict[str, str], log_path: Path, *, queues: tuple[str, ...] = ALL_QUEUES,
                 concurrency: int | None = None, name: str = "test", app: str = "config") -> None:
        self.env = env
        self.app = app
        self.log_path = log_path
        self.queues = queues
        self.concurrency = concurrency
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")
        pool = ["--pool=solo"] if self.concurrency is None else ["--pool=prefork", f"--concurrency={self.concurrency}"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", self.app, "worker", *pool, "--loglevel=INFO",
             "-Q", ",".join(self.queues),
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{self.name}-{os.getpid()}@%h"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL, as when a machine dies or the OOM killer strikes: no cleanup runs."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def worker_env(transactional_db: Any, settings: Any, tmp_path: Path) -> dict[str, str]:
    """The environment a worker subprocess needs to share this test's database, media and broker."""
    env = {**os.environ, "DATABASE_URL": _database_url(), "MEDIA_ROOT": str(settings.MEDIA_ROOT),
           "LOCAL_SKETCH_STEP_SECONDS": os.environ.get("LOCAL_SKETCH_STEP_SECONDS", "0"),
           "PYTHONUNBUFFERED": "1"}
    return env


@pytest.fixture
def celery_worker_process(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    """A real `celery worker` process (not eager mode) on the configured broker."""
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    yield worker
    worker.stop()


def wait_for(predicate: Any, *, timeout: float = 60, interval: float = 0.1, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or "condition not met in time")


# --- the browser ----------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def headless_chromium(profile: Path, *, window: str = "412,915") -> Any:
    """Debian's headless Chromium through Selenium (`make browser-deps` installs it), a phone's screen
    unless `window` says otherwise. The caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Chromium and chromedriver are required: `make browser-deps` installs Debian's packages.")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As root in a sandbox with no network: no sandbox, no GPU, and none of Chromium's background
    # connections (they are refused here, many at a time).
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--window-size={window}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # Naming the driver keeps Selenium Manager from trying to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = headless_chromium(tmp_path / "chrome")
    yield driver
    driver.quit()
