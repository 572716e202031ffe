"""Everything but the picture: images as a share link serves them, without the metadata inside the file.

A share shows what its owner chose (assets.sharing.shares): the prompt only if they ticked it, and never the
model, provider, notes or metadata. An image file can carry all of those inside itself: generation tools
write the prompt, seed, model and whole workflow into PNG text chunks (`parameters`, `prompt`,
`workflow`), others into EXIF (`UserComment`, `ImageDescription`, `Software`), XMP or C2PA manifests,
and a photo carries its camera, owner and time. The owner's own downloads and exports keep the file as
stored; a share serves this copy.

What is kept is what the picture needs to look right: the pixels, the colour profile (ICC, sRGB, gamma,
cICP), transparency and palette, animation, pixel density, and the EXIF orientation, rewritten as an EXIF
block that holds nothing else. Everything else goes:

- JPEG: every APPn segment but JFIF (APP0), ICC_PROFILE (APP2) and Adobe (APP14, which says how to read
  the colours), and every comment; and whatever follows the image's end (a phone's extra MPF images, a
  polyglot's payload).
- PNG: every ancillary chunk outside an allow-list (text, XMP, EXIF, time, C2PA, unknown ones), and
  anything after IEND.
- WebP: EXIF, XMP and unknown chunks (the VP8X flags are updated), and anything after the RIFF.
- GIF: comment extensions and application extensions other than the looping ones (XMP, ICC-less
  vendor blocks), and anything after the trailer.

Nothing is decoded or re-encoded: a list of byte-range patches (assets.uploads.sanitise.Patch) is worked out
from the file's structure, reading headers and scanning a JPEG's entropy-coded data for markers, and the
copy is streamed from the stored file with the patches applied. A file whose structure does not parse
is not served (None): inspection accepted it at upload, so that would be a damaged file.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from typing import IO

from assets.uploads.inspection import SCAN_CHUNK
from assets.uploads.sanitise import Patch, patched_chunks

MIMES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
MAX_SEGMENT_READ = 1 << 16  # a JPEG segment's length field is 16 bits

# JPEG: the application segments and comment, and what to keep of them (by the start of their data).
JPEG_KEEP = {0xE0: (b"JFIF\x00",), 0xE2: (b"ICC_PROFILE\x00",), 0xEE: (b"Adobe",)}
JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length
JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in entropy-coded data: a marker, not data

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_KEEP = {b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"cICP", b"mDCv", b"cLLi", b"sBIT", b"bKGD",
            b"pHYs", b"acTL", b"fcTL", b"fdAT"}

WEBP_KEEP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}
VP8X_EXIF, VP8X_XMP = 0x08, 0x04

GIF_KEEP_APPLICATIONS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


class Unreadable(Exception):
    """The file's structure does not parse."""


def stripped(fh: IO[bytes], *, mime: str, size: int) -> tuple[Iterator[bytes], int] | None:
    """The file without its metadata, as (chunks, size in bytes); None if `mime` is not an image type
    handled here or the file does not parse. `fh` is read from its start and closed when the chunks
    are exhausted or closed."""
    planner = {"image/jpeg": _jpeg, "image/png": _png, "image/webp": _webp, "image/gif": _gif}.get(mime)
    if planner is None:
        return None
    try:
        patches = planner(fh, size)
    except (Unreadable, struct.error):
        return None
    new_size = size + sum(len(p.data) - (p.end - p.start) for p in patches)

    def chunks() -> Iterator[bytes]:
        try:
            yield from patched_chunks(fh, patches)
        finally:
            fh.close()

    return chunks(), new_size


# --- EXIF orientation ---------------------------------------------------------------------------------------

