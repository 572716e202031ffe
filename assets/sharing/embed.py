"""Generation metadata written into image files on their way out, without touching the pixels.

The stored original is never modified: `embed_stream` reads it and yields a copy with metadata added,
chunk by chunk, so a download or an export stays a stream. Nothing is decoded or re-encoded (a pyvips
or Pillow round trip would recompress a JPEG and drop what we do not know about); we splice
containers:

- **PNG**: iTXt chunks right after IHDR: `parameters` (the prompt and settings in the plain-text form
  AUTOMATIC1111 and ComfyUI tools read), `Description` (the prompt), `studio:recipe` (the recipe as
  JSON) and `XML:com.adobe.xmp` (the XMP packet below). Text chunks of ours already in the file are
  replaced, not duplicated.
- **JPEG**: an APP1 XMP segment after the JFIF/Exif segments (an existing XMP packet is replaced).
- **WebP**: an `XMP ` chunk, turning a simple (VP8/VP8L) file into the extended format with a VP8X
  header when needed; the RIFF size is rewritten to match.

The XMP packet has `dc:description` (prompt), `dc:title` (name), `dc:subject` (tags), `xmp:Rating`,
`xmp:CreateDate`, `xmp:CreatorTool`, and our own namespace (`studio:`) with the model, provider, seed
and the recipe as JSON. What goes in is `embedded_recipe(recipe)`: how the file was made, never its
cost or the user's private notes (the file travels; an export's metadata.json keeps the rest).
Other types (GIF, video, audio, text) are copied unchanged.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from typing import IO, Any
from xml.sax.saxutils import escape, quoteattr

CHUNK = 1024 * 1024
EMBEDDABLE = frozenset({"image/png", "image/jpeg", "image/webp"})
STUDIO_NS = "https://studio.invalid/ns/recipe/1.0/"  # an identifier, not a document: never fetched
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_KEYS = ("parameters", "Description", "studio:recipe", "XML:com.adobe.xmp")
XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXTENDED_APP1 = b"http://ns.adobe.com/xmp/extension/\x00"
JPEG_SEGMENT_MAX = 65533  # a segment's payload: its 16-bit length counts itself
WEBP_SPOOL = 8 * 1024 * 1024  # a WebP is read into memory up to this, to disk past it (images are ≤ 50 MB)

EMBEDDED_FIELDS = ("id", "name", "kind", "created_at", "source", "prompt", "negative_prompt", "model",
                   "provider", "seed", "width", "height", "duration", "parent", "tags", "rating")


def embeddable(mime: str) -> bool:
    return mime in EMBEDDABLE


def embedded_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The part of an export recipe (assets.sharing.export.asset_recipe) that goes into the file itself."""
    out = {k: recipe[k] for k in EMBEDDED_FIELDS if recipe.get(k) not in (None, "", [], {})}
    generation = recipe.get("generation")
    if generation:
        out["generation"] = {"id": generation["id"], "model": generation.get("model"),
                             "inputs": generation.get("inputs") or {}}
    return out


# --- text forms -----------------------------------------------------------------------------------------

def _xml_text(value: Any) -> str:
    """XML 1.0 cannot carry most control characters, even escaped: drop them."""
    text = str(value)
    return "".join(ch for ch in text if ch in "\t\n\r" or (ord(ch) >= 0x20 and ch not in "\ufffe\uffff"))


def parameters_text(recipe: dict[str, Any]) -> str:
    """The AUTOMATIC1111-style `parameters` text: the prompt, `Negative prompt: …`, then one line of
    `Key: value` settings."""
    generation = recipe.get("generation") or {}
    inputs = generation.get("inputs") or {}
    lines = [str(recipe.get("prompt") or "")]
    if recipe.get("negative_prompt"):
        lines.append(f"Negative prompt: {recipe['negative_prompt']}")
    settings: list[tuple[str, Any]] = [
        ("Steps", inputs.get("steps") or inputs.get("num_inference_steps")),
        ("CFG scale", inputs.get("guidance_scale") or inputs.get("cfg_scale")),
        ("Seed", recipe.get("seed")),
        ("Size", f"{recipe['width']}x{recipe['height']}" if recipe.get("width") and recipe.get("height") else None),
        ("Model", recipe.get("model")),
        ("Provider", recipe.get("provider")),
    ]
    settings_line = ", ".join(f"{k}: {v}" for k, v in settings if v not in (None, ""))
    if settings_line:
        lines.append(settings_line)
    return "\n".join(lines)


