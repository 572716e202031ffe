"""Location removal from photos: the GPS block of EXIF, and GPS properties of XMP, in JPEG, PNG and
WebP, without re-encoding a pixel.

How: the file is read as a stream to find its metadata blocks (JPEG APP1 segments, PNG eXIf and iTXt
chunks, WebP EXIF and XMP chunks). In each EXIF block the GPS IFD's entries and the values they point
to are overwritten with zeros and its entry count set to 0; in XMP every `…:GPS…` attribute or element
is overwritten with spaces. Both edits keep every byte offset and length in the file as it was, so
the rest of the EXIF (camera, lens, exposure, orientation, maker notes, whose internal offsets a
rewrite such as piexif.dump would break) stays byte for byte, and so do a JPEG's MPF offsets to the
extra images of a phone photo (whose own EXIF blocks, after the first image, are found and blanked
too). The patched copy is written to a new temporary file; the input is never modified (it may be a
file of the user's on disk, with the CLI's `manage.py generate`).

Two cases change a chunk's length, both in PNG where chunks carry no offsets: a compressed iTXt XMP
packet with GPS in it is dropped whole, and so are ImageMagick's legacy "Raw profile type exif/APP1"
text chunks (a hex dump of EXIF; the eXIf chunk is the standard place and is kept).

GIF has no EXIF; its rare XMP application extension is stored with data bytes that double as
sub-block lengths, so it cannot be blanked in place, and is left as it is.
"""

from __future__ import annotations

import re
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core.files import File

from assets.uploads.inspection import SCAN_CHUNK, iter_chunks

GPS_IFD_TAG = 0x8825
# Bytes per value of each TIFF field type (1 BYTE … 13 IFD); unknown types count as one byte.
TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8,
                   18: 8}
XMP_NAMESPACE = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXTENSION = b"http://ns.adobe.com/xmp/extension/\x00"
JPEG_APP1 = re.compile(rb"\xff\xe1(..)(Exif\x00\x00|" + re.escape(XMP_NAMESPACE) + rb"|"
                       + re.escape(XMP_EXTENSION) + rb")", re.DOTALL)
JPEG_OVERLAP = 64
# `exif:GPSLatitude="…"` attributes and `<exif:GPSLatitude>…</exif:GPSLatitude>` elements (any prefix).
# Linear on hostile input: a name must start where a name can start (no quadratic retry inside a long
# run of letters), and quoted values and tag bodies are bounded.
XMP_GPS_ATTRIBUTE = re.compile(rb"(?<![\w.-])[\w.-]+:GPS\w*\s*=\s*(?:\"[^\"]{0,4096}\"|'[^']{0,4096}')")
XMP_GPS_OPEN = re.compile(rb"<([\w.-]+:GPS\w*)\b[^>]{0,4096}?(/?)>")
MAX_XMP_GPS_ELEMENTS = 256  # a real packet has a dozen; past this the whole packet is blanked
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_RAW_EXIF_KEYWORDS = {b"Raw profile type exif", b"Raw profile type APP1"}
MAX_METADATA_BLOCK = 16 * 1024 * 1024  # a larger EXIF/XMP chunk is not metadata we can safely edit
MAX_XMP_INFLATED = 4 * 1024 * 1024  # per PNG: compressed XMP beyond this is dropped without inflating it


@dataclass(frozen=True)
class Patch:
    """Replace bytes [start, end) of the input with `data`."""

    start: int
    end: int
    data: bytes


# --- TIFF (EXIF) and XMP, in memory: the blocks are small ----------------------------------------------------

def exif_without_gps(tiff: bytes) -> bytes | None:
    """`tiff` (an EXIF block from its byte-order mark) with the GPS IFD emptied and its values zeroed,
    the same length; None when there is no GPS IFD (or the block is not TIFF)."""
    if tiff[:4] == b"II*\x00":
        order = "<"
    elif tiff[:4] == b"MM\x00*":
        order = ">"
    else:
        return None
    buf = bytearray(tiff)

    def u16(offset: int) -> int | None:
        return struct.unpack_from(order + "H", buf, offset)[0] if 0 <= offset <= len(buf) - 2 else None

    def u32(offset: int) -> int | None:
        return struct.unpack_from(order + "I", buf, offset)[0] if 0 <= offset <= len(buf) - 4 else None

    found = False
    ifd = u32(4)
    seen: set[int] = set()
    for _ in range(2):  # IFD0 (the image) and IFD1 (its thumbnail) may point at a GPS IFD
        if not ifd or ifd in seen:
            break
        seen.add(ifd)
        count = u16(ifd)
        if count is None:
            break
        for index in range(count):
            entry = ifd + 2 + 12 * index
            if u16(entry) == GPS_IFD_TAG:
                gps = u32(entry + 8)
                if gps is not None and _blank_ifd(buf, gps, u16, u32):
                    found = True
                break  # one GPS pointer per IFD (tags are unique in an IFD)
        ifd = u32(ifd + 2 + 12 * count)
    return bytes(buf) if found else None


