"""The renderers: one per kind of file, each taking a local path and its sniffed type and returning
the previews as bytes (assets.previews.stills.Rendered), or raising PreviewError with a reason to show.
Pure: no models, no storage; assets.previews.service picks one for an asset and stores what it makes.

Safety: only files the upload sniffer accepted reach here, and each goes to the one decoder its sniffed
type names (libvips' loader is checked, PyAV gets an explicit demuxer). Every decode is bounded: pixels
(the upload cap, a frame-size cap, a fixed render size for PDF pages), packets and samples decoded, and
wall-clock time inside the PyAV loops; the Celery task's time limits are the backstop for the rest.

The decoders (PyAV, numpy, pdfium) are imported where they are used: only a preview worker needs them.
"""

from __future__ import annotations

import time
from typing import Any

from assets.previews.stills import (
    THUMB_LARGE,
    PreviewError,
    Rendered,
    from_array,
    from_still,
    srgb8,
    still_rendered,
    vips,
)
from assets.uploads.inspection import MAX_IMAGE_PIXELS, VIPS_LOADERS

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


def decoder_errors() -> tuple[type[BaseException], ...]:
    """What the decoders raise on a file they cannot decode: the file's fault, not the studio's."""
    import av  # heavy (FFmpeg's libraries): loaded by the preview worker only, not by every web process
    import pypdfium2  # heavy (pdfium): loaded by the preview worker only
    import pyvips  # libvips: loaded by the preview worker only

    return (pyvips.Error, av.FFmpegError, pypdfium2.PdfiumError, ValueError, OSError, MemoryError)


def decode_message(kind: str, exc: BaseException) -> str:
    """The reason shown to the owner: the decoder's last line of complaint."""
    detail = str(exc).strip().splitlines()
    reason = detail[-1].strip() if detail else exc.__class__.__name__
    return f"The {kind} could not be decoded: {reason}"[:255]


# --- pictures -------------------------------------------------------------------------------------------

def render_image(path: str, mime: str) -> Rendered:
    pyvips = vips()
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
    return from_still(srgb8(large).copy_memory(), still=None)


def _jpeg_shrink(long_side: int) -> int:
    """The largest JPEG load-time shrink (1, 2, 4 or 8) that keeps the long side at THUMB_LARGE or more."""
    for factor in (8, 4, 2):
        if long_side // factor >= THUMB_LARGE:
            return factor
    return 1


# --- video: a poster frame --------------------------------------------------------------------------------

def render_video(path: str, mime: str) -> Rendered:
    import av  # heavy (FFmpeg's libraries): loaded by the preview worker only, not by every web process

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
    image = from_array(pixels)
    if rotation in (90, 180, 270):
        image = image.rot(f"d{rotation}")
    return still_rendered(image)


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
    import av  # heavy (FFmpeg's libraries): loaded by the preview worker only, not by every web process
    import numpy as np  # heavy: loaded by the preview worker only, not by every web process

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
    return still_rendered(from_array(_draw_waveform(np.concatenate(mins), np.concatenate(maxs))), ext="png")


def _draw_waveform(mins: Any, maxs: Any) -> Any:
    """Min/max per column (blocks grouped, or stretched when the sound is shorter than the width),
    normalised to the loudest peak, drawn as vertical bars around the centre line."""
    import numpy as np  # heavy: loaded by the preview worker only, not by every web process

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
    import pypdfium2 as pdfium  # heavy (pdfium): loaded by the preview worker only

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
    return still_rendered(from_array(pixels))
