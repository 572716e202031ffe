"""Upscale ×2 or ×4 with libvips: Lanczos-3 resampling and a light sharpen, written as PNG.

libvips evaluates lazily and in tiles, so the resize, the sharpen and the PNG encoder run as one
streaming pipeline during `pngsave_buffer`; its `eval` signal is what drives progress and cancel.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import pyvips

from generations.providers.base import AssetInput, Output, ProviderError
from generations.providers.local import (
    JobCanceled,
    Report,
    asset_param,
    check_canceled,
    enum_param,
    invalid,
    vips_failure,
)

MAX_OUTPUT_PIXELS = 64_000_000
SCALES = [2, 4]

# Interpretations PNG can store as they are; anything else (CMYK, Lab, float HDR…) goes to sRGB.
PNG_INTERPRETATIONS = {"srgb", "rgb16", "b-w", "grey16"}


def _check_size(width: int, height: int, scale: int) -> None:
    out_w, out_h = width * scale, height * scale
    if out_w * out_h > MAX_OUTPUT_PIXELS:
        raise ProviderError(
            f"Upscaling {width}×{height} by {scale} would make {out_w}×{out_h} "
            f"({out_w * out_h / 1e6:.0f} megapixels); the limit is {MAX_OUTPUT_PIXELS // 1_000_000} "
            f"megapixels. Choose a smaller scale or a smaller image.",
            code="too_large", retryable=False)


def validate(inputs: Mapping[str, Any]) -> dict[str, Any]:
    image = asset_param(inputs, "image")
    scale = enum_param(inputs, "scale", SCALES, default=2)
    # The asset row usually knows its size, which lets an oversized request fail at submit.
    width, height = getattr(image, "width", None), getattr(image, "height", None)
    if width and height:
        _check_size(width, height, scale)
    return {"image": image, "scale": scale}


def decode(data: bytes, what: str) -> pyvips.Image:
    """Open image bytes with libvips (lazily: only the header is read here)."""
    try:
        image = pyvips.Image.new_from_buffer(data, "")
    except pyvips.Error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = f" ({lines[-1]})" if lines else ""
        raise invalid(f"{what} could not be read as an image{detail}.") from exc
    # Phone photos are often stored sideways with an EXIF hint; PNG output would lose the hint.
    return image.autorot()


def to_png_friendly(image: pyvips.Image) -> pyvips.Image:
    if image.interpretation not in PNG_INTERPRETATIONS:
        try:
            image = image.colourspace("srgb")
        except pyvips.Error as exc:
            raise invalid(f"Images in the {image.interpretation} colour space are not supported.") from exc
    if image.format not in ("uchar", "ushort"):
        image = image.cast("uchar")
    return image


def output_stem(asset: AssetInput) -> str:
    return PurePath(getattr(asset, "name", "") or "image").stem or "image"


def run(inputs: Mapping[str, Any], report: Report, cancel: threading.Event) -> list[Output]:
    params = validate(inputs)
    asset: AssetInput = params["image"]
    scale: int = params["scale"]

    report(2, f"reading {getattr(asset, 'name', '') or 'image'}")
    data = asset.read()
    check_canceled(cancel)
    image = decode(data, "The input")
    _check_size(image.width, image.height, scale)
    source_w, source_h = image.width, image.height
    report(10, f"input {source_w}×{source_h}, upscaling ×{scale} to {source_w * scale}×{source_h * scale}")

    image = to_png_friendly(image)
    band_format = image.format
    if image.hasalpha():
        # Resampling straight (unpremultiplied) alpha bleeds the colour of invisible pixels into edges.
        image = image.premultiply().resize(scale, kernel="lanczos3").unpremultiply()
    else:
        image = image.resize(scale, kernel="lanczos3")
    # Lanczos ringing can overshoot; clamp back into the pixel range of the original format.
    image = image.cast(band_format)
    # Sharpen works on the L channel only, so it does not shift colours; a wider sigma for ×4 matches
    # the wider blur the bigger enlargement introduces.
    image = image.sharpen(sigma=0.5 + 0.25 * scale, m2=2.0)
    image = image.cast(band_format)
    check_canceled(cancel)

    def on_eval(img: pyvips.Image, progress: Any) -> None:
        if cancel.is_set():
            img.set_kill(True)
            return
        report(12 + int(progress.percent * 0.85), None)

    image.set_progress(True)
    image.signal_connect("eval", on_eval)
    report(12, "resampling (Lanczos-3) and encoding PNG")
    try:
        png = image.pngsave_buffer(compression=6)
    except pyvips.Error as exc:
        if cancel.is_set():
            raise JobCanceled() from exc
        # Only the header was checked at decode time; a truncated or corrupt file fails here.
        raise vips_failure(exc, "The input") from exc
    report(100, f"done: {image.width}×{image.height} PNG, {len(png) // 1024} KB")
    return [Output(kind="image", mime="image/png", data=png, filename=f"{output_stem(asset)}-x{scale}.png",
                   metadata={"width": image.width, "height": image.height, "scale": scale,
                             "source_width": source_w, "source_height": source_h})]