def _rdf_alt(tag: str, text: str) -> str:
    return (f"<{tag}><rdf:Alt><rdf:li xml:lang=\"x-default\">{escape(_xml_text(text))}</rdf:li></rdf:Alt></{tag}>")


def xmp_packet(recipe: dict[str, Any], *, limit: int | None = None) -> bytes:
    """An XMP packet for the file. With `limit` (a JPEG segment's room), the largest parts give way
    first: the JSON recipe's generation inputs, then the prompt's length, then the JSON altogether."""
    embedded = embedded_recipe(recipe)
    attempts: list[tuple[dict[str, Any] | None, int | None]] = [(embedded, None)]
    if limit is not None:
        slim = {k: v for k, v in embedded.items() if k != "generation"}
        attempts += [(slim, None), ({**slim, "prompt": str(slim.get("prompt", ""))[:4000]}, 4000), (None, 2000)]
    packet = b""
    for doc, prompt_cap in attempts:
        packet = _xmp(recipe, doc, prompt_cap)
        if limit is None or len(packet) <= limit:
            return packet
    return packet[:0]  # nothing fits (cannot happen with a 2,000-character prompt): embed nothing


def _xmp(recipe: dict[str, Any], doc: dict[str, Any] | None, prompt_cap: int | None) -> bytes:
    prompt = str(recipe.get("prompt") or "")
    if prompt_cap is not None:
        prompt = prompt[:prompt_cap]
    attrs = {
        "xmp:CreatorTool": "Studio",
        "xmp:CreateDate": recipe.get("created_at"),
        "studio:AssetId": recipe.get("id"),
        "studio:Source": recipe.get("source"),
        "studio:Model": recipe.get("model"),
        "studio:Provider": recipe.get("provider"),
        "studio:Seed": recipe.get("seed"),
        "studio:Parent": recipe.get("parent"),
    }
    attr_text = "".join(f"\n    {k}={quoteattr(_xml_text(v))}" for k, v in attrs.items() if v not in (None, ""))
    body = []
    if prompt:
        body.append(_rdf_alt("dc:description", prompt))
    if recipe.get("name"):
        body.append(_rdf_alt("dc:title", recipe["name"]))
    if recipe.get("tags"):
        items = "".join(f"<rdf:li>{escape(_xml_text(t))}</rdf:li>" for t in recipe["tags"])
        body.append(f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>")
    if recipe.get("rating"):
        body.append(f"<xmp:Rating>{int(recipe['rating'])}</xmp:Rating>")
    if doc is not None:
        body.append(f"<studio:Recipe>{escape(_xml_text(json.dumps(doc, ensure_ascii=False)))}</studio:Recipe>")
    inner = "\n   ".join(body)
    xml = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        f'    xmlns:studio="{STUDIO_NS}"{attr_text}>\n'
        f"   {inner}\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="r"?>'
    )
    return xml.encode("utf-8")


# --- streaming helpers ----------------------------------------------------------------------------------

