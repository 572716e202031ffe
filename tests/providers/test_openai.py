"""The OpenAI adapter, driven through the real `openai` SDK against the loopback fake (tests/fakes/openai.py).

A little over 400 lines: images, chat, speech and their worked examples share one fake and its helpers."""

from __future__ import annotations

import io
import json
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from assets.models import Asset
from assets.services import asset_create_from_bytes
from billing.services import credits_summary
from generations import attempts
from generations.models import Generation, Status
from generations.providers.base import AssetInput, CatalogModel, ProviderError, ProviderJob, ProviderStatus
from generations.providers.openai import OpenAIProvider, mask_png
from generations.runner import generation_run
from generations.services import generation_create
from tests.fakes.openai import OpenAIFake, mp3_bytes, openai_error, png_bytes, rate_limited
from tests.fakes.server import FakeApi, FakeServer, LocalCA
from tests.providers.support import poll_to_end, run_pipeline

IMAGE_PRICES = {"text_input_tokens": "5", "image_input_tokens": "8", "image_output_tokens": "30"}
provider = OpenAIProvider()


@pytest.fixture(scope="module")
def fake_api() -> FakeApi:
    return FakeApi(OpenAIFake, "openai", "/v1")


class MemoryAsset(AssetInput):
    """An AssetInput whose bytes live in memory, for adapter-level tests."""

    def __init__(self, data: bytes, *, mime: str = "image/png", name: str = "photo.png") -> None:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
        super().__init__(id="a1", kind="image", mime=mime, name=name, storage_name="", size=len(data),
                         width=width, height=height)
        self.data = data

    def read(self) -> bytes:
        return self.data


def model(operation: str = "text-to-image", provider_model: str = "gpt-image-2.5-flare",
          **config: Any) -> CatalogModel:
    config.setdefault("token_prices", IMAGE_PRICES if "image" in provider_model else
                      {"input_tokens": "0.10", "output_tokens": "0.50"})
    return CatalogModel(id=f"openai/{provider_model}", provider="openai", provider_model=provider_model,
                        operation=operation, output_kind="image", config=config)


def run(job: ProviderJob, *, timeout: float = 10) -> tuple[ProviderStatus, list[ProviderStatus]]:
    seen = poll_to_end(provider, job, seconds=timeout)
    return seen[-1], seen


def posts(fake: Any, path: str) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"].endswith(path)]


def wait_for_request(fake: Any, path: str) -> None:
    deadline = time.monotonic() + 5
    while not posts(fake, path):
        assert time.monotonic() < deadline, "the fake never saw the request"
        time.sleep(0.01)


# --- images ---------------------------------------------------------------------------------------------

def test_text_to_image_returns_the_png_bytes_and_the_cost_of_the_reported_tokens(fake: Any) -> None:
    job = provider.submit(model(), {"prompt": "a lighthouse at dusk", "quality": "medium", "size": "1536x1024"},
                          credentials={"api_key": "test-key"})
    status, _ = run(job)
    assert status.state == "succeeded", status.error_message
    [output] = status.outputs
    assert (output.kind, output.mime, output.url) == ("image", "image/png", None)
    assert output.data == fake.state["outputs"][0]
    # 4 prompt words at $5/1M plus 439 medium-quality image tokens at $30/1M.
    assert status.cost_usd == (Decimal(4 * 5) + Decimal(439 * 30)) / Decimal(1_000_000)
    assert status.usage["image_output_tokens"] == 439 and status.usage["images"] == 1
    [request] = posts(fake, "/v1/images/generations")
    assert json.loads(request["body"]) == {"model": "gpt-image-2.5-flare", "prompt": "a lighthouse at dusk",
                                           "n": 1, "quality": "medium", "size": "1536x1024"}
    assert request["headers"]["authorization"] == "Bearer test-key"
    assert request["headers"]["x-stainless-retry-count"] == "0"


def test_poll_reports_running_with_one_log_line_until_the_call_returns(fake: Any) -> None:
    fake.state["gate"] = threading.Event()
    job = provider.submit(model(), {"prompt": "a fox"}, credentials={"api_key": "test-key"})
    wait_for_request(fake, "/v1/images/generations")
    first, second = provider.poll(job), provider.poll(job)
    assert (first.state, second.state) == ("running", "running")
    assert len(first.logs) == 1 and "waiting for the response" in first.logs[0] and second.logs == []
    fake.state["gate"].set()
    status, _ = run(job)
    assert status.state == "succeeded" and status.progress == 100
    assert any("answered in" in line for line in status.logs)


