"""Uploads: every accepted kind stored with what was probed from it, streamed (large uploads arrive as
temporary files that are moved into storage), photos without their location unless asked, and the
three ways in (API, web page with and without JavaScript) behaving alike.

The files are made here (Pillow, PyAV, pypdfium2, piexif); test_hostile_uploads and test_quota import
these makers."""

from __future__ import annotations

import io
import json
import struct
import wave
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import piexif
import pytest
from django.urls import reverse
from PIL import Image, PngImagePlugin

from assets.models import Asset
from assets.services import asset_create
from assets.uploads.inspection import RefusedFile
from tests.conftest import headless_chromium

pytestmark = pytest.mark.django_db


# --- files ---------------------------------------------------------------------------------------------------

def png_bytes(size: tuple[int, int] = (64, 48), *, noise: bool = False, text: dict[str, str] | None = None,
              exif: bytes | None = None) -> bytes:
    image = Image.effect_noise(size, 60).convert("RGB") if noise else Image.new("RGB", size, (200, 40, 90))
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buf = io.BytesIO()
    image.save(buf, "PNG", pnginfo=info, **({"exif": exif} if exif else {}))
    return buf.getvalue()


def jpeg_bytes(size: tuple[int, int] = (96, 64), *, exif: bytes | None = None, noise: bool = False,
               comment: bytes | None = None) -> bytes:
    image = Image.effect_noise(size, 60).convert("RGB") if noise else Image.new("RGB", size, (30, 120, 200))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, **({"exif": exif} if exif else {}),
               **({"comment": comment} if comment else {}))
    return buf.getvalue()


def webp_bytes(size: tuple[int, int] = (80, 60), *, exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 160, 90)).save(buf, "WEBP", **({"exif": exif} if exif else {}))
    return buf.getvalue()


def gif_bytes(size: tuple[int, int] = (40, 30), *, comment: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    Image.new("P", size, 3).save(buf, "GIF", **({"comment": comment} if comment else {}))
    return buf.getvalue()


GPS = {
    piexif.GPSIFD.GPSVersionID: (2, 2, 0, 0),
    piexif.GPSIFD.GPSLatitudeRef: b"N",
    piexif.GPSIFD.GPSLatitude: ((48, 1), (51, 1), (2442, 100)),
    piexif.GPSIFD.GPSLongitudeRef: b"E",
    piexif.GPSIFD.GPSLongitude: ((2, 1), (17, 1), (4020, 100)),
    piexif.GPSIFD.GPSAltitude: (35, 1),
}


def exif_with_gps(gps: bool = True) -> bytes:
    return piexif.dump({
        "0th": {piexif.ImageIFD.Make: b"Studio Cam", piexif.ImageIFD.Model: b"SC-1", piexif.ImageIFD.Software: b"tests"},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2024:05:01 10:00:00", piexif.ExifIFD.FNumber: (28, 10)},
        "GPS": GPS if gps else {},
    })


XMP_PACKET = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    b'exif:GPSLatitude="48,51.407N" exif:GPSLongitude="2,17.67E" xmp:CreatorTool="Studio tests">'
    b'<exif:GPSAltitude>35/1</exif:GPSAltitude></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


def with_jpeg_xmp(jpeg: bytes, packet: bytes = XMP_PACKET) -> bytes:
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + packet
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def exif_of(data: bytes) -> Image.Exif:
    return Image.open(io.BytesIO(data)).getexif()


def mp4_bytes(path: Path, *, frames: int = 10, size: tuple[int, int] = (64, 48), video: bool = True,
              audio: bool = True) -> bytes:
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = None
        if video:
            stream = container.add_stream("mpeg4", rate=10)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=8000, layout="mono") if audio else None
        if stream is not None:
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), i * 20, np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        if sound is not None:
            for i in range(8):
                chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 8000, i * 1024
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path.read_bytes()


def wav_bytes(seconds: float = 0.5, rate: int = 8000, channels: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * channels * int(seconds * rate))
    return buf.getvalue()


def pdf_bytes(pages: int = 1) -> bytes:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(200, 300)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def pdf_from_objects(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF with a correct cross-reference table; object 1 is the catalog."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)


PAGE_OBJECTS = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"]


def glb_bytes(*, length_delta: int = 0) -> bytes:
    document = json.dumps({"asset": {"version": "2.0", "generator": "studio tests"}, "scene": 0,
                           "scenes": [{"nodes": []}]}).encode()
    document += b" " * (-len(document) % 4)
    return (struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(document) + length_delta)
            + struct.pack("<I4s", len(document), b"JSON") + document)


