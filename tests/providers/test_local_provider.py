"""The offline `local` provider: its three work functions and the thread/registry machinery around them.

No database and no Django storage (except one worked example through the pipeline): assets are AssetInput
subclasses that carry their bytes.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
import pyvips
from PIL import Image, ImageDraw, ImageFilter

from assets.models import Asset
from assets.services import asset_create_from_bytes
from billing.services import credits_summary
from generations.models import Status
from generations.providers.base import CatalogModel, ProviderError, ProviderJob, ProviderStatus
from generations.providers.local import LOST_MESSAGE, JobCanceled, LocalProvider, background, sketch, upscale
from generations.runner import generation_run
from generations.services import generation_create
from tests.fakes.assets import image_asset
from tests.providers.support import poll_to_end

SKETCH = CatalogModel(id="local/sketch", provider="local", provider_model="sketch",
                      operation="text-to-image", output_kind="image")
UPSCALE = CatalogModel(id="local/upscale", provider="local", provider_model="upscale",
                       operation="upscale", output_kind="image")
REMOVE_BACKGROUND = CatalogModel(id="local/remove-background", provider="local",
                                 provider_model="remove-background", operation="background-removal",
                                 output_kind="image")


def no_report(progress: int, log: str | None = None) -> None:
    pass


def draw_sketch(**params: Any) -> bytes:
    inputs = {"prompt": "a lighthouse on a cliff", "seed": 7, "width": 256, "height": 256, "steps": 3}
    inputs.update(params)
    return sketch.run(inputs, no_report, threading.Event())[0].data or b""


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def poll_until_done(provider: LocalProvider, job: ProviderJob, timeout: float = 30.0) -> list[ProviderStatus]:
    return poll_to_end(provider, job, seconds=timeout)


def cartoon_person(width: int = 384, height: int = 384) -> Image.Image:
    """A flat drawing of a head and shoulders: enough of a person for the selfie segmenter."""
    image = Image.new("RGB", (width, height), (120, 170, 220))
    draw = ImageDraw.Draw(image)
    cx = width // 2
    draw.ellipse((cx - 150, int(height * 0.68), cx + 150, int(height * 1.25)), fill=(40, 60, 120))
    draw.rectangle((cx - 28, int(height * 0.55), cx + 28, int(height * 0.72)), fill=(224, 172, 140))
    draw.ellipse((cx - 78, int(height * 0.12), cx + 78, int(height * 0.52)), fill=(60, 40, 30))
    draw.ellipse((cx - 66, int(height * 0.2), cx + 66, int(height * 0.62)), fill=(232, 185, 150))
    for eye_x in (cx - 28, cx + 28):
        draw.ellipse((eye_x - 10, int(height * 0.36), eye_x + 10, int(height * 0.39)), fill=(255, 255, 255))
        draw.ellipse((eye_x - 5, int(height * 0.355), eye_x + 5, int(height * 0.395)), fill=(50, 30, 20))
    draw.polygon([(cx, int(height * 0.4)), (cx - 8, int(height * 0.47)), (cx + 8, int(height * 0.47))],
                 fill=(200, 140, 115))
    draw.arc((cx - 25, int(height * 0.47), cx + 25, int(height * 0.54)), 20, 160, fill=(150, 60, 60), width=4)
    return image.filter(ImageFilter.GaussianBlur(1.5))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def provider() -> LocalProvider:
    return LocalProvider()


# Sketch ------------------------------------------------------------------------------------------------

def test_a_sketch_is_byte_identical_for_the_same_prompt_seed_and_settings() -> None:
    assert draw_sketch() == draw_sketch()


@pytest.mark.parametrize("change", [{"seed": 8}, {"prompt": "a cat asleep in the sun"}])
def test_a_sketch_looks_different_with_another_seed_or_prompt(change: dict[str, Any]) -> None:
    first = pixels(draw_sketch()).astype(np.int16)
    second = pixels(draw_sketch(**change)).astype(np.int16)
    assert np.abs(first - second).mean() > 10


@pytest.mark.parametrize("style", ["shapes", "waves", "mosaic"])
def test_a_sketch_has_the_requested_size_in_every_style(style: str) -> None:
    output = sketch.run({"prompt": "blue hills", "seed": 3, "width": 384, "height": 256, "steps": 2,
                         "style": style}, no_report, threading.Event())[0]
    image = Image.open(io.BytesIO(output.data or b""))
    assert image.format == "PNG"
    assert image.size == (384, 256)
    assert (output.kind, output.mime, output.filename) == ("image", "image/png", "sketch-3.png")
    assert output.metadata.items() >= {"width": 384, "height": 256, "seed": 3}.items()


def test_a_sketch_without_a_seed_draws_seed_zero() -> None:
    assert draw_sketch(seed=None) == draw_sketch(seed=0)


def test_a_sketch_reports_one_log_line_per_step_and_climbs_to_100() -> None:
    progress: list[int] = []
    logs: list[str] = []

    def report(value: int, log: str | None = None) -> None:
        progress.append(value)
        if log:
            logs.append(log)

    sketch.run({"prompt": "x", "width": 256, "height": 256, "steps": 4}, report, threading.Event())
    assert [line for line in logs if line.startswith("step ")] == [f"step {i}/4" for i in range(1, 5)]
    assert progress == sorted(progress)
    assert progress[-1] == 100


@pytest.mark.parametrize("bad", [
    {"prompt": "   "},
    {"prompt": "x", "width": 300},
    {"prompt": "x", "height": 2048},
    {"prompt": "x", "steps": 0},
    {"prompt": "x", "style": "oil painting"},
    {"prompt": "x", "seed": -1},
    {"prompt": "x", "width": True},
    {"prompt": "x" * 2001},
])
def test_submitting_a_sketch_with_bad_input_is_refused_at_once(provider: LocalProvider,
                                                               bad: dict[str, Any]) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.submit(SKETCH, bad, credentials=None)
    assert caught.value.code == "invalid_input"
    assert caught.value.retryable is False


# Provider machinery ------------------------------------------------------------------------------------

def test_a_submitted_sketch_streams_each_log_line_once_and_finishes_at_100(provider: LocalProvider) -> None:
    job = provider.submit(SKETCH, {"prompt": "harbour at night", "seed": 11, "width": 256, "height": 256,
                                   "steps": 6}, credentials=None)
    assert job.provider == "local" and len(job.request_id) == 32

    statuses = poll_until_done(provider, job)
    final = statuses[-1]
    assert final.state == "succeeded"
    assert final.progress == 100
    assert final.usage == {"images": 1}
    assert [s.progress for s in statuses] == sorted(s.progress for s in statuses)
    logs = [line for status in statuses for line in status.logs]
    assert [line for line in logs if line.startswith("step ")] == [f"step {i}/6" for i in range(1, 7)]
    assert len(logs) == len(set(logs))
    [output] = final.outputs
    assert output.data == draw_sketch(prompt="harbour at night", seed=11, steps=6)


def test_a_finished_job_is_forgotten_once_its_result_has_been_polled(provider: LocalProvider) -> None:
    job = provider.submit(SKETCH, {"prompt": "x", "width": 256, "height": 256, "steps": 1}, credentials=None)
    assert poll_until_done(provider, job)[-1].state == "succeeded"
    assert provider.poll(job).error_code == "lost"
    assert provider.cancel(job) is False


def test_canceling_a_sketch_midway_ends_it_canceled(provider: LocalProvider,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sketch, "STEP_SECONDS", 0.2)
    job = provider.submit(SKETCH, {"prompt": "slow", "width": 256, "height": 256, "steps": 50},
                          credentials=None)
    deadline = time.monotonic() + 10
    seen: list[str] = []
    while not any(line.startswith("step ") for line in seen) and time.monotonic() < deadline:
        seen += provider.poll(job).logs
        time.sleep(0.01)

    assert provider.cancel(job) is True
    final = poll_until_done(provider, job, timeout=5)[-1]
    assert final.state == "canceled"
    assert final.outputs == []
    assert final.progress is not None and final.progress < 100


def test_polling_a_job_this_worker_never_ran_fails_as_lost_and_retryable(provider: LocalProvider) -> None:
    status = provider.poll(ProviderJob(provider="local", request_id="0" * 32))
    assert status.state == "failed"
    assert status.retryable is True
    assert status.error_code == "lost"
    assert status.error_message == LOST_MESSAGE


def test_canceling_a_job_this_worker_never_ran_returns_false(provider: LocalProvider) -> None:
    assert provider.cancel(ProviderJob(provider="local", request_id="f" * 32)) is False


def test_submitting_an_unknown_local_model_is_refused(provider: LocalProvider) -> None:
    model = CatalogModel(id="local/dream", provider="local", provider_model="dream",
                         operation="text-to-image", output_kind="image")
    with pytest.raises(ProviderError) as caught:
        provider.submit(model, {}, credentials=None)
    assert caught.value.retryable is False


def test_an_unreadable_image_fails_the_job_with_a_readable_message(provider: LocalProvider) -> None:
    job = provider.submit(UPSCALE, {"image": image_asset(b"definitely not a picture")}, credentials=None)
    final = poll_until_done(provider, job)[-1]
    assert final.state == "failed"
    assert final.error_code == "invalid_input"
    assert final.retryable is False
    assert "could not be read as an image" in final.error_message


# Upscale -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_multiplies_the_dimensions_of_a_generated_image(scale: int) -> None:
    source = draw_sketch(width=256, height=320)
    output = upscale.run({"image": image_asset(source, name="sketch-7.png"), "scale": scale}, no_report,
                         threading.Event())[0]
    result = pyvips.Image.new_from_buffer(output.data, "")
    assert (result.width, result.height) == (256 * scale, 320 * scale)
    assert output.mime == "image/png" and output.filename == f"sketch-7-x{scale}.png"
    assert output.metadata.items() >= {"width": 256 * scale, "height": 320 * scale, "scale": scale}.items()


def test_upscale_keeps_transparency() -> None:
    source = pyvips.Image.black(64, 48, bands=3).bandjoin(128).copy(interpretation="srgb").cast("uchar")
    output = upscale.run({"image": image_asset(source.pngsave_buffer())}, no_report, threading.Event())[0]
    result = pyvips.Image.new_from_buffer(output.data, "")
    assert (result.width, result.height, result.bands) == (128, 96, 4)


def test_upscale_refuses_outputs_over_64_megapixels_known_from_the_asset(provider: LocalProvider) -> None:
    asset = image_asset(b"", width=4100, height=4000)
    with pytest.raises(ProviderError) as caught:
        provider.submit(UPSCALE, {"image": asset, "scale": 2}, credentials=None)
    assert caught.value.code == "too_large"
    assert "64 megapixels" in caught.value.message


def test_upscale_refuses_outputs_over_64_megapixels_found_in_the_file() -> None:
    # 2100×2000 ×4 is 67.2 MP; the asset does not say its size, so the decoded header has to.
    source = pyvips.Image.black(2100, 2000).cast("uchar").pngsave_buffer(compression=9)
    with pytest.raises(ProviderError) as caught:
        upscale.run({"image": image_asset(source), "scale": 4}, no_report, threading.Event())
    assert caught.value.code == "too_large"
    assert caught.value.retryable is False


def test_canceling_an_upscale_stops_libvips_midway() -> None:
    black = pyvips.Image.black(2000, 2000, bands=3).copy(interpretation="srgb").cast("uchar")
    source = black.pngsave_buffer()
    cancel = threading.Event()
    progress: list[int] = []

    def report(value: int, log: str | None = None) -> None:
        progress.append(value)
        if value > 30:
            cancel.set()

    with pytest.raises(JobCanceled):
        upscale.run({"image": image_asset(source), "scale": 2}, report, cancel)
    assert max(progress) < 100


# Remove background -------------------------------------------------------------------------------------

def test_remove_background_cuts_a_person_out_as_an_rgba_png_of_the_same_size(
        provider: LocalProvider) -> None:
    job = provider.submit(REMOVE_BACKGROUND, {"image": image_asset(png_bytes(cartoon_person()))},
                          credentials=None)
    final = poll_until_done(provider, job, timeout=60)[-1]
    assert final.state == "succeeded", final.error_message
    [output] = final.outputs
    result = Image.open(io.BytesIO(output.data or b""))
    assert result.format == "PNG" and result.mode == "RGBA"
    assert result.size == (384, 384)
    alpha = np.asarray(result)[..., 3]
    assert alpha[150, 192] == 255  # the face
    assert alpha[350, 192] == 255  # the shirt
    assert alpha[10, 10] == 0  # sky
    assert 0.15 < output.metadata["foreground_fraction"] < 0.7


def grace_hopper() -> bytes:
    """A real photograph of a person: matplotlib's sample image (matplotlib comes with mediapipe)."""
    return (Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").read_bytes()


def gradient() -> Image.Image:
    ramp = np.linspace(0, 255, 256).astype(np.uint8)
    return Image.fromarray(np.stack([np.tile(ramp, (256, 1)), np.tile(ramp[:, None], (1, 256)),
                                     np.full((256, 256), 128, np.uint8)], -1))


def test_remove_background_cuts_a_real_photo_of_a_person_out(provider: LocalProvider) -> None:
    photo = grace_hopper()
    job = provider.submit(REMOVE_BACKGROUND, {"image": image_asset(photo, "hopper.jpg")},
                          credentials=None)
    statuses = poll_until_done(provider, job, timeout=60)
    final = statuses[-1]
    assert final.state == "succeeded", final.error_message
    [output] = final.outputs
    alpha = np.asarray(Image.open(io.BytesIO(output.data or b"")))[..., 3]
    assert alpha.shape == (600, 512)
    assert alpha[200, 256] == 255 and alpha[20, 20] == 0  # the face kept, the backdrop's corner cut
    assert output.metadata["face_score"] >= background.FACE_MIN_SCORE
    assert any(line.startswith("found a person (face score") for status in statuses for line in status.logs)


@pytest.mark.parametrize("picture", ["flat colour", "gradient", "sketch"])
def test_remove_background_fails_with_no_person_found_where_there_is_no_one(provider: LocalProvider,
                                                                           picture: str) -> None:
    if picture == "flat colour":
        data = png_bytes(Image.new("RGB", (256, 192), (120, 170, 220)))
    elif picture == "gradient":
        data = png_bytes(gradient())
    else:
        data = draw_sketch(style="shapes", seed=7, width=512, height=512, steps=6)
        # What the old code delivered: the segmenter alone marks half of this sketch as "person".
        assert (background.segment(pixels(data)[..., :3], "general") >= 0.5).mean() > 0.3
    job = provider.submit(REMOVE_BACKGROUND, {"image": image_asset(data)}, credentials=None)
    final = poll_until_done(provider, job, timeout=60)[-1]
    assert (final.state, final.error_code, final.retryable, final.outputs) == ("failed", "no_person_found",
                                                                                False, [])
    assert final.error_message.startswith("No person found in this picture.")


def test_feathering_softens_the_cut_edge_and_no_feather_keeps_it_hard() -> None:
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1.0
    hard = background.alpha_from_mask(mask, (64, 64), threshold=0.5, feather=0)
    soft = background.alpha_from_mask(mask, (64, 64), threshold=0.5, feather=6)
    assert set(np.unique(hard)) == {0, 255}
    assert len(np.unique(soft)) > 10
    assert soft[32, 32] == 255 and soft[0, 0] == 0


def test_a_zero_threshold_keeps_the_whole_picture() -> None:
    alpha = background.alpha_from_mask(np.zeros((8, 8), np.float32), (16, 16), threshold=0.0, feather=2)
    assert alpha.min() == 255


@pytest.mark.django_db
def test_removing_the_background_of_a_sketch_fails_and_releases_the_hold(owner: Any, project: Any,
                                                                         catalog: None) -> None:
    sketch_png = draw_sketch(style="shapes", seed=7, width=512, height=512, steps=6)
    picture = asset_create_from_bytes(project=project, data=sketch_png, name="sketch.png")
    generation = generation_create(user=owner, project_id=project.pk, model_id="local/remove-background",
                                   inputs={"image": str(picture.pk)})
    assert credits_summary(user=owner).held == generation.credits_held > 0
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code, generation.credits_charged) == (
        Status.FAILED, "no_person_found", 0)
    assert generation.error_message.startswith("No person found in this picture.")
    assert not Asset.objects.filter(generation=generation).exists()
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
