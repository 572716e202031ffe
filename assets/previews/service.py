"""Previews: two WebP thumbnails, a blurhash and a perceptual hash for every asset that has something to
show, plus a full-size still for the kinds that are not pictures themselves (a video's poster frame, an
audio waveform, a PDF's first page). Made by a worker (assets.tasks.asset_preview_make) after the asset
exists; the asset is usable meanwhile, with preview_status "pending".

Safety: only files the upload sniffer accepted reach here, and each goes to the one decoder its sniffed
type names (libvips' loader is checked, PyAV gets an explicit demuxer). Every decode is bounded: pixels
(the upload cap, a frame-size cap, a fixed render size for PDF pages), packets and samples decoded, and
wall-clock time inside the PyAV loops; the Celery task's time limits are the backstop for the rest.

Idempotent: output files are named by their content, so running twice (or after a crash mid-run)
writes the same names and no orphans; the row is updated under a row lock, and the files it pointed to
before are deleted once that commits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from django.core.files.base import ContentFile
from django.db import OperationalError, transaction

from assets.models import Asset, AssetKind, PreviewStatus, preview_upload_to
from assets.uploads.inspection import MAX_IMAGE_PIXELS, VIPS_LOADERS
from assets.uploads.inspection import _vips as _vips_configured

if TYPE_CHECKING:
    import pyvips
    from django.core.files.storage import Storage
    from PIL import Image as PILImage

logger = logging.getLogger(__name__)

THUMB_SMALL = 256  # px on the long side: the gallery grid
THUMB_LARGE = 1024  # the lightbox before the original loads
BLURHASH_INPUT = 32  # blurhash only needs a few colours; its encoder is O(pixels × components)
WEBP_QUALITY = 80
WEBP_EFFORT = 4  # libwebp's method 0-6 (libvips' default): encoding is most of a preview's CPU
STILL_QUALITY = 85
POSTER_MAX = 2048  # a video poster's long side, whatever the frame size
PDF_LONG_SIDE = 1600  # px: a first page readable in the lightbox
PDF_MAX_POINTS = 14_400  # the PDF spec's largest page side (200 inches)
WAVEFORM_WIDTH, WAVEFORM_HEIGHT = 1000, 200
WAVEFORM_RATE = 8000  # Hz: plenty for 1000 columns of min/max, and cheap to resample to
WAVEFORM_BLOCK = 64  # samples per min/max block (8 ms at 8 kHz) before they are grouped into columns
WAVEFORM_BACKGROUND = (21, 24, 33)
WAVEFORM_COLOUR = (122, 162, 247)

# Bounds on decoding, so a hostile or pathological file cannot hold the worker.
MAX_INTERLACED_PIXELS = 40_000_000  # decoded whole, not streamed: ~6 bytes a pixel for JPEG
MAX_FRAME_PIXELS = 8192 * 8192
MAX_VIDEO_PACKETS = 1500  # read after the seek while looking for the poster frame
MAX_AUDIO_SECONDS = 6 * 3600
DECODE_SECONDS = 90.0  # wall clock for one PyAV decode loop

# What libvips must call the file: the loader it picks has to be the one for the sniffed type (the
# upload check's loaders, by their file-loading names).
IMAGE_LOADERS = {mime: loader.removesuffix("_source") for mime, loader in VIPS_LOADERS.items()}
# PyAV (FFmpeg) demuxers by sniffed type: never let FFmpeg probe its way to another format.
DEMUXERS = {
    "video/mp4": "mp4", "video/quicktime": "mov", "video/webm": "webm",
    "audio/mpeg": "mp3", "audio/x-wav": "wav", "audio/ogg": "ogg", "audio/x-flac": "flac", "audio/mp4": "mp4",
}
PDF_MIME = "application/pdf"
FILE_FIELDS = ("preview", "thumb_small", "thumb_large")


class PreviewError(Exception):
    """A final failure: the file cannot be previewed. The message is shown to the owner."""


class PreviewRetry(Exception):
    """A transient failure (storage or database unavailable): the task retries with backoff."""


@dataclass
class Rendered:
    """What one run made, in memory, before anything is stored."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # field name → (bytes, extension)
    blurhash: str = ""
    phash: str = ""


