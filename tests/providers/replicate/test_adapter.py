"""The Replicate adapter, driving the real `replicate` SDK against a loopback fake of Replicate's API
(tests/fakes/replicate.py) over TLS: submit, poll and outputs, cancel, errors, keys and webhooks."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from generations.providers import replicate as adapter
from generations.providers.base import ProviderError, ProviderJob, WebhookRejected
from generations.providers.replicate import ReplicateProvider
from tests.fakes.replicate import sign_webhook, webhook_delivery
from tests.fakes.server import FakeServer
from tests.providers.replicate.support import CATALOG, catalog_model, image_input, png, requests_to, run_to_end, served


def test_an_official_model_is_created_by_name_and_walks_starting_processing_succeeded(fake: FakeServer) -> None:
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/flux-schnell"), {"prompt": "a red fox", "num_outputs": 2,
                                                                     "seed": 7}, credentials=None)
    (create,) = requests_to(fake, "POST", "/v1/")
    assert create["path"] == "/v1/models/black-forest-labs/flux-schnell/predictions"
    assert create["headers"]["Authorization"] == "Bearer test-key"
    assert json.loads(create["body"]) == {"input": {"prompt": "a red fox", "num_outputs": 2, "seed": 7}}

    statuses = run_to_end(provider, job)
    assert [s.state for s in statuses] == ["queued", "running", "running", "succeeded"]
    assert [s.progress for s in statuses] == [None, 50, 100, 100]
    # Each poll brings only the new log lines; tqdm bars become progress instead of lines.
    assert [s.logs for s in statuses] == [[], ["Using seed: 7"], [], ["Done."]]
    done = statuses[-1]
    assert [o.filename for o in done.outputs] == ["out-0.webp", "out-1.webp"]
    assert all(o.url and o.url.startswith("https://") and o.data is None for o in done.outputs)
    assert {o.mime for o in done.outputs} == {"image/webp"} and {o.kind for o in done.outputs} == {"image"}
    assert done.usage == {"predict_time": 2.5, "units": 2}
    assert done.cost_usd is None  # billed per image: the price card applies


def test_tqdm_bars_with_a_description_become_progress_and_their_redraws_never_reach_the_log(
        fake: FakeServer) -> None:
    # "Sampling:  50%|█████     | 2/4 [...]", redrawn in place three times per poll.
    fake.state["plan"] = {"bar_desc": "Sampling", "bar_redraws": 3}
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/flux-schnell"), {"prompt": "a red fox", "seed": 7},
                          credentials=None)
    statuses = run_to_end(provider, job)
    assert "Sampling:  50%|" in fake.state["predictions"][job.request_id]["prediction"]["logs"]
    assert [s.progress for s in statuses] == [None, 50, 100, 100]
    assert [s.logs for s in statuses] == [[], ["Using seed: 7"], [], ["Done."]]


def test_a_community_model_is_created_by_its_pinned_version_with_small_inputs_inline(fake: FakeServer) -> None:
    provider = ReplicateProvider()
    data = png()
    job = provider.submit(catalog_model("replicate/rembg"), {"image": image_input(data)}, credentials=None)
    (create,) = requests_to(fake, "POST", "/v1/predictions")
    body = json.loads(create["body"])
    assert body["version"] == CATALOG["replicate/rembg"]["config"]["version"]
    assert body["input"]["image"].startswith("data:image/png;base64,")
    assert not requests_to(fake, "POST", "/v1/files")
    assert fake.state["predictions"][job.request_id]["prediction"]["model"] == "cjwbw/rembg"


def test_inputs_over_the_data_uri_limit_are_uploaded_through_the_files_api(fake: FakeServer,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adapter, "DATA_URI_MAX_BYTES", 100)
    data = png((64, 64), "green")
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/real-esrgan"), {"image": image_input(data), "scale": 2},
                          credentials=None)
    (upload,) = requests_to(fake, "POST", "/v1/files")
    assert upload["headers"]["Content-Type"].startswith("multipart/form-data")
    sent = fake.state["predictions"][job.request_id]["prediction"]["input"]["image"]
    file_id = sent.rsplit("/", 1)[1]
    assert sent == f"{fake.url}/v1/files/{file_id}" and fake.state["files"][file_id] == (data, "image/png")


def test_a_model_billed_by_gpu_time_reports_predict_time_times_its_hardware_price(fake: FakeServer) -> None:
    fake.state["plan"] = {"predict_time": 4.0}
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/real-esrgan"), {"image": image_input(), "scale": 2},
                          credentials=None)
    done = run_to_end(provider, job)[-1]
    assert done.usage == {"predict_time": 4.0}
    assert done.cost_usd == Decimal("0.0009")  # 4 s × gpu-t4 $0.000225/s
    (output,) = done.outputs
    assert output.mime == "image/png" and served(fake, output.url or "")[:8] == b"\x89PNG\r\n\x1a\n"


def test_data_uri_outputs_come_back_as_bytes(fake: FakeServer) -> None:
    fake.state["plan"] = {"data_uri": True, "starting_polls": 0, "processing_polls": 0}
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/rembg"), {"image": image_input()}, credentials=None)
    (status,) = run_to_end(provider, job)
    (output,) = status.outputs
    assert output.url is None and output.data is not None and output.data.startswith(b"\x89PNG")
    assert (output.kind, output.mime, output.filename) == ("image", "image/png", "output-1.png")


def test_trellis_gets_its_image_as_a_list_and_returns_the_glb_from_its_output_object(fake: FakeServer) -> None:
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/trellis"), {"image": image_input(), "seed": 3,
                                                               "texture_size": 1024}, credentials=None)
    sent = fake.state["predictions"][job.request_id]["prediction"]["input"]
    assert len(sent["images"]) == 1 and sent["images"][0].startswith("data:image/png;base64,")
    assert "image" not in sent and sent["generate_model"] is True and sent["generate_color"] is False
    (output,) = run_to_end(provider, job)[-1].outputs
    assert (output.kind, output.mime, output.filename) == ("mesh", "model/gltf-binary", "out-0.glb")
    assert served(fake, output.url or "")[:4] == b"glTF"


def test_a_webhook_url_is_sent_with_the_start_and_completed_events(fake: FakeServer) -> None:
    job = ReplicateProvider().submit(catalog_model("replicate/flux-schnell"), {"prompt": "x"}, credentials=None,
                                     webhook_url="https://studio.example/webhooks/replicate")
    record = fake.state["predictions"][job.request_id]
    assert record["webhook"] == "https://studio.example/webhooks/replicate"
    assert record["webhook_events_filter"] == ["start", "completed"]


def test_a_users_own_key_is_used_for_the_create_and_for_later_polls(fake: FakeServer) -> None:
    fake.state["tokens"] = {"test-key", "r8_users_own"}
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/flux-schnell"), {"prompt": "x"},
                          credentials={"api_key": "r8_users_own"})
    provider.poll(job)
    assert {r["headers"]["Authorization"] for r in fake.requests} == {"Bearer r8_users_own"}


# --- cancel ----------------------------------------------------------------------------------------

def test_cancel_is_propagated_to_replicate(fake: FakeServer) -> None:
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/video-01-live"),
                          {"prompt": "waves", "first_frame_image": image_input()}, credentials=None)
    assert provider.poll(job).state == "queued"
    assert provider.cancel(job) is True
    assert requests_to(fake, "POST", f"/v1/predictions/{job.request_id}/cancel")
    assert fake.state["predictions"][job.request_id]["canceled_by_client"] is True
    assert provider.poll(job).state == "canceled"


def test_a_canceled_prediction_that_had_started_reports_the_time_it_is_billed_for(fake: FakeServer) -> None:
    fake.state["plan"] = {"predict_time": 3.0, "processing_polls": 5}
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/real-esrgan"), {"image": image_input(), "scale": 2},
                          credentials=None)
    assert [provider.poll(job).state for _ in range(2)] == ["queued", "running"]
    assert provider.cancel(job) is True
    done = provider.poll(job)
    assert (done.state, done.usage) == ("canceled", {"predict_time": 3.0})
    assert done.cost_usd == Decimal("0.000675")  # 3 s × gpu-t4 $0.000225/s


def test_a_failed_prediction_on_a_gpu_time_model_reports_its_cost(fake: FakeServer) -> None:
    fake.state["plan"] = {"outcome": "failed", "error": "CUDA out of memory", "predict_time": 4.0}
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/real-esrgan"), {"image": image_input(), "scale": 2},
                          credentials=None)
    done = run_to_end(provider, job)[-1]
    assert (done.state, done.error_code, done.cost_usd) == ("failed", "model_error", Decimal("0.0009"))


def test_cancelling_a_finished_prediction_reports_false(fake: FakeServer) -> None:
    pid = finished_prediction(fake)
    assert ReplicateProvider().cancel(ProviderJob(provider="replicate", request_id=pid)) is False
    assert fake.state["predictions"][pid]["prediction"]["status"] == "succeeded"


def test_cancel_reports_false_instead_of_raising_when_replicate_is_unreachable(fake: FakeServer) -> None:
    job = ReplicateProvider().submit(catalog_model("replicate/flux-schnell"), {"prompt": "x"}, credentials=None)
    fake.state["errors"].append({"on": "cancel", "status": 500, "detail": "Internal server error"})
    assert ReplicateProvider().cancel(job) is False


# --- errors ----------------------------------------------------------------------------------------

def test_a_throttled_create_is_retryable_after_retry_after_and_the_next_create_succeeds(fake: FakeServer) -> None:
    fake.state["errors"].append({"on": "create", "status": 429, "headers": {"Retry-After": "2"},
                                 "detail": "Request was throttled. Expected available in 1 second."})
    provider = ReplicateProvider()
    with pytest.raises(ProviderError) as info:
        provider.submit(catalog_model("replicate/flux-schnell"), {"prompt": "x"}, credentials=None)
    assert (info.value.code, info.value.retryable, info.value.retry_after) == ("rate_limited", True, 2.0)
    assert "throttled" in info.value.message
    assert len(requests_to(fake, "POST", "/v1/models/")) == 1  # the SDK never retries a create
    job = provider.submit(catalog_model("replicate/flux-schnell"), {"prompt": "x"}, credentials=None)
    assert run_to_end(provider, job)[-1].state == "succeeded"


def test_one_failed_poll_is_absorbed_by_the_sdks_single_retry(fake: FakeServer) -> None:
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/flux-schnell"), {"prompt": "x"}, credentials=None)
    fake.state["errors"].append({"on": "get", "status": 503, "detail": "Service unavailable",
                                 "headers": {"Retry-After": "0"}})
    assert provider.poll(job).state == "queued"
    assert len(requests_to(fake, "GET", "/v1/predictions/")) == 2


def test_a_poll_that_keeps_failing_is_retryable_and_the_job_carries_on_afterwards(fake: FakeServer) -> None:
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/flux-schnell"), {"prompt": "x"}, credentials=None)
    fake.state["errors"] += [{"on": "get", "status": 503, "detail": "Service unavailable",
                              "headers": {"Retry-After": "0"}}] * 2
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        provider.poll(job)
    assert (info.value.code, info.value.retryable) == ("upstream_503", True)
    assert time.monotonic() - started < 2  # no long sleeps inside the SDK
    assert run_to_end(provider, job)[-1].state == "succeeded"


def test_an_input_validation_error_is_final_with_replicates_own_message(fake: FakeServer) -> None:
    with pytest.raises(ProviderError) as info:
        ReplicateProvider().submit(catalog_model("replicate/flux-schnell"), {"num_outputs": 1}, credentials=None)
    assert (info.value.code, info.value.retryable) == ("invalid_input", False)
    assert "Input validation failed" in info.value.message and "prompt is required" in info.value.message


def test_a_bad_key_is_refused_as_invalid_key(fake: FakeServer) -> None:
    with pytest.raises(ProviderError) as info:
        ReplicateProvider().submit(catalog_model("replicate/flux-schnell"), {"prompt": "x"},
                                   credentials={"api_key": "r8_wrong"})
    assert (info.value.code, info.value.retryable) == ("invalid_key", False)
    assert info.value.message == "You did not pass a valid authentication token"


def test_a_server_the_ca_bundle_does_not_trust_is_a_connection_error(fake: FakeServer, settings: Any) -> None:
    settings.PROVIDER_CA_BUNDLE = ""  # the system trust store knows nothing of the test CA
    with pytest.raises(ProviderError) as info:
        ReplicateProvider().submit(catalog_model("replicate/flux-schnell"), {"prompt": "x"}, credentials=None)
    assert (info.value.code, info.value.retryable) == ("connection_error", True)


def test_a_prediction_refused_by_the_safety_checker_fails_finally_with_its_error_text(fake: FakeServer) -> None:
    fake.state["plan"] = {"outcome": "failed",
                          "error": "NSFW content detected. Try running it again, or try a different prompt."}
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/flux-1.1-pro"), {"prompt": "x"}, credentials=None)
    done = run_to_end(provider, job)[-1]
    assert (done.state, done.error_code, done.retryable) == ("failed", "content_policy", False)
    assert done.error_message.startswith("NSFW content detected")
    assert "Traceback (most recent call last):" in done.logs


def test_a_prediction_interrupted_by_the_platform_fails_as_retryable(fake: FakeServer) -> None:
    fake.state["plan"] = {"outcome": "failed", "error": "Prediction interrupted; please retry (code: PA)"}
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/rembg"), {"image": image_input()}, credentials=None)
    done = run_to_end(provider, job)[-1]
    assert (done.state, done.error_code, done.retryable) == ("failed", "interrupted", True)


# --- credentials -----------------------------------------------------------------------------------

def test_check_credentials_accepts_a_good_key_and_refuses_a_bad_one_as_invalid_key(fake: FakeServer) -> None:
    provider = ReplicateProvider()
    provider.check_credentials({"api_key": "test-key"})
    assert requests_to(fake, "GET", "/v1/account")
    with pytest.raises(ProviderError) as info:
        provider.check_credentials({"api_key": "r8_wrong"})
    assert info.value.code == "invalid_key"


def test_no_key_at_all_is_a_final_missing_key_error(settings: Any) -> None:
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "replicate": ""}
    with pytest.raises(ProviderError) as info:
        ReplicateProvider().check_credentials(None)
    assert (info.value.code, info.value.retryable) == ("missing_key", False)


# --- webhooks --------------------------------------------------------------------------------------

def finished_prediction(fake: FakeServer) -> str:
    provider = ReplicateProvider()
    job = provider.submit(catalog_model("replicate/flux-schnell"), {"prompt": "x"}, credentials=None)
    run_to_end(provider, job)
    return job.request_id


def test_a_correctly_signed_webhook_is_accepted_and_decoded(fake: FakeServer) -> None:
    pid = finished_prediction(fake)
    headers, body = webhook_delivery(fake.state, pid)
    event = ReplicateProvider().parse_webhook(headers, body)
    assert event.request_id == pid
    assert event.status.state == "succeeded"
    assert [o.url for o in event.status.outputs] == fake.state["predictions"][pid]["prediction"]["output"]


def test_a_webhook_with_a_forged_signature_is_refused(fake: FakeServer) -> None:
    pid = finished_prediction(fake)
    headers, body = webhook_delivery(fake.state, pid)
    forged = sign_webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", body.decode(), msg_id=headers["webhook-id"])
    with pytest.raises(WebhookRejected, match="signature is invalid"):
        ReplicateProvider().parse_webhook({**headers, "webhook-signature": forged["webhook-signature"]}, body)
    with pytest.raises(WebhookRejected, match="signature is invalid"):
        ReplicateProvider().parse_webhook(headers, body.replace(b"succeeded", b"failed"))


def test_a_webhook_with_a_stale_timestamp_is_refused(fake: FakeServer) -> None:
    pid = finished_prediction(fake)
    headers, body = webhook_delivery(fake.state, pid, timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookRejected, match="tolerance"):
        ReplicateProvider().parse_webhook(headers, body)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_webhook_missing_a_signature_header_is_refused(fake: FakeServer, missing: str) -> None:
    pid = finished_prediction(fake)
    headers, body = webhook_delivery(fake.state, pid)
    del headers[missing]
    with pytest.raises(WebhookRejected, match="Missing webhook"):
        ReplicateProvider().parse_webhook(headers, body)


def test_webhooks_are_refused_when_no_signing_secret_is_configured(fake: FakeServer, settings: Any) -> None:
    pid = finished_prediction(fake)
    headers, body = webhook_delivery(fake.state, pid)
    settings.REPLICATE_WEBHOOK_SECRET = ""
    with pytest.raises(WebhookRejected, match="REPLICATE_WEBHOOK_SECRET"):
        ReplicateProvider().parse_webhook(headers, body)