OBJ = b"# a triangle\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
FOUNTAIN = "INT. HOUSE - DAY\n\nMARY\nHello — it's me.\n".encode()


def named(data: bytes, name: str) -> io.BytesIO:
    buf = io.BytesIO(data)
    buf.name = name
    return buf


def media_files(settings: Any) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# --- the service ---------------------------------------------------------------------------------------------

def create(project: Any, data: bytes, name: str, **kwargs: Any) -> Asset:
    return asset_create(project=project, fh=io.BytesIO(data), name=name, size=len(data), **kwargs)


def test_a_video_is_probed_for_duration_codecs_frame_size_and_rate(project: Any, tmp_path: Path) -> None:
    asset = create(project, mp4_bytes(tmp_path / "clip.mp4"), "clip.mov")
    assert (asset.kind, asset.mime, asset.name) == ("video", "video/mp4", "clip.mp4")
    assert (asset.width, asset.height) == (64, 48)
    assert asset.duration == pytest.approx(1.0, abs=0.15)
    media = asset.metadata["media"]
    assert media["video"] == {"codec": "mpeg4", "width": 64, "height": 48, "fps": 10.0}
    assert media["audio"] == {"codec": "aac", "sample_rate": 8000, "channels": 1}
    assert asset.aspect == pytest.approx(64 / 48)


def test_an_mp4_with_only_sound_is_stored_as_audio(project: Any, tmp_path: Path) -> None:
    asset = create(project, mp4_bytes(tmp_path / "voice.mp4", video=False), "voice.mp4")
    assert (asset.kind, asset.mime) == ("audio", "audio/mp4")
    assert asset.width is None and asset.metadata["media"]["audio"]["sample_rate"] == 8000


def test_a_wav_is_probed_for_duration_sample_rate_and_channels(project: Any) -> None:
    asset = create(project, wav_bytes(seconds=0.5, rate=8000, channels=2), "take.wav")
    assert (asset.kind, asset.mime) == ("audio", "audio/x-wav")
    assert asset.duration == pytest.approx(0.5, abs=0.01)
    assert asset.metadata["media"]["audio"] == {"codec": "pcm_s16le", "sample_rate": 8000, "channels": 2}


def test_pdf_glb_obj_and_fountain_scripts_are_accepted(project: Any) -> None:
    pdf = create(project, pdf_bytes(pages=3), "script.pdf")
    assert (pdf.kind, pdf.mime, pdf.metadata["media"]["pages"]) == ("text", "application/pdf", 3)
    glb = create(project, glb_bytes(), "ship.glb")
    assert (glb.kind, glb.mime, glb.metadata["media"]["generator"]) == ("mesh", "model/gltf-binary", "studio tests")
    obj = create(project, OBJ, "tri.obj")
    assert (obj.kind, obj.mime) == ("mesh", "model/obj")
    fountain = create(project, FOUNTAIN, "scene.fountain")
    assert (fountain.kind, fountain.mime, fountain.name) == ("text", "text/plain", "scene.fountain")


def test_images_keep_their_dimensions_and_format(project: Any) -> None:
    for data, name, mime in [(png_bytes((64, 48)), "a.png", "image/png"), (jpeg_bytes((96, 64)), "b.jpg", "image/jpeg"),
                             (webp_bytes((80, 60)), "c.webp", "image/webp"), (gif_bytes((40, 30)), "d.gif", "image/gif")]:
        asset = create(project, data, name)
        assert asset.mime == mime and asset.kind == "image"
        assert (asset.width, asset.height) == Image.open(io.BytesIO(data)).size
        assert asset.file.read() == data  # nothing to remove, so the stored bytes are the upload's


# --- location ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("maker", [jpeg_bytes, webp_bytes, png_bytes], ids=["jpeg", "webp", "png-eXIf"])
def test_gps_is_removed_from_exif_and_the_rest_of_the_exif_is_kept(project: Any, maker: Any) -> None:
    original = maker(exif=exif_with_gps())
    assert exif_of(original).get_ifd(0x8825)  # the test file does carry a location
    asset = create(project, original, "photo")
    stored = asset.file.read()
    exif = exif_of(stored)
    assert exif.get_ifd(0x8825) == {}
    assert (exif[271], exif[272], exif[305]) == ("Studio Cam", "SC-1", "tests")  # Make, Model, Software
    assert exif.get_ifd(0x8769)[36867] == "2024:05:01 10:00:00"  # DateTimeOriginal
    assert len(stored) == len(original) and asset.size == len(stored)
    assert asset.metadata["location_removed"] is True
    assert Image.open(io.BytesIO(stored)).tobytes() == Image.open(io.BytesIO(original)).tobytes()  # no re-encode
    import hashlib

    assert asset.sha256 == hashlib.sha256(stored).hexdigest()


