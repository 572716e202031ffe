"""Google jobs through the whole pipeline: a worked example for every operation in
generations/catalog/google.json, retries, failures and a user's cancel of a Veo render."""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from PIL import Image

from assets.models import Asset
from assets.services import asset_create_from_bytes
from billing.services import credits_summary
from core.errors import InvalidRequest
from generations.attempts import RetryLater
from generations.models import Generation
from generations.runner import generation_run
from generations.services import generation_cancel, generation_create
from tests.fakes.google import MP4_BYTES, png_bytes
from tests.fakes.server import FakeServer
from tests.providers.conftest import CancelDuringPoll
from tests.providers.google.support import ENTRIES
from tests.providers.support import run_pipeline


def _upload(project: Any, data: bytes, name: str) -> Any:
    return asset_create_from_bytes(project=project, data=data, name=name)


def _stored(generation: Any) -> list[bytes]:
    out = []
    for stored in Asset.objects.filter(generation=generation).order_by("created_at"):
        with stored.file.open("rb") as fh:
            out.append(fh.read())
    return out


def _balance(user: Any) -> tuple[int, int]:
    summary = credits_summary(user=user)
    return summary.balance, summary.held


@pytest.mark.django_db
@pytest.mark.parametrize(("model_id", "inputs", "expected"), [
    ("google/gemini-2.5-flash", {"prompt": "Write a tagline"}, b"Fade in on the tagline."),
    ("google/gemini-2.5-flash/prompt-enhance", {"prompt": "a fox, cosy"}, b"Fade in on the tagline."),
    ("google/gemini-2.5-flash/script-breakdown", {"script": "INT. BARN - DAY"}, b"Fade in on the tagline."),
])
def test_worked_example_text_generation(fake: FakeServer, catalog: None, owner: Any, project: Any,
                                        model_id: str, inputs: dict[str, Any], expected: bytes) -> None:
    fake.state["text"] = "Fade in on the tagline."
    generation = run_pipeline(owner, project, model_id, inputs)
    assert generation.status == "succeeded", generation.error_message
    assert _stored(generation) == [expected]
    assert generation.credits_charged >= 1 and _balance(owner) == (500 - generation.credits_charged, 0)
    usage_cost = generation.provider_cost_usd
    assert usage_cost is not None and Decimal(0) < usage_cost < Decimal("0.001")  # tokens × catalog prices


@pytest.mark.django_db
def test_worked_example_text_to_image_with_gemini(fake: FakeServer, catalog: None, owner: Any, project: Any) -> None:
    picture = png_bytes((80, 80), (10, 200, 90))
    fake.state["image"] = picture
    generation = run_pipeline(owner, project, "google/gemini-2.5-flash-image", {"prompt": "a green square"})
    assert generation.status == "succeeded", generation.error_message
    assert _stored(generation) == [picture]
    # 3 input tokens at $0.30/1M + 1290 image tokens at $30/1M = $0.0387009, rounded up to 6 places.
    assert generation.provider_cost_usd == Decimal("0.038701")
    assert generation.credits_charged == 4 and _balance(owner) == (496, 0)


@pytest.mark.django_db
def test_worked_example_text_to_image_with_imagen(fake: FakeServer, catalog: None, owner: Any, project: Any) -> None:
    picture = png_bytes((64, 48))
    fake.state["image"] = picture
    generation = run_pipeline(owner, project, "google/imagen-4.0-generate-001", {"prompt": "a fox", "num_images": 2})
    assert generation.status == "succeeded", generation.error_message
    assert _stored(generation) == [picture, picture]
    assert generation.provider_cost_usd == Decimal("0.08") and generation.credits_charged == 8
    assert _balance(owner) == (492, 0)


@pytest.mark.django_db
def test_worked_example_image_edit(fake: FakeServer, catalog: None, owner: Any, project: Any) -> None:
    source = _upload(project, png_bytes((40, 40), (250, 0, 0)), "red.png")
    edited = png_bytes((40, 40), (0, 0, 250))
    fake.state["image"] = edited
    generation = run_pipeline(owner, project, "google/gemini-2.5-flash-image/edit",
                      {"image": str(source.pk), "prompt": "make it blue"})
    assert generation.status == "succeeded", generation.error_message
    assert _stored(generation) == [edited]
    assert generation.credits_charged == 4 and generation.provider_cost_usd is not None


@pytest.mark.django_db
@pytest.mark.parametrize(("model_id", "seconds", "credits"), [
    ("google/veo-3.0-generate-001", 4, 160),
    ("google/veo-3.0-fast-generate-001", 8, 120),
])
def test_worked_example_text_to_video(fake: FakeServer, catalog: None, owner: Any, project: Any,
                                      model_id: str, seconds: int, credits: int) -> None:
    fake.state["veo_pending_polls"] = 2
    generation = run_pipeline(owner, project, model_id, {"prompt": "waves at dusk", "duration_seconds": seconds})
    assert generation.status == "succeeded", generation.error_message
    assert _stored(generation) == [MP4_BYTES]
    assert generation.credits_charged == credits and _balance(owner) == (500 - credits, 0)
    assert generation.provider_cost_usd == Decimal(seconds) * Decimal(ENTRIES[model_id]["price"]["usd_per_unit"])
    assert any("Veo is rendering" in line["message"] for line in generation.logs)


