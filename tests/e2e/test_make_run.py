"""`make run` as a newcomer meets it: the real supervisor (manage.py run_studio) with the web server, both
workers and beat as real processes, on the embedded broker in a fresh STUDIO_VAR_DIR. The credentials
are the last lines printed, the token works, SIGTERM stops every process within 10 s without a
segmentation fault, and a second start prints the same token."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from tests.conftest import ROOT, _database_url, wait_for

# `make run` runs on the embedded defaults, SQLite among them: the SQLite leg is where it is tried.
pytestmark = [pytest.mark.worker, pytest.mark.timeout(120),
              pytest.mark.skipif(connection.vendor != "sqlite", reason="make run's embedded defaults are SQLite")]

STOP_WITHIN = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (each process's parent is field 4 of its stat line)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited; only its parent's wait() is left


class Supervisor:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_studio", "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        for pid in _descendants(self.proc.pid) | {self.proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)


@pytest.fixture
def run_env(transactional_db: Any, tmp_path: Path) -> dict[str, str]:
    """A fresh clone's environment: the development settings, the embedded broker and file cache in a
    new var directory, and this test's database (already migrated) so no migration run is needed."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")}
    return {**env, "DJANGO_SETTINGS_MODULE": "config.settings.dev", "STUDIO_VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": _database_url(), "PYTHONUNBUFFERED": "1"}


def _get_me(port: int, token: str) -> httpx.Response | None:
    """GET /api/v1/me, or None while runserver's autoreloader restarts it (a file saved meanwhile)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    except httpx.TransportError:
        return None


def _start_and_read_credentials(env: dict[str, str], port: int) -> tuple[Supervisor, str]:
    supervisor = Supervisor(env, port)
    wait_for(lambda: any("Try it" in line for line in supervisor.lines) or supervisor.proc.poll() is not None,
             timeout=90, interval=0.05)
    printed = list(supervisor.lines)
    assert supervisor.proc.poll() is None, supervisor.output()
    # The last five lines are the credentials block, after every banner and "ready" line.
    last = [line for line in printed if line.strip()][-5:]
    assert [line.split()[0] for line in last] == ["Demo", "Password", "Credits", "API", "Try"], printed[-30:]
    assert any("generation@" in line and "ready." in line for line in printed), printed
    token = re.search(r"API token\s+(\S+)", "\n".join(last)).group(1)
    me = wait_for(lambda: _get_me(port, token), timeout=30, message="the web server stopped answering")
    assert me.status_code == 200 and me.json()["email"] == "demo@studio.local"
    return supervisor, token


def _stop_within_the_limit(supervisor: Supervisor, signum: int) -> None:
    children = _descendants(supervisor.proc.pid)
    assert len(children) >= 5  # runserver's reloader and server, two workers (one with a pool), beat
    sent = time.monotonic()
    supervisor.proc.send_signal(signum)
    assert supervisor.proc.wait(STOP_WITHIN + 5) == 0, supervisor.output()[-3000:]
    wait_for(lambda: not any(_alive(pid) for pid in children),
             timeout=max(0.1, STOP_WITHIN - (time.monotonic() - sent)),
             message=f"still running: {[pid for pid in children if _alive(pid)]}")
    assert time.monotonic() - sent < STOP_WITHIN, supervisor.output()[-1500:]
    supervisor.reader.join(5)
    output = supervisor.output()
    assert "Segmentation fault" not in output and "SIGSEGV" not in output, output[-3000:]


def test_make_run_prints_the_credentials_last_and_stops_on_sigterm_and_ctrl_c(run_env: dict[str, str]) -> None:
    port = _free_port()
    supervisor, token = _start_and_read_credentials(run_env, port)
    try:
        _stop_within_the_limit(supervisor, signal.SIGTERM)
    finally:
        if supervisor.proc.poll() is None:
            supervisor.kill()
    # A second start prints the same token, and Ctrl-C (SIGINT) stops it as cleanly.
    again, same = _start_and_read_credentials(run_env, port)
    try:
        assert same == token
        _stop_within_the_limit(again, signal.SIGINT)
    finally:
        if again.proc.poll() is None:
            again.kill()
    assert (Path(run_env["STUDIO_VAR_DIR"]) / "demo-token").stat().st_mode & 0o777 == 0o600


def test_make_run_refuses_a_port_another_server_listens_on(run_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "manage.py", "run_studio", "--port", str(port)], cwd=ROOT,
                                env=run_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and f"already listening on 127.0.0.1:{port}" in result.stderr
    assert "API token" not in result.stdout


# Stand-ins for the four processes, for a supervisor test that needs no real server: each says it is
# ready as a Celery process does (touching STUDIO_READY_FILE) and then idles like one.
_STAND_IN = ("import os, pathlib, time; pathlib.Path(os.environ['STUDIO_READY_FILE']).touch(); "
             "[time.sleep(0.1) for _ in range(600)]")
_DRIVER = f"""
import sys, django
django.setup()
from django.core.management import call_command
from accounts.management.commands import run_studio

def children(self, host, port, concurrency, noreload, ready_dir):
    return [run_studio.Child(name, [sys.executable, "-c", {_STAND_IN!r}], ready_file=ready_dir / name)
            for name in ("worker", "housekeeping", "beat")]

run_studio.Command._children = children
call_command("run_studio", "--no-web", "--stop-timeout", "3")
"""


def test_the_supervisor_stops_its_processes_when_its_terminal_closes(run_env: dict[str, str]) -> None:
    """Each process runs in its own session, out of the terminal's reach: closing the terminal
    (SIGHUP) must stop them through the supervisor, or they would outlive it holding the port."""
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER], cwd=ROOT, env=run_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert proc.stdout is not None
        lines = iter(proc.stdout.readline, b"")
        assert any(b"workers and beat are running" in line for line in lines), "the supervisor stopped early"
        children = _descendants(proc.pid)
        assert len(children) == 3
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(10) == 0
        wait_for(lambda: not any(_alive(pid) for pid in children), timeout=5,
                 message=f"still running: {[pid for pid in children if _alive(pid)]}")
    finally:
        if proc.poll() is None:
            for pid in _descendants(proc.pid) | {proc.pid}:
                os.kill(pid, signal.SIGKILL)
            proc.wait(10)