def test_keep_location_stores_the_photo_as_it_came(project: Any) -> None:
    original = jpeg_bytes(exif=exif_with_gps())
    asset = create(project, original, "photo.jpg", keep_location=True)
    assert asset.file.read() == original
    assert "location_removed" not in asset.metadata


def test_gps_in_xmp_is_blanked_in_place_and_the_packet_still_parses(project: Any) -> None:
    original = with_jpeg_xmp(jpeg_bytes(exif=exif_with_gps()))
    stored = create(project, original, "photo.jpg").file.read()
    assert len(stored) == len(original)
    assert b"GPS" not in stored and b"48,51.407N" not in stored
    packet = stored[stored.index(b"<x:xmpmeta"):stored.index(b"</x:xmpmeta>") + len(b"</x:xmpmeta>")]
    description = ET.fromstring(packet).find(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    assert description.get("{http://ns.adobe.com/xap/1.0/}CreatorTool") == "Studio tests"


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "compressed"])
def test_gps_in_a_png_xmp_chunk_is_blanked_or_the_chunk_dropped(project: Any, compressed: bool) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode(), zip=compressed)
    info.add_text("Comment", "kept")
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(buf, "PNG", pnginfo=info)
    stored = create(project, buf.getvalue(), "x.png").file.read()
    image = Image.open(io.BytesIO(stored))
    image.load()  # every chunk's CRC is checked
    assert image.info["Comment"] == "kept"
    xmp = image.info.get("XML:com.adobe.xmp", "")
    assert "GPS" not in xmp and b"GPS" not in stored
    assert ('CreatorTool="Studio tests"' in xmp) is (not compressed)  # blanked in place, or dropped whole


def test_a_second_image_after_the_first_loses_its_location_too(project: Any) -> None:
    """A phone photo can carry more images after the first (MPF: a gain map, a depth map)."""
    first, second = jpeg_bytes(exif=exif_with_gps()), jpeg_bytes((32, 32), exif=exif_with_gps())
    stored = create(project, first + second, "phone.jpg").file.read()
    assert len(stored) == len(first) + len(second)
    assert exif_of(stored[:len(first)]).get_ifd(0x8825) == {}
    assert exif_of(stored[len(first):]).get_ifd(0x8825) == {}


# --- the API: streamed, moved into storage -------------------------------------------------------------------

def test_a_large_upload_arrives_as_a_temporary_file_and_is_moved_not_held(
        owner_api: Any, project: Any, settings: Any, tmp_path: Path) -> None:
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    (tmp_path / "uploads").mkdir()
    data = png_bytes((1100, 1000), noise=True)
    assert len(data) > settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": named(data, "noise.png")},
                              format="multipart")
    assert response.status_code == 201, response.json()
    asset = Asset.objects.get(pk=response.json()["id"])
    assert (asset.width, asset.height, asset.size) == (1100, 1000, len(data))
    assert Path(asset.file.path).read_bytes() == data
    assert list((tmp_path / "uploads").iterdir()) == []  # moved into storage; nothing left behind


def test_the_api_takes_keep_location(owner_api: Any, project: Any) -> None:
    original = jpeg_bytes(exif=exif_with_gps())
    for keep, has_gps in (("true", True), ("false", False)):
        response = owner_api.post("/api/v1/assets", {"project": str(project.pk), "keep_location": keep,
                                                     "file": named(original, "p.jpg")}, format="multipart")
        assert response.status_code == 201
        stored = Asset.objects.get(pk=response.json()["id"]).file.read()
        assert bool(exif_of(stored).get_ifd(0x8825)) is has_gps


def test_the_handler_stops_writing_a_refused_type_after_its_first_chunk(
        owner_api: Any, project: Any, settings: Any, tmp_path: Path) -> None:
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    (tmp_path / "uploads").mkdir()
    exe = b"MZ\x90\x00" + b"\x00" * (3 * 1024 * 1024)
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": named(exe, "setup.png")},
                              format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_file" and "application/x-msdownload" in error["message"]
    assert error["fields"]["file"] == [error["message"]]
    assert not Asset.objects.exists() and media_files(settings) == []
    assert list((tmp_path / "uploads").iterdir()) == []


