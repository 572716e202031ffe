"""Benchmark (c), export: peak memory and throughput of a 1 GB ZIP export against a 100 MB one, in the
same run. The goal is flat memory: the 1 GB export should need no more than the 100 MB one, where an
export that buffered the archive (or one file of it) would need ten times as much.

Each case is a project of its own: one large video, three WAV files, 20 small generated PNGs and five
text files, 100 MB or 1 GB in all. The large files are MP4 and WAV headers followed by zeros, written
sparsely (nothing on disk, instant to make); the rows are inserted directly, since this measures
export, not upload. The archive is fetched through the real view (GET /api/v1/projects/{id}/export
?embed=1, with an API token, through Django's test client and its full middleware stack), and the
stream is consumed chunk by chunk, counted and thrown away.

Measured per case, in this process: the peak resident set size while streaming (Linux's VmHWM, reset
before each case through /proc/self/clear_refs; sampled VmRSS where that is not allowed) and MB/s.
The baselines for throughput, from the same run: reading the same stored files with their CRC-32
(the least any ZIP writer does), and reading them alone. All three read from the page cache. Checks:
the 100 MB archive is also written to a temp file and opened with zipfile, every CRC verified; for the
1 GB archive its central directory is read from the last bytes of the stream (kept as they pass) and
every entry checked against the assets. The 100 MB check is a second, untimed pass.

Everything lives in a temporary STUDIO_VAR_DIR (SQLite database, media) under var/bench/ (or
$BENCH_VAR_DIR), removed afterwards. The suite's smoke test runs it with `--small-mb 1 --large-mb 2`.

    .venv/bin/python bench/export.py [--small-mb 100] [--large-mb 1024] [--keep]

`--large-mb 6000` makes the large case a Zip64 archive (a 4.1 GB member, offsets past 4 GB), read back
the same way.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.paths import bench_var_dir  # noqa: E402

# Anything that would point this run at a real database, cache, broker or bucket.
FOREIGN_ENV = ("DATABASE_URL", "REDIS_URL", "MEDIA_ROOT", "BROKER_DIR", "CELERY_BROKER_URL",
               "AWS_STORAGE_BUCKET_NAME", "AWS_S3_ENDPOINT_URL")
MB = 1024 * 1024
TAIL = 4 * MB  # the end of the stream kept for reading the central directory


def _status(field: str) -> int:
    """A VmXXX line of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
        return True
    except OSError:
        return False


# --- making the assets ----------------------------------------------------------------------------------

MP4_HEAD = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")


def _wav_head(size: int) -> bytes:
    data = size - 44
    return (b"RIFF" + struct.pack("<I", size - 8) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 2, 48000,
            48000 * 4, 4, 16) + b"data" + struct.pack("<I", data))


def _sparse(path: Path, head: bytes, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)  # a hole: reads as zeros, takes no disk