@pytest.mark.django_db
def test_worked_example_image_to_video(fake: FakeServer, catalog: None, owner: Any, project: Any) -> None:
    frame = _upload(project, png_bytes((64, 36)), "frame.png")
    generation = run_pipeline(owner, project, "google/veo-3.0-fast-generate-001/image-to-video",
                      {"image": str(frame.pk), "prompt": "the camera pushes in", "duration_seconds": 4})
    assert generation.status == "succeeded", generation.error_message
    assert _stored(generation) == [MP4_BYTES]
    assert generation.credits_charged == 60 and generation.provider_cost_usd == Decimal("0.60")
    with Image.open(io.BytesIO(_stored_input(fake))) as sent_frame:
        assert sent_frame.size == (64, 36)


def _stored_input(server: FakeServer) -> bytes:
    submit = next(r for r in server.requests if r["path"].endswith(":predictLongRunning"))
    return base64.b64decode(json.loads(submit["body"])["instances"][0]["image"]["bytesBase64Encoded"])


@pytest.mark.django_db
def test_a_rate_limited_job_is_retried_by_the_pipeline_and_then_completes(fake: FakeServer, catalog: None,
                                                                        owner: Any, project: Any) -> None:
    fake.state["fail"] = [{"route": "generateContent", "code": 429, "retry_delay": "5s", "message": "Quota."}]
    generation = generation_create(user=owner, project_id=project.pk, model_id="google/gemini-2.5-flash",
                                   inputs={"prompt": "hi"})
    with pytest.raises(RetryLater) as retry:
        generation_run(generation.pk)
    assert retry.value.countdown >= 5.0  # Google's RetryInfo wins over the shorter backoff
    generation.refresh_from_db()
    assert generation.status == "queued" and _balance(owner) == (500, generation.credits_held)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.attempts) == ("succeeded", 2)


@pytest.mark.django_db
def test_a_failing_veo_poll_is_retried_on_the_same_operation_without_a_second_submit(
        fake: FakeServer, catalog: None, owner: Any, project: Any) -> None:
    fake.state.update(veo_pending_polls=1, fail=[{"route": "fetchPredictOperation", "code": 503, "message": "Busy."}])
    generation = generation_create(user=owner, project_id=project.pk, model_id="google/veo-3.0-fast-generate-001",
                                   inputs={"prompt": "x", "duration_seconds": 4})
    with pytest.raises(RetryLater):
        generation_run(generation.pk)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == "succeeded", generation.error_message
    assert sum(r["path"].endswith(":predictLongRunning") for r in fake.requests) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(("model_id", "script", "code", "message"), [
    ("google/gemini-2.5-flash", {"block_reason": "PROHIBITED_CONTENT"}, "content_policy",
     "Google blocked the prompt (PROHIBITED_CONTENT)."),
    ("google/imagen-4.0-generate-001", {"imagen_filtered": "Unsafe prompt."}, "content_policy",
     "Imagen's safety filters removed the image: Unsafe prompt."),
    ("google/veo-3.0-fast-generate-001", {"veo_pending_polls": 0, "veo_filtered": ["Violence."]}, "content_policy",
     "Google's safety filters removed the video: Violence."),
    ("google/gemini-2.5-flash-image", {"fail": [{"code": 400, "message": "Unsupported aspect ratio."}]},
     "invalid_input", "Google: Unsupported aspect ratio."),
    ("google/gemini-2.5-flash", {"api_keys": {"another-key"}}, "invalid_key",
     "Google: API key not valid. Please pass a valid API key."),
])
def test_a_final_error_fails_the_generation_with_googles_message_and_charges_nothing(
        fake: FakeServer, catalog: None, owner: Any, project: Any, model_id: str, script: dict[str, Any],
        code: str, message: str) -> None:
    fake.state.update(script)
    generation = run_pipeline(owner, project, model_id, {"prompt": "something"})
    assert (generation.status, generation.error_code, generation.error_message) == ("failed", code, message)
    assert _balance(owner) == (500, 0) and generation.credits_charged == 0


@pytest.mark.django_db
def test_a_veo_job_the_user_cancels_still_renders_and_is_delivered_and_charged(
        fake: FakeServer, catalog: None, owner: Any, project: Any, cancel_during_poll: CancelDuringPoll) -> None:
    # google-genai 3.4.0 cannot cancel an operation, so Google renders (and bills) the video anyway; the
    # runner polls on after the cancel and delivers it under the cancel rule (docs/providers/fal.md, "Cancel").
    fake.state["veo_pending_polls"] = 4
    generation = generation_create(user=owner, project_id=project.pk, model_id="google/veo-3.0-fast-generate-001",
                                   inputs={"prompt": "x", "duration_seconds": 4})
    # The user presses cancel while Veo renders.
    cancel_during_poll("google", lambda: generation_cancel(user=owner, generation_id=generation.pk),
                       when=lambda status, polls: polls == 2)
    generation_run(generation.pk)
    generation = Generation.objects.get(pk=generation.pk)
    assert generation.status == "succeeded" and generation.credits_charged > 0
    assert _balance(owner) == (500 - generation.credits_charged, 0)
    assert any("finished before the cancel took effect" in line["message"] for line in generation.logs)
    assert not any("cancel" in r["path"].lower() for r in fake.requests)  # nothing to tell Google (3.4.0)


@pytest.mark.django_db
def test_a_script_breakdown_needs_pasted_text_or_a_file(catalog: None, owner: Any, project: Any) -> None:
    with pytest.raises(InvalidRequest):
        generation_create(user=owner, project_id=project.pk, model_id="google/gemini-2.5-flash/script-breakdown",
                          inputs={})
    assert _balance(owner) == (500, 0)