def _blank_ifd(buf: bytearray, offset: int, u16: Any, u32: Any) -> bool:
    count = u16(offset)
    if count is None:
        return False
    # A GPS IFD defines about 30 tags with values of a few bytes; the caps bound the work a forged one
    # can ask for (its entry count is set to 0 below either way, so nothing past them is referenced).
    for index in range(min(count, 256)):
        entry = offset + 2 + 12 * index
        if entry + 12 > len(buf):
            break
        field_type, values = u16(entry + 2), u32(entry + 4)
        size = min(TIFF_TYPE_SIZES.get(field_type, 1) * (values or 0), 1024 * 1024)
        if size > 4:
            value_at = u32(entry + 8) or 0
            end = min(len(buf), value_at + size)
            if value_at < end:
                buf[value_at:end] = bytes(end - value_at)
        buf[entry:entry + 12] = bytes(12)
    # No entries now; the next-IFD pointer that follows a zero count reads the zeroed first entry: none.
    buf[offset:offset + 2] = bytes(2)
    return count > 0


def xmp_without_gps(packet: bytes) -> bytes | None:
    """`packet` with every GPS property overwritten by spaces (same length, still well-formed XML), or
    None when it has none. Each element's closing tag is looked for once per tag name, and a packet
    with more GPS elements than any real one has is blanked whole (the bound on the work)."""
    buf = bytearray(packet)
    for match in XMP_GPS_ATTRIBUTE.finditer(packet):
        buf[match.start():match.end()] = b" " * (match.end() - match.start())
    opens = []
    for match in XMP_GPS_OPEN.finditer(packet):
        opens.append(match)
        if len(opens) > MAX_XMP_GPS_ELEMENTS:
            return b" " * len(packet)
    unclosed: set[bytes] = set()
    done_until = 0
    for match in opens:
        if match.start() < done_until:
            continue  # inside an element already blanked
        end = match.end()
        if not match.group(2):  # not self-closing: blank through its closing tag
            name = match.group(1)
            if name in unclosed:
                continue
            close = re.compile(rb"</" + re.escape(name) + rb"\s*>").search(packet, match.end())
            if close is None:
                unclosed.add(name)
                continue
            end = close.end()
        buf[match.start():end] = b" " * (end - match.start())
        done_until = end
    cleaned = bytes(buf)
    return cleaned if cleaned != packet else None


# --- per format: find the blocks, return patches ------------------------------------------------------------

def location_patches(fh: IO[bytes], *, mime: str) -> list[Patch]:
    finder = {"image/jpeg": _jpeg_patches, "image/png": _png_patches, "image/webp": _webp_patches}.get(mime)
    if finder is None:
        return []
    try:
        return finder(fh)
    finally:
        fh.seek(0)


def _read_at(fh: IO[bytes], offset: int, size: int) -> bytes:
    position = fh.tell()
    fh.seek(offset)
    data = fh.read(size)
    fh.seek(position)
    return data


def _jpeg_patches(fh: IO[bytes]) -> list[Patch]:
    """Every APP1 EXIF/XMP segment in the file: before the first image's scan, and in any images that
    follow it (a phone's MPF gain map or depth image). In entropy-coded data a 0xFF byte is always
    followed by 0x00 or a restart marker, so 0xFFE1 there is never image data."""
    patches: list[Patch] = []
    done_until = 0
    base = 0
    tail = b""
    for chunk in iter_chunks(fh):
        window = tail + chunk
        window_start = base - len(tail)
        for match in JPEG_APP1.finditer(window):
            start = window_start + match.start()
            if start < done_until:
                continue
            length = struct.unpack(">H", match.group(1))[0]
            header = match.group(2)
            if length < 2 + len(header):
                continue  # not a real segment (its length could not even hold its own header)
            segment = _read_at(fh, start + 4, length - 2)
            done_until = start + 2 + length
            if header == b"Exif\x00\x00":
                cleaned = exif_without_gps(segment[6:])
                if cleaned is not None:
                    patches.append(Patch(start + 10, start + 10 + len(cleaned), cleaned))
            else:
                cleaned = xmp_without_gps(segment[len(header):])
                if cleaned is not None:
                    at = start + 4 + len(header)
                    patches.append(Patch(at, at + len(cleaned), cleaned))
        base += len(chunk)
        tail = window[-JPEG_OVERLAP:]
    return patches


def _png_patches(fh: IO[bytes]) -> list[Patch]:
    patches: list[Patch] = []
    fh.seek(0)
    if fh.read(8) != PNG_SIGNATURE:
        return []
    offset = 8
    budget = [MAX_XMP_INFLATED]
    while True:
        header = fh.read(8)
        if len(header) < 8:
            break
        length, chunk_type = struct.unpack(">I4s", header)
        data_at, end = offset + 8, offset + 12 + length
        if chunk_type == b"IEND":
            break
        if chunk_type in (b"eXIf", b"iTXt", b"tEXt", b"zTXt") and length <= MAX_METADATA_BLOCK:
            data = fh.read(length)
            patches.extend(_png_chunk_patches(chunk_type, data, offset, data_at, end, budget))
        fh.seek(end)
        offset = end
    return patches


