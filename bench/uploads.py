"""`make bench` (uploads): peak memory of the server during a 1 GB upload, against a 100 MB upload in
the same run. The goal is flat: the 1 GB upload should not need ten times the memory.

The real upload path, end to end: gunicorn (one sync worker, as in the Dockerfile) serving the project
on a scratch STUDIO_VAR_DIR (SQLite, filesystem broker), and a client streaming a multipart POST to
/api/v1/assets with httpx from a file on disk. The server parses the multipart body into a temporary
file (assets.uploads.handlers), sniffs it, probes it with PyAV, hashes it, and moves it into storage.

The file is a real MP4 (a few PyAV-encoded frames, so the probe's decode check passes) padded to size
with an ISO-BMFF `free` box: video is the only kind whose limit (2 GB) allows 1 GB. The padding is a
sparse file (no disk blocks until written), made in a temporary directory and deleted afterwards.

Each size gets a fresh server: after a warm-up upload (so every library is loaded) the worker's
resident memory is read, then the big upload runs while the worker's VmHWM (peak RSS, from /proc) is
sampled. Printed per size: peak RSS, growth over the warm baseline, wall time and MB/s; then the
1 GB / 100 MB ratio of the peaks.

The bench's user is on the unlimited plan (bench/plans.py). Scratch files live in a temporary folder
under var/bench/ (or $BENCH_VAR_DIR), removed afterwards unless --keep. The suite's smoke test runs it
with `--base-mb 1 --big-mb 2`.

    .venv/bin/python bench/uploads.py [--big-mb 1024] [--base-mb 100] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MB = 1024 * 1024
FOREIGN_ENV = ("DATABASE_URL", "REDIS_URL", "MEDIA_ROOT", "BROKER_DIR", "CELERY_BROKER_URL",
               "CELERY_TASK_ALWAYS_EAGER", "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.paths import bench_var_dir  # noqa: E402

# The scratch database migrated and the bench's user made in one Django process (a second one would
# cost another start-up of the whole project).
SETUP = """
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from accounts.services import api_token_create
from billing.signup import user_create
from bench.plans import bench_plan_assign
from projects.services import project_create
user = user_create(email="bench@example.com", password="bench password 123", starter_credits=0)
bench_plan_assign(user=user)
project = project_create(owner=user, name="Bench")
print(api_token_create(user=user, name="bench")[1], project.pk)
"""


def make_mp4(path: Path, size: int) -> None:
    """A decodable MP4 of exactly `size` bytes: PyAV-encoded frames, then a sparse `free` box."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), i * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    encoded = path.stat().st_size
    with path.open("r+b") as fh:
        fh.seek(encoded)
        fh.write(struct.pack(">I4sQ", 1, b"free", size - encoded))  # 64-bit box size: the rest of the file
        fh.truncate(size)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def worker_pid(master: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children")
        pids = [int(p) for p in children.read_text().split()] if children.exists() else []
        if pids:
            return pids[0]
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1", "--timeout", "900", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.worker = worker_pid(self.proc.pid)
        self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/api/v1/me", timeout=2)  # a 401: the app is up
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start; see the log")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def upload(url: str, token: str, project: str, path: Path) -> tuple[float, dict[str, Any]]:
    import httpx

    started = time.perf_counter()
    with path.open("rb") as fh:
        response = httpx.post(f"{url}/api/v1/assets", headers={"Authorization": f"Bearer {token}"},
                              data={"project": project}, files={"file": (path.name, fh, "video/mp4")},
                              timeout=httpx.Timeout(30, read=900, write=900))
    elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise RuntimeError(f"upload of {path.name} failed: {response.status_code} {response.text[:300]}")
    return elapsed, response.json()


def measure(env: dict[str, str], token: str, project: str, warmup: Path, path: Path, log: Path) -> dict[str, Any]:
    server = Server(env, log)
    try:
        upload(server.url, token, project, warmup)
        baseline = status_kb(server.worker, "VmRSS")
        # Reset the high-water mark to the current RSS (Linux: "5" to clear_refs), so the peak is this
        # upload's and not the warm-up's; RSS is also sampled every 50 ms as a cross-check.
        Path(f"/proc/{server.worker}/clear_refs").write_text("5")
        peak = [status_kb(server.worker, "VmHWM")]
        rss = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak.append(status_kb(server.worker, "VmHWM"))
                rss.append(status_kb(server.worker, "VmRSS"))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        elapsed, body = upload(server.url, token, project, path)
        done.set()
        sampler.join()
        peak.append(status_kb(server.worker, "VmHWM"))
    finally:
        server.stop()
    size = path.stat().st_size
    if body["size"] != size or body["kind"] != "video":
        raise RuntimeError(f"unexpected asset: {body}")
    return {"size_mb": size / MB, "peak_mb": max(peak) / 1024, "baseline_mb": baseline / 1024,
            "growth_mb": (max(peak) - baseline) / 1024, "sampled_mb": max(rss) / 1024, "seconds": elapsed,
            "mb_per_s": size / MB / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--base-mb", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (for its logs)")
    args = parser.parse_args()

    if min(args.base_mb, args.big_mb) < 1:
        parser.error("--base-mb and --big-mb must be at least 1")
    bench_var_dir().mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="uploads-", dir=bench_var_dir()))
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings.production", "STUDIO_VAR_DIR": str(scratch / "var"),
                "DATABASE_URL": f"sqlite:///{scratch / 'var' / 'studio.sqlite3'}", "SECRET_KEY": "upload-bench", "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SECURE_SSL_REDIRECT": "0",  # gunicorn on plain HTTP
                "KEY_ENCRYPTION_KEYS": "bench:" + "A" * 43 + "=",
                "TMPDIR": str(scratch / "tmp"), "PYTHONUNBUFFERED": "1"})
    (scratch / "tmp").mkdir()
    log = scratch / "server.log"
    try:
        print(f"scratch: {scratch}")
        setup = subprocess.run([PYTHON, "manage.py", "shell", "-c", SETUP], cwd=ROOT, env=env, check=True,
                               capture_output=True, text=True)
        token, project = setup.stdout.split()[-2:]
        files = scratch / "files"
        files.mkdir()
        warmup, base, big = files / "warmup.mp4", files / "base.mp4", files / "big.mp4"
        make_mp4(warmup, 2 * MB)
        make_mp4(base, args.base_mb * MB)
        make_mp4(big, args.big_mb * MB)

        results = {}
        for label, path in (("base", base), ("big", big)):
            results[label] = measure(env, token, project, warmup, path, log)
            r = results[label]
            print(f"{r['size_mb']:7.0f} MB upload: peak RSS {r['peak_mb']:6.1f} MB (warm baseline "
                  f"{r['baseline_mb']:.1f} MB, +{r['growth_mb']:.1f} MB; highest RSS sampled {r['sampled_mb']:.1f} MB), "
                  f"{r['seconds']:.1f} s, "
                  f"{r['mb_per_s']:.0f} MB/s")
            media = scratch / "var" / "media"
            for stored in media.rglob("*.mp4"):  # keep the disk use of the run to one big file at a time
                stored.unlink()
        base_r, big_r = results["base"], results["big"]
        print(f"peak RSS, {big_r['size_mb']:.0f} MB vs {base_r['size_mb']:.0f} MB: "
              f"{big_r['peak_mb'] / base_r['peak_mb']:.2f}x for {big_r['size_mb'] / base_r['size_mb']:.1f}x the bytes "
              f"(growth over baseline {big_r['growth_mb']:.1f} MB vs {base_r['growth_mb']:.1f} MB); "
              f"throughput {big_r['mb_per_s'] / base_r['mb_per_s']:.2f}x")
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
