"""What a file is, decided from its bytes (magic numbers), never from its name or Content-Type, and
whether the studio will store it.

`inspect_file` reads the file as a stream: the first 8 KB decide the type; images are opened by the
format's own libvips loader (a header read first, so a decompression bomb is refused before a pixel is
decoded, then one sequential pass that decodes every pixel of the first frame without holding the
image); audio and video are probed and their first frame decoded with PyAV (assets.uploads.probe); PDFs are
opened with PDFium; GLB headers are checked. Nothing here reads a whole file into memory: libvips,
PyAV and PDFium get the upload's temporary file path, or a stream over the file object.

`strict` (uploads) adds the checks that only make sense for files from people: the markup scan of
images (polyglots) and the full UTF-8 check of text. Generated outputs are inspected with
strict=False: a provider's output that decodes as an image but happens to carry markup in a text chunk
is still the user's paid-for result, and it is served as its sniffed type like every file.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import struct
from typing import IO, Any

import filetype
from django.conf import settings

from assets.models import AssetKind
from assets.uploads.probe import probe_media
from assets.uploads.types import Inspection, RefusedFile, local_path

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
SIZE_LIMITS = {  # bytes, per kind; settings.ASSET_SIZE_LIMITS = {"image": ..., ...} overrides any of them
    AssetKind.IMAGE: 50 * 1024 * 1024,
    AssetKind.VIDEO: 2 * 1024 * 1024 * 1024,
    AssetKind.AUDIO: 500 * 1024 * 1024,
    AssetKind.TEXT: 20 * 1024 * 1024,
    AssetKind.MESH: 200 * 1024 * 1024,
}
MAX_IMAGE_PIXELS = 100_000_000  # decompression-bomb cap: refuse before decoding the pixels
MAX_ANIMATION_PIXELS = 1_000_000_000  # frames × pixels of an animated GIF or WebP
HEAD_SIZE = 8192  # what the type is decided from
SCAN_CHUNK = 1024 * 1024
ACCEPTED_NAMES = "PNG, JPEG, WebP, GIF, MP4, MOV, WebM, MP3, WAV, OGG, FLAC, M4A, PDF, plain text, GLB or OBJ"

# libvips' loader for each accepted image type. Only these are ever called: libvips would otherwise
# pick a loader by sniffing, and it has loaders (SVG, HEIF, …) for formats we refuse.
VIPS_LOADERS = {
    "image/png": "pngload_source",
    "image/jpeg": "jpegload_source",
    "image/webp": "webpload_source",
    "image/gif": "gifload_source",
}

# HTML or script inside an image: a polyglot. Every pattern is at least six bytes with a delimiter, so
# random compressed pixel data matches one by chance about 8e-13 times per byte: once in 25,000 of the
# largest images (50 MB), once in 400,000 typical 3 MB photos. "<svg" plus a delimiter (5 bytes) would
# misfire on one 50 MB image in 400, and an SVG fragment in a raster image cannot run anyway.
MARKUP = re.compile(
    rb"<(?:script|iframe|object|embed)[\s>/]|<(?:html|body)[\s>]|<!doctype\s+html|javascript:",
    re.IGNORECASE,
)
MARKUP_OVERLAP = 32


def size_limit(kind: str) -> int:
    return int(getattr(settings, "ASSET_SIZE_LIMITS", {}).get(kind, SIZE_LIMITS[kind]))


def largest_size_limit() -> int:
    return max(size_limit(kind) for kind in SIZE_LIMITS)


def megabytes(size: int) -> str:
    """Sizes in messages: "12.5 MB", and small limits (tests, tight settings) still say something true."""
    if size < 1024 * 1024:
        return f"{max(size, 1) / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"
    mb = size / (1024 * 1024)
    return f"{mb:.0f} MB" if mb >= 100 or mb == int(mb) else f"{mb:.1f} MB"


def too_large(kind: str, size: int, *, at_least: bool = False) -> RefusedFile:
    limit = size_limit(kind)
    what = "more than " if at_least else ""
    return RefusedFile(f"This {kind} file is {what}{megabytes(size)}; the limit for {kind} files is "
                       f"{megabytes(limit)}.", code="file_too_large")


# --- the type, from the first bytes ------------------------------------------------------------------------

def classify(head: bytes, name: str) -> Inspection:
    """The type from the first bytes (and, for text and meshes, which have no magic number, the name's
    extension as well). Raises RefusedFile for anything not accepted. Used by the upload handler on the
    first chunk of an upload too, so a refused type stops the upload early."""
    if not head:
        raise RefusedFile("The file is empty.", code="empty_file")
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    guess = filetype.guess(head)
    if guess is not None and guess.mime in ACCEPTED:
        return Inspection(kind=ACCEPTED[guess.mime], mime=guess.mime, extension=guess.extension)
    if guess is None and ext in MESH_EXTENSIONS and _looks_like_mesh(head, ext):
        return Inspection(kind=AssetKind.MESH, mime=MESH_EXTENSIONS[ext], extension=ext)
    if guess is None and ext in TEXT_EXTENSIONS and _is_plain_text(head):
        return Inspection(kind=AssetKind.TEXT, mime="text/plain", extension=ext)
    if guess is None and _starts_with_markup(head):
        raise RefusedFile("This file is HTML, SVG or XML markup, which the studio never accepts (a browser could "
                          f"run it as a page). Upload {ACCEPTED_NAMES}.")
    if guess is None and ext in TEXT_EXTENSIONS | set(MESH_EXTENSIONS):
        raise RefusedFile(f"This .{ext} file is not what its name says: {_not_text_reason(head, ext)}",
                          code="unsupported_file")
    what = guess.mime if guess is not None else "an unrecognised format"
    raise RefusedFile(f"This file is {what}, which the studio does not accept. Upload {ACCEPTED_NAMES}.")


def _head(fh: IO[bytes], size: int = HEAD_SIZE) -> bytes:
    fh.seek(0)
    head = fh.read(size)
    fh.seek(0)
    return head


def inspect_file(fh: IO[bytes], *, name: str, size: int, strict: bool = True) -> Inspection:
    """Decide what `fh` is and check it, or raise RefusedFile. `size` is the file's size in bytes."""
    refusal = getattr(fh, "upload_refusal", None)  # the upload handler already refused it mid-stream
    if refusal is not None:
        raise refusal
    result = classify(_head(fh), name)
    if size > size_limit(result.kind):
        raise too_large(result.kind, size)
    if result.kind == AssetKind.IMAGE:
        _check_image(fh, result, strict=strict)
    elif result.kind in (AssetKind.VIDEO, AssetKind.AUDIO):
        probe_media(fh, result, strict=strict)
    elif result.mime == "application/pdf":
        _check_pdf(fh, result)
    elif result.mime == "model/gltf-binary":
        _check_glb(fh, result, size=size)
    elif strict:  # text and OBJ
        _check_utf8(fh, result)
    return result


