"""Previews: thumbnails, blurhash and phash, poster frames, waveforms and PDF pages, made by the worker's
service, idempotent, bounded, and served only to whoever may see the asset."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import blurhash
import httpx
import numpy as np
import pytest
import pyvips
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from assets.links import asset_preview_urls
from assets.models import Asset, AssetKind, AssetSource, PreviewStatus
from assets.previews import renderers
from assets.previews import service as previews
from assets.previews.service import preview_make
from assets.services import asset_create_from_bytes
from config.celery import app as celery_app
from tests.conftest import WorkerProcess, wait_for

# --- media made here ------------------------------------------------------------------------------------

def photo_jpeg(width: int = 1600, height: int = 1200, seed: int = 1) -> bytes:
    """Photographic enough: gradients with coarse and fine noise, so no encoder gets a free ride."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    coarse = rng.random((height // 50 + 2, width // 50 + 2, 3)).astype(np.float32)
    coarse = np.asarray(pyvips.Image.new_from_array(coarse).resize(50, kernel="linear").numpy())[:height, :width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1)
    pixels = (base * 150 + coarse * 80 + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)
    return _vips(pixels).jpegsave_buffer(Q=90)


def _vips(pixels: np.ndarray) -> pyvips.Image:
    return pyvips.Image.new_from_array(pixels).copy(interpretation="srgb")


def halves_jpeg(orientation: int | None = None) -> bytes:
    """40×20: red left half, blue right half, optionally with an EXIF orientation tag."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    image = _vips(pixels)
    if orientation is not None:
        image = image.copy()
        image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return image.jpegsave_buffer(Q=95)


def mp4(*, seconds: float = 2.0, fps: int = 10, width: int = 320, height: int = 180) -> bytes:
    """H.264: frame i is a red level of i/frames over a green top half, so the chosen frame is visible."""
    buf = io.BytesIO()
    frames = int(seconds * fps)
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            pixels = np.zeros((height, width, 3), dtype=np.uint8)
            pixels[:, :, 0] = int(255 * i / frames)
            pixels[: height // 2, :, 1] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def wav(*, seconds: float = 1.5, rate: int = 16000) -> bytes:
    """A 440 Hz tone fading in from silence."""
    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    signal = (np.sin(2 * np.pi * 440 * t) * np.linspace(0, 1, t.size) * 20000).astype(np.int16)
    with av.open(buf, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        for start in range(0, signal.size, 1024):
            frame = av.AudioFrame.from_ndarray(signal[None, start:start + 1024], format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def pdf(width: int = 300, height: int = 150) -> bytes:
    """A one-page PDF written by hand: a red box over the left half of a white page."""
    content = f"1 0 0 rg 0 0 {width // 2} {height} re f".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] /Contents 4 0 R >>".encode(),
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# --- helpers ----------------------------------------------------------------------------------------------

def stored(name: str) -> pyvips.Image:
    with default_storage.open(name, "rb") as fh:
        return pyvips.Image.new_from_buffer(fh.read(), "")


def preview_files(settings: Any) -> set[str]:
    root = Path(settings.MEDIA_ROOT) / "previews"
    return {str(p.relative_to(settings.MEDIA_ROOT)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def raw_asset(project: Any, data: bytes, *, kind: str, mime: str, ext: str) -> Asset:
    """A row whose file the sniffer never saw: a file damaged in storage, or one stored before today's
    checks. Previews must cope with whatever is there."""
    asset = Asset(owner_id=project.owner_id, project=project, kind=kind, name=f"damaged.{ext}", mime=mime,
                  size=len(data), sha256="0" * 64, source=AssetSource.UPLOAD)
    asset.file.save(f"upload.{ext}", ContentFile(data), save=False)
    asset.save()
    return asset


def dims(image: pyvips.Image) -> tuple[int, int]:
    return image.width, image.height


def red_green_blue(image: pyvips.Image, x: int, y: int) -> tuple[int, int, int]:
    r, g, b = image(x, y)[:3]
    return int(r), int(g), int(b)


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """`.delay` runs the task here, in this process (the worker test covers the real broker)."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


# --- making -----------------------------------------------------------------------------------------------