def exif_orientation(tiff: bytes) -> int | None:
    """The Orientation (0x0112) of IFD0 of an EXIF block that starts at its TIFF header."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(tiff[:4])
    if order is None or len(tiff) < 10:
        return None
    ifd = struct.unpack_from(order + "I", tiff, 4)[0]
    if ifd + 2 > len(tiff):
        return None
    count = struct.unpack_from(order + "H", tiff, ifd)[0]
    for n in range(count):
        at = ifd + 2 + 12 * n
        if at + 12 > len(tiff):
            return None
        tag, kind = struct.unpack_from(order + "HH", tiff, at)
        if tag == 0x0112 and kind == 3:
            value = struct.unpack_from(order + "H", tiff, at + 8)[0]
            return value if 1 <= value <= 8 else None
    return None


def orientation_tiff(orientation: int) -> bytes:
    """An EXIF block (from its TIFF header) holding only the orientation: one IFD, one SHORT entry."""
    return (b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
            + struct.pack(">I", 0))


# --- JPEG ----------------------------------------------------------------------------------------------------

def _read_at(fh: IO[bytes], offset: int, count: int) -> bytes:
    fh.seek(offset)
    return fh.read(count)


def _next_marker(fh: IO[bytes], start: int) -> int:
    """Where the next marker after entropy-coded data starting at `start` is."""
    fh.seek(start)
    base, carry = start, b""
    while True:
        data = fh.read(SCAN_CHUNK)
        if not data:
            raise Unreadable("no end of image")
        window = carry + data
        match = JPEG_MARKER.search(window)
        if match:
            return base - len(carry) + match.start()
        carry = window[-1:]
        base += len(data)


def _jpeg(fh: IO[bytes], size: int) -> list[Patch]:
    if _read_at(fh, 0, 2) != b"\xff\xd8":
        raise Unreadable("not a JPEG")
    patches: list[Patch] = []
    orientation: int | None = None
    exif_at = 2  # a new EXIF block goes after SOI, or after JFIF's APP0 when there is one
    position = 2
    while True:
        head = _read_at(fh, position, 4)
        if len(head) < 2 or head[0] != 0xFF:
            raise Unreadable("lost the marker chain")
        code = head[1]
        if code == 0xFF:  # a fill byte before a marker
            position += 1
            continue
        if code == 0xD9:  # EOI: the image ends here; whatever follows is not it
            end = position + 2
            if end < size:
                patches.append(Patch(end, size, b""))
            break
        if code in JPEG_STANDALONE:
            position += 2
            continue
        if len(head) < 4:
            raise Unreadable("truncated segment")
        length = struct.unpack(">H", head[2:4])[0]
        segment_end = position + 2 + length
        if 0xE0 <= code <= 0xEF or code == 0xFE:
            data = _read_at(fh, position + 4, min(length - 2, MAX_SEGMENT_READ))
            if any(data.startswith(prefix) for prefix in JPEG_KEEP.get(code, ())):
                if code == 0xE0 and exif_at == position:
                    exif_at = segment_end
            else:
                if code == 0xE1 and data.startswith(b"Exif\x00\x00") and orientation is None:
                    orientation = exif_orientation(data[6:])
                patches.append(Patch(position, segment_end, b""))
        if code == 0xDA:  # SOS: its header, then entropy-coded data up to the next marker
            position = _next_marker(fh, segment_end)
        else:
            position = segment_end
    if orientation and orientation != 1:
        tiff = b"Exif\x00\x00" + orientation_tiff(orientation)
        patches.insert(0, Patch(exif_at, exif_at, b"\xff\xe1" + struct.pack(">H", len(tiff) + 2) + tiff))
    return patches


# --- PNG -----------------------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(fh: IO[bytes], size: int) -> list[Patch]:
    if _read_at(fh, 0, 8) != PNG_SIGNATURE:
        raise Unreadable("not a PNG")
    patches: list[Patch] = []
    position = 8
    while True:
        header = _read_at(fh, position, 8)
        if len(header) < 8:
            raise Unreadable("no IEND")
        length, kind = struct.unpack(">I4s", header)
        end = position + 12 + length
        if kind == b"IEND":
            if end < size:
                patches.append(Patch(end, size, b""))
            return patches
        critical = kind[:1].isupper()
        if kind == b"eXIf":
            orientation = exif_orientation(_read_at(fh, position + 8, min(length, MAX_SEGMENT_READ)))
            replacement = _png_chunk(b"eXIf", orientation_tiff(orientation)) if orientation not in (None, 1) else b""
            patches.append(Patch(position, end, replacement))
        elif not critical and kind not in PNG_KEEP:
            patches.append(Patch(position, end, b""))
        position = end


# --- WebP ----------------------------------------------------------------------------------------------------

def _webp(fh: IO[bytes], size: int) -> list[Patch]:
    header = _read_at(fh, 0, 12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WEBP":
        raise Unreadable("not a WebP")
    riff_end = min(size, 8 + struct.unpack("<I", header[4:8])[0])
    patches: list[Patch] = []
    flags_at: int | None = None
    exif_kept = False
    position = 12
    while position + 8 <= riff_end:
        kind, length = struct.unpack("<4sI", _read_at(fh, position, 8))
        end = position + 8 + length + (length & 1)
        if kind == b"VP8X":
            flags_at = position + 8
        elif kind == b"EXIF":
            data = _read_at(fh, position + 8, min(length, MAX_SEGMENT_READ))
            orientation = exif_orientation(data[6:] if data.startswith(b"Exif\x00\x00") else data)
            replacement = b""
            if orientation not in (None, 1):
                tiff = orientation_tiff(orientation)  # 26 bytes: even, no padding byte
                replacement, exif_kept = b"EXIF" + struct.pack("<I", len(tiff)) + tiff, True
            patches.append(Patch(position, min(end, riff_end), replacement))
        elif kind not in WEBP_KEEP:
            patches.append(Patch(position, min(end, riff_end), b""))
        position = end
    if riff_end < size:
        patches.append(Patch(riff_end, size, b""))
    if flags_at is not None:
        flags = _read_at(fh, flags_at, 1)[0]
        cleared = flags & ~VP8X_XMP & (0xFF if exif_kept else ~VP8X_EXIF)
        if cleared != flags:
            patches.append(Patch(flags_at, flags_at + 1, bytes([cleared & 0xFF])))
    new_riff = riff_end + sum(len(p.data) - (p.end - p.start) for p in patches if p.start < riff_end)
    patches.append(Patch(4, 8, struct.pack("<I", new_riff - 8)))
    return sorted(patches, key=lambda p: (p.start, p.end))


# --- GIF -----------------------------------------------------------------------------------------------------

def _after_sub_blocks(fh: IO[bytes], position: int) -> int:
    """The offset after a run of data sub-blocks (each a length byte and that many bytes; 0 ends it)."""
    fh.seek(position)
    window, base = fh.read(SCAN_CHUNK), position
    offset = 0
    while True:
        if offset >= len(window):
            base += offset
            fh.seek(base)
            window, offset = fh.read(SCAN_CHUNK), 0
            if not window:
                raise Unreadable("truncated sub-blocks")
        length = window[offset]
        offset += 1 + length
        if length == 0:
            return base + offset


def _gif(fh: IO[bytes], size: int) -> list[Patch]:
    header = _read_at(fh, 0, 13)
    if len(header) < 13 or header[:6] not in (b"GIF87a", b"GIF89a"):
        raise Unreadable("not a GIF")
    packed = header[10]
    position = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
    patches: list[Patch] = []
    while True:
        introducer = _read_at(fh, position, 1)
        if not introducer:
            raise Unreadable("no trailer")
        if introducer == b"\x3b":  # the trailer
            end = position + 1
            if end < size:
                patches.append(Patch(end, size, b""))
            return patches
        if introducer == b"\x2c":  # an image: descriptor, optional colour table, LZW code size, data
            descriptor = _read_at(fh, position, 10)
            if len(descriptor) < 10:
                raise Unreadable("truncated image descriptor")
            table = 3 * 2 ** ((descriptor[9] & 7) + 1) if descriptor[9] & 0x80 else 0
            position = _after_sub_blocks(fh, position + 10 + table + 1)
            continue
        if introducer != b"\x21":
            raise Unreadable("unknown block")
        label = _read_at(fh, position + 1, 1)
        end = _after_sub_blocks(fh, position + 2)
        if label == b"\xfe":  # a comment
            patches.append(Patch(position, end, b""))
        elif label == b"\xff":  # an application extension: its first sub-block names it
            name = _read_at(fh, position + 3, 11)
            if name not in GIF_KEEP_APPLICATIONS:
                patches.append(Patch(position, end, b""))
        position = end