# --- where the bytes are ---------------------------------------------------------------------------------

def vips_source(fh: Any) -> Any:
    """A libvips source over the file: the file itself when it is on disk, else a stream over the file
    object (read in libvips' own chunks; nothing is copied into one buffer)."""
    import pyvips  # libvips (a C library) loads on first use, not in every process that imports this

    path = local_path(fh)
    if path is not None:
        return pyvips.Source.new_from_file(path)
    raw = getattr(fh, "file", fh)
    if isinstance(raw, io.BytesIO):  # a small upload, already in memory: no copy, no callbacks
        return pyvips.Source.new_from_memory(raw.getbuffer())
    fh.seek(0)
    source = pyvips.SourceCustom()

    def on_read(size: int) -> bytes:
        return fh.read(size)

    def on_seek(offset: int, whence: int) -> int:
        fh.seek(offset, whence)
        return fh.tell()

    source.on_read(on_read)
    source.on_seek(on_seek)
    return source


def iter_chunks(fh: IO[bytes], chunk: int = SCAN_CHUNK) -> Any:
    fh.seek(0)
    while True:
        data = fh.read(chunk)
        if not data:
            break
        yield data
    fh.seek(0)


# --- images ----------------------------------------------------------------------------------------------

_vips_ready = False


def _vips() -> Any:
    """pyvips, set up once for a server: no operation cache (it would keep images, their sources and
    open files, including moved or deleted temporary uploads, alive between requests; assets.previews.service
    does the same in the worker) and no loaders libvips marks untrusted."""
    global _vips_ready
    import pyvips  # libvips (a C library) loads on first use, not in every process that imports this

    if not _vips_ready:
        _vips_ready = True
        pyvips.cache_set_max(0)
        pyvips.block_untrusted_set(True)
    return pyvips