def test_the_handler_cuts_a_file_at_its_kinds_limit(owner_api: Any, project: Any, settings: Any,
                                                    tmp_path: Path) -> None:
    settings.ASSET_SIZE_LIMITS = {"image": 1024 * 1024}
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    (tmp_path / "uploads").mkdir()
    data = png_bytes((1100, 1000), noise=True)  # ~3 MB: past the 1 MB image limit, so the handler stops it
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": named(data, "big.png")},
                              format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "file_too_large"
    assert error["message"].startswith("This image file is more than 1.") and "the limit for image files is 1 MB" in error["message"]
    assert not Asset.objects.exists() and media_files(settings) == []
    assert list((tmp_path / "uploads").iterdir()) == []


# --- the web page --------------------------------------------------------------------------------------------

def upload_url(project: Any) -> str:
    return reverse("studio:asset-upload", kwargs={"project_id": project.pk})


def test_the_project_page_has_the_uploader_that_works_without_javascript(signed_in: Any, project: Any) -> None:
    page = signed_in.get(reverse("studio:project", kwargs={"project_id": project.pk})).text
    assert 'data-upload' in page and 'enctype="multipart/form-data"' in page
    assert f'action="{upload_url(project)}"' in page
    assert f'data-refresh-url="/p/{project.pk}/?partial=assets"' in page
    assert 'name="keep_location"' in page and "studio/upload.js" in page