def _png(seed: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    image = Image.new("RGB", (256, 256), (seed * 7 % 256, seed * 13 % 256, 90))
    image.save(out, "PNG")
    return out.getvalue()


def make_project(owner: Any, name: str, total: int) -> tuple[Any, int]:
    """A project holding `total` bytes of assets; returns it and the bytes actually stored."""
    from django.conf import settings

    from assets.models import Asset, AssetKind, AssetSource, asset_upload_to
    from generations.models import Generation
    from projects.services import project_create

    project = project_create(owner=owner, name=name)
    generation = Generation.objects.create(
        user=owner, project=project, model_id="local/sketch", provider="local", status="succeeded",
        inputs={"prompt": "a lighthouse at dusk, 35mm", "seed": 7, "steps": 20},
        credits_estimated=3, credits_held=3, credits_charged=3)
    media = Path(settings.MEDIA_ROOT)
    rows: list[Asset] = []

    def add(kind: str, mime: str, ext: str, name: str, size: int, write: Any, **extra: Any) -> None:
        asset = Asset(owner=owner, project=project, kind=kind, name=name, mime=mime, size=size,
                      sha256="0" * 64, **extra)
        asset.file.name = asset_upload_to(asset, f"upload.{ext}")
        write(media / asset.file.name)
        rows.append(asset)

    small = 0
    for i in range(20):
        data = _png(i)
        small += len(data)
        add(AssetKind.IMAGE, "image/png", "png", f"frame-{i:02d}.png", len(data), lambda p, d=data: (
            p.parent.mkdir(parents=True, exist_ok=True), p.write_bytes(d)), width=256, height=256,
            source=AssetSource.GENERATION, generation=generation, prompt="a lighthouse at dusk, 35mm",
            model_id="local/sketch", provider="local", metadata={"seed": 7 + i})
    for i in range(5):
        text = ("INT. LIGHTHOUSE - NIGHT\nThe lamp turns.\n" * 2000).encode()
        small += len(text)
        add(AssetKind.TEXT, "text/plain", "fountain", f"scene-{i}.fountain", len(text),
            lambda p, d=text: (p.parent.mkdir(parents=True, exist_ok=True), p.write_bytes(d)),
            source=AssetSource.UPLOAD)
    big = max(total - small, 4 * MB)
    video = big * 7 // 10
    add(AssetKind.VIDEO, "video/mp4", "mp4", "take-01.mp4", video, lambda p: _sparse(p, MP4_HEAD, video),
        source=AssetSource.UPLOAD)
    wav = (big - video) // 3
    for i in range(3):
        add(AssetKind.AUDIO, "audio/x-wav", "wav", f"voice-{i}.wav", wav,
            lambda p: _sparse(p, _wav_head(wav), wav), source=AssetSource.UPLOAD)
    Asset.objects.bulk_create(rows)
    return project, sum(a.size for a in rows)


# --- measuring ------------------------------------------------------------------------------------------

class TailFile(io.RawIOBase):
    """The end of a stream as a seekable file of the stream's full length, enough for zipfile to read
    the central directory (which is all it reads when opening)."""

    def __init__(self, tail: bytes, total: int) -> None:
        self.tail, self.total, self.start, self.pos = tail, total, total - len(tail), 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.total + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if self.pos < self.start:
            raise OSError(f"byte {self.pos} is before the kept tail")
        end = self.total if n is None or n < 0 else min(self.total, self.pos + n)
        data = self.tail[self.pos - self.start:end - self.start]
        self.pos = end
        return data


def stream_export(client: Any, project: Any, save_to: Path | None) -> dict[str, Any]:
    rss_before = _status("VmRSS")
    exact_peak = _reset_peak()
    started = time.perf_counter()
    response = client.get(f"/api/v1/projects/{project.pk}/export?embed=1")
    assert response.status_code == 200 and response.streaming, response
    total = 0
    tail: deque[bytes] = deque()
    tail_size = 0
    sink = open(save_to, "wb") if save_to else None
    peak_sampled = rss_before
    try:
        for n, chunk in enumerate(response.streaming_content):
            total += len(chunk)
            tail.append(chunk)
            tail_size += len(chunk)
            while tail_size - len(tail[0]) >= TAIL:
                tail_size -= len(tail.popleft())
            if sink:
                sink.write(chunk)
            if not exact_peak and n % 64 == 0:
                peak_sampled = max(peak_sampled, _status("VmRSS"))
    finally:
        if sink:
            sink.close()
        response.close()
    seconds = time.perf_counter() - started
    peak = _status("VmHWM") if exact_peak else peak_sampled
    return {"bytes": total, "seconds": seconds, "peak": peak, "before": rss_before, "exact": exact_peak,
            "tail": b"".join(tail)}


def raw_read(project: Any, *, crc: bool = False) -> tuple[int, float]:
    """The baselines: every stored file of the project read in the same 1 MB chunks, no ZIP; and the
    same with the CRC-32 any ZIP writer must compute."""
    from assets.models import Asset
    from assets.storage import stored_chunks

    started = time.perf_counter()
    total = 0
    for asset in Asset.objects.filter(project=project):
        checksum = 0
        for chunk in stored_chunks(asset.file.name):
            total += len(chunk)
            if crc:
                checksum = zlib.crc32(chunk, checksum)
    return total, time.perf_counter() - started


def check_archive(result: dict[str, Any], project: Any, saved: Path | None) -> str:
    from assets.models import Asset

    expected = {a.name: a.size for a in Asset.objects.filter(project=project)}
    if saved is not None:
        with zipfile.ZipFile(saved) as archive:
            bad = archive.testzip()
            assert bad is None, f"CRC mismatch in {bad}"
            infos = archive.infolist()
        how = "opened from a temp file, every CRC verified"
    else:
        with zipfile.ZipFile(TailFile(result["tail"], result["bytes"])) as archive:
            infos = archive.infolist()
        how = "central directory read from the stream's last bytes"
    by_name = {i.filename.rsplit("/", 1)[-1]: i for i in infos}
    assert set(by_name) == set(expected) | {"metadata.json", "metadata.csv"}, sorted(by_name)
    for name, size in expected.items():
        info = by_name[name]
        if not name.endswith(".png"):  # PNGs grow by their embedded recipe
            assert info.file_size == size, (name, info.file_size, size)
        assert info.header_offset < result["bytes"]
    return f"{len(infos)} entries, sizes match ({how})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-mb", type=int, default=100)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="keep the temporary STUDIO_VAR_DIR")
    args = parser.parse_args()

    if min(args.small_mb, args.large_mb) < 1:
        parser.error("--small-mb and --large-mb must be at least 1")
    bench_var_dir().mkdir(parents=True, exist_ok=True)
    var_dir = Path(tempfile.mkdtemp(prefix="export-", dir=bench_var_dir()))
    for name in FOREIGN_ENV:
        os.environ.pop(name, None)
    os.environ.update({"STUDIO_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "config.settings.dev",
                       "LOG_LEVEL": "WARNING"})
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.test import Client

        from accounts.services import api_token_create
        from billing.signup import user_create
        from generations.catalog import catalog_load

        call_command("migrate", verbosity=0)
        catalog_load()
        owner = user_create(email="bench@example.com", password="correct horse battery", starter_credits=0)
        _, token = api_token_create(user=owner, name="bench")
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

        cases = []
        for mb in (args.small_mb, args.large_mb):
            label = f"{mb} MB" if mb < 1024 else f"{mb // 1024} GB" if mb % 1024 == 0 else f"{mb / 1024:.1f} GB"
            project, stored = make_project(owner, f"Bench {label}", mb * MB)
            cases.append((label, project, stored))
        # Warm up once (imports, first queries, the token lookup) so neither case pays for it.
        stream_export(client, cases[0][1], None)

        # The first read of a file puts it in the page cache (holes included): read everything once so
        # the exports and the baselines all read from memory and time the same work. Both exports then
        # run back to back from the same starting point, before anything else allocates.
        for _label, project, _stored in cases:
            raw_read(project)
        exports = [stream_export(client, project, None) for _label, project, _stored in cases]
        results = []
        for index, ((label, project, stored), result) in enumerate(zip(cases, exports, strict=True)):
            if index == 0:  # verified in a second, untimed pass that also writes the archive to disk
                saved = var_dir / "small.zip"
                check = check_archive(stream_export(client, project, saved), project, saved)
                saved.unlink()
            else:
                check = check_archive(result, project, None)
            raw_bytes, raw_seconds = raw_read(project)
            crc_bytes, crc_seconds = raw_read(project, crc=True)
            results.append((label, stored, result, (raw_bytes / raw_seconds / MB, crc_bytes / crc_seconds / MB),
                            check))

        print(f"\nExport: GET /api/v1/projects/{{id}}/export?embed=1 through Django's test client, the ZIP "
              f"consumed and discarded; peak RSS is {'VmHWM' if results[0][2]['exact'] else 'sampled VmRSS'} "
              "of this process\n")
        print(f"{'case':<10}{'archive':>12}{'time':>10}{'MB/s':>9}{'read MB/s':>11}{'read+CRC MB/s':>15}"
              f"{'RSS before':>12}{'peak RSS':>11}")
        for label, _stored, r, (raw_rate, crc_rate), _check in results:
            rate = r["bytes"] / r["seconds"] / MB
            print(f"{label:<10}{r['bytes'] / MB:>9,.1f} MB{r['seconds']:>8.2f} s{rate:>9,.0f}{raw_rate:>11,.0f}"
                  f"{crc_rate:>15,.0f}{r['before'] / MB:>9.1f} MB{r['peak'] / MB:>8.1f} MB")
        small, large = results[0][2], results[1][2]
        size_ratio = large["bytes"] / small["bytes"]
        print(f"\nPeak RSS, {results[1][0]} vs {results[0][0]}: {large['peak'] / MB:.1f} MB vs "
              f"{small['peak'] / MB:.1f} MB, {large['peak'] / small['peak']:.2f}× for an archive {size_ratio:.1f}× "
              f"larger: {'flat' if large['peak'] <= small['peak'] * 1.25 else 'NOT flat'} "
              f"(buffering the archive would add {(large['bytes'] - small['bytes']) / MB:,.0f} MB).")
        for label, _stored, r, (raw_rate, crc_rate), _check in results:
            rate = r["bytes"] / r["seconds"] / MB
            print(f"Throughput {label}: {rate:,.0f} MB/s, {rate / crc_rate:.2f}× reading the same files with "
                  f"their CRC-32 (the floor of any ZIP writer), {rate / raw_rate:.2f}× reading them alone.")
        for label, _stored, _r, _raw, check in results:
            print(f"Check {label}: {check}.")
        return 0
    finally:
        if args.keep:
            print(f"\nKept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