# --- entry points ---------------------------------------------------------------------------------------

def preview_enqueue(asset_id: uuid.UUID | str) -> None:
    """Queue the preview once the current transaction commits (the worker must see the row). `robust`:
    a broker that is down must not turn a stored upload into an error; the asset stays pending and
    `manage.py previews_backfill` queues it again."""
    transaction.on_commit(partial(_send, str(asset_id)), robust=True)


def _send(asset_id: str, force: bool = False) -> None:
    from assets.tasks import asset_preview_make

    asset_preview_make.delay(asset_id, force=force)


def preview_make(asset: Asset | uuid.UUID | str, *, force: bool = False) -> str | None:
    """Make (or remake, with `force`) an asset's previews and return the resulting preview_status; None
    when the asset no longer exists. Input problems end in "failed" with a reason and no files; storage
    and database outages raise PreviewRetry, leaving the row as it was."""
    asset_id = asset.pk if isinstance(asset, Asset) else uuid.UUID(str(asset))
    try:
        row = Asset.objects.filter(pk=asset_id).first()
    except OperationalError as exc:
        raise PreviewRetry(f"database unavailable: {exc}") from exc
    if row is None:
        return None
    if not force and row.preview_status in (PreviewStatus.READY, PreviewStatus.NONE):
        return row.preview_status
    maker = _maker_for(row)
    if maker is None:
        return _save(row.pk, Rendered(), status=PreviewStatus.NONE, force=force)
    try:
        with _local_copy(row) as path:
            outcome = _render(maker, path, row)
    except Exception as exc:
        if isinstance(exc, FileNotFoundError):  # open_stored turns S3's 404 into this too
            return preview_fail(row.pk, "The original file is missing from storage.", force=True)
        if isinstance(exc, _storage_errors()):
            raise PreviewRetry(f"storage unavailable: {exc}") from exc
        raise
    if isinstance(outcome, str):
        return preview_fail(row.pk, outcome, force=True)
    return _save(row.pk, outcome, status=PreviewStatus.READY, force=force)


def _render(maker: Callable[[str, str], Rendered], path: str, asset: Asset) -> Rendered | str:
    """Run a decoder on the local copy; a file it cannot decode is the file's fault, whatever the
    decoder raised (FFmpeg reports some damage as OSError), so it comes back as the reason to show."""
    try:
        return maker(path, asset.mime)
    except PreviewError as exc:
        return str(exc)
    except _decoder_errors() as exc:
        logger.info("preview of asset %s failed to decode: %s", asset.pk, exc)
        return _decode_message(asset.kind, exc)


def preview_fail(asset_id: uuid.UUID | str, message: str, *, force: bool = False) -> str | None:
    """Record a final failure. Without `force` (a transient error that ran out of retries) a preview
    that another run made meanwhile is left alone."""
    try:
        with transaction.atomic():
            row = Asset.objects.select_for_update().filter(pk=asset_id).first()
            if row is None:
                return None
            if not force and row.preview_status in (PreviewStatus.READY, PreviewStatus.NONE):
                return row.preview_status
            stale = [getattr(row, name).name for name in FILE_FIELDS if getattr(row, name).name]
            Asset.objects.filter(pk=row.pk).update(
                preview_status=PreviewStatus.FAILED, preview_error=message[:255], blurhash="", phash="",
                **{name: "" for name in FILE_FIELDS})
            transaction.on_commit(partial(_delete_files, row.file.storage, stale))
    except OperationalError as exc:
        raise PreviewRetry(f"database unavailable: {exc}") from exc
    return PreviewStatus.FAILED