def test_cancel_stops_waiting_and_drops_the_result_that_arrives_later(fake: Any) -> None:
    fake.state["gate"] = threading.Event()
    job = provider.submit(model(), {"prompt": "a fox"}, credentials={"api_key": "test-key"})
    wait_for_request(fake, "/v1/images/generations")
    assert provider.cancel(job) is True
    assert provider.poll(job).state == "canceled"
    fake.state["gate"].set()
    deadline = time.monotonic() + 5
    while not fake.state.get("outputs") and time.monotonic() < deadline:
        time.sleep(0.01)
    # OpenAI has no cancel endpoint for a synchronous call: the request ran to the end upstream.
    assert len(posts(fake, "/v1/images/generations")) == 1 and len(fake.state["outputs"]) == 1
    assert provider.cancel(job) is False


def test_cancel_after_the_call_finished_returns_false(fake: Any) -> None:
    job = provider.submit(model(), {"prompt": "a fox"}, credentials={"api_key": "test-key"})
    deadline = time.monotonic() + 5
    while not fake.state.get("outputs") and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert provider.cancel(job) is False
    assert run(job)[0].state == "succeeded"


def test_the_edit_sends_the_image_as_multipart_and_bills_its_image_tokens(fake: Any) -> None:
    photo = png_bytes((200, 10, 10), (96, 64))
    job = provider.submit(model("image-to-image"), {"prompt": "make it night", "image": MemoryAsset(photo)},
                          credentials={"api_key": "test-key"})
    status, _ = run(job)
    assert status.state == "succeeded", status.error_message
    edit = fake.state["last_edit"]
    assert edit["files"]["image"] == photo and "mask" not in edit["files"]
    assert edit["fields"]["prompt"] == "make it night" and edit["fields"]["model"] == "gpt-image-2.5-flare"
    assert status.usage["image_input_tokens"] == 323
    assert status.cost_usd == (Decimal(3 * 5) + Decimal(323 * 8) + Decimal(439 * 30)) / Decimal(1_000_000)


def test_inpaint_turns_a_white_on_black_mask_into_the_transparent_mask_openai_wants(fake: Any) -> None:
    photo = png_bytes((10, 200, 10), (64, 64))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 16, 32))  # repaint the left half
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    job = provider.submit(model("inpaint"), {"prompt": "a door", "image": MemoryAsset(photo),
                                             "mask": MemoryAsset(buffer.getvalue(), name="mask.png")},
                          credentials={"api_key": "test-key"})
    status, _ = run(job)
    assert status.state == "succeeded", status.error_message
    with Image.open(io.BytesIO(fake.state["last_edit"]["files"]["mask"])) as sent:
        assert sent.mode == "RGBA" and sent.size == (64, 64)  # scaled to the image
        assert sent.getpixel((5, 30))[3] == 0 and sent.getpixel((60, 30))[3] == 255


def test_a_mask_that_already_has_transparency_is_used_as_drawn() -> None:
    drawn = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
    drawn.putpixel((1, 1), (0, 0, 0, 0))
    buffer = io.BytesIO()
    drawn.save(buffer, format="PNG")
    _, data, mime = mask_png(MemoryAsset(buffer.getvalue()), (8, 8))
    with Image.open(io.BytesIO(data)) as sent:
        assert mime == "image/png" and sent.getpixel((1, 1))[3] == 0 and sent.getpixel((2, 2))[3] == 255


def test_an_edit_of_a_gif_is_refused_before_anything_is_sent(fake: Any) -> None:
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    with pytest.raises(ProviderError) as caught:
        provider.submit(model("image-to-image"), {"prompt": "x", "image": MemoryAsset(gif.getvalue(), mime="image/gif")},
                        credentials={"api_key": "test-key"})
    assert caught.value.code == "invalid_input" and not caught.value.retryable
    assert fake.requests == []


# --- errors ---------------------------------------------------------------------------------------------

def test_a_rate_limit_is_retryable_after_the_retry_after_ms_and_the_next_call_succeeds(fake: Any) -> None:
    fake.state["fail_next"] = [rate_limited(1500)]
    status, _ = run(provider.submit(model(), {"prompt": "a fox"}, credentials={"api_key": "test-key"}))
    assert (status.state, status.error_code, status.retryable) == ("failed", "rate_limited", True)
    assert status.usage["retry_after"] == 1.5
    assert "Rate limit reached" in status.error_message
    assert len(posts(fake, "/v1/images/generations")) == 1  # the SDK's own retries are off
    again, _ = run(provider.submit(model(), {"prompt": "a fox"}, credentials={"api_key": "test-key"}))
    assert again.state == "succeeded"


