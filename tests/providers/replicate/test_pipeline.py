"""Replicate jobs through the whole pipeline: worked examples, retries, failures, a webhook that resumes a
parked job, and the provider's cost of canceled and failed work reaching the margin report."""

from __future__ import annotations

import tempfile
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from assets.models import Asset
from assets.services import asset_create_from_bytes
from billing.models import UsageDaily
from billing.services import credits_summary
from billing.usage.services import revenue_by_period
from generations import attempts, dispatch, runner, services
from generations.models import Generation, Status
from generations.providers import replicate as adapter
from generations.providers.base import ProviderJob
from generations.providers.replicate import ReplicateProvider
from generations.runner import generation_run
from generations.services import generation_create
from tests.assets.test_uploads import mp4_bytes as encoded_mp4
from tests.fakes.replicate import webhook_delivery
from tests.fakes.server import FakeServer
from tests.providers.conftest import CancelDuringPoll
from tests.providers.replicate.support import CATALOG, png, served


def real_mp4() -> bytes:
    """An input video as a user would upload it: real frames, which the upload checks decode."""
    with tempfile.TemporaryDirectory() as folder:
        return encoded_mp4(Path(folder) / "clip.mp4", audio=False)


def upload(project: Any, data: bytes, name: str) -> str:
    return str(asset_create_from_bytes(project=project, data=data, name=name).pk)


WORKED_EXAMPLES = [
    # (model, inputs (asset inputs as (bytes factory, file name)), outputs expected)
    ("replicate/flux-schnell", {"prompt": "a lighthouse at dusk", "num_outputs": 2}, 2),
    ("replicate/flux-1.1-pro", {"prompt": "a lighthouse at dusk", "aspect_ratio": "16:9"}, 1),
    ("replicate/real-esrgan", {"image": (png, "small.png"), "scale": 2}, 1),
    ("replicate/rembg", {"image": (png, "portrait.png")}, 1),
    ("replicate/robust-video-matting", {"input_video": (real_mp4, "clip.mp4"), "output_type": "alpha-mask"}, 1),
    ("replicate/trellis", {"image": (png, "chair.png")}, 1),
    ("replicate/video-01-live", {"prompt": "the sea starts moving", "first_frame_image": (png, "sea.png")}, 1),
]


@pytest.mark.parametrize(("model_id", "inputs", "count"), WORKED_EXAMPLES, ids=[w[0] for w in WORKED_EXAMPLES])
def test_worked_example_through_the_pipeline(fake: FakeServer, owner: Any, project: Any, catalog: None,
                                             model_id: str, inputs: dict[str, Any], count: int) -> None:
    resolved = {name: upload(project, value[0](), value[1]) if isinstance(value, tuple) else value
                for name, value in inputs.items()}
    generation = generation_create(user=owner, project_id=project.pk, model_id=model_id, inputs=resolved)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED, (generation.error_code, generation.error_message)
    prediction = fake.state["predictions"][generation.provider_request_id]["prediction"]
    urls = adapter._file_values(prediction["output"], CATALOG[model_id].get("config", {}).get("output_key"))
    assets = list(Asset.objects.filter(generation=generation))
    assert len(assets) == count
    stored = sorted(asset.file.open("rb").read() for asset in assets)
    assert stored == sorted(served(fake, url) for url in urls)
    assert {asset.kind for asset in assets} == {CATALOG[model_id]["output_kind"]}
    assert generation.credits_charged > 0 and generation.provider_cost_usd is not None
    config = CATALOG[model_id].get("config", {})
    if "usd_per_second" in config:  # billed by GPU time: predict_time × the hardware's price
        assert generation.provider_cost_usd == (Decimal("2.5") * Decimal(config["usd_per_second"])).quantize(
            Decimal("0.000001"), rounding=ROUND_CEILING)
    summary = credits_summary(user=owner)
    assert (summary.held, summary.balance) == (0, 500 - generation.credits_charged)


