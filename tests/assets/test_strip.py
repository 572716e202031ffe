"""assets.sharing.strip: images as share links serve them, without the metadata inside the file (prompts, models,
workflows, EXIF, XMP, comments, trailing data), with the pixels, colour profile, orientation and animation
as they were."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from django.urls import reverse
from PIL import Image, ImageCms, PngImagePlugin

from assets.services import asset_create_from_bytes
from assets.sharing import strip
from assets.sharing.shares import share_create

pytestmark = pytest.mark.django_db

PROMPT = "masterpiece, a lighthouse in a storm, Steps: 30, Sampler: DPM++, Model: secret-model-v7"
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:description="' + PROMPT.encode()
       + b'"/></rdf:RDF></x:xmpmeta>')
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
SECRETS = (b"secret-model-v7", b"lighthouse in a storm", b"Canon", b"xmpmeta")


def picture(size: tuple[int, int] = (64, 40)) -> Image.Image:
    image = Image.new("RGB", size)
    image.putdata([((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(size[1]) for x in range(size[0])])
    return image


def exif(orientation: int | None = 6) -> Image.Exif:
    data = Image.Exif()
    if orientation is not None:
        data[0x0112] = orientation
    data[0x010E] = PROMPT  # ImageDescription
    data[0x010F] = "Canon"  # Make
    data[0x0131] = "secret-model-v7"  # Software
    return data


def run(data: bytes, mime: str) -> bytes:
    result = strip.stripped(io.BytesIO(data), mime=mime, size=len(data))
    assert result is not None
    chunks, size = result
    out = b"".join(chunks)
    assert len(out) == size
    return out


def pixels(data: bytes) -> list[bytes]:
    """Every frame's pixels, decoded without applying the orientation."""
    image = Image.open(io.BytesIO(data))
    frames = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        frames.append(image.convert("RGBA").tobytes())
    return frames


def assert_clean(out: bytes) -> None:
    for secret in SECRETS:
        assert secret not in out, secret


# --- each format ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_a_jpeg_keeps_its_pixels_profile_and_orientation_and_nothing_else(progressive: bool) -> None:
    buf = io.BytesIO()
    picture().save(buf, "JPEG", quality=90, exif=exif(6), icc_profile=ICC, comment=PROMPT.encode(), xmp=XMP,
                   progressive=progressive)
    original = buf.getvalue() + b"<html>" + PROMPT.encode()  # trailing bytes after the image's end
    out = run(original, "image/jpeg")
    assert_clean(out)
    assert pixels(out) == pixels(original)
    image = Image.open(io.BytesIO(out))
    assert image.info.get("icc_profile") == ICC
    assert dict(image.getexif()) == {0x0112: 6}
    assert out.endswith(b"\xff\xd9") and len(out) < len(original)


def test_a_jpeg_with_nothing_to_remove_comes_back_byte_for_byte() -> None:
    buf = io.BytesIO()
    picture().save(buf, "JPEG", quality=80)
    assert run(buf.getvalue(), "image/jpeg") == buf.getvalue()


def test_a_png_loses_its_text_chunks_and_keeps_transparency_profile_and_orientation() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", PROMPT)
    info.add_text("workflow", '{"model": "secret-model-v7"}', zip=True)
    info.add_itxt("Description", PROMPT, lang="en")
    info.add(b"caBX", b"c2pa manifest secret-model-v7")  # an unknown ancillary chunk
    buf = io.BytesIO()
    picture().convert("RGBA").save(buf, "PNG", pnginfo=info, exif=exif(3), icc_profile=ICC)
    original = buf.getvalue() + PROMPT.encode()
    out = run(original, "image/png")
    assert_clean(out)
    assert pixels(out) == pixels(original)
    image = Image.open(io.BytesIO(out))
    assert image.mode == "RGBA" and image.info.get("icc_profile") == ICC
    assert dict(image.getexif()) == {0x0112: 3}
    assert not image.text