# --- storing ----------------------------------------------------------------------------------------------

def _save(asset_id: uuid.UUID, rendered: Rendered, *, status: str, force: bool) -> str | None:
    storage = Asset.file.field.storage
    row = Asset.objects.filter(pk=asset_id).only("id", "project_id").first()
    if row is None:
        return None
    names: dict[str, str] = {}
    written: list[str] = []
    try:
        for name, (data, ext) in rendered.files.items():
            digest = hashlib.sha256(data).hexdigest()[:16]
            wanted = preview_upload_to(row, f"{name.replace('thumb_', '')}-{digest}.{ext}")
            # Named by content: a re-run (or a retry after a crash) finds the same file already there. The
            # size check catches a file cut short by a crash mid-write (local storage writes in place).
            if storage.exists(wanted) and storage.size(wanted) == len(data):
                names[name] = wanted
            else:
                if storage.exists(wanted):
                    storage.delete(wanted)
                names[name] = storage.save(wanted, ContentFile(data))
                written.append(names[name])
        with transaction.atomic():
            locked = Asset.objects.select_for_update().filter(pk=asset_id).first()
            if locked is None:  # deleted while we worked: everything named for it is garbage
                _delete_files(storage, list(names.values()))
                return None
            if not force and locked.preview_status in (PreviewStatus.READY, PreviewStatus.NONE):
                # A duplicate delivery finished first; keep its result, drop ours.
                kept = {getattr(locked, n).name for n in FILE_FIELDS}
                _delete_files(storage, [n for n in names.values() if n not in kept])
                return locked.preview_status
            previous = [getattr(locked, n).name for n in FILE_FIELDS]
            Asset.objects.filter(pk=asset_id).update(
                preview_status=status, preview_error="", blurhash=rendered.blurhash, phash=rendered.phash,
                **{n: names.get(n, "") for n in FILE_FIELDS})
            stale = [n for n in previous if n and n not in names.values()]
            transaction.on_commit(partial(_delete_files, storage, stale))
    except _storage_errors() as exc:
        _delete_files(storage, written)
        raise PreviewRetry(f"storage unavailable: {exc}") from exc
    return status


def _delete_files(storage: Storage, names: list[str]) -> None:
    """A leftover file is better than a lost preview row: failures are logged, not raised."""
    from assets.services import files_delete  # services imports this module

    files_delete(names, storage=storage)