def test_a_data_uri_output_is_stored_through_the_pipeline(fake: FakeServer, owner: Any, project: Any,
                                                         catalog: None) -> None:
    fake.state["plan"] = {"data_uri": True}
    generation = generation_create(user=owner, project_id=project.pk, model_id="replicate/rembg",
                                   inputs={"image": upload(project, png(), "in.png")})
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED, (generation.error_code, generation.error_message)
    (asset,) = Asset.objects.filter(generation=generation)
    assert asset.file.open("rb").read()[:8] == b"\x89PNG\r\n\x1a\n"
    assert generation.provider_cost_usd == Decimal("0.001438")  # 2.5 s × $0.000575/s, rounded up


def test_a_throttled_create_requeues_the_job_and_the_next_run_completes_it(fake: FakeServer, owner: Any,
                                                                         project: Any, catalog: None) -> None:
    fake.state["errors"].append({"on": "create", "status": 429, "headers": {"Retry-After": "5"},
                                 "detail": "Request was throttled. Expected available in 5 seconds."})
    generation = generation_create(user=owner, project_id=project.pk, model_id="replicate/flux-schnell",
                                   inputs={"prompt": "a kite"})
    with pytest.raises(attempts.RetryLater) as info:
        generation_run(generation.pk)
    assert info.value.countdown == 5
    generation.refresh_from_db()
    assert generation.status == Status.QUEUED
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED and generation.attempts == 2
    assert len(fake.state["predictions"]) == 1


@pytest.mark.parametrize(("plan", "error", "code"), [
    ({"outcome": "failed", "error": "NSFW content detected. Try running it again, or try a different prompt."},
     None, "content_policy"),
    ({}, {"on": "create", "status": 422, "title": "Input validation failed",
          "detail": "- input.prompt: prompt is too long\n"}, "invalid_input"),
    ({}, {"on": "create", "status": 402, "title": "Insufficient credit",
          "detail": "You have insufficient credit to run this model."}, "insufficient_credit"),
], ids=["content-policy", "validation", "no-replicate-credit"])
def test_a_final_error_fails_the_job_with_replicates_message_and_releases_the_hold(
        fake: FakeServer, owner: Any, project: Any, catalog: None, plan: dict[str, Any],
        error: dict[str, Any] | None, code: str) -> None:
    fake.state["plan"] = plan
    if error:
        fake.state["errors"].append(error)
    generation = generation_create(user=owner, project_id=project.pk, model_id="replicate/flux-1.1-pro",
                                   inputs={"prompt": "something"})
    assert credits_summary(user=owner).held > 0
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == (Status.FAILED, code)
    expected = plan.get("error") or (error or {}).get("detail", "").strip()
    assert expected in generation.error_message
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
    assert Generation.objects.get(pk=generation.pk).credits_charged == 0


