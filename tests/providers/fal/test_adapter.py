"""The fal.ai adapter, driving the real fal-client SDK against the TLS fake in tests/fakes/fal.py: the
queue, cancel, errors and keys."""

from __future__ import annotations

import io
import json
import os
import socket
from typing import Any

import pytest
from PIL import Image

from generations.providers.base import ProviderError, ProviderJob
from generations.providers.fal.adapter import FalProvider
from generations.providers.fal.errors import detail_message
from tests.fakes.fal import make_image, outcome_model_error, outcome_request_error
from tests.fakes.server import FakeServer
from tests.providers.fal.support import CATALOG, SCHNELL, catalog_model, image_asset, run_to_end, submits


def test_a_job_goes_from_queue_position_through_logs_to_its_output(fal: FakeServer, provider: FalProvider) -> None:
    fal.state["queue_polls"] = 2
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "a red fox", "width": 512, "height": 384,
                                                   "num_images": 1, "seed": 3}, credentials=None)
    statuses = run_to_end(provider, job)

    assert [(s.state, s.queue_position) for s in statuses] == [
        ("queued", 1), ("queued", 0), ("running", None), ("running", None), ("succeeded", None)]
    assert [s.logs for s in statuses] == [[], [], ["step 1/2"], ["step 2/2"], []]
    done = statuses[-1]
    assert done.cost_usd is None and done.usage["outputs"] == 1
    [output] = done.outputs
    assert (output.kind, output.mime, output.data) == ("image", "image/jpeg", None)
    assert output.url == f"{fal.url}/files/out/{job.request_id}/image-0.jpg"
    assert output.metadata == {"width": 64, "height": 48, "file_size": len(fal.state["jobs"][job.request_id]["outputs"][0])}

    [submit] = submits(fal)
    assert submit["path"] == "/fal-ai/flux/schnell"
    assert submit["headers"]["Authorization"] == "Key test-key"
    assert json.loads(submit["body"]) == {"prompt": "a red fox", "num_images": 1, "seed": 3,
                                          "image_size": {"width": 512, "height": 384}}
    # Status and result go to the URLs the queue returned, which drop the endpoint's sub-path.
    assert all(r["path"].startswith(f"/fal-ai/flux/requests/{job.request_id}") for r in fal.requests[1:])


def test_a_job_polled_again_after_finishing_keeps_its_outputs(fal: FakeServer, provider: FalProvider) -> None:
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x", "num_images": 2}, credentials=None)
    first = run_to_end(provider, job)[-1]
    again = provider.poll(job)
    assert [o.url for o in again.outputs] == [o.url for o in first.outputs] and len(first.outputs) == 2


@pytest.mark.parametrize("model_id", sorted(CATALOG))
def test_every_catalog_model_maps_its_result_field_to_an_output_of_its_kind(
        fal: FakeServer, provider: FalProvider, model_id: str) -> None:
    entry = CATALOG[model_id]
    props = entry["input_schema"]["properties"]
    inputs: dict[str, Any] = {}
    for name in entry["input_schema"]["required"]:
        inputs[name] = image_asset(make_image("PNG")) if props[name].get("format") == "asset" else "hello"
    if "duration" in props:
        inputs["duration"] = 5
    job = provider.submit(catalog_model(model_id), inputs, credentials={"api_key": "test-key"})
    done = run_to_end(provider, job)[-1]

    assert done.state == "succeeded", done.error_message
    [output] = done.outputs
    assert output.kind == entry["output_kind"]
    sent = fal.state["jobs"][job.request_id]["input"]
    if "duration" in props:
        assert sent["duration"] == "5"  # fal's Kling schema takes the duration as a string
    if entry["output_kind"] == "mesh":
        assert output.filename.endswith(".glb")