def test_an_image_gets_two_webp_thumbnails_a_blurhash_and_a_perceptual_hash(project: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=photo_jpeg(), name="harbour.jpg")
    assert asset.preview_status == PreviewStatus.PENDING  # usable now; the worker comes later
    assert preview_make(asset.pk) == PreviewStatus.READY
    asset.refresh_from_db()
    small, large = stored(asset.thumb_small.name), stored(asset.thumb_large.name)
    assert small.get("vips-loader") == large.get("vips-loader") == "webpload_buffer"
    assert dims(large) == (1024, 768) and dims(small) == (256, 192)
    assert not asset.preview  # an image is its own full-size still
    assert "exif-data" not in large.get_fields() and "icc-profile-data" not in large.get_fields()
    assert blurhash.is_valid_blurhash(asset.blurhash)
    assert len(asset.phash) == 16 and int(asset.phash, 16) >= 0
    assert asset.preview_error == ""


def test_a_small_image_is_never_upscaled(project: Any) -> None:
    pixels = np.full((50, 100, 3), 90, dtype=np.uint8)
    asset = asset_create_from_bytes(project=project, data=_vips(pixels).pngsave_buffer(), name="icon.png")
    preview_make(asset.pk)
    asset.refresh_from_db()
    assert dims(stored(asset.thumb_large.name)) == (100, 50)
    assert dims(stored(asset.thumb_small.name)) == (100, 50)


def test_an_exif_rotated_jpeg_gives_an_upright_thumbnail(project: Any) -> None:
    # Orientation 6: stored landscape, shown turned 90° clockwise, so the red left half ends up on top.
    asset = asset_create_from_bytes(project=project, data=halves_jpeg(orientation=6), name="phone.jpg")
    preview_make(asset.pk)
    asset.refresh_from_db()
    thumb = stored(asset.thumb_small.name)
    assert dims(thumb) == (20, 40)
    red_top, blue_bottom = red_green_blue(thumb, 10, 3), red_green_blue(thumb, 10, 36)
    assert red_top[0] > 200 and red_top[2] < 60, red_top
    assert blue_bottom[2] > 200 and blue_bottom[0] < 60, blue_bottom
    assert "orientation" not in thumb.get_fields()  # applied, and not applied twice by a viewer


def test_a_video_gets_a_poster_frame_from_a_tenth_of_the_way_in(project: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=mp4(), name="clip.mp4")
    assert asset.kind == AssetKind.VIDEO
    assert preview_make(asset.pk) == PreviewStatus.READY
    asset.refresh_from_db()
    poster = stored(asset.preview.name)
    assert poster.get("vips-loader") == "webpload_buffer" and dims(poster) == (320, 180)
    # 10% of 2 s is frame 2 of 20: red ≈ 25 over a green top half (lossy, so roughly).
    r, g, _ = red_green_blue(poster, 160, 40)
    assert 5 <= r <= 60 and g > 150
    assert dims(stored(asset.thumb_large.name)) == (320, 180)
    assert dims(stored(asset.thumb_small.name)) == (256, 144)
    assert blurhash.is_valid_blurhash(asset.blurhash) and len(asset.phash) == 16


def test_audio_gets_a_waveform_drawn_from_its_peaks(project: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=wav(), name="voice.wav")
    assert asset.kind == AssetKind.AUDIO
    assert preview_make(asset.pk) == PreviewStatus.READY
    asset.refresh_from_db()
    wave = stored(asset.preview.name)
    assert wave.get("vips-loader") == "pngload_buffer" and dims(wave) == (1000, 200)
    # The tone fades in: silence (the centre line only) at the start, full height at the end.
    assert red_green_blue(wave, 2, 10) == renderers.WAVEFORM_BACKGROUND
    assert red_green_blue(wave, 997, 10) == renderers.WAVEFORM_COLOUR
    assert red_green_blue(wave, 2, 100) == renderers.WAVEFORM_COLOUR
    assert dims(stored(asset.thumb_large.name)) == (1000, 200)
    assert dims(stored(asset.thumb_small.name)) == (256, 51)


