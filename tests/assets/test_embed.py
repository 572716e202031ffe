"""Generation metadata embedded into files on the way out: PNG text chunks, XMP in JPEG and WebP,
read back with Pillow and libvips; the pixels and the stored original untouched."""

from __future__ import annotations

import io
import json
import struct
import zlib
from typing import Any

import pytest
import pyvips
from django.core.files.storage import default_storage
from PIL import Image, PngImagePlugin

from assets.models import AssetSource
from assets.services import asset_create_from_bytes
from assets.sharing.embed import embed_stream, jpeg_xmp_segment, xmp_packet
from generations.models import Generation

pytestmark = pytest.mark.django_db

RECIPE: dict[str, Any] = {
    "id": "5b0f8b8e-0000-4000-8000-000000000001", "name": "dusk.png", "kind": "image",
    "created_at": "2026-11-21T10:00:00+00:00", "source": "generation",
    "prompt": "a lighthouse at dusk, «grainy» 35mm — 灯台", "negative_prompt": "blurry",
    "model": "local/sketch", "provider": "local", "seed": 1234, "width": 64, "height": 48,
    "tags": ["coast", "hero"], "rating": 4, "notes": "private note", "parent": None,
    "generation": {"id": "gen-1", "model": "local/sketch", "inputs": {"prompt": "a lighthouse", "seed": 1234,
                                                                      "steps": 20},
                   "credits_charged": 7},
}


def image_bytes(fmt: str, *, mode: str = "RGB", size: tuple[int, int] = (64, 48), **save: Any) -> bytes:
    image = Image.new(mode, size, (200, 90, 40) if mode == "RGB" else (200, 90, 40, 128))
    for x in range(0, size[0], 4):
        image.putpixel((x, x % size[1]), (10, 200, 30) if mode == "RGB" else (10, 200, 30, 255))
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def embedded(data: bytes, mime: str, recipe: dict[str, Any] = RECIPE) -> bytes:
    return b"".join(embed_stream(io.BytesIO(data), mime=mime, recipe=recipe))


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGBA").tobytes()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_png_gets_text_chunks_pillow_and_libvips_read_back_with_the_pixels_unchanged() -> None:
    original = image_bytes("PNG")
    out = embedded(original, "image/png")
    with Image.open(io.BytesIO(out)) as image:
        image.load()
        text = image.text
    assert text["Description"] == RECIPE["prompt"]
    assert text["parameters"].splitlines() == [
        RECIPE["prompt"], "Negative prompt: blurry",
        "Steps: 20, Seed: 1234, Size: 64x48, Model: local/sketch, Provider: local"]
    recipe = json.loads(text["studio:recipe"])
    assert (recipe["seed"], recipe["model"], recipe["generation"]["inputs"]["steps"]) == (1234, "local/sketch", 20)
    assert "notes" not in recipe and "credits_charged" not in json.dumps(recipe)  # the file travels: no cost, no notes
    assert pixels(out) == pixels(original)
    xmp = pyvips.Image.new_from_buffer(out, "").get("xmp-data").decode("utf-8")
    assert "<dc:description><rdf:Alt><rdf:li xml:lang=\"x-default\">a lighthouse at dusk" in xmp
    assert 'studio:Seed="1234"' in xmp and "<rdf:li>coast</rdf:li>" in xmp and "<xmp:Rating>4</xmp:Rating>" in xmp
    # Every chunk's CRC holds, ours sit right after IHDR, and the image data is byte for byte the same.
    kinds = [kind for kind, _ in png_chunks(out)]
    assert kinds[0] == b"IHDR" and kinds[1:5] == [b"iTXt"] * 4 and kinds[-1] == b"IEND"
    assert [b for k, b in png_chunks(out) if k == b"IDAT"] == [b for k, b in png_chunks(original) if k == b"IDAT"]


def test_png_text_of_ours_already_in_the_file_is_replaced_and_other_text_kept() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "old prompt\nSteps: 1")
    info.add_text("Author", "Ada")
    info.add_itxt("studio:recipe", '{"seed": 1}', zip=True)
    out = embedded(image_bytes("PNG", pnginfo=info), "image/png")
    keywords = [body.split(b"\x00", 1)[0] for kind, body in png_chunks(out) if kind in (b"tEXt", b"iTXt", b"zTXt")]
    assert keywords.count(b"parameters") == 1 and keywords.count(b"studio:recipe") == 1 and b"Author" in keywords
    with Image.open(io.BytesIO(out)) as image:
        assert image.text["Author"] == "Ada" and image.text["parameters"].startswith(RECIPE["prompt"])


def test_jpeg_gets_an_xmp_segment_after_exif_without_recompression() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"
    original = image_bytes("JPEG", quality=90, exif=exif.tobytes())
    out = embedded(original, "image/jpeg")
    with Image.open(io.BytesIO(out)) as image:
        xmp = image.info["xmp"].decode("utf-8")
        assert image.getexif()[0x010F] == "Camera Maker"
    assert "a lighthouse at dusk" in xmp and "studio:Model=\"local/sketch\"" in xmp
    assert pyvips.Image.new_from_buffer(out, "").get("xmp-data").decode("utf-8") == xmp
    # The compressed image data is not touched: everything from the first DQT on is identical.
    assert out[out.index(b"\xff\xdb"):] == original[original.index(b"\xff\xdb"):]
    assert out.index(b"Exif\x00") < out.index(b"http://ns.adobe.com/xap/1.0/")
    assert len(out) == len(original) + len(jpeg_xmp_segment(RECIPE))