def test_a_server_error_is_retryable(fake: Any) -> None:
    fake.state["fail_next"] = [{"status": 503, "body": openai_error("The server is overloaded.", type_="server_error")}]
    status, _ = run(provider.submit(model(), {"prompt": "a fox"}, credentials={"api_key": "test-key"}))
    assert (status.error_code, status.retryable, status.error_message) == (
        "provider_unavailable", True, "The server is overloaded.")


def test_a_429_for_an_exhausted_quota_is_final(fake: Any) -> None:
    fake.state["fail_next"] = [{"status": 429, "body": openai_error(
        "You exceeded your current quota, please check your plan and billing details.",
        type_="insufficient_quota", code="insufficient_quota")}]
    status, _ = run(provider.submit(model(), {"prompt": "a fox"}, credentials={"api_key": "test-key"}))
    assert (status.error_code, status.retryable) == ("quota_exceeded", False)
    assert status.error_message.startswith("You exceeded your current quota")


def test_a_moderation_block_is_a_final_content_policy_error_with_openais_message(fake: Any) -> None:
    status, _ = run(provider.submit(model(), {"prompt": "something forbidden"}, credentials={"api_key": "test-key"}))
    assert (status.state, status.error_code, status.retryable) == ("failed", "content_policy", False)
    assert status.error_message.startswith("Your request was rejected as a result of our safety system")


def test_a_bad_key_is_a_final_invalid_key_error(fake: Any) -> None:
    status, _ = run(provider.submit(model(), {"prompt": "a fox"}, credentials={"api_key": "sk-wrong"}))
    assert (status.error_code, status.retryable) == ("invalid_key", False)
    assert status.error_message.startswith("Incorrect API key provided")


def test_a_timeout_is_retryable(fake: Any) -> None:
    fake.state["gate"] = threading.Event()
    status, _ = run(provider.submit(model(request_timeout_seconds=0.2), {"prompt": "a fox"},
                                    credentials={"api_key": "test-key"}))
    assert (status.error_code, status.retryable) == ("timeout", True)


def test_an_unreachable_api_is_a_retryable_connection_error(settings: Any) -> None:
    settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "openai": "http://127.0.0.1:9/v1"}
    status, _ = run(provider.submit(model(), {"prompt": "a fox"}, credentials={"api_key": "test-key"}))
    assert (status.error_code, status.retryable) == ("connection_error", True)


def test_a_poll_for_a_call_this_worker_does_not_hold_says_lost_so_the_runner_submits_again() -> None:
    status = provider.poll(ProviderJob(provider="openai", request_id="openai-unknown"))
    assert (status.state, status.error_code, status.retryable) == ("failed", "lost", True)


def test_submitting_without_any_key_fails_at_once(settings: Any) -> None:
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "openai": ""}
    with pytest.raises(ProviderError) as caught:
        provider.submit(model(), {"prompt": "a fox"}, credentials=None)
    assert caught.value.code == "missing_key" and not caught.value.retryable


# --- chat and speech ------------------------------------------------------------------------------------

def test_chat_returns_the_answer_as_markdown_and_its_token_cost(fake: Any) -> None:
    chat = model("text-generation", "gpt-6-luna")
    status, _ = run(provider.submit(chat, {"prompt": "Name three colours", "instructions": "Be brief.",
                                           "max_tokens": 300}, credentials={"api_key": "test-key"}))
    assert status.state == "succeeded", status.error_message
    [output] = status.outputs
    assert (output.kind, output.mime, output.filename) == ("text", "text/plain", "openai-gpt-6-luna.md")
    assert output.data == fake.state["outputs"][0].encode()
    body = json.loads(posts(fake, "/v1/chat/completions")[0]["body"])
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Name three colours"}]
    assert body["max_completion_tokens"] == 300
    usage = status.usage
    assert status.cost_usd == (Decimal(usage["input_tokens"]) * Decimal("0.10")
                               + Decimal(usage["output_tokens"]) * Decimal("0.50")) / Decimal(1_000_000)


def test_a_chat_refusal_is_a_final_content_policy_error(fake: Any) -> None:
    status, _ = run(provider.submit(model("text-generation", "gpt-6-luna"), {"prompt": "forbidden things"},
                                    credentials={"api_key": "test-key"}))
    assert (status.error_code, status.error_message, status.retryable) == (
        "content_policy", "I can't help with that request.", False)