def _png_chunk_patches(chunk_type: bytes, data: bytes, offset: int, data_at: int, end: int,
                       budget: list[int]) -> list[Patch]:
    """`budget` is what may still be inflated in this file (a one-item list, shared by its chunks)."""
    def replaced(new_data: bytes) -> list[Patch]:
        crc = struct.pack(">I", zlib.crc32(chunk_type + new_data) & 0xFFFFFFFF)
        return [Patch(data_at, data_at + len(new_data), new_data), Patch(end - 4, end, crc)]

    if chunk_type == b"eXIf":
        cleaned = exif_without_gps(data)
        return replaced(cleaned) if cleaned is not None else []
    keyword = data.split(b"\x00", 1)[0]
    if keyword in PNG_RAW_EXIF_KEYWORDS:
        return [Patch(offset, end, b"")]
    if chunk_type != b"iTXt" or keyword != b"XML:com.adobe.xmp":
        return []
    # iTXt: keyword \0 compression-flag compression-method language \0 translated-keyword \0 text
    rest = data[len(keyword) + 1:]
    if len(rest) < 2:
        return []
    compressed = rest[0] == 1
    parts = rest[2:].split(b"\x00", 2)
    if len(parts) < 3:
        return []
    text_at = len(data) - len(parts[2])
    if not compressed:
        cleaned = xmp_without_gps(parts[2])
        return replaced(data[:text_at] + cleaned) if cleaned is not None else []
    inflater = zlib.decompressobj()
    try:
        packet = inflater.decompress(parts[2], max(budget[0], 1))
    except zlib.error:
        return [Patch(offset, end, b"")]  # unreadable, so it cannot be shown to hold no location
    budget[0] -= len(packet)
    if inflater.unconsumed_tail or budget[0] <= 0 or xmp_without_gps(packet) is not None:
        return [Patch(offset, end, b"")]
    return []


def _webp_patches(fh: IO[bytes]) -> list[Patch]:
    patches: list[Patch] = []
    fh.seek(0)
    header = fh.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WEBP":
        return []
    offset = 12
    while True:
        chunk_header = fh.read(8)
        if len(chunk_header) < 8:
            break
        fourcc, length = struct.unpack("<4sI", chunk_header)
        data_at, end = offset + 8, offset + 8 + length + (length & 1)
        if fourcc in (b"EXIF", b"XMP ") and length <= MAX_METADATA_BLOCK:
            data = fh.read(length)
            if fourcc == b"EXIF":
                skip = 6 if data.startswith(b"Exif\x00\x00") else 0  # some writers keep the JPEG header
                cleaned = exif_without_gps(data[skip:])
                if cleaned is not None:
                    patches.append(Patch(data_at + skip, data_at + skip + len(cleaned), cleaned))
            else:
                cleaned = xmp_without_gps(data)
                if cleaned is not None:
                    patches.append(Patch(data_at, data_at + len(cleaned), cleaned))
        fh.seek(end)
        offset = end
    return patches


# --- writing the patched copy ---------------------------------------------------------------------------------

def patched_chunks(fh: IO[bytes], patches: list[Patch]) -> Iterator[bytes]:
    """`fh` from its start with `patches` applied (sorted by position; they must not overlap), in
    chunks of at most SCAN_CHUNK bytes; an insertion is a patch with start == end."""
    fh.seek(0)
    position = 0
    for patch in sorted(patches, key=lambda p: (p.start, p.end)):
        yield from _copied(fh, patch.start - position)
        if patch.data:
            yield patch.data
        fh.seek(patch.end)
        position = patch.end
    yield from _copied(fh, None)


def _copied(src: IO[bytes], count: int | None) -> Iterator[bytes]:
    while count is None or count > 0:
        data = src.read(SCAN_CHUNK if count is None else min(SCAN_CHUNK, count))
        if not data:
            return
        yield data
        if count is not None:
            count -= len(data)


def apply_patches(fh: IO[bytes], patches: list[Patch]) -> tuple[File, int]:
    """A new temporary file holding `fh` with `patches` applied, streamed; and its size. The caller
    closes it (which deletes it)."""
    out = tempfile.NamedTemporaryFile(suffix=".upload", dir=settings.FILE_UPLOAD_TEMP_DIR)
    for chunk in patched_chunks(fh, patches):
        out.write(chunk)
    size = out.tell()
    out.flush()
    out.seek(0)
    fh.seek(0)
    return File(out, name=out.name), size


def location_remove(fh: IO[bytes], *, mime: str) -> tuple[File, int] | None:
    """The file without its location, as (temporary file, size); None when it had none to remove."""
    patches = location_patches(fh, mime=mime)
    return apply_patches(fh, patches) if patches else None