def _read_exact(reader: IO[bytes], n: int) -> bytes:
    """n bytes, or fewer only at the end of the file (a socket may return short reads)."""
    parts, left = [], n
    while left > 0:
        part = reader.read(min(left, CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _copy(reader: IO[bytes], n: int | None = None) -> Iterator[bytes]:
    """Yield the next n bytes (all the rest when None) in chunks."""
    left = n
    while left is None or left > 0:
        part = reader.read(CHUNK if left is None else min(left, CHUNK))
        if not part:
            return
        if left is not None:
            left -= len(part)
        yield part


def _skip(reader: IO[bytes], n: int) -> None:
    for _ in _copy(reader, n):
        pass


# --- PNG ------------------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _itxt(keyword: str, text: str) -> bytes:
    # keyword \0, compression flag 0, method 0, empty language tag \0, empty translated keyword \0, UTF-8 text
    return _png_chunk(b"iTXt", keyword.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))


def png_text_chunks(recipe: dict[str, Any]) -> bytes:
    chunks = [_itxt("parameters", parameters_text(recipe))]
    if recipe.get("prompt"):
        chunks.append(_itxt("Description", str(recipe["prompt"])))
    chunks.append(_itxt("studio:recipe", json.dumps(embedded_recipe(recipe), ensure_ascii=False)))
    chunks.append(_itxt("XML:com.adobe.xmp", xmp_packet(recipe).decode("utf-8")))
    return b"".join(chunks)


def _png(reader: IO[bytes], recipe: dict[str, Any]) -> Iterator[bytes]:
    signature = _read_exact(reader, 8)
    yield signature
    if signature != PNG_SIGNATURE:
        yield from _copy(reader)
        return
    ours = png_text_chunks(recipe)
    inserted = False
    keys = {k.encode("latin-1") for k in PNG_KEYS}
    while True:
        header = _read_exact(reader, 8)
        if len(header) < 8:
            yield header
            return
        length, kind = struct.unpack(">I4s", header)
        if kind in (b"tEXt", b"iTXt", b"zTXt"):
            # The keyword is at most 79 bytes and ends at the first NUL: enough to tell ours apart.
            head = _read_exact(reader, min(length, 80))
            if head.split(b"\x00", 1)[0] in keys:
                _skip(reader, length - len(head) + 4)  # the rest of the data and the CRC
                continue
            yield header + head
            yield from _copy(reader, length - len(head) + 4)
            continue
        yield header
        yield from _copy(reader, length + 4)
        if kind == b"IHDR" and not inserted:
            yield ours
            inserted = True
        if kind == b"IEND":
            yield from _copy(reader)  # nothing should follow; whatever does is kept as it was
            return


# --- JPEG -----------------------------------------------------------------------------------------------

def jpeg_xmp_segment(recipe: dict[str, Any]) -> bytes:
    packet = xmp_packet(recipe, limit=JPEG_SEGMENT_MAX - len(XMP_APP1))
    if not packet:
        return b""
    payload = XMP_APP1 + packet
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _jpeg(reader: IO[bytes], recipe: dict[str, Any]) -> Iterator[bytes]:
    soi = _read_exact(reader, 2)
    yield soi
    if soi != b"\xff\xd8":
        yield from _copy(reader)
        return
    ours = jpeg_xmp_segment(recipe)
    inserted = False
    while True:
        marker = _read_exact(reader, 2)
        if len(marker) < 2 or marker[0] != 0xFF:
            yield marker  # not a marker where one must be: keep the rest as it is
            yield from _copy(reader)
            return
        while marker[1] == 0xFF:  # fill bytes before a marker
            marker = b"\xff" + _read_exact(reader, 1)
        code = marker[1]
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # markers without a length
            yield marker
            continue
        if code == 0xD9:  # EOI before any scan
            if not inserted:
                yield ours
            yield marker
            yield from _copy(reader)
            return
        size_bytes = _read_exact(reader, 2)
        size = struct.unpack(">H", size_bytes)[0] if len(size_bytes) == 2 else 2
        if code == 0xE1:
            head = _read_exact(reader, min(size - 2, len(XMP_EXTENDED_APP1)))
            if head.startswith((XMP_APP1, XMP_EXTENDED_APP1)):
                _skip(reader, size - 2 - len(head))  # an XMP packet of the file's own: ours replaces it
                continue
            is_exif = head.startswith(b"Exif\x00")
        else:
            head = b""
            is_exif = False
        # JFIF's APP0 and Exif's APP1 must come first; our XMP goes right after them.
        if not inserted and code != 0xE0 and not is_exif:
            yield ours
            inserted = True
        yield marker + size_bytes + head
        if code == 0xDA:  # start of scan: the entropy-coded data and everything after, unchanged
            yield from _copy(reader)
            return
        yield from _copy(reader, size - 2 - len(head))


# --- WebP -----------------------------------------------------------------------------------------------

def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def _webp_canvas(spool: IO[bytes], kind: bytes, offset: int) -> tuple[int, int, bool] | None:
    """Width, height and alpha of a simple WebP's bitstream (RFC 9649, sections 2.5 and 3)."""
    spool.seek(offset + 8)
    data = spool.read(10)
    if kind == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    if kind == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        bits = struct.unpack("<I", data[1:5])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    return None


def _webp(reader: IO[bytes], recipe: dict[str, Any]) -> Iterator[bytes]:
    # The RIFF header holds the total size, and a simple file needs a VP8X header in front of its
    # bitstream: both depend on what follows, so the file (at most an image's 50 MB) is spooled first.
    with tempfile.SpooledTemporaryFile(max_size=WEBP_SPOOL) as spool:
        shutil.copyfileobj(reader, spool, CHUNK)
        total = spool.tell()
        spool.seek(0)
        head = spool.read(12)
        chunks: list[tuple[bytes, int, int]] = []  # (fourcc, offset of the chunk header, bytes on disk)
        pos = 12
        while pos + 8 <= total:
            spool.seek(pos)
            kind, size = struct.unpack("<4sI", spool.read(8))
            span = 8 + size + (size & 1)
            chunks.append((kind, pos, span))
            pos += span
        parts: list[bytes | tuple[int, int]] = []  # literal bytes, or (offset, length) copied from the spool
        ok = head[:4] == b"RIFF" and head[8:12] == b"WEBP" and chunks and pos <= total + 1
        if ok and chunks[0][0] == b"VP8X":
            spool.seek(chunks[0][1] + 8)
            vp8x = bytearray(spool.read(10))
            vp8x[0] |= 0x04  # the XMP flag
            parts.append(_riff_chunk(b"VP8X", bytes(vp8x)))
            parts += [(offset, span) for kind, offset, span in chunks[1:] if kind != b"XMP "]
        elif ok and chunks[0][0] in (b"VP8 ", b"VP8L") and (canvas := _webp_canvas(spool, *chunks[0][:2])):
            width, height, alpha = canvas
            flags = 0x04 | (0x10 if alpha else 0)
            parts.append(_riff_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little")
                                     + (height - 1).to_bytes(3, "little")))
            parts += [(offset, span) for kind, offset, span in chunks if kind != b"XMP "]
        else:
            spool.seek(0)
            yield from _copy(spool)  # not a WebP we understand: unchanged
            return
        parts.append(_riff_chunk(b"XMP ", xmp_packet(recipe)))
        body_size = 4 + sum(len(p) if isinstance(p, bytes) else p[1] for p in parts)
        yield b"RIFF" + struct.pack("<I", body_size) + b"WEBP"
        for part in parts:
            if isinstance(part, bytes):
                yield part
            else:
                offset, span = part
                spool.seek(offset)
                stored = min(span, total - offset)
                yield from _copy(spool, stored)
                if stored < span:
                    yield b"\x00"  # the pad byte of an odd-sized last chunk, missing from the file


# --- entry point ----------------------------------------------------------------------------------------

def embed_stream(reader: IO[bytes], *, mime: str, recipe: dict[str, Any]) -> Iterator[bytes]:
    """The file read from `reader`, with the recipe embedded when its type allows; else unchanged."""
    if mime == "image/png":
        yield from _png(reader, recipe)
    elif mime == "image/jpeg":
        yield from _jpeg(reader, recipe)
    elif mime == "image/webp":
        yield from _webp(reader, recipe)
    else:
        yield from _copy(reader)