def test_a_pdf_script_gets_its_first_page_rendered(project: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=pdf(), name="script.pdf")
    assert (asset.kind, asset.mime) == (AssetKind.TEXT, "application/pdf")
    assert preview_make(asset.pk) == PreviewStatus.READY
    asset.refresh_from_db()
    page = stored(asset.preview.name)
    assert dims(page) == (1600, 800)  # a 300×150 pt page at PDF_LONG_SIDE px
    assert red_green_blue(page, 100, 400)[0] > 230 and red_green_blue(page, 100, 400)[1] < 30
    assert red_green_blue(page, 1500, 400) == (255, 255, 255)
    assert dims(stored(asset.thumb_large.name)) == (1024, 512)
    assert dims(stored(asset.thumb_small.name)) == (256, 128)


@pytest.mark.parametrize(("data", "name"), [
    (b"INT. HARBOUR - NIGHT\n\nRain.\n", "scene.fountain"),
    (b"o cube\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "cube.obj"),
])
def test_kinds_with_nothing_to_draw_end_with_no_preview_and_no_files(project: Any, settings: Any, data: bytes,
                                                                     name: str) -> None:
    asset = asset_create_from_bytes(project=project, data=data, name=name)
    assert preview_make(asset.pk) == PreviewStatus.NONE
    asset.refresh_from_db()
    assert (asset.thumb_small.name, asset.thumb_large.name, asset.preview.name, asset.blurhash) == ("", "", "", "")
    assert preview_files(settings) == set()


# --- idempotent, no orphans -----------------------------------------------------------------------------

def test_running_it_twice_gives_the_same_result_and_no_orphan_files(project: Any, settings: Any,
                                                                   django_capture_on_commit_callbacks: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=mp4(), name="clip.mp4")
    with django_capture_on_commit_callbacks(execute=True):
        preview_make(asset.pk)
    first = Asset.objects.values("preview", "thumb_small", "thumb_large", "blurhash", "phash").get(pk=asset.pk)
    files = preview_files(settings)
    assert files == {first["preview"], first["thumb_small"], first["thumb_large"]}
    with django_capture_on_commit_callbacks(execute=True):
        assert preview_make(asset.pk) == PreviewStatus.READY  # a duplicate delivery: nothing to do
        assert preview_make(asset.pk, force=True) == PreviewStatus.READY  # remade: the same bytes, names
    assert Asset.objects.values("preview", "thumb_small", "thumb_large", "blurhash", "phash").get(pk=asset.pk) == first
    assert preview_files(settings) == files


def test_remaking_replaces_old_files_and_deletes_them_after_commit(project: Any, settings: Any,
                                                                  django_capture_on_commit_callbacks: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=photo_jpeg(800, 600), name="old.jpg")
    # What an earlier version of the code left: other names, other sizes.
    old_small = default_storage.save(f"previews/{project.pk}/xx/{asset.pk.hex}-small-old.webp", ContentFile(b"x"))
    old_large = default_storage.save(f"previews/{project.pk}/xx/{asset.pk.hex}-large-old.webp", ContentFile(b"y"))
    Asset.objects.filter(pk=asset.pk).update(preview_status=PreviewStatus.READY, thumb_small=old_small,
                                             thumb_large=old_large)
    with django_capture_on_commit_callbacks(execute=True):
        assert preview_make(asset.pk) == PreviewStatus.READY  # ready already: left alone
    assert default_storage.exists(old_small)
    with django_capture_on_commit_callbacks(execute=True):
        assert preview_make(asset.pk, force=True) == PreviewStatus.READY
    asset.refresh_from_db()
    assert not default_storage.exists(old_small) and not default_storage.exists(old_large)
    assert preview_files(settings) == {asset.thumb_small.name, asset.thumb_large.name}
    assert dims(stored(asset.thumb_large.name)) == (800, 600)


def test_a_file_cut_short_by_a_crash_mid_write_is_written_again(project: Any, settings: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=photo_jpeg(800, 600), name="crash.jpg")
    preview_make(asset.pk)
    asset.refresh_from_db()
    path = Path(settings.MEDIA_ROOT, asset.thumb_large.name)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # what a worker killed during the write leaves behind
    Asset.objects.filter(pk=asset.pk).update(preview_status=PreviewStatus.PENDING)  # never got to commit
    assert preview_make(asset.pk) == PreviewStatus.READY
    assert Asset.objects.get(pk=asset.pk).thumb_large.name == asset.thumb_large.name
    assert path.read_bytes() == whole


def test_a_deleted_asset_is_a_no_op(project: Any, settings: Any) -> None:
    assert preview_make(uuid.uuid4()) is None
    asset = asset_create_from_bytes(project=project, data=halves_jpeg(), name="gone.jpg")
    asset_id = asset.pk
    Asset.objects.filter(pk=asset_id).delete()
    assert preview_make(asset_id) is None
    assert preview_files(settings) == set()


# --- hostile and broken inputs ----------------------------------------------------------------------------

@pytest.mark.parametrize(("make", "kind", "mime", "ext", "reason"), [
    (lambda: photo_jpeg(800, 600)[:9000], AssetKind.IMAGE, "image/jpeg", "jpg", "could not be decoded"),
    (lambda: mp4()[:40] + bytes(range(256)) * 40, AssetKind.VIDEO, "video/mp4", "mp4", "could not be decoded"),
    (lambda: b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 200, AssetKind.AUDIO, "audio/x-wav", "wav", "decoded"),
    (lambda: b"%PDF-1.4\n" + b"garbage " * 100, AssetKind.TEXT, "application/pdf", "pdf", "could not be decoded"),
])
def test_a_corrupt_file_ends_failed_with_a_reason_and_no_files(project: Any, settings: Any, make: Any, kind: str,
                                                               mime: str, ext: str, reason: str) -> None:
    asset = raw_asset(project, make(), kind=kind, mime=mime, ext=ext)
    assert preview_make(asset.pk) == PreviewStatus.FAILED
    asset.refresh_from_db()
    assert reason in asset.preview_error and asset.preview_status == PreviewStatus.FAILED
    assert (asset.thumb_small.name, asset.thumb_large.name, asset.preview.name, asset.phash) == ("", "", "", "")
    assert preview_files(settings) == set()


def test_libvips_never_gets_a_format_the_sniffer_did_not_accept(project: Any, settings: Any) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>'
    for data in (svg, halves_jpeg()):  # an SVG, and a JPEG, both in rows that claim to be PNG
        asset = raw_asset(project, data, kind=AssetKind.IMAGE, mime="image/png", ext="png")
        assert preview_make(asset.pk) == PreviewStatus.FAILED
        asset.refresh_from_db()
        assert asset.preview_error
    assert preview_files(settings) == set()


def test_every_decode_is_bounded(project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    image = asset_create_from_bytes(project=project, data=photo_jpeg(400, 300), name="big.jpg")
    video = asset_create_from_bytes(project=project, data=mp4(), name="wide.mp4")
    sound = asset_create_from_bytes(project=project, data=wav(seconds=3), name="long.wav")
    monkeypatch.setattr(renderers, "MAX_IMAGE_PIXELS", 400 * 300 - 1)
    monkeypatch.setattr(renderers, "MAX_FRAME_PIXELS", 320 * 180 - 1)
    monkeypatch.setattr(renderers, "MAX_AUDIO_SECONDS", 2)
    for asset, reason in ((image, "megapixels"), (video, "frame size"), (sound, "longer than")):
        assert preview_make(asset.pk) == PreviewStatus.FAILED
        asset.refresh_from_db()
        assert reason in asset.preview_error, asset.preview_error
    progressive = raw_asset(project, _vips(np.zeros((300, 400, 3), np.uint8)).jpegsave_buffer(interlace=True),
                            kind=AssetKind.IMAGE, mime="image/jpeg", ext="jpg")
    monkeypatch.setattr(renderers, "MAX_IMAGE_PIXELS", 10**8)
    monkeypatch.setattr(renderers, "MAX_INTERLACED_PIXELS", 400 * 300 - 1)  # decoded whole: a lower cap
    assert preview_make(progressive.pk) == PreviewStatus.FAILED
    progressive.refresh_from_db()
    assert "progressive" in progressive.preview_error
    monkeypatch.setattr(renderers, "MAX_AUDIO_SECONDS", 3600)
    monkeypatch.setattr(renderers, "DECODE_SECONDS", 0.0)  # the wall-clock bound of the PyAV loops
    assert preview_make(sound.pk) == PreviewStatus.FAILED
    sound.refresh_from_db()
    assert "too long" in sound.preview_error


# --- queueing and the worker ----------------------------------------------------------------------------

def test_asset_create_queues_the_preview_only_after_commit(project: Any, django_capture_on_commit_callbacks: Any,
                                                           eager_celery: None) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        asset = asset_create_from_bytes(project=project, data=photo_jpeg(400, 300), name="queued.jpg")
    assert Asset.objects.get(pk=asset.pk).preview_status == PreviewStatus.PENDING
    for callback in callbacks:
        callback()
    asset.refresh_from_db()
    assert asset.preview_status == PreviewStatus.READY and asset.thumb_small.name


def test_backfill_queues_pending_and_failed_previews_in_batches(project: Any, eager_celery: None) -> None:
    pending = [asset_create_from_bytes(project=project, data=halves_jpeg(), name=f"p{i}.jpg") for i in range(3)]
    failed = pending.pop()
    Asset.objects.filter(pk=failed.pk).update(preview_status=PreviewStatus.FAILED, preview_error="storage down")
    ready = asset_create_from_bytes(project=project, data=halves_jpeg(), name="ready.jpg")
    Asset.objects.filter(pk=ready.pk).update(preview_status=PreviewStatus.READY)
    out = io.StringIO()
    call_command("previews_backfill", "--batch-size", "2", stdout=out)
    assert "3 asset previews queued" in out.getvalue() and "2 queued" in out.getvalue()
    statuses = dict(Asset.objects.values_list("pk", "preview_status"))
    assert all(statuses[a.pk] == PreviewStatus.READY for a in [*pending, failed])
    assert Asset.objects.get(pk=ready.pk).thumb_small.name == ""  # left alone without --all
    call_command("previews_backfill", "--all", "--inline", stdout=io.StringIO())
    assert Asset.objects.get(pk=ready.pk).thumb_small.name


def test_a_storage_outage_is_retried_and_then_recorded_without_losing_anything(
        project: Any, s3: dict[str, Any], eager_celery: None) -> None:
    from assets.tasks import asset_preview_make

    asset = asset_create_from_bytes(project=project, data=halves_jpeg(), name="s3.jpg")
    s3["server"].stop()  # the object store goes away
    with pytest.raises(previews.PreviewRetry):
        preview_make(asset.pk)
    assert Asset.objects.get(pk=asset.pk).preview_status == PreviewStatus.PENDING
    # Eager Celery runs each retry at once: the task gives up after its retries and says why.
    assert asset_preview_make.delay(str(asset.pk)).get() == PreviewStatus.FAILED
    asset.refresh_from_db()
    assert asset.preview_status == PreviewStatus.FAILED and "Storage was unavailable" in asset.preview_error


# --- serving ----------------------------------------------------------------------------------------------

def test_the_asset_downloads_while_its_preview_is_pending(owner_api: APIClient, project: Any) -> None:
    data = photo_jpeg(400, 300)
    asset = asset_create_from_bytes(project=project, data=data, name="now.jpg")
    download = owner_api.get(f"/api/v1/assets/{asset.pk}/download")
    assert download.status_code == 200 and b"".join(download.streaming_content) == data
    pending = owner_api.get(f"/api/v1/assets/{asset.pk}/thumbnail")
    assert pending.status_code == 404 and pending.json()["error"]["code"] == "preview_pending"


def test_the_thumbnail_is_served_to_the_owner_only(owner: Any, outsider: Any, owner_api: APIClient,
                                                   outsider_api: APIClient, project: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=photo_jpeg(800, 600), name="mine.jpg")
    preview_make(asset.pk)
    asset.refresh_from_db()
    url = f"/api/v1/assets/{asset.pk}/thumbnail"
    response = owner_api.get(url, {"size": "large"})
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    assert response["X-Content-Type-Options"] == "nosniff" and response["Cache-Control"] == "private, no-cache"
    assert response["Content-Disposition"].startswith("inline;")
    body = b"".join(response.streaming_content)
    assert dims(pyvips.Image.new_from_buffer(body, "")) == (800, 600)
    assert owner_api.get(url, {"size": "large"}, HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304
    versioned = asset_preview_urls(asset, api=True)["small"]
    assert versioned is not None
    immutable = owner_api.get(versioned)
    assert immutable.status_code == 200 and "immutable" in immutable["Cache-Control"]
    assert owner_api.get(url, {"size": "preview"}).json()["error"]["code"] == "no_preview"
    assert owner_api.get(url, {"size": "huge"}).status_code == 400
    assert outsider_api.get(url).status_code == 404
    assert APIClient().get(url).status_code == 401
    # The web app's route: the session's own assets only; signed out is a 404 too, not a login page.
    web = asset_preview_urls(asset)["small"]
    assert web is not None
    owner_web, outsider_web = Client(), Client()
    owner_web.force_login(owner)
    outsider_web.force_login(outsider)
    page = owner_web.get(web)
    assert page.status_code == 200 and page["Content-Type"] == "image/webp" and "immutable" in page["Cache-Control"]
    assert outsider_web.get(web).status_code == 404
    assert Client().get(web).status_code == 404


def test_a_failed_preview_is_a_404_naming_the_reason(owner_api: APIClient, project: Any) -> None:
    asset = raw_asset(project, b"%PDF-1.4\n" + b"x" * 50, kind=AssetKind.TEXT, mime="application/pdf", ext="pdf")
    preview_make(asset.pk)
    error = owner_api.get(f"/api/v1/assets/{asset.pk}/thumbnail").json()["error"]
    assert error["code"] == "no_preview" and "could not be decoded" in error["message"]
    assert error["preview_status"] == "failed"


# --- S3 ---------------------------------------------------------------------------------------------------

@pytest.fixture
def s3(settings: Any) -> Iterator[dict[str, Any]]:
    """An S3-protocol server on loopback (moto's server mode) as the media storage, spoken to by boto3."""
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
    boto3.client("s3", endpoint_url=endpoint, **credentials).create_bucket(Bucket="studio-previews")
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": "studio-previews", "endpoint_url": endpoint, "access_key": "test",
                    "secret_key": "test", "region_name": "us-east-1", "default_acl": None, "querystring_auth": True,
                    "file_overwrite": False,
                    # One attempt, short timeouts: the outage test should not sit in botocore's retries.
                    "client_config": Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2,
                                            read_timeout=5, signature_version="s3v4")}}}
    state = {"server": server, "endpoint": endpoint, "stopped": False}
    yield state
    try:
        server.stop()
    except Exception:
        pass


