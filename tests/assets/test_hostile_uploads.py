"""The hostile-file suite. Every file is made here. Each one is refused with a 4xx that names the
reason and leaves nothing in storage, or stored neutralised, through each way in: the service, the
API (real multipart), and the web upload view (upload.js's JSON, htmx, and a plain form post).

Polyglots, decided: an image that carries HTML or script anywhere (a text chunk, a comment, bytes after
the image) is refused (`unsafe_file`). A GIF/JS polyglot without markup cannot be told from a GIF with
an odd comment; it is stored and neutralised by how every file is served: its sniffed image type,
`X-Content-Type-Options: nosniff` (so no browser runs it as a script or a page), a sandbox CSP and an
attachment by default.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from assets.models import Asset
from assets.services import asset_create
from assets.uploads.inspection import RefusedFile
from tests.assets.test_uploads import (
    PAGE_OBJECTS,
    exif_of,
    exif_with_gps,
    gif_bytes,
    glb_bytes,
    jpeg_bytes,
    media_files,
    named,
    pdf_from_objects,
    png_bytes,
    webp_bytes,
)

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


# --- the hostile files ---------------------------------------------------------------------------------------

def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, idat: bytes, colour: int = 0) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
            + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def decompression_bomb() -> bytes:
    """A 1 KB PNG declaring 50000×50000 pixels (7.5 GB once decoded as RGB)."""
    return png_declaring(50000, 50000, zlib.compress(bytes(50001 * 20), 9), colour=2)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in entries.items():
            archive.writestr(name, body)
    return buf.getvalue()


def zip_bomb() -> bytes:
    """100 MB of zeros deflated to ~100 KB."""
    return zip_bytes({"payload.bin": bytes(100 * 1024 * 1024)})


def docx_bytes() -> bytes:
    return zip_bytes({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})


def rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    i = j = 0
    out = bytearray()
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)


PDF_PADDING = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")
PDF_ID = bytes(range(16))


def encrypted_pdf(*, opens_without_password: bool) -> bytes:
    """RC4 40-bit (Standard handler, R2). With opens_without_password the /U entry is the one an empty
    user password produces (PDF 1.7 §7.6.3.4, algorithms 2 and 4): the file opens but is encrypted."""
    owner = b"\x11" * 32
    permissions = -4
    if opens_without_password:
        key = hashlib.md5(PDF_PADDING + owner + struct.pack("<i", permissions) + PDF_ID).digest()[:5]
        user = rc4(key, PDF_PADDING)
    else:
        user = b"\x22" * 32
    encrypt = b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>" % (owner.hex().encode(), user.hex().encode(),
                                                                        permissions)
    return pdf_from_objects([*PAGE_OBJECTS, encrypt],
                            b"/Encrypt 4 0 R /ID [<%s> <%s>] " % (PDF_ID.hex().encode(), PDF_ID.hex().encode()))


def fake_mp4() -> bytes:
    """ftyp + an empty mdat: sniffs as video/mp4, holds no video."""
    return (struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 0x200, b"isom", b"mp41")
            + struct.pack(">I4s", 8, b"free") + struct.pack(">I4s", 8, b"mdat"))


def fake_mp3() -> bytes:
    """An ID3 tag followed by noise: sniffs as audio/mpeg, decodes to nothing."""
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(4096).replace(b"\xff", b"\x00")


SCRIPT = b"<script>fetch('/api/v1/me').then(r=>r.text()).then(alert)</script>"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
HTML = b"<!doctype html><html><body>" + SCRIPT + b"</body></html>"
# The classic GIF/JavaScript polyglot: "GIF89a" then "/*" as the width, closed later by "*/".
GIF_JS = b"GIF89a/*\x0a\x00\x00\x00\x00*/=alert(document.domain);//" + b"\x00" * 64 + b";"

# name, file maker, upload name, expected error code, words the message must contain
REFUSED: list[tuple[str, Callable[[], bytes], str, str, str]] = [
    ("decompression bomb", decompression_bomb, "bomb.png", "image_too_large", "50000×50000"),
    ("truncated JPEG", lambda: truncated(jpeg_bytes((300, 200), noise=True)), "cut.jpg", "corrupt_file", "truncated"),
    ("truncated PNG", lambda: truncated(png_bytes((300, 200), noise=True)), "cut.png", "corrupt_file", "truncated"),
    ("PNG with a script in a text chunk", lambda: png_bytes(text={"Comment": SCRIPT.decode()}), "x.png",
     "unsafe_file", "HTML or script"),
    ("JPEG with a script in a comment", lambda: jpeg_bytes(comment=b"<html>" + SCRIPT), "x.jpg", "unsafe_file",
     "HTML or script"),
    ("SVG with script", lambda: SVG, "logo.svg", "unsupported_file", "markup"),
    ("SVG with script named .png", lambda: SVG, "logo.png", "unsupported_file", "markup"),
    ("HTML renamed .png", lambda: HTML, "cat.png", "unsupported_file", "markup"),
    ("HTML with a byte-order mark named .txt", lambda: b"\xef\xbb\xbf  " + HTML, "notes.txt", "unsupported_file",
     "markup"),
    ("GIF + HTML polyglot", lambda: gif_bytes() + HTML, "anim.gif", "unsafe_file", "polyglot"),
    ("JPEG + HTML polyglot", lambda: jpeg_bytes() + HTML, "photo.jpg", "unsafe_file", "polyglot"),
    ("GIF/JS polyglot", lambda: GIF_JS, "pixel.gif", "corrupt_file", "truncated or damaged"),
    ("zip bomb named .glb", zip_bomb, "model.glb", "unsupported_file", "application/zip"),
    ("Word document", docx_bytes, "script.docx", "unsupported_file", "application/"),
    ("MP4 header with no video", fake_mp4, "clip.mp4", "corrupt_file", "could not be"),
    ("MP3 header with no audio", fake_mp3, "song.mp3", "corrupt_file", "audio file"),
    ("PDF that needs a password", lambda: encrypted_pdf(opens_without_password=False), "locked.pdf",
     "encrypted_file", "password"),
    ("encrypted PDF", lambda: encrypted_pdf(opens_without_password=True), "sealed.pdf", "encrypted_file",
     "encrypted"),
    ("broken PDF", lambda: b"%PDF-1.4\n" + os.urandom(2048), "broken.pdf", "corrupt_file", "PDF could not be read"),
    ("GLB with a wrong length", lambda: glb_bytes(length_delta=400), "ship.glb", "corrupt_file", "truncated"),
    ("Windows program", lambda: b"MZ\x90\x00" + bytes(500), "setup.png", "unsupported_file",
     "application/x-msdownload"),
]


def entry_ids(cases: list[Any]) -> list[str]:
    return [case[0] for case in cases]


# --- the three ways in ---------------------------------------------------------------------------------------

def upload_url(project: Any) -> str:
    return reverse("studio:asset-upload", kwargs={"project_id": project.pk})


def assert_nothing_stored(settings: Any) -> None:
    assert not Asset.objects.exists()
    assert media_files(settings) == []


@pytest.mark.parametrize("case", REFUSED, ids=entry_ids(REFUSED))
def test_the_service_refuses_it_and_stores_nothing(case: Any, project: Any, settings: Any) -> None:
    _, make, name, code, words = case
    data = make()
    with pytest.raises(RefusedFile) as caught:
        asset_create(project=project, fh=io.BytesIO(data), name=name, size=len(data))
    assert caught.value.code == code
    assert words in caught.value.message
    assert_nothing_stored(settings)


@pytest.mark.parametrize("case", REFUSED, ids=entry_ids(REFUSED))
def test_the_api_refuses_it_with_a_400_naming_the_reason(case: Any, owner_api: Any, project: Any,
                                                          settings: Any) -> None:
    _, make, name, code, words = case
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": named(make(), name)},
                              format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"]
    assert error["fields"] == {"file": [error["message"]]}
    assert_nothing_stored(settings)


@pytest.mark.parametrize("case", REFUSED, ids=entry_ids(REFUSED))
def test_the_web_uploader_refuses_it_in_place(case: Any, signed_in: Any, project: Any, settings: Any) -> None:
    _, make, name, code, words = case
    response = signed_in.post(upload_url(project), {"file": named(make(), name)}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code and words in response.json()["error"]["message"]
    assert_nothing_stored(settings)


def test_htmx_and_a_plain_post_show_each_refusal_by_file_name(signed_in: Any, project: Any, settings: Any) -> None:
    grid = signed_in.post(upload_url(project), {"file": named(HTML, "cat.png")}, HTTP_HX_REQUEST="true")
    assert grid.status_code == 200 and 'id="asset-grid"' in grid.text
    assert "cat.png: This file is HTML, SVG or XML markup" in grid.text
    page = signed_in.post(upload_url(project), {"file": [named(decompression_bomb(), "bomb.png"),
                                                          named(gif_bytes() + HTML, "anim.gif")]}, follow=True)
    assert "bomb.png: The image is 50000×50000 pixels; the limit is 100 megapixels." in page.text
    assert "anim.gif: This image carries HTML or script content" in page.text
    assert_nothing_stored(settings)


# --- oversized -----------------------------------------------------------------------------------------------

def test_an_oversized_file_is_refused_everywhere(owner_api: Any, signed_in: Any, project: Any, settings: Any) -> None:
    settings.ASSET_SIZE_LIMITS = {"image": 4096, "text": 100}
    big = png_bytes((200, 200), noise=True)
    with pytest.raises(RefusedFile) as caught:
        asset_create(project=project, fh=io.BytesIO(big), name="big.png", size=len(big))
    assert caught.value.code == "file_too_large" and "the limit for image files is 4 KB" in caught.value.message
    api = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": named(b"word " * 100, "s.txt")},
                         format="multipart")
    assert api.status_code == 400 and api.json()["error"]["code"] == "file_too_large"
    assert "500 bytes; the limit for text files is 100 bytes" in api.json()["error"]["message"]
    web = signed_in.post(upload_url(project), {"file": named(big, "big.png")}, HTTP_ACCEPT="application/json")
    assert web.status_code == 400 and web.json()["error"]["code"] == "file_too_large"
    assert_nothing_stored(settings)


# --- neutralised ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("maker", [jpeg_bytes, webp_bytes, png_bytes], ids=["jpeg", "webp", "png"])
def test_exif_with_gps_is_stored_without_the_gps_through_each_way_in(
        maker: Any, owner_api: Any, signed_in: Any, project: Any) -> None:
    original = maker(exif=exif_with_gps())
    service = asset_create(project=project, fh=io.BytesIO(original), name="s", size=len(original))
    api = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": named(original, "a")},
                         format="multipart")
    web = signed_in.post(upload_url(project), {"file": named(original, "w")}, HTTP_ACCEPT="application/json")
    assert api.status_code == 201 and web.status_code == 201
    for asset in (service, Asset.objects.get(pk=api.json()["id"]), Asset.objects.get(pk=web.json()["id"])):
        exif = exif_of(asset.file.read())
        assert exif.get_ifd(0x8825) == {}  # no GPS
        assert exif[271] == "Studio Cam" and exif.get_ifd(0x8769)[36867] == "2024:05:01 10:00:00"  # the rest kept


def test_a_gif_with_script_but_no_markup_is_served_so_it_can_never_run(owner_api: Any, project: Any) -> None:
    data = gif_bytes(comment=b"*/=alert(document.domain);/*")
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": named(data, "x.html")},
                              format="multipart")
    assert response.status_code == 201
    body = response.json()
    assert (body["mime"], body["name"]) == ("image/gif", "x.gif")  # the name follows the content
    for inline in ("", "?inline=1"):
        download = owner_api.get(f"/api/v1/assets/{body['id']}/download{inline}")
        assert download["Content-Type"] == "image/gif"
        assert download["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in download["Content-Security-Policy"]
    assert download_disposition(owner_api, body["id"]).startswith("attachment")


def download_disposition(api: Any, asset_id: str) -> str:
    return api.get(f"/api/v1/assets/{asset_id}/download")["Content-Disposition"]


INSPECT_IN_A_CHILD = """
import io, json, resource, sys
import django
django.setup()
from assets.uploads.inspection import inspect_file
with open(sys.argv[1], "rb") as fh:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = inspect_file(fh, name=sys.argv[2], size=int(sys.argv[3]))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"width": result.width, "height": result.height, "media": result.metadata,
                  "grew_kb": after - before}))
