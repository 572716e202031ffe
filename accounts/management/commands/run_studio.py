"""`make run`: the web server, a worker per queue (generations, previews, housekeeping) and beat, under
one supervisor (docs/ARCHITECTURE.md, "Queues").

Why not a shell `trap 'kill 0'`: that signals every process in the group at once, so Celery's prefork
pool children and embedded beat were killed underneath their parents mid-shutdown (the worker logs
"ForkPoolWorker-2 exited with signal 15"; a fresh clone's run showed a segmentation fault and a worker
main process still waiting > 60 s after "beat: Shutting down"). Beat is its own process here. Each
process runs in its own session, so a terminal's Ctrl-C reaches only this supervisor; it sends SIGTERM
to each main process (Celery's warm shutdown stops its own pool), waits up to --stop-timeout seconds
(6: an idle worker notices SIGTERM only between 2-second polls of the broker, then stops its pool),
and SIGKILLs whatever is left of each process group. A second Ctrl-C kills at once.

The demo credentials are printed last, once the web server answers HTTP and every worker and beat
have said they are ready (config/celery.py touches STUDIO_READY_FILE on `worker_ready`/`beat_init`),
so the workers' banners no longer scroll them away. The previews and housekeeping workers and beat log
at WARNING: their "task received/succeeded" lines (one per upload, one per sweep) would bury the
credentials and every run's progress.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from accounts.management.demo import DEMO_EMAIL, credentials_lines, demo_account_ensure

CELERY_FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
# Previews are CPU-bound (decoding, resizing, hashing): one at a time beside the generation worker's
# local engines keeps a development machine responsive; a backlog waits on its own queue.
PREVIEW_CONCURRENCY = 1
READY_GRACE = 0.3  # seconds


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_file: Path | None = None  # None: ready when the web server accepts connections
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # Only the web server's whole group gets SIGTERM (Django's autoreloader and the server it restarts);
    # a Celery main process gets it alone, so it can stop its pool in order.
    signal_group: bool = False

    def start(self, env: dict[str, str]) -> None:
        child_env = {**env, "STUDIO_READY_FILE": str(self.ready_file)} if self.ready_file else env
        self.proc = subprocess.Popen(self.argv, cwd=settings.BASE_DIR, env=child_env, start_new_session=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if not self.running:
            return
        assert self.proc is not None
        try:
            if self.signal_group:
                os.killpg(self.proc.pid, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    def kill_group(self) -> None:
        """SIGKILL the process group: the main process if it is still there, and any child it left."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