def test_upload_js_gets_json_per_file(signed_in: Any, project: Any) -> None:
    response = signed_in.post(upload_url(project), {"file": named(png_bytes(), "cat.png")},
                              HTTP_ACCEPT="application/json")
    assert response.status_code == 201
    body = response.json()
    asset = Asset.objects.get(pk=body["id"])
    assert (body["name"], body["kind"], body["url"]) == ("cat.png", "image", f"/a/{asset.pk}/")

    refused = signed_in.post(upload_url(project), {"file": named(b"<html><script>x</script></html>", "cat.png")},
                             HTTP_ACCEPT="application/json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "unsupported_file"
    assert "markup" in refused.json()["error"]["message"]


def test_a_plain_form_post_uploads_several_files_and_reports_each(signed_in: Any, project: Any) -> None:
    response = signed_in.post(upload_url(project), {"file": [named(png_bytes(), "a.png"),
                                                              named(b"MZ\x90\x00" + bytes(100), "b.exe"),
                                                              named(FOUNTAIN, "c.fountain")]}, follow=True)
    assert response.redirect_chain[-1][0].endswith("#assets")
    assert "Uploaded 2 files." in response.text and "b.exe: This file is application/x-msdownload" in response.text
    assert sorted(Asset.objects.values_list("name", flat=True)) == ["a.png", "c.fountain"]


def test_the_web_upload_keeps_location_only_when_ticked(signed_in: Any, project: Any) -> None:
    original = jpeg_bytes(exif=exif_with_gps())
    signed_in.post(upload_url(project), {"file": named(original, "a.jpg")}, HTTP_ACCEPT="application/json")
    signed_in.post(upload_url(project), {"file": named(original, "b.jpg"), "keep_location": "true"},
                   HTTP_ACCEPT="application/json")
    stored = {a.name: a.file.read() for a in Asset.objects.all()}
    assert exif_of(stored["a.jpg"]).get_ifd(0x8825) == {} and exif_of(stored["b.jpg"]).get_ifd(0x8825)


def test_web_uploads_count_against_the_plans_daily_limit(signed_in: Any, owner: Any, project: Any) -> None:
    from billing.limits import plan_assign
    from billing.models import Plan

    plan_assign(user=owner, plan=Plan.objects.create(code="tiny", name="Tiny", uploads_per_day=1))
    assert signed_in.post(upload_url(project), {"file": named(png_bytes(), "a.png")},
                          HTTP_ACCEPT="application/json").status_code == 201
    limited = signed_in.post(upload_url(project), {"file": named(png_bytes(), "b.png")},
                             HTTP_ACCEPT="application/json")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert "1 uploads per day" in limited.json()["error"]["message"]
    assert Asset.objects.count() == 1


def test_an_outsider_cannot_upload_into_the_owners_project(client: Any, outsider: Any, project: Any,
                                                           outsider_api: Any) -> None:
    client.force_login(outsider)
    assert client.post(upload_url(project), {"file": named(png_bytes(), "a.png")}).status_code == 404
    response = outsider_api.post("/api/v1/assets", {"project": str(project.pk), "file": named(png_bytes(), "a.png")},
                                 format="multipart")
    assert response.status_code == 404
    assert not Asset.objects.exists()


def test_a_text_file_that_is_not_utf8_is_refused_with_the_reason(project: Any) -> None:
    with pytest.raises(RefusedFile) as caught:
        create(project, "Café société".encode("latin-1") * 20, "notes.txt")
    assert "not UTF-8" in caught.value.message
    with pytest.raises(RefusedFile) as caught:  # UTF-8 at the start, something else later on
        create(project, b"INT. HOUSE\n" * 1000 + b"\xff\xfe broken", "scene.fountain")
    assert "not UTF-8" in caught.value.message


def test_zlib_in_a_png_is_bounded_by_the_declared_size(project: Any) -> None:
    """A zip bomb in an allowed type: an IDAT stream holding 300 MB of zeros for a 1000×1000 grey
    image. libvips stops inflating at the declared size, so it is checked in a few milliseconds."""
    import time

    width, height = 1000, 1000
    packer = zlib.compressobj(9)
    idat = packer.compress(b"\x00" * ((width + 1) * height)) + packer.compress(bytes(300_000_000)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    started = time.perf_counter()
    asset = create(project, data, "bomb.png")
    assert time.perf_counter() - started < 2
    assert (asset.width, asset.height) == (width, height)


# --- the uploader in a browser -------------------------------------------------------------------------------

DROP_FILES = """
const [selector, files] = arguments;
const transfer = new DataTransfer();
for (const [name, base64] of files) {
  const bytes = Uint8Array.from(atob(base64), c => c.charCodeAt(0));
  transfer.items.add(new File([bytes], name));
}
const zone = document.querySelector(selector);
zone.dispatchEvent(new DragEvent("dragenter", {bubbles: true, cancelable: true, dataTransfer: transfer}));
zone.dispatchEvent(new DragEvent("drop", {bubbles: true, cancelable: true, dataTransfer: transfer}));
"""


@pytest.mark.browser
@pytest.mark.timeout(180)
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_files_dropped_or_chosen_upload_with_progress_and_errors_in_place(
        live_server: Any, client: Any, owner: Any, project: Any, tmp_path: Path) -> None:
    import base64

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = headless_chromium(tmp_path / "chrome")
    try:
        client.force_login(owner)
        browser.get(f"{live_server.url}/accounts/login/")
        browser.add_cookie({"name": "sessionid", "value": client.cookies["sessionid"].value, "path": "/"})
        browser.get(f"{live_server.url}/p/{project.pk}/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-upload]").get_attribute("data-upload-ready"))

        # Dropped: one good image and one HTML page named .png.
        files = [("drop.png", base64.b64encode(png_bytes()).decode()),
                 ("evil.png", base64.b64encode(b"<html><script>alert(1)</script></html>").decode())]
        browser.execute_script(DROP_FILES, ".drop-zone", files)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".upload-item[data-state=done], "
                                                                  ".upload-item[data-state=failed]")) == 2)
        failed = browser.find_element(By.CSS_SELECTOR, ".upload-item[data-state=failed]")
        assert failed.find_element(By.CSS_SELECTOR, ".upload-name").text == "evil.png"
        assert "HTML, SVG or XML markup" in failed.find_element(By.CSS_SELECTOR, ".upload-status").text
        done = browser.find_element(By.CSS_SELECTOR, ".upload-item[data-state=done]")
        assert done.find_element(By.CSS_SELECTOR, "progress").get_attribute("value") == "100"
        # The grid is fetched again through htmx once every file has finished.
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#asset-grid .asset-tile[title="drop.png"]'))

        # Chosen with the file picker: the upload starts on change.
        chosen = tmp_path / "chosen.fountain"
        chosen.write_bytes(FOUNTAIN)
        browser.find_element(By.CSS_SELECTOR, ".drop-input").send_keys(str(chosen))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#asset-grid .asset-tile[title="chosen.fountain"]'))
        assert sorted(Asset.objects.values_list("name", flat=True)) == ["chosen.fountain", "drop.png"]

        # "Keep photo location" holds for every file chosen at once, queued or not, and stays ticked after.
        keep = browser.find_element(By.CSS_SELECTOR, "[name=keep_location]")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", keep)
        keep.click()
        photos = []
        for n in range(4):
            photos.append(tmp_path / f"geo-{n}.jpg")
            photos[-1].write_bytes(jpeg_bytes(exif=exif_with_gps()))
        browser.find_element(By.CSS_SELECTOR, ".drop-input").send_keys("\n".join(str(path) for path in photos))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".upload-item[data-state=done]")) == 6)
        geotagged = Asset.objects.filter(name__startswith="geo-").order_by("name")
        assert [a.name for a in geotagged] == [f"geo-{n}.jpg" for n in range(4)]
        assert all(exif_of(a.file.read()).get_ifd(0x8825) for a in geotagged)  # the third and fourth too
        assert keep.is_selected()
    finally:
        browser.quit()