def test_with_s3_the_original_is_streamed_to_a_temporary_file_and_previews_redirect_to_presigned_urls(
        owner_api: APIClient, project: Any, s3: dict[str, Any], settings: Any) -> None:
    asset = asset_create_from_bytes(project=project, data=photo_jpeg(800, 600), name="cloud.jpg")
    assert preview_make(asset.pk) == PreviewStatus.READY
    asset.refresh_from_db()
    assert default_storage.exists(asset.thumb_small.name) and not Path(settings.MEDIA_ROOT, "previews").exists()
    response = owner_api.get(f"/api/v1/assets/{asset.pk}/thumbnail", {"size": "large"})
    assert response.status_code == 302 and response["Location"].startswith(s3["endpoint"])
    fetched = httpx.get(response["Location"])
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/webp"
    assert fetched.headers["content-disposition"].startswith("inline;")
    assert dims(pyvips.Image.new_from_buffer(fetched.content, "")) == (800, 600)


# --- a real worker ----------------------------------------------------------------------------------------

@pytest.mark.worker
@pytest.mark.timeout(180)
def test_an_uploaded_image_gets_its_thumbnails_from_a_real_worker(celery_worker_process: WorkerProcess,
                                                                  owner_api: APIClient, project: Any) -> None:
    upload = io.BytesIO(photo_jpeg(1200, 900))
    upload.name = "from-the-api.jpg"
    response = owner_api.post("/api/v1/assets", {"project": str(project.pk), "file": upload}, format="multipart")
    assert response.status_code == 201
    asset_id = response.json()["id"]
    # Usable at once, before the worker has done anything.
    assert owner_api.get(f"/api/v1/assets/{asset_id}/download").status_code == 200
    done = wait_for(lambda: (a := Asset.objects.get(pk=asset_id)).preview_status != PreviewStatus.PENDING and a,
                    timeout=120, message=f"no preview from the worker; log:\n{celery_worker_process.log()[-3000:]}")
    assert done.preview_status == PreviewStatus.READY, done.preview_error
    thumb = owner_api.get(f"/api/v1/assets/{asset_id}/thumbnail", {"size": "large"})
    assert thumb.status_code == 200
    assert dims(pyvips.Image.new_from_buffer(b"".join(thumb.streaming_content), "")) == (1024, 768)