def test_a_reasoning_model_that_spends_max_tokens_thinking_fails_finally_with_its_token_cost(fake: Any) -> None:
    fake.state["no_content"] = ["length"]
    status, _ = run(provider.submit(model("text-generation", "gpt-6-luna"), {"prompt": "Plan a film", "max_tokens": 200},
                                    credentials={"api_key": "test-key"}))
    assert (status.state, status.error_code, status.retryable) == ("failed", "invalid_input", False)
    assert status.error_message == "OpenAI used the whole token budget without answering; raise Max tokens."
    assert status.usage["output_tokens"] == 200
    assert status.cost_usd == (Decimal(status.usage["input_tokens"]) * Decimal("0.10")
                               + Decimal(200) * Decimal("0.50")) / Decimal(1_000_000)


def test_an_empty_answer_that_was_not_cut_off_is_a_retryable_no_content_failure(fake: Any) -> None:
    fake.state["no_content"] = ["empty"]
    status, _ = run(provider.submit(model("text-generation", "gpt-6-luna"), {"prompt": "Plan a film"},
                                    credentials={"api_key": "test-key"}))
    assert (status.state, status.error_code, status.retryable) == ("failed", "no_content", True)
    assert "Max tokens" not in status.error_message and status.cost_usd is not None


def test_tts_1_returns_mp3_bytes_priced_by_characters(fake: Any) -> None:
    tts = CatalogModel(id="openai/tts-1", provider="openai", provider_model="tts-1", operation="text-to-speech",
                       output_kind="audio", config={"response_format": "mp3", "usd_per_million_characters": "15"})
    status, _ = run(provider.submit(tts, {"text": "Hello there.", "voice": "nova", "speed": 1.25},
                                    credentials={"api_key": "test-key"}))
    assert status.state == "succeeded", status.error_message
    [output] = status.outputs
    assert (output.kind, output.mime, output.data) == ("audio", "audio/mpeg", mp3_bytes())
    assert status.cost_usd == Decimal(12) * 15 / Decimal(1_000_000)
    assert json.loads(posts(fake, "/v1/audio/speech")[0]["body"]) == {
        "model": "tts-1", "input": "Hello there.", "voice": "nova", "response_format": "mp3", "speed": 1.25}


# --- credentials and TLS ----------------------------------------------------------------------------------

def test_check_credentials_accepts_a_good_key_and_names_a_bad_one(fake: Any) -> None:
    provider.check_credentials({"api_key": "test-key"})
    with pytest.raises(ProviderError) as caught:
        provider.check_credentials({"api_key": "sk-wrong"})
    assert caught.value.code == "invalid_key" and not caught.value.retryable
    assert [r["path"] for r in fake.requests] == ["/v1/models", "/v1/models"]


def test_it_trusts_the_configured_ca_bundle_for_a_tls_endpoint(settings: Any, tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    with FakeServer(OpenAIFake, ca=ca) as server:
        settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "openai": f"{server.url}/v1"}
        settings.PROVIDER_CA_BUNDLE = str(ca.ca_file)
        provider.check_credentials({"api_key": "test-key"})
        settings.PROVIDER_CA_BUNDLE = ""
        with pytest.raises(ProviderError) as caught:  # the system store does not know the test CA
            provider.check_credentials({"api_key": "test-key"})
        assert caught.value.code == "connection_error"


# --- worked examples through the pipeline -----------------------------------------------------------------

def upload(project: Any, data: bytes, name: str) -> str:
    return str(asset_create_from_bytes(project=project, data=data, name=name).pk)


def stored_bytes(generation: Generation) -> bytes:
    asset = Asset.objects.get(generation=generation)
    with asset.file.open("rb") as fh:
        return fh.read()


def assert_charged(owner: Any, generation: Generation, expected_cost: Decimal) -> None:
    assert generation.status == Status.SUCCEEDED, generation.error_message
    assert generation.provider_cost_usd == expected_cost.quantize(Decimal("0.000001"), rounding="ROUND_CEILING")
    assert 0 < generation.credits_charged <= generation.credits_estimated
    assert credits_summary(user=owner).as_dict() == {
        "balance": 500 - generation.credits_charged, "held": 0, "available": 500 - generation.credits_charged}


@pytest.mark.django_db
def test_worked_example_text_to_image(fake: Any, owner: Any, project: Any, catalog: None) -> None:
    generation = run_pipeline(owner, project, "openai/gpt-image-2.5-flare", {"prompt": "a red kite", "quality": "low"})
    assert stored_bytes(generation) == fake.state["outputs"][0]
    # 3 prompt words at $5/1M + 196 low-quality image tokens at $30/1M = $0.005895: 1 credit; 9 were held.
    assert_charged(owner, generation, Decimal("0.005895"))
    assert (generation.credits_estimated, generation.credits_charged) == (9, 1)