def _storage_errors() -> tuple[type[BaseException], ...]:
    """What storage raises when it is unavailable or full: worth a retry later."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (OSError, BotoCoreError, ClientError, OperationalError)


def _decoder_errors() -> tuple[type[BaseException], ...]:
    import av
    import pypdfium2
    import pyvips

    return (pyvips.Error, av.FFmpegError, pypdfium2.PdfiumError, ValueError, OSError, MemoryError)


def _decode_message(kind: str, exc: BaseException) -> str:
    detail = str(exc).strip().splitlines()
    reason = detail[-1].strip() if detail else exc.__class__.__name__
    return f"The {kind} could not be decoded: {reason}"[:255]


@contextmanager
def _local_copy(asset: Asset) -> Iterator[str]:
    """A path to the original: the file itself on local storage; on remote storage (S3) a temporary copy,
    streamed in chunks, removed afterwards. Decoders get a seekable local file either way."""
    storage = asset.file.storage
    try:
        path = storage.path(asset.file.name)
    except NotImplementedError:
        path = None
    if path is not None:
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        yield path
        return
    from assets.storage import CHUNK, open_stored

    suffix = "." + asset.file.name.rsplit(".", 1)[-1] if "." in asset.file.name else ""
    with tempfile.NamedTemporaryFile(prefix="preview-", suffix=suffix) as tmp:
        # open_stored reads the object's body as it arrives (django-storages' own open() would first
        # spool the whole object into a temporary file of its own).
        with open_stored(asset.file.name, storage) as src:
            shutil.copyfileobj(src, tmp, CHUNK)
        tmp.flush()
        yield tmp.name


def _maker_for(asset: Asset) -> Callable[[str, str], Rendered] | None:
    if asset.kind == AssetKind.IMAGE and asset.mime in IMAGE_LOADERS:
        return render_image
    if asset.kind == AssetKind.VIDEO and asset.mime in DEMUXERS:
        return render_video
    if asset.kind == AssetKind.AUDIO and asset.mime in DEMUXERS:
        return render_audio
    if asset.kind == AssetKind.TEXT and asset.mime == PDF_MIME:
        return render_pdf
    return None  # a mesh, plain text, anything else: nothing to draw


# --- pictures -------------------------------------------------------------------------------------------

_vips_ready = False


def _vips() -> Any:
    """pyvips as the upload check sets it up (no operation cache: it would keep decoded images and open
    files, including deleted temporary copies, alive between tasks; no untrusted loaders), with one
    malloc arena in a worker."""
    global _vips_ready
    if not _vips_ready:
        _vips_ready = True
        _limit_malloc_arenas()
    return _vips_configured()


def _limit_malloc_arenas(arenas: int = 1) -> None:
    """libvips decodes on a pool of threads, and glibc gives each thread its own malloc arena, which keeps
    the buffers freed in it: a worker's RSS climbs by tens of MB over its first previews and stays there
    ("Linux memory allocator" in libvips' developer checklist). One arena (as MALLOC_ARENA_MAX=1) cost no
    CPU and took the memory of 20 12-megapixel previews from 74 MB (glibc's default) to 38 MB here. It
    must be set before libvips starts its threads, so on first use; process-wide, and a no-op off glibc."""
    import ctypes
    import ctypes.util

    if not (libc_name := ctypes.util.find_library("c")) or "libc.so" not in libc_name:
        return
    try:
        mallopt = ctypes.CDLL(libc_name).mallopt
    except (OSError, AttributeError):
        return
    m_arena_max = -8  # from glibc's malloc.h
    mallopt(m_arena_max, arenas)


def _srgb8(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB (with alpha if it had one): what WebP and the hashes want, whatever came in
    (greyscale, CMYK, 16-bit PNG)."""
    if image.interpretation != "srgb":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def render_image(path: str, mime: str) -> Rendered:
    pyvips = _vips()
    header = pyvips.Image.new_from_file(path, access="sequential", fail_on="error")  # the header only
    if header.get("vips-loader") != IMAGE_LOADERS[mime]:
        raise PreviewError("The image's content does not match its type.")
    pixels = header.width * header.height
    if pixels > MAX_IMAGE_PIXELS:
        raise PreviewError(f"The image is {header.width}×{header.height} pixels; previews stop at "
                           f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels.")
    if header.get_typeof("interlaced") and header.get("interlaced") and pixels > MAX_INTERLACED_PIXELS:
        # A progressive JPEG or interlaced PNG cannot be streamed: it is decoded whole, in memory.
        raise PreviewError(f"The image is a {pixels // 1_000_000}-megapixel progressive (interlaced) file; "
                           f"previews of those stop at {MAX_INTERLACED_PIXELS // 1_000_000} megapixels.")
    # Shrink-on-load. A JPEG decodes in the DCT domain at the smallest of 1/2, 1/4 or 1/8 scale that still
    # leaves its long side at least THUMB_LARGE (as Pillow's draft() does), and the Lanczos resize does the
    # rest: a 12-megapixel photo decodes at 2000×1500, not 4000×3000, for less than half the CPU and a
    # quarter of the memory (bench/previews.py). libvips' own thumbnail() would only shrink on load when
    # another 2× reduction remains after it. Other formats go through thumbnail(). Either way the decode
    # streams through the resize, so the full-size image is never in memory at once. EXIF orientation is
    # applied; an embedded colour profile is converted to sRGB.
    shrink = _jpeg_shrink(max(header.width, header.height)) if mime == "image/jpeg" else 1
    if shrink > 1:
        image = pyvips.Image.jpegload(path, shrink=shrink, access="sequential", fail_on="error").autorot()
        large = image.thumbnail_image(THUMB_LARGE, height=THUMB_LARGE, size="down")
    else:
        large = pyvips.Image.thumbnail(path, THUMB_LARGE, height=THUMB_LARGE, size="down", fail_on="error")
    return _from_still(_srgb8(large).copy_memory(), still=None)


def _jpeg_shrink(long_side: int) -> int:
    """The largest JPEG load-time shrink (1, 2, 4 or 8) that keeps the long side at THUMB_LARGE or more."""
    for factor in (8, 4, 2):
        if long_side // factor >= THUMB_LARGE:
            return factor
    return 1


def _from_still(large: pyvips.Image, *, still: tuple[bytes, str] | None) -> Rendered:
    """Thumbnails, blurhash and phash from an in-memory image at most THUMB_LARGE on its long side."""
    import blurhash
    import imagehash

    small = large.thumbnail_image(THUMB_SMALL, height=THUMB_SMALL, size="down").copy_memory()
    rendered = Rendered()
    if still is not None:
        rendered.files["preview"] = still
    # keep="none": thumbnails carry no EXIF, XMP or ICC (they are sRGB already).
    rendered.files["thumb_large"] = (large.webpsave_buffer(Q=WEBP_QUALITY, effort=WEBP_EFFORT, keep="none"), "webp")
    rendered.files["thumb_small"] = (small.webpsave_buffer(Q=WEBP_QUALITY, effort=WEBP_EFFORT, keep="none"), "webp")
    opaque = _flatten(small)
    tiny = opaque.thumbnail_image(BLURHASH_INPUT, height=BLURHASH_INPUT, size="down")
    x, y = (4, 3) if tiny.width >= tiny.height else (3, 4)
    with warnings.catch_warnings():  # blurhash-python reads pixels with Pillow's deprecated getdata()
        warnings.simplefilter("ignore", DeprecationWarning)
        rendered.blurhash = blurhash.encode(_pil(tiny), x, y)
    rendered.phash = str(imagehash.phash(_pil(opaque)))
    return rendered


def _flatten(image: pyvips.Image) -> pyvips.Image:
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    if image.bands > 3:  # extra bands libvips did not flag as alpha
        image = image.extract_band(0, n=3)
    return image.cast("uchar")


def _pil(image: pyvips.Image) -> PILImage.Image:
    from PIL import Image

    return Image.fromarray(image.numpy()).convert("RGB")


def _from_array(pixels: Any) -> pyvips.Image:
    pyvips = _vips()
    height, width, bands = pixels.shape
    image = pyvips.Image.new_from_memory(pixels.tobytes(), width, height, bands, "uchar")
    return image.copy(interpretation="srgb")


def _still(image: pyvips.Image, ext: str = "webp") -> Rendered:
    """A full-size still (poster, waveform, page) plus thumbnails and hashes made from it."""
    image = _srgb8(image).copy_memory()
    data = image.pngsave_buffer(keep="none") if ext == "png" else image.webpsave_buffer(Q=STILL_QUALITY, keep="none")
    large = image.thumbnail_image(THUMB_LARGE, height=THUMB_LARGE, size="down").copy_memory()
    return _from_still(large, still=(data, ext))


# --- video: a poster frame --------------------------------------------------------------------------------

def render_video(path: str, mime: str) -> Rendered:
    import av

    deadline = time.monotonic() + DECODE_SECONDS
    with av.open(path, mode="r", format=DEMUXERS[mime]) as container:
        if not container.streams.video:
            raise PreviewError("The video has no picture track to make a poster from.")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height or width * height > MAX_FRAME_PIXELS:
            raise PreviewError(f"The video's frame size ({width}×{height}) is not one we can preview.")
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        # 10% in (past fades from black and title cards), or 1 s when the length is unknown.
        target = duration * 0.1 if duration else 1.0
        start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
        if target > 0 and stream.time_base:
            try:  # to the keyframe at or before the target; a file that cannot seek is read from the start
                container.seek(int((start + target) / stream.time_base), stream=stream, backward=True)
            except av.FFmpegError:
                container.seek(0)
        frame = _first_frame_from(container, stream, start + target, deadline)
        if frame is None:
            raise PreviewError("No picture could be decoded from the video.")
        rotation = -int(getattr(frame, "rotation", 0) or 0) % 360  # counter-clockwise → clockwise
        out_w, out_h = _poster_size(frame.width, frame.height, stream.sample_aspect_ratio)
        pixels = frame.to_ndarray(format="rgb24", width=out_w, height=out_h)
    image = _from_array(pixels)
    if rotation in (90, 180, 270):
        image = image.rot(f"d{rotation}")
    return _still(image)


def _first_frame_from(container: Any, stream: Any, target: float, deadline: float) -> Any:
    """The first frame at or after `target` seconds (or the last one decoded within the bounds: the
    keyframe the seek landed on is a fine poster)."""
    frame = None
    packets = 0
    for packet in container.demux(stream):
        packets += 1
        if packets > MAX_VIDEO_PACKETS or time.monotonic() > deadline:
            break
        for decoded in packet.decode():
            frame = decoded
            if decoded.time is None or decoded.time >= target - 0.001:
                return frame
    return frame


def _poster_size(width: int, height: int, sar: Any) -> tuple[int, int]:
    if sar and sar.numerator and sar.denominator and sar != 1:  # anamorphic: show the display shape
        width = max(1, round(width * sar.numerator / sar.denominator))
    scale = min(1.0, POSTER_MAX / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# --- audio: a waveform ------------------------------------------------------------------------------------

def render_audio(path: str, mime: str) -> Rendered:
    import av
    import numpy as np

    deadline = time.monotonic() + DECODE_SECONDS
    mins: list[Any] = []
    maxs: list[Any] = []
    carry = np.empty(0, dtype=np.float32)
    total = 0
    limit = MAX_AUDIO_SECONDS * WAVEFORM_RATE

    def take(frames: list[Any]) -> None:
        nonlocal carry, total
        for out in frames:
            samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            total += samples.size
            if total > limit:
                raise PreviewError(f"The audio is longer than {MAX_AUDIO_SECONDS / 3600:g} hours; no waveform drawn.")
            carry = np.concatenate([carry, samples])
            whole = carry.size - carry.size % WAVEFORM_BLOCK
            if whole:
                blocks = carry[:whole].reshape(-1, WAVEFORM_BLOCK)
                mins.append(blocks.min(axis=1))
                maxs.append(blocks.max(axis=1))
                carry = carry[whole:]

    with av.open(path, mode="r", format=DEMUXERS[mime]) as container:
        if not container.streams.audio:
            raise PreviewError("The file has no sound track to draw.")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=WAVEFORM_RATE)
        for packet in container.demux(stream):
            if time.monotonic() > deadline:
                raise PreviewError("Drawing the waveform took too long.")
            for frame in packet.decode():
                take(resampler.resample(frame))
        take(resampler.resample(None))
    if carry.size:
        mins.append(carry.min(keepdims=True))
        maxs.append(carry.max(keepdims=True))
    if not mins:
        raise PreviewError("No sound could be decoded from the file.")
    return _still(_from_array(_draw_waveform(np.concatenate(mins), np.concatenate(maxs))), ext="png")


def _draw_waveform(mins: Any, maxs: Any) -> Any:
    """Min/max per column (blocks grouped, or stretched when the sound is shorter than the width),
    normalised to the loudest peak, drawn as vertical bars around the centre line."""
    import numpy as np

    starts = np.linspace(0, mins.size, WAVEFORM_WIDTH, endpoint=False).astype(np.intp)
    # reduceat over [starts[i], starts[i+1]); where two starts are equal it takes the single element.
    low = np.minimum.reduceat(mins, starts)
    high = np.maximum.reduceat(maxs, starts)
    peak = float(max(np.abs(low).max(), np.abs(high).max()))
    scale = 1.0 / peak if peak > 1e-4 else 0.0
    centre = (WAVEFORM_HEIGHT - 1) / 2
    reach = WAVEFORM_HEIGHT / 2 - 2
    top = np.floor(centre - np.clip(high * scale, -1, 1) * reach)
    bottom = np.ceil(centre - np.clip(low * scale, -1, 1) * reach)
    top, bottom = np.minimum(top, np.floor(centre)), np.maximum(bottom, np.ceil(centre))  # at least a line
    rows = np.arange(WAVEFORM_HEIGHT)[:, None]
    mask = (rows >= top[None, :]) & (rows <= bottom[None, :])
    pixels = np.empty((WAVEFORM_HEIGHT, WAVEFORM_WIDTH, 3), dtype=np.uint8)
    pixels[...] = WAVEFORM_BACKGROUND
    pixels[mask] = WAVEFORM_COLOUR
    return pixels


# --- PDF: the first page ----------------------------------------------------------------------------------

def render_pdf(path: str, mime: str) -> Rendered:
    import pypdfium2 as pdfium

    # pdfium runs no JavaScript and draws no form fields unless a form environment is set up; none is.
    pdf = pdfium.PdfDocument(path)
    try:
        if len(pdf) < 1:
            raise PreviewError("The PDF has no pages.")
        page = pdf[0]
        try:
            width, height = page.get_size()
            if not (1 <= width <= PDF_MAX_POINTS and 1 <= height <= PDF_MAX_POINTS):
                raise PreviewError(f"The PDF's first page is {width:.0f}×{height:.0f} points; not a page we can draw.")
            # A fixed pixel budget: the render costs the same whatever size the page claims.
            bitmap = page.render(scale=PDF_LONG_SIDE / max(width, height), rev_byteorder=True,
                                 may_draw_forms=False)
            pixels = bitmap.to_numpy()[:, :, :3].copy()
        finally:
            page.close()
    finally:
        pdf.close()
    return _still(_from_array(pixels))


def content_type_for(name: str) -> str:
    """A preview file's type, from the extension it was stored under (WebP, PNG or JPEG)."""
    from assets.storage import stored_mime

    return stored_mime(name)


def previews_backfill(*, everything: bool = False, kind: str | None = None, batch_size: int = 500,
                      inline: bool = False, progress: Callable[[int], None] | None = None) -> int:
    """Queue previews for assets that have none yet (pending: a lost message, a broker that was down;
    failed: worth another try after a fix), or for every asset with `everything` (a new size or encoder:
    remade even when ready). Walks the table by primary key in batches, never loading it whole.
    `inline` makes them in this process instead (no worker needed). Returns how many were handled."""
    qs = Asset.objects.all()
    if not everything:
        qs = qs.filter(preview_status__in=[PreviewStatus.PENDING, PreviewStatus.FAILED])
    if kind:
        qs = qs.filter(kind=kind)
    done = 0
    last: uuid.UUID | None = None
    while True:
        page = qs.filter(pk__gt=last) if last is not None else qs
        ids = list(page.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return done
        for asset_id in ids:
            if inline:
                preview_make(asset_id, force=True)
            else:
                # force: a failed one must be remade, and with --all a ready one too. A pending one
                # queued twice (its first message still in flight) costs one duplicate render, no files.
                _send(str(asset_id), force=True)
        done += len(ids)
        last = ids[-1]
        if progress is not None:
            progress(done)
