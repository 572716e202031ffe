"""The Google Gen AI adapter, driving the real google-genai 3.4.0 SDK against the fake in tests/fakes/google.py.

Adapter-level tests build CatalogModels from generations/catalog/google.json (no database): the wire,
Gemini text and images, Imagen, Veo, errors and keys.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from generations.providers.base import ProviderError, ProviderJob
from generations.providers.google.adapter import GoogleProvider
from tests.fakes.google import FAKE_PROJECT, MP4_BYTES, GoogleFakeHandler, png_bytes
from tests.fakes.server import FakeServer, LocalCA
from tests.providers.google.support import KEY, asset, catalog_model, finish, paths, run_to_end, sent


def test_the_sdk_calls_the_routes_the_fake_serves_with_the_key_in_x_goog_api_key(fake: FakeServer,
                                                                                     provider: GoogleProvider) -> None:
    finish(provider, "google/gemini-2.5-flash", {"prompt": "hi"})
    finish(provider, "google/imagen-4.0-generate-001", {"prompt": "a cat"})
    finish(provider, "google/veo-3.0-fast-generate-001", {"prompt": "a cat"})
    provider.check_credentials(KEY)
    operation_resource = f"projects/{FAKE_PROJECT}/locations/us-central1/publishers/google/models/veo-3.0-fast-generate-001"
    assert paths(fake) == [
        # Pinned v1beta (the 3.4.0 SDK would default to v1); Imagen and Veo in Vertex express mode (v1beta1).
        "POST /v1beta/models/gemini-2.5-flash:generateContent",
        "POST /v1beta1/publishers/google/models/imagen-4.0-generate-001:predict",
        "POST /v1beta1/publishers/google/models/veo-3.0-fast-generate-001:predictLongRunning",
        f"POST /v1beta1/{operation_resource}:fetchPredictOperation",
        f"POST /v1beta1/{operation_resource}:fetchPredictOperation",
        "GET /v1beta/models?pageSize=1",
    ]
    assert {r["headers"]["x-goog-api-key"] for r in fake.requests} == {"test-key"}
    assert all(r["headers"]["user-agent"].startswith("google-genai-sdk/3.4.0") for r in fake.requests)


# --- Gemini text ------------------------------------------------------------------------------------------

def test_chat_returns_the_answer_as_a_markdown_text_output_priced_from_token_counts(
        fake: FakeServer, provider: GoogleProvider) -> None:
    fake.state.update(text="Four short words here.", thoughts_tokens=10)
    job = provider.submit(catalog_model("google/gemini-2.5-flash"),
                          {"prompt": "Say something short", "system_prompt": "Be brief.", "temperature": 0.2,
                           "max_output_tokens": 300}, credentials=KEY)
    statuses = run_to_end(provider, job)
    status = statuses[-1]
    assert status.state == "succeeded" and status.progress == 100
    assert statuses[0].logs[0].startswith("Sent to Google gemini-2.5-flash")
    [output] = status.outputs
    assert (output.kind, output.mime, output.data) == ("text", "text/plain", b"Four short words here.")
    assert output.filename.endswith(".md")
    body = sent(fake)
    assert body["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 300}
    # 3 + 2 prompt tokens (prompt + system), 4 answer tokens + 10 thinking tokens billed as output.
    assert status.usage == {"input_tokens": 5, "output_tokens": 4, "thinking_tokens": 10, "image_output_tokens": 0}
    assert status.cost_usd == (5 * Decimal("0.30") + 14 * Decimal("2.50")) / 1_000_000
    assert f"Gemini used 5 input and 14 output tokens (${status.cost_usd})." in status.logs


def test_prompt_enhance_sends_the_catalog_system_prompt_and_turns_thinking_off(fake: FakeServer,
                                                                             provider: GoogleProvider) -> None:
    fake.state["text"] = "A weathered lighthouse on a basalt cliff at blue hour, beam cutting through sea mist."
    status = finish(provider, "google/gemini-2.5-flash/prompt-enhance",
                    {"prompt": "lighthouse at night, moody", "max_output_tokens": 512})
    body = sent(fake)
    assert body["systemInstruction"]["parts"][0]["text"].startswith("You rewrite rough creative ideas")
    # The SDK sends ThinkingConfig with proto field names (thinking_budget); proto3 JSON accepts both spellings.
    assert body["generationConfig"]["thinkingConfig"] == {"thinking_budget": 0}
    assert status.outputs[0].data.startswith(b"A weathered lighthouse") and status.outputs[0].filename.endswith(".txt")


def test_script_breakdown_reads_an_uploaded_script_asset(fake: FakeServer, provider: GoogleProvider) -> None:
    script = asset(b"INT. KITCHEN - NIGHT\nANNA pours coffee.", kind="text", mime="text/plain", name="pilot.fountain")
    status = finish(provider, "google/gemini-2.5-flash/script-breakdown",
                    {"script_file": script, "max_output_tokens": 8192})
    assert status.state == "succeeded"
    body = sent(fake)
    assert body["contents"][0]["parts"] == [{"text": "INT. KITCHEN - NIGHT\nANNA pours coffee."}]
    assert "script breakdown" in body["systemInstruction"]["parts"][0]["text"]


def test_an_empty_input_fails_the_submit_itself(fake: FakeServer, provider: GoogleProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.submit(catalog_model("google/gemini-2.5-flash/script-breakdown"), {"script": "  "}, credentials=KEY)
    assert (caught.value.code, caught.value.retryable) == ("invalid_input", False)
    assert fake.requests == []


def test_an_answer_cut_off_before_any_text_is_a_final_error_asking_for_more_tokens(
        fake: FakeServer, provider: GoogleProvider) -> None:
    fake.state.update(finish_reason="MAX_TOKENS", text="")
    status = finish(provider, "google/gemini-2.5-flash", {"prompt": "think hard"})
    assert (status.state, status.error_code, status.retryable) == ("failed", "max_tokens", False)


# --- Gemini native images ---------------------------------------------------------------------------------

def test_gemini_image_returns_png_bytes_priced_at_the_image_token_rate(fake: FakeServer,
                                                                       provider: GoogleProvider) -> None:
    picture = png_bytes((96, 64))
    fake.state["image"] = picture
    status = finish(provider, "google/gemini-2.5-flash-image", {"prompt": "a red bicycle", "aspect_ratio": "3:2"})
    [output] = status.outputs
    assert (output.kind, output.mime, output.data) == ("image", "image/png", picture)
    assert output.filename.endswith(".png")
    assert sent(fake)["generationConfig"] == {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "3:2"}}
    assert status.usage["image_output_tokens"] == 1290 and status.usage["images"] == 1
    assert status.cost_usd == (3 * Decimal("0.30") + 1290 * Decimal("30.00")) / 1_000_000  # ≈ $0.039 per image


def test_an_image_edit_sends_the_source_image_inline_before_the_instruction(fake: FakeServer,
                                                                             provider: GoogleProvider) -> None:
    source = png_bytes((32, 32), (200, 10, 10))
    status = finish(provider, "google/gemini-2.5-flash-image/edit", {"image": asset(source), "prompt": "make it blue"})
    assert status.state == "succeeded" and status.outputs[0].data.startswith(b"\x89PNG")
    parts = sent(fake)["contents"][0]["parts"]
    # Part.from_bytes goes out as {"inlineData": {"data", "mime_type"}} (proto field name, accepted by proto3 JSON).
    assert parts[0]["inlineData"]["mime_type"] == "image/png"
    assert base64.b64decode(parts[0]["inlineData"]["data"]) == source
    assert parts[1] == {"text": "make it blue"}
    assert status.usage["input_tokens"] == 3 + 258


def test_an_answer_without_an_image_from_the_image_model_is_a_final_error(fake: FakeServer,
                                                                          provider: GoogleProvider) -> None:
    fake.state.update(finish_reason="NO_IMAGE")
    status = finish(provider, "google/gemini-2.5-flash-image", {"prompt": "x"})
    assert (status.state, status.error_code, status.retryable) == ("failed", "no_output", False)


# --- Imagen -----------------------------------------------------------------------------------------------

def test_imagen_returns_one_image_per_requested_sample_and_reports_units_for_the_price_card(
        fake: FakeServer, provider: GoogleProvider) -> None:
    status = finish(provider, "google/imagen-4.0-generate-001",
                    {"prompt": "a fox", "num_images": 3, "aspect_ratio": "16:9"})
    assert [o.mime for o in status.outputs] == ["image/png"] * 3
    assert sent(fake) == {"instances": [{"prompt": "a fox"}],
                          "parameters": {"sampleCount": 3, "aspectRatio": "16:9", "includeRaiReason": True}}
    assert status.usage == {"images": 3, "units": 3} and status.cost_usd is None


# --- Veo --------------------------------------------------------------------------------------------------

def test_veo_is_an_operation_polled_until_done_then_its_inline_mp4(fake: FakeServer,
                                                                   provider: GoogleProvider) -> None:
    fake.state["veo_pending_polls"] = 2
    job = provider.submit(catalog_model("google/veo-3.0-generate-001"),
                          {"prompt": "waves at dusk", "duration_seconds": 6, "aspect_ratio": "16:9",
                           "resolution": "720p", "seed": 7}, credentials=KEY)
    assert job.request_id.startswith(f"projects/{FAKE_PROJECT}/") and "/operations/" in job.request_id
    assert "test-key" not in json.dumps(job.data)  # job.data is stored on the Generation row
    assert sent(fake)["parameters"] == {"sampleCount": 1, "durationSeconds": 6, "aspectRatio": "16:9",
                                        "resolution": "720p", "seed": 7, "generateAudio": True}
    statuses = run_to_end(provider, job)
    assert [s.state for s in statuses] == ["running", "running", "succeeded"]
    assert statuses[0].logs and not statuses[1].logs  # one line when rendering starts, not one per poll
    [video] = statuses[-1].outputs
    assert (video.kind, video.mime, video.data) == ("video", "video/mp4", MP4_BYTES)
    assert video.filename.endswith(".mp4") and video.metadata["duration_seconds"] == 6
    assert statuses[-1].usage == {"videos": 1, "seconds": 6, "units": 6}


def test_veo_image_to_video_sends_the_start_frame_as_base64(fake: FakeServer, provider: GoogleProvider) -> None:
    frame = png_bytes((48, 27))
    job = provider.submit(catalog_model("google/veo-3.0-fast-generate-001/image-to-video"),
                          {"image": asset(frame), "duration_seconds": 4}, credentials=KEY)
    instance = sent(fake)["instances"][0]
    assert instance["image"]["mimeType"] == "image/png" and "prompt" not in instance
    assert base64.b64decode(instance["image"]["bytesBase64Encoded"]) == frame
    assert run_to_end(provider, job)[-1].state == "succeeded"


def test_a_filtered_video_fails_as_content_policy_with_googles_reason(fake: FakeServer,
                                                                      provider: GoogleProvider) -> None:
    fake.state.update(veo_pending_polls=0, veo_filtered=["The prompt contains a prominent person."])
    status = finish(provider, "google/veo-3.0-fast-generate-001", {"prompt": "x"})
    assert (status.state, status.error_code, status.retryable) == ("failed", "content_policy", False)
    assert "prominent person" in status.error_message


@pytest.mark.parametrize(("rpc_code", "retryable"), [(13, True), (8, True), (3, False)])
def test_a_failed_operation_is_retryable_only_for_transient_rpc_codes(fake: FakeServer, provider: GoogleProvider,
                                                                      rpc_code: int, retryable: bool) -> None:
    fake.state.update(veo_pending_polls=0, veo_error={"code": rpc_code, "message": "Something went wrong."})
    status = finish(provider, "google/veo-3.0-fast-generate-001", {"prompt": "x"})
    assert (status.state, status.retryable) == ("failed", retryable)
    assert status.error_message == "Google: Something went wrong."


def test_cancelling_veo_returns_false_because_the_sdk_cannot_cancel_operations(fake: FakeServer,
                                                                             provider: GoogleProvider) -> None:
    fake.state["veo_pending_polls"] = 5
    job = provider.submit(catalog_model("google/veo-3.0-fast-generate-001"), {"prompt": "x"}, credentials=KEY)
    provider.poll(job)
    count = len(fake.requests)
    assert provider.cancel(job) is False
    assert len(fake.requests) == count  # nothing was sent: google-genai 3.4.0 has no operations.cancel


def test_cancelling_a_synchronous_call_stops_waiting_for_it(fake: FakeServer, provider: GoogleProvider) -> None:
    fake.state["delay"] = 0.3
    job = provider.submit(catalog_model("google/gemini-2.5-flash"), {"prompt": "hi"}, credentials=KEY)
    while not fake.requests:  # the call is on its way to Google (and recorded in this test, not the next)
        time.sleep(0.005)
    assert provider.cancel(job) is True
    assert run_to_end(provider, job)[-1].state == "canceled"


# --- errors -----------------------------------------------------------------------------------------------

def test_a_rate_limit_is_retryable_after_googles_retry_delay_and_the_next_call_succeeds(
        fake: FakeServer, provider: GoogleProvider) -> None:
    fake.state["fail"] = [{"route": "generateContent", "code": 429, "retry_delay": "2s",
                           "message": "You exceeded your current quota."}]
    status = finish(provider, "google/gemini-2.5-flash", {"prompt": "hi"})
    assert (status.state, status.error_code, status.retryable) == ("failed", "rate_limited", True)
    assert status.usage["retry_after"] == 2.0  # where the runner reads a failed status's Retry-After
    assert status.error_message == "Google: You exceeded your current quota."
    assert finish(provider, "google/gemini-2.5-flash", {"prompt": "hi"}).state == "succeeded"
    assert len(fake.requests) == 2  # the SDK did not retry on its own


def test_a_retry_after_header_is_honoured_when_there_is_no_retry_info(fake: FakeServer,
                                                                      provider: GoogleProvider) -> None:
    fake.state["fail"] = [{"route": "predict", "code": 503, "message": "The model is overloaded.",
                           "headers": {"Retry-After": "7"}}]
    status = finish(provider, "google/imagen-4.0-generate-001", {"prompt": "x"})
    assert (status.error_code, status.retryable, status.usage["retry_after"]) == ("provider_unavailable", True, 7.0)


def test_a_rate_limited_veo_submit_raises_a_retryable_error(fake: FakeServer, provider: GoogleProvider) -> None:
    fake.state["fail"] = [{"route": "predictLongRunning", "code": 429, "retry_delay": "30s", "message": "Quota."}]
    with pytest.raises(ProviderError) as caught:
        provider.submit(catalog_model("google/veo-3.0-fast-generate-001"), {"prompt": "x"}, credentials=KEY)
    assert (caught.value.code, caught.value.retryable, caught.value.retry_after) == ("rate_limited", True, 30.0)


def test_a_failing_poll_is_retryable_and_the_same_operation_can_be_polled_again(fake: FakeServer,
                                                                                provider: GoogleProvider) -> None:
    fake.state.update(veo_pending_polls=0, fail=[{"route": "fetchPredictOperation", "code": 500,
                                                  "message": "Internal error encountered."}])
    job = provider.submit(catalog_model("google/veo-3.0-fast-generate-001"), {"prompt": "x"}, credentials=KEY)
    with pytest.raises(ProviderError) as caught:
        provider.poll(job)
    assert caught.value.retryable
    assert provider.poll(job).state == "succeeded"


def test_timeouts_and_connection_errors_are_retryable(fake: FakeServer, provider: GoogleProvider,
                                                     settings: Any) -> None:
    fake.state["delay"] = 0.5
    quick = catalog_model("google/gemini-2.5-flash")
    quick.config = {**quick.config, "request_timeout_seconds": 0.1}
    status = run_to_end(provider, provider.submit(quick, {"prompt": "hi"}, credentials=KEY))[-1]
    assert (status.error_code, status.retryable) == ("timeout", True)

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "google": f"http://127.0.0.1:{closed}"}
    status = finish(provider, "google/gemini-2.5-flash", {"prompt": "hi"})
    assert (status.error_code, status.retryable) == ("connection_error", True)


def test_a_blocked_prompt_is_a_final_content_policy_error(fake: FakeServer, provider: GoogleProvider) -> None:
    fake.state["block_reason"] = "SAFETY"
    status = finish(provider, "google/gemini-2.5-flash", {"prompt": "x"})
    assert (status.error_code, status.retryable) == ("content_policy", False)
    assert status.error_message == "Google blocked the prompt (SAFETY)."


def test_a_safety_stop_on_the_image_is_a_final_content_policy_error(fake: FakeServer,
                                                                   provider: GoogleProvider) -> None:
    fake.state["finish_reason"] = "IMAGE_SAFETY"
    status = finish(provider, "google/gemini-2.5-flash-image", {"prompt": "x"})
    assert status.error_code == "content_policy" and "IMAGE_SAFETY" in status.error_message


def test_an_imagen_image_removed_by_the_filter_is_content_policy_with_the_reason(fake: FakeServer,
                                                                                provider: GoogleProvider) -> None:
    fake.state["imagen_filtered"] = "39322892: The prompt may depict a prominent person."
    status = finish(provider, "google/imagen-4.0-generate-001", {"prompt": "x"})
    assert status.error_code == "content_policy" and "prominent person" in status.error_message


def test_a_bad_request_is_final_with_googles_own_message(fake: FakeServer, provider: GoogleProvider) -> None:
    fake.state["fail"] = [{"route": "generateContent", "code": 400,
                           "message": "* GenerateContentRequest.contents: contents is not specified"}]
    status = finish(provider, "google/gemini-2.5-flash", {"prompt": "x"})
    assert (status.error_code, status.retryable) == ("invalid_input", False)
    assert status.error_message == "Google: * GenerateContentRequest.contents: contents is not specified"


def test_a_responsible_ai_refusal_from_vertex_is_content_policy(fake: FakeServer, provider: GoogleProvider) -> None:
    fake.state["fail"] = [{"route": "predictLongRunning", "code": 400, "message": (
        "The prompt could not be submitted. This prompt contains sensitive words that violate Google's "
        "Responsible AI practices.")}]
    with pytest.raises(ProviderError) as caught:
        provider.submit(catalog_model("google/veo-3.0-fast-generate-001"), {"prompt": "x"}, credentials=KEY)
    assert (caught.value.code, caught.value.retryable) == ("content_policy", False)


def test_a_bad_key_is_a_final_invalid_key_error(fake: FakeServer, provider: GoogleProvider) -> None:
    status = finish(provider, "google/gemini-2.5-flash", {"prompt": "x"}, credentials={"api_key": "nope"})
    assert (status.error_code, status.retryable) == ("invalid_key", False)
    assert "API key not valid" in status.error_message


def test_a_poll_for_a_call_this_worker_does_not_hold_reports_it_lost(fake: FakeServer,
                                                                     provider: GoogleProvider) -> None:
    status = provider.poll(ProviderJob(provider="google", request_id="google-gone",
                                       data={"method": "generate_content"}))
    assert (status.state, status.error_code, status.retryable) == ("failed", "lost", True)


def test_a_result_is_handed_over_once_and_then_forgotten(fake: FakeServer, provider: GoogleProvider) -> None:
    job = provider.submit(catalog_model("google/gemini-2.5-flash"), {"prompt": "hi"}, credentials=KEY)
    assert run_to_end(provider, job)[-1].state == "succeeded"
    assert provider.registry.in_flight() == 0 and provider.poll(job).error_code == "lost"


def test_a_tls_endpoint_is_trusted_through_the_configured_ca_bundle(provider: GoogleProvider, settings: Any,
                                                                   tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    with FakeServer(GoogleFakeHandler, ca=ca) as server:
        settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "google": server.url}
        settings.PROVIDER_CA_BUNDLE = str(ca.ca_file)
        assert server.url.startswith("https://")
        assert finish(provider, "google/gemini-2.5-flash", {"prompt": "hi"}).state == "succeeded"
        settings.PROVIDER_CA_BUNDLE = ""  # the system store does not know the test CA
        status = finish(provider, "google/gemini-2.5-flash", {"prompt": "hi"})
        assert (status.error_code, status.retryable) == ("connection_error", True)


# --- credentials ------------------------------------------------------------------------------------------

def test_check_credentials_accepts_a_good_key_and_refuses_a_bad_one(fake: FakeServer,
                                                                    provider: GoogleProvider) -> None:
    provider.check_credentials({"api_key": "test-key"})
    with pytest.raises(ProviderError) as caught:
        provider.check_credentials({"api_key": "AIza-wrong"})
    assert caught.value.code == "invalid_key"
    assert [r["path"] for r in fake.requests] == ["/v1beta/models?pageSize=1"] * 2


def test_without_credentials_the_platform_key_is_used_and_without_any_key_it_fails_clearly(
        fake: FakeServer, provider: GoogleProvider, settings: Any) -> None:
    assert finish(provider, "google/gemini-2.5-flash", {"prompt": "hi"}, credentials=None).state == "succeeded"
    assert fake.requests[-1]["headers"]["x-goog-api-key"] == "test-key"
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "google": ""}
    with pytest.raises(ProviderError) as caught:
        provider.submit(catalog_model("google/gemini-2.5-flash"), {"prompt": "hi"}, credentials=None)
    assert (caught.value.code, caught.value.retryable) == ("missing_key", False)
