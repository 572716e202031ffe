"""`make bench` (a): image previews per second and peak memory for 12-megapixel JPEGs, the studio's
pyvips code against the same work done with Pillow, in the same run.

One preview is what the worker makes for an uploaded photo: a 1024 px and a 256 px WebP (quality 80,
Lanczos-3, EXIF orientation applied, no metadata), a blurhash from a 32 px thumbnail and a perceptual
hash from the 256 px one. The pyvips side is the shipping code, `assets.previews.renderers.render_image` (libvips'
thumbnail with shrink-on-load). Pillow does the same steps three ways, to be fair to it:

- **Pillow resize()**: open, decode at full size, `resize(LANCZOS)`;
- **Pillow thumbnail()**: Pillow's own helper, with its defaults (`draft()` and `reducing_gap=2.0`);
- **Pillow draft()+resize()**: `draft("RGB", (1024, 1024))` first, so libjpeg decodes at 1/2 scale, as
  libvips' shrink-on-load does, then `resize(LANCZOS)`.

Two floors are measured too: encoding the two WebP files plus the hashes from ready-made thumbnails (the
same libwebp work on both sides), and reading a JPEG's entropy-coded data (libjpeg-turbo at 1/8 scale,
the least any decoder does). Their sum bounds how much cheaper than Pillow any thumbnailer could be.

The images (4000×3000, saved at quality 90) are made once and kept in var/bench/previews/: gradients,
five octaves of smooth noise in light and colour, hard-edged shapes and sensor grain, so neither codec
gets flat colour for free. Each case runs N images (after one untimed warm-up image) in its own forked
child of a process that has Django set up, as a worker has; the child's peak RSS comes from
`os.wait4` (ru_maxrss of that child only). "growth" is peak RSS minus the child's RSS when it was
forked: the memory the library and the previews took. Each case runs `--repeat` times; the table shows
the median rate and the highest peak.

    .venv/bin/python bench/previews.py [--n 10] [--repeat 3] [--size 4000x3000] [--fresh] [--vips-concurrency N]

`--size` makes smaller images (the suite's smoke test uses 640x480, one image, one run): a check that
every case runs, not a measurement of 12-megapixel photos.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT, QUALITY = 4000, 3000, 90  # the default size; --size changes it
IMAGE_VERSION = 1  # bump when the generator changes, so old files are not reused

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.paths import bench_var_dir  # noqa: E402

BENCH_DIR = bench_var_dir("previews")


def _configure_django() -> None:
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.production",  # DEBUG off, as in production
        "STUDIO_VAR_DIR": str(BENCH_DIR / "var"),
        "DATABASE_URL": f"sqlite:///{BENCH_DIR / 'var' / 'studio.sqlite3'}",
        "SECRET_KEY": "bench-only-not-a-secret",
        "KEY_ENCRYPTION_KEYS": "bench:" + base64.b64encode(b"b" * 32).decode(),
        "ALLOWED_HOSTS": "testserver",
        "LOG_LEVEL": "WARNING",
    })
    import django

    django.setup()


# --- forked children --------------------------------------------------------------------------------------

def _rss_now() -> int:
    """This process's resident set now, in KiB (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _in_child(target: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """Run `target` in a forked child; return what it reported and its peak RSS in KiB."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        code = 0
        try:
            result = target()
        except BaseException as exc:  # reported to the parent, which fails the run
            result = {"error": f"{exc.__class__.__name__}: {exc}"}
            code = 1
        with os.fdopen(write_fd, "w") as out:
            out.write(json.dumps(result))
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        payload = inp.read()
    _, status, usage = os.wait4(pid, 0)
    result = json.loads(payload or "{}")
    if status != 0 or "error" in result:
        raise SystemExit(f"bench child failed: {result.get('error', status)}")
    return result, usage.ru_maxrss


# --- the images -------------------------------------------------------------------------------------------