def test_small_assets_go_inline_as_data_uris_and_large_ones_through_the_cdn_upload(
        fal: FakeServer, provider: FalProvider) -> None:
    small = make_image("PNG")
    noise = Image.frombytes("RGB", (400, 400), os.urandom(400 * 400 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    large = buffer.getvalue()
    assert len(large) > 256 * 1024

    model = catalog_model("fal-ai/flux-pro/v1/fill")
    job = provider.submit(model, {"prompt": "a boat", "image_url": image_asset(large, "big.png"),
                                  "mask_url": image_asset(small, "mask.png")}, credentials=None)

    sent = fal.state["jobs"][job.request_id]["input"]
    assert sent["mask_url"].startswith("data:image/png;base64,")
    assert sent["image_url"].startswith(f"{fal.url}/files/uploads/") and sent["image_url"].endswith("/big.png")
    assert fal.state["uploads"][sent["image_url"]] == large
    token_call = next(r for r in fal.requests if r["path"].startswith("/storage/auth/token"))
    assert token_call["path"] == "/storage/auth/token?storage_type=fal-cdn-v3"
    upload = next(r for r in fal.requests if r["path"] == "/files/upload")
    assert upload["headers"]["Authorization"].startswith("Bearer cdn-")
    assert upload["headers"]["X-Fal-File-Name"] == "big.png"


def test_data_uri_outputs_from_sync_mode_come_back_as_bytes(fal: FakeServer, provider: FalProvider) -> None:
    model = catalog_model(SCHNELL, extra_arguments={"sync_mode": True})
    job = provider.submit(model, {"prompt": "x", "output_format": "png"}, credentials=None)
    [output] = run_to_end(provider, job)[-1].outputs
    assert output.url is None and output.mime == "image/png"
    assert output.data == fal.state["jobs"][job.request_id]["outputs"][0]
    assert json.loads(submits(fal)[0]["body"])["sync_mode"] is True


def test_a_webhook_url_is_passed_to_the_queue(fal: FakeServer, provider: FalProvider) -> None:
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None,
                          webhook_url="https://studio.example/hooks/fal?x=1")
    assert fal.state["jobs"][job.request_id]["webhook"] == "https://studio.example/hooks/fal?x=1"


# --- cancel ---------------------------------------------------------------------------------------

def test_cancel_reaches_fal_and_the_job_then_reads_as_canceled(fal: FakeServer, provider: FalProvider) -> None:
    fal.state["queue_polls"] = 5
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    assert provider.poll(job).state == "queued"

    assert provider.cancel(job) is True
    assert fal.state["canceled"] == [job.request_id]
    cancel = next(r for r in fal.requests if r["method"] == "PUT")
    assert cancel["path"] == f"/fal-ai/flux/requests/{job.request_id}/cancel"
    assert provider.poll(job).state == "canceled"


def test_cancel_of_a_finished_job_says_false_and_does_not_raise(fal: FakeServer, provider: FalProvider) -> None:
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    run_to_end(provider, job)
    assert provider.cancel(job) is False
    assert fal.state["canceled"] == []


def poll_until_running(provider: FalProvider, job: ProviderJob) -> None:
    for _ in range(10):
        if provider.poll(job).state == "running":
            return
    raise AssertionError("the job never started running")


def test_a_202_on_a_running_request_is_only_a_request_and_the_app_may_still_finish_with_outputs(
        fal: FakeServer, provider: FalProvider) -> None:
    fal.state.update(progress_polls=3, outcomes=[{"kind": "success", "after_cancel": "finish"}])
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    poll_until_running(provider, job)

    assert provider.cancel(job) is True
    assert fal.state["cancel_answers"][job.request_id] == [202]
    statuses = run_to_end(provider, job)
    assert [s.state for s in statuses] == ["running", "running", "succeeded"]
    [output] = statuses[-1].outputs
    assert output.url == f"{fal.url}/files/out/{job.request_id}/image-0.jpg"


def test_already_completed_on_cancel_says_false_and_the_result_is_still_there(fal: FakeServer,
                                                                              provider: FalProvider) -> None:
    fal.state["outcomes"] = [{"kind": "success", "completes_before_cancel": True}]
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    poll_until_running(provider, job)

    assert provider.cancel(job) is False
    assert fal.state["cancel_answers"][job.request_id] == [400]
    done = provider.poll(job)
    assert done.state == "succeeded" and len(done.outputs) == 1


def test_files_without_content_type_or_file_name_are_typed_from_their_url_or_the_model(
        fal: FakeServer, provider: FalProvider) -> None:
    fal.state["outcomes"] = [{"kind": "success", "bare_files": True},
                             {"kind": "success", "bare_files": True, "opaque_urls": True}]
    named = provider.submit(catalog_model(SCHNELL), {"prompt": "x", "num_images": 2}, credentials=None)
    [first, second] = run_to_end(provider, named)[-1].outputs
    assert (first.kind, first.mime, first.filename) == ("image", "image/jpeg", "image-0.jpg")
    assert second.filename == "image-1.jpg"

    video = provider.submit(catalog_model("fal-ai/kling-video/v1.6/standard/text-to-video"),
                            {"prompt": "waves", "duration": 5}, credentials=None)
    [output] = run_to_end(provider, video)[-1].outputs
    # No name, no type, no extension: the catalog's output kind decides, the stored bytes are sniffed.
    assert (output.kind, output.mime) == ("video", "application/octet-stream")
    assert output.metadata == {"file_size": len(fal.state["jobs"][video.request_id]["outputs"][0])}


# --- errors ---------------------------------------------------------------------------------------

def test_a_rate_limited_submit_is_retryable_after_retry_after_and_the_next_submit_succeeds(
        fal: FakeServer, provider: FalProvider) -> None:
    fal.state["fail_submit"] = [{"status": 429, "body": {"detail": "Too many concurrent requests"},
                                 "headers": {"Retry-After": "2"}}]
    with pytest.raises(ProviderError) as caught:
        provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    assert (caught.value.code, caught.value.retryable, caught.value.retry_after) == ("rate_limited", True, 2.0)
    assert caught.value.message == "Too many concurrent requests"
    assert len(submits(fal)) == 1  # the SDK's own retry loop is off: our pipeline retries

    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    assert run_to_end(provider, job)[-1].state == "succeeded"


def test_an_ingress_gateway_error_while_polling_is_retryable(fal: FakeServer, provider: FalProvider) -> None:
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    fal.state["fail_status"] = [{"status": 503, "body": "<html><center>nginx</center></html>"}]
    with pytest.raises(ProviderError) as caught:
        provider.poll(job)
    assert caught.value.retryable and caught.value.code == "provider_unavailable"
    assert run_to_end(provider, job)[-1].state == "succeeded"


def test_an_unreachable_fal_is_a_retryable_connection_error(fal: FakeServer, provider: FalProvider,
                                                            settings: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "fal": f"https://127.0.0.1:{port}"}
    with pytest.raises(ProviderError) as caught:
        provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    assert (caught.value.code, caught.value.retryable) == ("connection_error", True)


def test_a_validation_error_fails_the_job_for_good_with_fals_own_message(fal: FakeServer,
                                                                          provider: FalProvider) -> None:
    fal.state["outcomes"] = [outcome_model_error("field required", loc=["body", "prompt"],
                                                 type_="missing")]
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    done = run_to_end(provider, job)[-1]
    assert (done.state, done.error_code, done.retryable) == ("failed", "invalid_input", False)
    assert done.error_message == "prompt: field required"


def test_a_content_policy_violation_is_final(fal: FakeServer, provider: FalProvider) -> None:
    fal.state["outcomes"] = [outcome_model_error("The content could not be processed because it contained "
                                                 "material flagged by a content checker.",
                                                 type_="content_policy_violation")]
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    done = run_to_end(provider, job)[-1]
    assert (done.state, done.error_code, done.retryable) == ("failed", "content_policy", False)
    assert "flagged by a content checker" in done.error_message


def test_a_runner_that_disconnected_fails_the_job_retryably(fal: FakeServer, provider: FalProvider) -> None:
    fal.state["outcomes"] = [outcome_request_error("Runner disconnected", error_type="runner_disconnected",
                                                   status=503)]
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    done = run_to_end(provider, job)[-1]
    assert (done.state, done.error_code, done.retryable) == ("failed", "provider_unavailable", True)
    assert done.error_message == "Runner disconnected"


def test_fals_retryable_header_overrides_the_status_code(fal: FakeServer, provider: FalProvider) -> None:
    fal.state["outcomes"] = [outcome_model_error("Downstream service busy", type_="downstream_service_error",
                                                 status=422, headers={"X-Fal-Retryable": "true"})]
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    done = run_to_end(provider, job)[-1]
    assert (done.error_code, done.retryable) == ("invalid_input", True)


def test_a_bad_key_is_a_final_invalid_key_error(fal: FakeServer, provider: FalProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials={"api_key": "wrong"})
    assert (caught.value.code, caught.value.retryable) == ("invalid_key", False)
    assert "No user found for Key ID and Secret" in caught.value.message


def test_no_key_anywhere_is_a_final_missing_key_error(fal: FakeServer, provider: FalProvider, settings: Any) -> None:
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "fal": ""}
    with pytest.raises(ProviderError) as caught:
        provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    assert (caught.value.code, caught.value.retryable) == ("missing_key", False)