class Command(BaseCommand):
    help = ("Start the studio for development: the web server, a worker per queue (`generations`, `previews`, "
            "`housekeeping`) and beat; print the demo account's credentials once all are up. Ctrl-C, SIGTERM or closing the terminal stops them all within --stop-timeout seconds.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--email", default=os.environ.get("DEMO_EMAIL", DEMO_EMAIL))
        parser.add_argument("--concurrency", type=int, default=2,
                            help="Generation worker processes (default 2). Jobs on remote providers are parked "
                                 "between polls, so two serve many; the local provider's engines run in them.")
        parser.add_argument("--ready-timeout", type=float, default=180.0,
                            help="Seconds to wait for every process to come up (default 180).")
        parser.add_argument("--stop-timeout", type=float, default=6.0,
                            help="Seconds to wait for a clean stop before SIGKILL (default 6).")
        parser.add_argument("--noreload", action="store_true", help="Run the web server without its autoreloader.")
        parser.add_argument("--no-web", action="store_true",
                            help="Only the workers and beat (`make worker`); no credentials are printed.")

    def handle(self, *args: Any, host: str, port: int, email: str, concurrency: int, ready_timeout: float,
               stop_timeout: float, noreload: bool, no_web: bool, **options: Any) -> None:
        url = f"http://{host}:{port}"
        if not no_web and _listening(host, port):
            # Checked first: readiness is "the port accepts connections", which another server would fake.
            raise CommandError(f"Something is already listening on {host}:{port}; stop it or pick another "
                               "port (make run PORT=8001).")
        credentials = None if no_web else demo_account_ensure(email=email)
        connections.close_all()  # this process holds no database connection while the others run

        self.stop_requested = 0
        self.stopping = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        # The processes run in sessions of their own, so a closed terminal's SIGHUP reaches only this
        # supervisor: by default it would die of it and leave them all running (the port held).
        signal.signal(signal.SIGHUP, self._on_signal)
        ready_dir = Path(tempfile.mkdtemp(prefix="studio-ready-"))
        children = self._children(host, port, concurrency, noreload, ready_dir)
        if no_web:
            children = [child for child in children if child.name != "web"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        status = 0
        try:
            for child in children:
                child.start(env)
            status = self._wait_until_ready(children, host, port, ready_timeout)
            if status == 0 and not self.stop_requested:
                if credentials is None:
                    self.stdout.write(self.style.SUCCESS("\nThe workers and beat are running (Ctrl-C stops them)."))
                else:
                    self.stdout.write(self.style.SUCCESS(f"\nThe studio is running on {url}/  (Ctrl-C stops it)"))
                    for line in credentials_lines(credentials, url=url):
                        self.stdout.write(line)
                    self.stdout.write("")
                self.stdout.flush()
                status = self._wait_for_stop(children)
        finally:
            self._stop(children, stop_timeout)
            for path in ready_dir.iterdir():
                path.unlink()
            ready_dir.rmdir()
        # Every process is gone and nothing here holds state: skip the interpreter's teardown of the
        # modules Django loaded, which took seconds on a busy machine and counts against the stop.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    def _children(self, host: str, port: int, concurrency: int, noreload: bool, ready_dir: Path) -> list[Child]:
        celery = [sys.executable, "-m", "celery", "-A", "config"]
        return [
            Child("web", [sys.executable, "manage.py", "runserver", f"{host}:{port}",
                          *(["--noreload"] if noreload else [])], signal_group=True),
            Child("worker", [*celery, "worker", "-Q", "generations", "-n", "generation@%h",
                             f"--concurrency={concurrency}", "--loglevel=INFO", *CELERY_FLAGS],
                  ready_file=ready_dir / "worker"),
            Child("previews", [*celery, "worker", "-Q", "previews", "-n", "previews@%h",
                               f"--concurrency={PREVIEW_CONCURRENCY}", "--loglevel=WARNING", *CELERY_FLAGS],
                  ready_file=ready_dir / "previews"),
            # One task at a time is plenty for sweeps and prunes, and the solo pool needs no child process.
            Child("housekeeping", [*celery, "worker", "-Q", "housekeeping", "-n", "housekeeping@%h", "--pool=solo",
                                   "--concurrency=1", "--loglevel=WARNING", *CELERY_FLAGS],
                  ready_file=ready_dir / "housekeeping"),
            Child("beat", [*celery, "beat", "--loglevel=WARNING"], ready_file=ready_dir / "beat"),
        ]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested += 1
        if self.stop_requested > 1 and not self.stopping:
            raise KeyboardInterrupt  # a second Ctrl-C before the stop began: `finally` kills what is left

    def _wait_until_ready(self, children: list[Child], host: str, port: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        pending = list(children)
        while pending:
            if self.stop_requested:
                return 0
            for child in children:
                if not child.running:
                    self.stderr.write(f"run_studio: {child.name} exited before it was ready "
                                      f"(status {child.proc.returncode if child.proc else '?'}).")
                    return 1
            pending = [c for c in pending if not (c.ready_file.exists() if c.ready_file else _listening(host, port))]
            if time.monotonic() > deadline:
                raise CommandError(f"Not up after {timeout:.0f}s: {', '.join(c.name for c in pending)}.")
            if pending:
                time.sleep(0.1)
        # Celery sends `worker_ready` just before it logs "<name> ready.", from the same thread; no
        # later event exists, so give that line a moment to land above the credentials.
        time.sleep(READY_GRACE)
        return 0

    def _wait_for_stop(self, children: list[Child]) -> int:
        while not self.stop_requested:
            for child in children:
                if not child.running:
                    self.stderr.write(f"run_studio: {child.name} exited (status {child.proc.returncode}); "
                                      "stopping the others.")
                    return 1
            time.sleep(0.2)
        return 0

    def _stop(self, children: list[Child], timeout: float) -> None:
        self.stopping = True  # from here a second Ctrl-C only cuts the wait short (stop_requested > 1)
        for child in children:
            child.terminate()
        deadline = time.monotonic() + timeout
        while any(c.running for c in children) and time.monotonic() < deadline and self.stop_requested < 2:
            time.sleep(0.1)
        for child in children:
            if child.running:
                self.stderr.write(f"run_studio: {child.name} did not stop in {timeout:.0f}s; killing it.")
            child.kill_group()
        self.stderr.write(f"run_studio: stopped in {time.monotonic() - deadline + timeout:.1f}s.")


def _listening(host: str, port: int) -> bool:
    """Whether the web server accepts connections. runserver loads the whole application before it
    binds its socket, so this means it is ready; a connection closed without a request is not logged
    (an HTTP probe would print a request line right above the credentials)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