def _smooth(rng: Any, cells: int, bands: int, width: int, height: int) -> Any:
    import numpy as np
    import pyvips

    rows = max(2, cells * height // width)
    grid = rng.standard_normal((rows + 3, cells + 3, bands)).astype(np.float32)
    up = pyvips.Image.new_from_array(grid).resize(width / cells, vscale=height / rows, kernel="cubic")
    return up.crop(0, 0, width, height).numpy().reshape(height, width, bands)


def _make_photo(path: Path, seed: int, width: int, height: int) -> None:
    import numpy as np
    import pyvips

    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    top, bottom = rng.uniform(90, 210, 3).astype(np.float32), rng.uniform(20, 120, 3).astype(np.float32)
    img = np.broadcast_to(top * (1 - y) + bottom * y + 40 * (x - 0.5) * rng.uniform(-1, 1), (height, width, 3)).copy()
    for cells, amp in ((5, 40), (20, 26), (80, 16), (320, 10), (1000, 6)):
        img += amp * _smooth(rng, cells, 1, width, height)  # light and shade, the same in every channel
        img += (amp * 0.3) * _smooth(rng, cells, 3, width, height)  # and some colour
    img[_smooth(rng, 10, 1, width, height)[:, :, 0] > 0.6] *= 0.45  # shapes with hard edges, like things against a sky
    img += rng.normal(0, 2.5, (height, width, 1)).astype(np.float32)  # sensor grain
    pixels = np.clip(img, 0, 255).astype(np.uint8)
    tmp = path.with_suffix(".partial")
    pyvips.Image.new_from_array(pixels).copy(interpretation="srgb").jpegsave(str(tmp), Q=QUALITY)
    tmp.replace(path)


def _prepare(n: int, fresh: bool, width: int, height: int) -> dict[str, Any]:
    """Make the missing images and report the library versions (in this child, so the parent stays lean)."""
    import PIL
    import pyvips
    from PIL import features

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    size = "" if (width, height) == (WIDTH, HEIGHT) else f"-{width}x{height}"  # default names as before
    paths = [BENCH_DIR / f"photo-{i:03d}{size}-v{IMAGE_VERSION}.jpg" for i in range(n + 1)]  # +1: the warm-up
    for seed, path in enumerate(paths):
        if fresh or not path.exists():
            _make_photo(path, seed, width, height)
    return {
        "paths": [str(p) for p in paths],
        "mean_mb": statistics.mean(p.stat().st_size for p in paths[1:]) / 1e6,
        "versions": {
            "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
            "pyvips": pyvips.__version__, "vips_concurrency": pyvips.concurrency_get(),
            "Pillow": PIL.__version__, "Pillow libjpeg": features.version_codec("jpg"),
            "Pillow libwebp": features.version_module("webp"),
        },
    }


# --- the cases --------------------------------------------------------------------------------------------

def _warm_hashes() -> None:
    """Import what both sides use for the hashes (imagehash pulls in SciPy), before the memory baseline."""
    import blurhash
    import imagehash
    from PIL import Image

    blurhash.encode(Image.new("RGB", (8, 8)), 4, 3)
    imagehash.phash(Image.new("RGB", (8, 8)))


def _pyvips_case() -> Callable[[str], None]:
    import pyvips  # noqa: F401 - imported before the baseline, like PIL on the other side

    from assets.previews.renderers import render_image

    _warm_hashes()
    return lambda path: (render_image(path, "image/jpeg"), None)[1]


def _pyvips_forced_shrink_case() -> Callable[[str], None]:
    """Reference only: libvips' thumbnail leaves JPEG shrink-on-load alone unless at least a 2× reduction
    remains after it (4000 → 1024 is 3.9×, so it decodes at full size, for sharpness), just as Pillow's
    thumbnail() does with reducing_gap=2. This row loads at 1/2 scale regardless, like Pillow's draft()."""
    from assets.previews import stills as previews

    pyvips = previews.vips()
    _warm_hashes()

    def work(path: str) -> None:
        image = pyvips.Image.new_from_file(path, shrink=2, access="sequential", fail_on="error").autorot()
        large = image.thumbnail_image(previews.THUMB_LARGE, height=previews.THUMB_LARGE, size="down")
        previews.from_still(previews.srgb8(large).copy_memory(), still=None)

    return work


def _pillow_case(how: str) -> Callable[[str], None]:
    import blurhash
    import imagehash
    from PIL import Image, ImageOps

    from assets.previews.stills import BLURHASH_INPUT, THUMB_LARGE, THUMB_SMALL, WEBP_EFFORT, WEBP_QUALITY

    lanczos = Image.Resampling.LANCZOS
    _warm_hashes()

    def fit(image: Image.Image, side: int) -> Image.Image:
        scale = min(1.0, side / max(image.size))
        if scale >= 1.0:
            return image
        return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), lanczos)

    def webp(image: Image.Image) -> bytes:
        buf = io.BytesIO()
        image.save(buf, "WEBP", quality=WEBP_QUALITY, method=WEBP_EFFORT)  # the same libwebp method as ours
        return buf.getvalue()

    def work(path: str) -> None:
        with Image.open(path) as image:
            if how == "draft":
                image.draft("RGB", (THUMB_LARGE, THUMB_LARGE))
            if how == "thumbnail":
                image.thumbnail((THUMB_LARGE, THUMB_LARGE), lanczos)  # in place; its own draft(), reducing_gap=2.0
            else:
                image.load()
            ImageOps.exif_transpose(image, in_place=True)
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            large = fit(rgb, THUMB_LARGE)
            webp(large)
            small = fit(large, THUMB_SMALL)
            webp(small)
            blurhash.encode(fit(small, BLURHASH_INPUT), 4, 3)
            imagehash.phash(small)

    return work