def test_a_request_fal_no_longer_knows_is_reported_lost(fal: FakeServer, provider: FalProvider) -> None:
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials=None)
    fal.state["jobs"].clear()
    status = provider.poll(job)
    assert (status.state, status.error_code) == ("failed", "lost")


def test_polls_use_the_key_the_job_was_submitted_with(fal: FakeServer, provider: FalProvider) -> None:
    fal.state["keys"] = {"test-key", "users-own-key"}
    job = provider.submit(catalog_model(SCHNELL), {"prompt": "x"}, credentials={"api_key": "users-own-key"})
    run_to_end(provider, job)
    assert {r["headers"]["Authorization"] for r in fal.requests} == {"Key users-own-key"}


def test_check_credentials_accepts_a_good_key_and_calls_a_bad_one_invalid(fal: FakeServer,
                                                                          provider: FalProvider) -> None:
    provider.check_credentials({"api_key": "test-key"})
    with pytest.raises(ProviderError) as caught:
        provider.check_credentials({"api_key": "nope"})
    assert caught.value.code == "invalid_key"
    assert [r["path"] for r in fal.requests] == ["/storage/auth/token?storage_type=fal-cdn-v3"] * 2
    assert not fal.state["jobs"]  # nothing was queued or billed


def test_detail_lists_read_as_one_sentence() -> None:
    assert detail_message([{"loc": ["body", "image_size", "width"], "msg": "too large", "type": "less_than"},
                           {"loc": ["body"], "msg": "bad", "type": "x"}]) == "image_size.width: too large; bad"
    assert detail_message("Request timed out") == "Request timed out"