def _check_image(fh: IO[bytes], result: Inspection, *, strict: bool) -> None:
    pyvips = _vips()
    loader = getattr(pyvips.Image, VIPS_LOADERS[result.mime])
    # Each source is held in a variable for as long as its image is used: libvips calls back into a
    # custom source lazily, and a collected one would be read after it is gone.
    source = vips_source(fh)
    try:
        # A header read: libvips opens lazily, so this reads the dimensions and decodes no pixels.
        header = loader(source, access="sequential", fail_on="error")
    except pyvips.Error as exc:
        raise RefusedFile("The image could not be read; it may be truncated or damaged.",
                          code="corrupt_file") from exc
    width, height = header.width, header.height
    pages = header.get("n-pages") if header.get_typeof("n-pages") else 1
    if width * height > MAX_IMAGE_PIXELS:
        raise RefusedFile(f"The image is {width}×{height} pixels; the limit is "
                          f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels.", code="image_too_large")
    if width * height * max(pages, 1) > MAX_ANIMATION_PIXELS:
        raise RefusedFile(f"The animation has {pages} frames of {width}×{height} pixels; the limit is "
                          f"{MAX_ANIMATION_PIXELS // 1_000_000} megapixels over all frames.", code="image_too_large")
    try:
        # A real decode of every pixel of the first frame, in one sequential pass (libvips streams it
        # in strips; the image is never whole in memory). fail_on="error" turns libvips' tolerance of
        # truncated files into an error, so a cut-off upload is refused rather than stored half grey.
        source = vips_source(fh)
        loader(source, access="sequential", fail_on="error").avg()
    except pyvips.Error as exc:
        raise RefusedFile("The image is truncated or damaged: its pixels could not be decoded.",
                          code="corrupt_file") from exc
    result.width, result.height = width, height
    result.metadata = {"format": result.extension, **({"frames": pages} if pages > 1 else {})}
    if strict:
        _refuse_markup(fh)


def _refuse_markup(fh: IO[bytes]) -> None:
    """Refuse an image that carries HTML or script anywhere: in a text chunk, a comment, or appended
    after the image (a GIF/JPEG + HTML polyglot). Streamed with an overlap so a pattern split across
    two reads is still found."""
    tail = b""
    for chunk in iter_chunks(fh):
        window = tail + chunk
        if MARKUP.search(window):
            fh.seek(0)
            raise RefusedFile("This image carries HTML or script content (a polyglot file), which the studio "
                              "does not store. Export the image again without it.", code="unsafe_file")
        tail = window[-MARKUP_OVERLAP:]


# --- PDF, GLB, text ---------------------------------------------------------------------------------------

def _check_pdf(fh: IO[bytes], result: Inspection) -> None:
    """A real PDF: PDFium opens it (parsing the cross-reference table and the page tree, never a
    page's content streams) and it has pages. Encrypted PDFs are refused: previews and search cannot read
    them, and one that needs a password is unusable to everyone else it is shared with."""
    import pypdfium2 as pdfium  # PDFium (a C library) loads on the first PDF, not at start
    import pypdfium2.raw as pdfium_c  # the same library's raw bindings

    path = local_path(fh)
    fh.seek(0)
    try:
        document = pdfium.PdfDocument(path if path is not None else fh)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise RefusedFile("This PDF is protected by a password; upload an unprotected copy.",
                              code="encrypted_file") from exc
        raise RefusedFile("This PDF could not be read; it may be truncated or damaged.",
                          code="corrupt_file") from exc
    try:
        if pdfium_c.FPDF_GetSecurityHandlerRevision(document.raw) != -1:
            raise RefusedFile("This PDF is encrypted; save an unencrypted copy and upload that.",
                              code="encrypted_file")
        pages = len(document)
        if pages < 1:
            raise RefusedFile("This PDF has no pages.", code="corrupt_file")
        # The size from the page dictionary: loading the page would parse (and inflate) its content
        # streams, which a Flate bomb makes gigabytes. Rendering is the preview worker's, bounded there.
        page_width, page_height = document.get_page_size(0)
    finally:
        document.close()
        fh.seek(0)
    result.metadata = {"pages": pages, "page_size": [round(page_width, 1), round(page_height, 1)]}


GLB_JSON_CHUNK = 0x4E4F534A  # "JSON"
MAX_GLB_JSON = 64 * 1024 * 1024


def _check_glb(fh: IO[bytes], result: Inspection, *, size: int) -> None:
    """glTF binary: a 12-byte header whose length is the file's, then a JSON chunk that parses. The
    binary buffers are not decoded (meshes, and any Draco-compressed data, are the viewer's to read)."""
    fh.seek(0)
    header = fh.read(20)
    fh.seek(0)
    if len(header) < 20:
        raise RefusedFile("This GLB file is truncated.", code="corrupt_file")
    _, version, length, json_length, chunk_type = struct.unpack("<4sIIII", header)
    if version != 2:
        raise RefusedFile(f"This is a glTF {version} binary; the studio reads glTF 2.0 (GLB version 2).",
                          code="unsupported_file")
    if length != size:
        raise RefusedFile(f"This GLB file says it is {length} bytes but is {size}: it is truncated or damaged.",
                          code="corrupt_file")
    if chunk_type != GLB_JSON_CHUNK or json_length > size - 20 or json_length > MAX_GLB_JSON:
        raise RefusedFile("This GLB file has no valid JSON chunk.", code="corrupt_file")
    fh.seek(20)
    raw = fh.read(json_length)
    fh.seek(0)
    try:
        document = json.loads(raw.decode("utf-8").rstrip(" \x00"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RefusedFile("This GLB file's JSON chunk does not parse.", code="corrupt_file") from exc
    if not isinstance(document, dict) or "asset" not in document:
        raise RefusedFile("This GLB file's JSON chunk is not a glTF document.", code="corrupt_file")
    asset = document.get("asset") if isinstance(document.get("asset"), dict) else {}
    result.metadata = {"meshes": len(document.get("meshes") or []), "gltf_version": str(asset.get("version", "")),
                       **({"generator": str(asset["generator"])[:100]} if asset.get("generator") else {})}


def _check_utf8(fh: IO[bytes], result: Inspection) -> None:
    """Text and OBJ files are UTF-8 throughout, not only in the first 8 KB the type was decided from."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for chunk in iter_chunks(fh):
            if b"\x00" in chunk:
                raise RefusedFile("This text file contains binary data.", code="unsupported_file")
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        fh.seek(0)
        raise RefusedFile("This text file is not UTF-8; save it as UTF-8 and upload it again.",
                          code="unsupported_file") from exc


def _starts_with_markup(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return text.startswith(b"<")


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
    # Never accept markup under a text name: it could be served and run as a page. A script, a
    # subtitle file or JSON does not start with "<" (after a byte-order mark and white space).
    return not text.lstrip("\ufeff \t\r\n").startswith("<")


def _looks_like_mesh(head: bytes, ext: str) -> bool:
    if ext == "glb":
        return head[:4] == b"glTF"
    return _is_plain_text(head) and any(
        line.split(" ", 1)[0] in {"v", "vt", "vn", "f", "o", "g", "mtllib", "#"}
        for line in head.decode("utf-8", "ignore").splitlines()[:50]
    )


def _not_text_reason(head: bytes, ext: str) -> str:
    if ext == "glb":
        return "a GLB file starts with the glTF header."
    if b"\x00" in head:
        return "it holds binary data, not text."
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            return "it is not UTF-8 text; save it as UTF-8 and upload it again."
    return "it has no vertices or faces." if ext == "obj" else "it is not plain text."