@pytest.mark.django_db
def test_worked_example_image_to_image(fake: Any, owner: Any, project: Any, catalog: None) -> None:
    photo = upload(project, png_bytes((90, 90, 90), (64, 48)), "street.png")
    generation = run_pipeline(owner, project, "openai/gpt-image-2.5-flare/edit",
                              {"prompt": "add snow", "image": photo, "quality": "low"})
    assert stored_bytes(generation) == fake.state["outputs"][0]
    assert_charged(owner, generation, (Decimal(2 * 5) + Decimal(323 * 8) + Decimal(196 * 30)) / Decimal(1_000_000))
    assert Asset.objects.get(generation=generation).parent_id is not None


@pytest.mark.django_db
def test_worked_example_inpaint(fake: Any, owner: Any, project: Any, catalog: None) -> None:
    photo = upload(project, png_bytes((90, 90, 90), (64, 64)), "room.png")
    mask_image = Image.new("RGB", (64, 64), (0, 0, 0))
    mask_image.paste((255, 255, 255), (16, 16, 48, 48))
    buffer = io.BytesIO()
    mask_image.save(buffer, format="PNG")
    mask = upload(project, buffer.getvalue(), "mask.png")
    generation = run_pipeline(owner, project, "openai/gpt-image-2.5-flare/inpaint",
                              {"prompt": "a window", "image": photo, "mask": mask, "quality": "high"})
    assert stored_bytes(generation) == fake.state["outputs"][0]
    assert_charged(owner, generation, (Decimal(2 * 5) + Decimal(323 * 8) + Decimal(1756 * 30)) / Decimal(1_000_000))


@pytest.mark.django_db
def test_worked_example_chat(fake: Any, owner: Any, project: Any, catalog: None) -> None:
    generation = run_pipeline(owner, project, "openai/gpt-6-luna", {"prompt": "Write a logline for a heist film"})
    assert stored_bytes(generation) == fake.state["outputs"][0].encode()
    asset = Asset.objects.get(generation=generation)
    assert (asset.kind, asset.mime) == ("text", "text/plain")
    assert generation.provider_cost_usd > 0 and generation.credits_charged == 1


@pytest.mark.django_db
@pytest.mark.parametrize("model_id", ["openai/gpt-4o-mini-tts", "openai/tts-1"])
def test_worked_example_text_to_speech(fake: Any, owner: Any, project: Any, catalog: None, model_id: str) -> None:
    generation = run_pipeline(owner, project, model_id, {"text": "Previously, on the studio."})
    assert stored_bytes(generation) == mp3_bytes()
    assert Asset.objects.get(generation=generation).mime == "audio/mpeg"
    if model_id == "openai/tts-1":  # 26 characters at $15 per million
        assert_charged(owner, generation, Decimal(26 * 15) / Decimal(1_000_000))
    else:  # no usage from the Speech API: the card's $0.02 per 1,000 characters
        assert_charged(owner, generation, Decimal("0.02") * 26 / 1000)


@pytest.mark.django_db
def test_a_content_policy_refusal_fails_the_generation_and_releases_the_hold(
        fake: Any, owner: Any, project: Any, catalog: None) -> None:
    generation = run_pipeline(owner, project, "openai/gpt-image-2.5-flare", {"prompt": "something forbidden"})
    assert (generation.status, generation.error_code) == (Status.FAILED, "content_policy")
    assert "safety system" in generation.error_message
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


@pytest.mark.django_db
def test_a_rate_limit_requeues_the_generation_and_the_next_run_completes(
        fake: Any, owner: Any, project: Any, catalog: None) -> None:
    fake.state["fail_next"] = [rate_limited(4000)]
    generation = generation_create(user=owner, project_id=project.pk, model_id="openai/gpt-image-2.5-flare",
                                   inputs={"prompt": "a kite", "quality": "low"})
    with pytest.raises(attempts.RetryLater) as caught:
        generation_run(generation.pk)
    assert caught.value.countdown >= 4.0  # OpenAI's retry-after-ms wins over the shorter backoff
    generation.refresh_from_db()
    assert generation.status == Status.QUEUED and generation.provider_request_id == ""
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED and generation.attempts == 2
    assert credits_summary(user=owner).held == 0