def _floor_case() -> Callable[[str], None]:
    """Only what every way shares: encoding the two WebP files (the same libwebp settings on both sides)
    and the two hashes, from thumbnails made before the clock starts. No decoder can beat this."""
    from assets.previews import stills as previews

    pyvips = previews.vips()
    _warm_hashes()
    ready: dict[str, Any] = {}

    def work(path: str) -> None:
        if path not in ready:  # the warm-up call for each path is not what is timed: see _run_case
            large = pyvips.Image.thumbnail(path, previews.THUMB_LARGE, height=previews.THUMB_LARGE, size="down")
            ready[path] = previews.srgb8(large).copy_memory()
        previews.from_still(ready[path], still=None)

    work.prepare = lambda paths: [work(p) for p in paths]  # type: ignore[attr-defined]
    return work


def _decode_floor_case() -> Callable[[str], None]:
    """The least any JPEG decoder must do before it can resize: read the entropy-coded data. At 1/8 scale
    libjpeg-turbo keeps only each block's DC coefficient, yet it still has to Huffman-decode every AC
    coefficient to step over it; that is this row. No thumbnailer, on either side, decodes for less."""
    from assets.previews import stills as previews

    pyvips = previews.vips()

    def work(path: str) -> None:
        pyvips.Image.jpegload(path, shrink=8, access="sequential", fail_on="error").copy_memory()

    return work


CASES: dict[str, Callable[[], Callable[[str], None]]] = {
    "pyvips (render_image)": _pyvips_case,
    "Pillow resize()": lambda: _pillow_case("resize"),
    "Pillow thumbnail()": lambda: _pillow_case("thumbnail"),
    "Pillow draft()+resize()": lambda: _pillow_case("draft"),
    "pyvips shrink=2 (reference)": _pyvips_forced_shrink_case,
    "encode + hashes only (floor)": _floor_case,
    "JPEG entropy decode only (floor)": _decode_floor_case,
}