"""


def inspect_in_a_child(path: Path, tmp_path: Path) -> dict[str, Any]:
    """inspect_file in a fresh process, with how much its peak memory grew while it ran."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.dev", "STUDIO_VAR_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", INSPECT_IN_A_CHILD, str(path), path.name, str(path.stat().st_size)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_pdf_with_a_flate_bomb_is_opened_without_inflating_it(project: Any, tmp_path: Path) -> None:
    """A content stream of 200 MB of spaces deflated to 200 KB: the check parses the PDF's structure
    and reads the page size from the page dictionary, never inflating a content stream (loading the
    page would: PDFium parses its contents, 200 MB of them)."""
    packer = zlib.compressobj(9)
    stream = packer.compress(b" " * (200 * 1024 * 1024)) + packer.flush()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    path = tmp_path / "bomb.pdf"
    path.write_bytes(pdf_from_objects(objects))
    result = inspect_in_a_child(path, tmp_path)
    assert result["media"] == {"pages": 1, "page_size": [200.0, 200.0]}
    assert result["grew_kb"] < 50 * 1024, result  # under 50 MB, against 200 MB inflated
    asset = asset_create(project=project, fh=path.open("rb"), name="bomb.pdf", size=path.stat().st_size)
    assert asset.metadata["media"]["pages"] == 1


def test_a_100_megapixel_png_bomb_is_decoded_in_bounded_memory(tmp_path: Path) -> None:
    """10000×10000 RGB zeros: 300 KB on disk, 300 MB decoded. The check decodes every pixel in one
    sequential pass; measured in a child process, its peak memory grows by a small fraction of that."""
    width = height = 10_000
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path = tmp_path / "big.png"
    path.write_bytes(png_declaring(width, height, idat, colour=2))
    result = inspect_in_a_child(path, tmp_path)
    assert (result["width"], result["height"]) == (width, height)
    assert result["grew_kb"] < 100 * 1024, result  # under 100 MB, against 300 MB decoded