def test_an_animated_png_keeps_its_frames() -> None:
    frames = [picture(), picture().rotate(90, expand=False)]
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", PROMPT)
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0, pnginfo=info)
    out = run(buf.getvalue(), "image/png")
    assert_clean(out)
    assert pixels(out) == pixels(buf.getvalue()) and len(pixels(out)) == 2


@pytest.mark.parametrize("animated", [False, True], ids=["still", "animated"])
def test_a_webp_loses_exif_and_xmp_and_keeps_frames_and_profile(animated: bool) -> None:
    buf = io.BytesIO()
    extra = {"save_all": True, "append_images": [picture().rotate(90)], "duration": 100} if animated else {}
    picture().save(buf, "WEBP", lossless=True, exif=exif(6), xmp=XMP, icc_profile=ICC, **extra)
    original = buf.getvalue() + b"trailing " + PROMPT.encode()
    out = run(original, "image/webp")
    assert_clean(out)
    assert pixels(out) == pixels(original)
    assert struct.unpack("<I", out[4:8])[0] == len(out) - 8  # the RIFF size follows
    image = Image.open(io.BytesIO(out))
    assert image.info.get("icc_profile") == ICC
    assert dict(image.getexif()) == {0x0112: 6}
    assert "xmp" not in image.info


def test_a_gif_loses_comments_and_xmp_and_keeps_its_loop() -> None:
    buf = io.BytesIO()
    frames = [picture().convert("P"), picture().rotate(90).convert("P")]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0, comment=PROMPT)
    data = buf.getvalue()
    xmp_block = b"\x21\xff\x0bXMP DataXMP" + bytes([len(XMP[:255])]) + XMP[:255] + b"\x00"
    original = data[:-1] + xmp_block + data[-1:] + b"GIF89a<script>"
    out = run(original, "image/gif")
    assert_clean(out)
    assert pixels(out) == pixels(original) and len(pixels(out)) == 2
    image = Image.open(io.BytesIO(out))
    assert image.info.get("loop") == 0 and "comment" not in image.info
    assert out.endswith(b";")


def test_what_does_not_parse_is_not_served() -> None:
    buf = io.BytesIO()
    picture().save(buf, "JPEG")
    cut = buf.getvalue()[:-200]  # no end of image
    assert strip.stripped(io.BytesIO(cut), mime="image/jpeg", size=len(cut)) is None
    assert strip.stripped(io.BytesIO(b"GIF89a"), mime="image/gif", size=6) is None
    assert strip.stripped(io.BytesIO(b"not a video"), mime="video/mp4", size=11) is None


# --- through a share ----------------------------------------------------------------------------------------

def test_a_shared_image_is_served_without_its_metadata_and_the_owner_keeps_it(client: Any, owner: Any,
                                                                             project: Any) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", PROMPT)
    buf = io.BytesIO()
    picture().save(buf, "PNG", pnginfo=info)
    asset = asset_create_from_bytes(project=project, data=buf.getvalue(), name="lighthouse.png")
    share = share_create(user=owner, target="asset", target_id=asset.pk, show_prompt=True)
    for route in ("studio:shared-file", "studio:shared-thumb"):  # the thumbnail falls back to the file
        response = client.get(reverse(route, args=[share.token, asset.pk]))
        body = b"".join(response.streaming_content)
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert int(response["Content-Length"]) == len(body)
        assert response["X-Content-Type-Options"] == "nosniff" and "sandbox" in response["Content-Security-Policy"]
        assert response["Content-Disposition"].startswith("inline")
        assert PROMPT.encode() not in body and pixels(body) == pixels(buf.getvalue())
    download = client.get(reverse("studio:shared-file", args=[share.token, asset.pk]), {"download": "1"})
    assert download["Content-Disposition"].startswith("attachment")
    client.force_login(owner)
    mine = client.get(reverse("asset-download", kwargs={"pk": asset.pk}))
    assert PROMPT.encode() in b"".join(mine.streaming_content)  # the owner's own file is as stored
