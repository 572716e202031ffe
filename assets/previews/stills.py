"""From a decoded picture to what a preview stores: the two WebP thumbnails, the blurhash and the
perceptual hash, and a full-size still (a poster frame, a waveform, a page) with its thumbnails. Pure:
images in, bytes and strings out; no models, no storage (assets.previews.service stores them).

pyvips, Pillow and the hash libraries are imported where they are used: only a preview worker needs
them, and every web process imports the service that queues previews.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assets.uploads.inspection import _vips as _vips_configured

if TYPE_CHECKING:
    import pyvips
    from PIL import Image as PILImage

THUMB_SMALL = 256  # px on the long side: the gallery grid
THUMB_LARGE = 1024  # the lightbox before the original loads
BLURHASH_INPUT = 32  # blurhash only needs a few colours; its encoder is O(pixels × components)
WEBP_QUALITY = 80
WEBP_EFFORT = 4  # libwebp's method 0-6 (libvips' default): encoding is most of a preview's CPU
STILL_QUALITY = 85


class PreviewError(Exception):
    """A final failure: the file cannot be previewed. The message is shown to the owner."""


@dataclass
class Rendered:
    """What one run made, in memory, before anything is stored."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # field name → (bytes, extension)
    blurhash: str = ""
    phash: str = ""


_vips_ready = False


def vips() -> Any:
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
    if not (libc_name := ctypes.util.find_library("c")) or "libc.so" not in libc_name:
        return
    try:
        mallopt = ctypes.CDLL(libc_name).mallopt
    except (OSError, AttributeError):
        return
    m_arena_max = -8  # from glibc's malloc.h
    mallopt(m_arena_max, arenas)


def srgb8(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB (with alpha if it had one): what WebP and the hashes want, whatever came in
    (greyscale, CMYK, 16-bit PNG)."""
    if image.interpretation != "srgb":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def from_still(large: pyvips.Image, *, still: tuple[bytes, str] | None) -> Rendered:
    """Thumbnails, blurhash and phash from an in-memory image at most THUMB_LARGE on its long side."""
    import blurhash  # heavy (with imagehash, ~0.3 s): loaded by the preview worker only
    import imagehash  # heavy (scipy, PyWavelets): loaded by the preview worker only

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
    from PIL import Image  # loaded by the preview worker only

    return Image.fromarray(image.numpy()).convert("RGB")


def from_array(pixels: Any) -> pyvips.Image:
    pyvips = vips()
    height, width, bands = pixels.shape
    image = pyvips.Image.new_from_memory(pixels.tobytes(), width, height, bands, "uchar")
    return image.copy(interpretation="srgb")


def still_rendered(image: pyvips.Image, ext: str = "webp") -> Rendered:
    """A full-size still (poster, waveform, page) plus thumbnails and hashes made from it."""
    image = srgb8(image).copy_memory()
    data = image.pngsave_buffer(keep="none") if ext == "png" else image.webpsave_buffer(Q=STILL_QUALITY, keep="none")
    large = image.thumbnail_image(THUMB_LARGE, height=THUMB_LARGE, size="down").copy_memory()
    return from_still(large, still=(data, ext))