def test_jpeg_xmp_already_in_the_file_is_replaced_not_doubled() -> None:
    first = embedded(image_bytes("JPEG"), "image/jpeg", {**RECIPE, "prompt": "first"})
    second = embedded(first, "image/jpeg")
    assert second.count(b"http://ns.adobe.com/xap/1.0/\x00") == 1
    with Image.open(io.BytesIO(second)) as image:
        assert "a lighthouse" in image.info["xmp"].decode("utf-8") and "first" not in image.info["xmp"].decode()


def test_a_huge_prompt_still_fits_the_jpeg_segment() -> None:
    recipe = {**RECIPE, "prompt": "word " * 30_000,
              "generation": {**RECIPE["generation"], "inputs": {"prompt": "word " * 30_000}}}
    segment = jpeg_xmp_segment(recipe)
    assert 0 < len(segment) <= 65535 + 2
    out = embedded(image_bytes("JPEG"), "image/jpeg", recipe)
    with Image.open(io.BytesIO(out)) as image:
        image.load()
        assert "word word" in image.info["xmp"].decode("utf-8")


@pytest.mark.parametrize("save", [
    {"lossless": True},  # VP8L: a simple file gains a VP8X header
    {"quality": 80},  # VP8 lossy
])
def test_webp_gets_an_xmp_chunk_and_a_valid_riff(save: dict[str, Any]) -> None:
    original = image_bytes("WEBP", mode="RGBA" if save.get("lossless") else "RGB", **save)
    out = embedded(original, "image/webp")
    assert struct.unpack("<I", out[4:8])[0] == len(out) - 8 and out[12:16] == b"VP8X"
    with Image.open(io.BytesIO(out)) as image:
        assert "a lighthouse at dusk" in image.info["xmp"].decode("utf-8")
        assert image.size == (64, 48)
    vips = pyvips.Image.new_from_buffer(out, "")
    assert "studio:Seed=\"1234\"" in vips.get("xmp-data").decode("utf-8")
    assert pixels(out) == pixels(original)


def test_an_extended_webp_keeps_its_chunks_and_sets_the_xmp_flag() -> None:
    original = image_bytes("WEBP", mode="RGBA", quality=80, exif=Image.Exif().tobytes())
    out = embedded(embedded(original, "image/webp", {**RECIPE, "prompt": "old"}), "image/webp")
    assert out[12:16] == b"VP8X" and out[20] & 0x04 and out.count(b"XMP ") == 1
    with Image.open(io.BytesIO(out)) as image:
        assert "a lighthouse" in image.info["xmp"].decode("utf-8")
    assert pixels(out) == pixels(original)


def test_other_types_and_damaged_files_pass_through_unchanged() -> None:
    gif = image_bytes("GIF")
    assert embedded(gif, "image/gif") == gif
    not_png = b"\x89PNX" + b"\x00" * 100
    assert embedded(not_png, "image/png") == not_png


def test_xmp_escapes_markup_and_drops_characters_xml_cannot_hold() -> None:
    packet = xmp_packet({**RECIPE, "prompt": 'a <script>alert("x")</script> & \x07bell', "name": 'x" onload="y'})
    text = packet.decode("utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text and "\x07" not in text
    pyvips.Image.new_from_buffer(embedded(image_bytes("PNG"), "image/png",
                                          {**RECIPE, "prompt": "<x/> & \x00"}), "").get("xmp-data")


def _generated_png(owner: Any, project: Any) -> Any:
    generation = Generation.objects.create(
        user=owner, project=project, model_id="local/sketch", provider="local", status="succeeded",
        inputs={"prompt": "a lighthouse at dusk", "seed": 77, "api_key": "sk-never-exported"},
        credits_estimated=5, credits_held=5, credits_charged=5)
    return asset_create_from_bytes(project=project, data=image_bytes("PNG"), name="dusk.png",
                                   source=AssetSource.GENERATION, generation=generation,
                                   metadata={"seed": 77, "style": "ink"})


def test_single_download_with_embed_carries_the_recipe_and_leaves_the_stored_file_alone(
        owner: Any, project: Any, owner_api: Any, outsider_api: Any, catalog: Any) -> None:
    asset = _generated_png(owner, project)
    with default_storage.open(asset.file.name, "rb") as fh:
        stored_before = fh.read()
    response = owner_api.get(f"/api/v1/assets/{asset.pk}/download?embed=1")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert response["Content-Type"] == "image/png" and response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == 'attachment; filename="dusk.png"'
    with Image.open(io.BytesIO(body)) as image:
        recipe = json.loads(image.text["studio:recipe"])
        assert "Seed: 77" in image.text["parameters"] and image.text["Description"] == "a lighthouse at dusk"
    assert recipe["id"] == str(asset.pk) and recipe["generation"]["inputs"] == {"prompt": "a lighthouse at dusk",
                                                                                 "seed": 77}
    assert b"sk-never-exported" not in body
    with default_storage.open(asset.file.name, "rb") as fh:
        assert fh.read() == stored_before
    assert outsider_api.get(f"/api/v1/assets/{asset.pk}/download?embed=1").status_code == 404