def _run_case(name: str, paths: list[str]) -> Callable[[], dict[str, Any]]:
    def target() -> dict[str, Any]:
        import warnings

        warnings.simplefilter("ignore", DeprecationWarning)  # blurhash-python on Pillow's getdata()
        forked_rss = _rss_now()
        work = CASES[name]()
        ready_rss = _rss_now()  # the libraries imported, no image touched yet
        if hasattr(work, "prepare"):
            work.prepare(paths)
        work(paths[0])  # warm-up: codec set-up, first allocations
        start_cpu, start = os.times(), time.perf_counter()
        for path in paths[1:]:
            work(path)
        wall = time.perf_counter() - start
        end_cpu = os.times()
        cpu = (end_cpu.user - start_cpu.user) + (end_cpu.system - start_cpu.system)
        return {"wall": wall, "cpu": cpu, "count": len(paths) - 1, "forked_rss": forked_rss,
                "ready_rss": ready_rss}

    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10, help="images per run (plus one warm-up)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; median rate, highest peak")
    parser.add_argument("--size", default=f"{WIDTH}x{HEIGHT}", help="the images' size, WIDTHxHEIGHT")
    parser.add_argument("--fresh", action="store_true", help="make the images again")
    parser.add_argument("--vips-concurrency", type=int, default=0,
                        help="libvips worker threads (default: libvips' own, one per CPU)")
    parser.add_argument("--webp-effort", type=int, choices=range(7), default=None,
                        help="libwebp method for both sides (default: the studio's WEBP_EFFORT)")
    args = parser.parse_args()
    try:
        width, height = (int(side) for side in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must be WIDTHxHEIGHT, e.g. 4000x3000, not {args.size!r}")
    if min(width, height) < 64 or args.n < 1 or args.repeat < 1:
        parser.error("--size needs at least 64 px a side, --n and --repeat at least 1")
    if args.vips_concurrency:
        os.environ["VIPS_CONCURRENCY"] = str(args.vips_concurrency)
    _configure_django()
    from assets.previews import stills as previews

    if args.webp_effort is not None:
        previews.WEBP_EFFORT = args.webp_effort  # forked children inherit it, on both sides

    prepared, _ = _in_child(lambda: _prepare(args.n, args.fresh, width, height))
    paths = prepared["paths"]
    load = os.getloadavg()
    print("Command:     " + shlex.join([".venv/bin/python", "bench/previews.py", *sys.argv[1:]]))
    print(f"Machine:     {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("Libraries:   " + ", ".join(f"{k} {v}" for k, v in prepared["versions"].items()))
    print(f"Images:      {args.n} × {width}×{height} JPEG, quality {QUALITY}, {prepared['mean_mb']:.1f} MB on average, "
          f"in {BENCH_DIR}")
    print(f"Each:        1024 px + 256 px WebP (q80, effort {previews.WEBP_EFFORT}), blurhash (32 px), perceptual hash; "
          "EXIF orientation applied\n")

    rows: dict[str, dict[str, float]] = {}
    for name in CASES:
        rates, cpus, peaks, libraries, works = [], [], [], [], []
        for _ in range(args.repeat):
            result, peak_kib = _in_child(_run_case(name, paths))
            rates.append(result["count"] / result["wall"])
            cpus.append(result["cpu"] / result["count"])
            peaks.append(peak_kib / 1024)
            libraries.append((result["ready_rss"] - result["forked_rss"]) / 1024)
            works.append((peak_kib - result["ready_rss"]) / 1024)
        # CPU time comes in clock ticks (10 ms): a tiny image (--size) can take less than one.
        rows[name] = {"rate": statistics.median(rates), "cpu": max(statistics.median(cpus), 0.001), "peak": max(peaks),
                      "libraries": max(libraries), "work": max(works)}

    width = max(len(n) for n in rows) + 2
    print(f"{'':<{width}}{'previews/s':>11}{'CPU s each':>12}{'peak RSS':>10}{'imports':>9}{'work':>8}")
    for name, row in rows.items():
        memory = (f"{row['peak']:>7.0f} MB{row['libraries']:>6.0f} MB{row['work']:>5.0f} MB" if "floor" not in name
                  else f"{'(holds every thumbnail)' if 'encode' in name else '':>27}")
        print(f"{name:<{width}}{row['rate']:>11.2f}{row['cpu']:>12.3f}{memory}")

    ours = rows["pyvips (render_image)"]
    print("\nThe studio's pyvips code against Pillow (goal: at least 3× the rate, at most a third of the memory):")
    for name, row in rows.items():
        if row is ours or not name.startswith("Pillow"):
            continue
        speed, cpu = ours["rate"] / row["rate"], row["cpu"] / ours["cpu"]
        work, peak = ours["work"] / row["work"], ours["peak"] / row["peak"]
        verdict = "goal met" if speed >= 3 and work <= 1 / 3 else "goal not met"
        print(f"  vs {name:<{width}}{speed:4.1f}× the rate, {1 / cpu:.2f}× the CPU, {work:.2f}× the work memory, "
              f"{peak:.2f}× the peak RSS: {verdict}")
    encode = rows["encode + hashes only (floor)"]["cpu"]
    decode = rows["JPEG entropy decode only (floor)"]["cpu"]
    baseline = rows["Pillow resize()"]["cpu"]
    print(f"\nThe floors: encoding the same two WebP files and the hashes takes {encode:.3f} CPU s a preview on "
          f"either side, and reading a JPEG's entropy-coded data, the least a decoder can do, {decode:.3f} s. "
          f"So no thumbnailer could make these previews more than {baseline / (encode + decode):.1f}× cheaper than "
          f"Pillow resize() does ({baseline:.3f} s); the studio's code is {baseline / ours['cpu']:.1f}× cheaper.")
    print(f"\npeak RSS: ru_maxrss of the child, which was forked from a process with Django set up "
          f"({rows[name]['peak'] - rows[name]['libraries'] - rows[name]['work']:.0f} MB, as in a worker); imports: "
          "what importing the case's libraries added; work: peak RSS minus RSS before the first image.")


if __name__ == "__main__":
    main()
