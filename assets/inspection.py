"""What a file is, decided from its bytes (magic numbers), never from its name or Content-Type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

import filetype

from assets.models import AssetKind

# Formats we accept, by the MIME type sniffed from the content. Anything else is refused.
ACCEPTED: dict[str, str] = {
    "image/png": AssetKind.IMAGE,
    "image/jpeg": AssetKind.IMAGE,
    "image/webp": AssetKind.IMAGE,
    "image/gif": AssetKind.IMAGE,
    "video/mp4": AssetKind.VIDEO,
    "video/quicktime": AssetKind.VIDEO,
    "video/webm": AssetKind.VIDEO,
    "audio/mpeg": AssetKind.AUDIO,
    "audio/x-wav": AssetKind.AUDIO,
    "audio/ogg": AssetKind.AUDIO,
    "audio/x-flac": AssetKind.AUDIO,
    "audio/mp4": AssetKind.AUDIO,
    "application/pdf": AssetKind.TEXT,
}
TEXT_EXTENSIONS = {"txt", "md", "fountain", "json", "srt", "vtt", "csv"}
MESH_EXTENSIONS = {"glb": "model/gltf-binary", "obj": "model/obj"}
SIZE_LIMITS = {  # bytes, per kind
    AssetKind.IMAGE: 50 * 1024 * 1024,
    AssetKind.VIDEO: 2 * 1024 * 1024 * 1024,
    AssetKind.AUDIO: 500 * 1024 * 1024,
    AssetKind.TEXT: 20 * 1024 * 1024,
    AssetKind.MESH: 200 * 1024 * 1024,
}
MAX_IMAGE_PIXELS = 100_000_000  # decompression-bomb cap: refuse before decoding the pixels


class RefusedFile(ValueError):
    """A file we will not store, with a reason a person can act on."""

    def __init__(self, message: str, *, code: str = "unsupported_file") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Inspection:
    kind: str
    mime: str
    extension: str
    width: int | None = None
    height: int | None = None


def _head(fh: IO[bytes], size: int = 8192) -> bytes:
    fh.seek(0)
    head = fh.read(size)
    fh.seek(0)
    return head


def inspect_file(fh: IO[bytes], *, name: str, size: int) -> Inspection:
    head = _head(fh)
    if not head:
        raise RefusedFile("The file is empty.", code="empty_file")
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    guess = filetype.guess(head)
    if guess is not None and guess.mime in ACCEPTED:
        result = Inspection(kind=ACCEPTED[guess.mime], mime=guess.mime, extension=guess.extension)
    elif guess is None and ext in MESH_EXTENSIONS and _looks_like_mesh(head, ext):
        result = Inspection(kind=AssetKind.MESH, mime=MESH_EXTENSIONS[ext], extension=ext)
    elif guess is None and ext in TEXT_EXTENSIONS and _is_plain_text(head):
        result = Inspection(kind=AssetKind.TEXT, mime="text/plain", extension=ext)
    else:
        what = guess.mime if guess is not None else "an unrecognised format"
        raise RefusedFile(f"This file is {what}, which the studio does not accept. "
                          "Upload PNG, JPEG, WebP, GIF, MP4, MOV, WebM, MP3, WAV, OGG, FLAC, PDF, "
                          "plain text, GLB or OBJ.")
    limit = SIZE_LIMITS[result.kind]
    if size > limit:
        raise RefusedFile(f"This {result.kind} is {size // (1024 * 1024)} MB; the limit is "
                          f"{limit // (1024 * 1024)} MB.", code="file_too_large")
    if result.kind == AssetKind.IMAGE:
        result.width, result.height = _image_size(fh)
    return result


def inspect_bytes(data: bytes, *, name: str) -> Inspection:
    import io

    return inspect_file(io.BytesIO(data), name=name, size=len(data))


def _image_size(fh: IO[bytes]) -> tuple[int, int]:
    """Read the header only (libvips opens lazily) and refuse decompression bombs."""
    import pyvips

    fh.seek(0)
    data = fh.read()
    fh.seek(0)
    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential")
    except pyvips.Error as exc:
        raise RefusedFile("The image could not be read; it may be truncated or damaged.",
                          code="corrupt_file") from exc
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise RefusedFile(f"The image is {image.width}×{image.height} pixels; the limit is "
                          f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels.", code="image_too_large")
    return image.width, image.height


def _is_plain_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        if exc.start < len(head) - 4:
            return False
        text = head[: exc.start].decode("utf-8")
    lowered = text.lstrip().lower()
    # Never accept markup under a text name: it could be served and run as a page.
    return not lowered.startswith(("<!doctype", "<html", "<svg", "<?xml", "<script"))


def _looks_like_mesh(head: bytes, ext: str) -> bool:
    if ext == "glb":
        return head[:4] == b"glTF"
    return _is_plain_text(head) and any(
        line.split(" ", 1)[0] in {"v", "vt", "vn", "f", "o", "g", "mtllib", "#"}
        for line in head.decode("utf-8", "ignore").splitlines()[:50]
    )