def test_a_webhook_job_parks_and_a_signed_completion_callback_resumes_it(
        fake: FakeServer, owner: Any, project: Any, catalog: None, settings: Any, client: Any,
        django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.PROVIDER_WEBHOOKS = True
    settings.SITE_URL = "https://studio.example"
    fake.state["plan"] = {"starting_polls": 0, "processing_polls": 0}
    generation = generation_create(user=owner, project_id=project.pk, model_id="replicate/flux-schnell",
                                   inputs={"prompt": "a kite"})
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.RUNNING and generation.awaiting_webhook
    record = fake.state["predictions"][generation.provider_request_id]
    assert record["webhook"] == "https://studio.example" + reverse("provider-webhook", args=["replicate"])
    ReplicateProvider().poll(ProviderJob(provider="replicate", request_id=generation.provider_request_id))

    headers, body = webhook_delivery(fake.state, generation.provider_request_id)
    forged = {**headers, "webhook-signature": "v1," + "A" * 44}
    url = reverse("provider-webhook", args=["replicate"])
    refused = client.post(url, body, content_type="application/json",
                          headers={k: v for k, v in forged.items() if k != "Content-Type"})
    assert refused.status_code == 400
    resumed: list[str] = []
    monkeypatch.setattr(dispatch, "generation_resume_send", resumed.append)
    with django_capture_on_commit_callbacks(execute=True):
        accepted = client.post(url, body, content_type="application/json",
                               headers={k: v for k, v in headers.items() if k != "Content-Type"})
    assert accepted.status_code == 200 and resumed == [str(generation.pk)]
    runner.generation_resume(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED
    assert Asset.objects.filter(generation=generation).count() == 1


# --- provider costs of canceled and failed work --------------------------------------------------------

def margin_row_cost() -> Decimal:
    today = timezone.localdate()
    (row,) = revenue_by_period(period="day", date_from=today, date_to=today)
    return row.provider_cost_usd


def test_a_canceled_prediction_charges_nothing_and_its_billed_time_reaches_the_margin_report(
        fake: FakeServer, owner: Any, project: Any, catalog: None, cancel_during_poll: CancelDuringPoll) -> None:
    fake.state["plan"] = {"predict_time": 4.0, "processing_polls": 50}
    generation = generation_create(user=owner, project_id=project.pk, model_id="replicate/real-esrgan",
                                   inputs={"image": upload(project, png(), "in.png"), "scale": 2})
    cancel_during_poll("replicate", lambda: services.generation_cancel(user=owner, generation_id=generation.pk),
                       when=lambda status, _: status.state == "running")
    generation_run(generation.pk)

    generation.refresh_from_db()
    assert generation.status == Status.CANCELED and generation.credits_charged == 0
    assert fake.state["predictions"][generation.provider_request_id]["canceled_by_client"] is True
    assert generation.provider_cost_usd == Decimal("0.000900")  # 4 s × $0.000225/s
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
    (usage,) = UsageDaily.objects.filter(user=owner)
    assert (usage.generations, usage.failed, usage.provider_cost_usd) == (0, 0, Decimal("0.000900"))
    assert margin_row_cost() == Decimal("0.000900")
    assert "$0.000900 for the work it did; you are not charged for it" in generation.logs[-1]["message"]


def test_a_failed_prediction_records_its_billed_time_on_the_job_and_in_the_rollup(
        fake: FakeServer, owner: Any, project: Any, catalog: None) -> None:
    fake.state["plan"] = {"outcome": "failed", "error": "CUDA out of memory", "predict_time": 4.0}
    generation = generation_create(user=owner, project_id=project.pk, model_id="replicate/real-esrgan",
                                   inputs={"image": upload(project, png(), "in.png"), "scale": 2})
    generation_run(generation.pk)

    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == (Status.FAILED, "model_error")
    assert generation.provider_cost_usd == Decimal("0.000900")
    (usage,) = UsageDaily.objects.filter(user=owner)
    assert (usage.generations, usage.failed, usage.provider_cost_usd) == (1, 1, Decimal("0.000900"))
    assert credits_summary(user=owner).balance == 500


def test_a_billed_attempt_that_is_retried_keeps_its_cost_beside_the_successful_one(
        fake: FakeServer, owner: Any, project: Any, catalog: None) -> None:
    fake.state["plan"] = {"outcome": "failed", "error": "Prediction interrupted; please retry (code: PA)",
                          "predict_time": 2.0}
    generation = generation_create(user=owner, project_id=project.pk, model_id="replicate/real-esrgan",
                                   inputs={"image": upload(project, png(), "in.png"), "scale": 2})
    with pytest.raises(attempts.RetryLater):
        generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.QUEUED and generation.provider_cost_usd == Decimal("0.000450")

    fake.state["plan"] = {"predict_time": 4.0}
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED
    assert generation.provider_cost_usd == Decimal("0.000450") + Decimal("0.000900")
    (usage,) = UsageDaily.objects.filter(user=owner)
    assert (usage.generations, usage.succeeded, usage.provider_cost_usd) == (1, 1, Decimal("0.001350"))
