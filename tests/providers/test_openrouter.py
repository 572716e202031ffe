"""The OpenRouter adapter, driven through the real `openai` SDK against the OpenRouter routes of the
loopback fake (tests/fakes/openai.py, under /api/v1)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from assets.models import Asset
from billing.services import credits_summary
from generations import attempts
from generations.models import Status
from generations.providers.base import CatalogModel, ProviderError, ProviderJob, ProviderStatus
from generations.providers.openrouter import OpenRouterProvider
from generations.runner import generation_run
from generations.services import generation_create
from tests.fakes.openai import OPENROUTER_COST, OpenAIFake, openrouter_error
from tests.fakes.server import FakeApi
from tests.providers.support import poll_to_end, run_pipeline

provider = OpenRouterProvider()


@pytest.fixture(scope="module")
def fake_api() -> FakeApi:
    return FakeApi(OpenAIFake, "openrouter", "/api/v1")


def model(**config: Any) -> CatalogModel:
    return CatalogModel(id="openrouter/meta-llama/llama-3.3-70b-instruct", provider="openrouter",
                        provider_model="meta-llama/llama-3.3-70b-instruct", operation="text-generation",
                        output_kind="text", config=config)


def submit(inputs: dict[str, Any], *, key: str = "test-key", **config: Any) -> ProviderStatus:
    job: ProviderJob = provider.submit(model(**config), inputs, credentials={"api_key": key})
    return poll_to_end(provider, job)[-1]


def test_the_cost_is_the_one_openrouter_reports(fake: Any) -> None:
    status = submit({"prompt": "Name a colour", "temperature": 0.2},
                    token_prices={"input_tokens": "1000", "output_tokens": "1000"})
    assert status.state == "succeeded", status.error_message
    assert status.cost_usd == Decimal(str(OPENROUTER_COST))  # not the config's (absurd) token prices
    assert status.outputs[0].data == fake.state["outputs"][0].encode()
    assert "Served by DeepInfra for meta-llama/llama-3.3-70b-instruct." in status.logs
    [request] = [r for r in fake.requests if r["path"] == "/api/v1/chat/completions"]
    body = json.loads(request["body"])
    assert body["model"] == "meta-llama/llama-3.3-70b-instruct" and body["temperature"] == 0.2
    assert request["headers"]["authorization"] == "Bearer test-key"
    assert request["headers"]["x-title"] == "AI media studio"


def test_an_error_inside_a_200_answer_is_mapped_like_its_code(fake: Any) -> None:
    fake.state["error_in_body"] = {"code": 502, "message": "Upstream provider is down"}
    status = submit({"prompt": "hi"})
    assert (status.state, status.error_code, status.retryable, status.error_message) == (
        "failed", "provider_unavailable", True, "Upstream provider is down")
    fake.state["error_in_body"] = {"code": 400, "message": "context length exceeded"}
    status = submit({"prompt": "hi"})
    assert (status.error_code, status.retryable) == ("invalid_input", False)


def test_no_content_generated_is_retryable_and_keeps_the_cost_openrouter_reported(fake: Any) -> None:
    # https://openrouter.ai/docs/errors, "When No Content is Generated": cold start or scaling.
    fake.state["no_content"] = ["empty"]
    status = submit({"prompt": "hi"})
    assert (status.state, status.error_code, status.retryable) == ("failed", "no_content", True)
    assert "Max tokens" not in status.error_message
    assert status.cost_usd == Decimal(str(OPENROUTER_COST)) and status.usage["input_tokens"] > 0
    assert submit({"prompt": "hi"}).state == "succeeded"


def test_an_empty_answer_cut_off_at_the_token_limit_is_final_and_asks_for_more_max_tokens(fake: Any) -> None:
    fake.state["no_content"] = ["length"]
    status = submit({"prompt": "hi", "max_tokens": 64})
    assert (status.state, status.error_code, status.retryable) == ("failed", "invalid_input", False)
    assert status.error_message.endswith("raise Max tokens.")
    assert status.cost_usd == Decimal(str(OPENROUTER_COST)) and status.usage["output_tokens"] == 64


def test_no_credits_is_final_with_openrouters_message(fake: Any) -> None:
    fake.state["fail_next"] = [{"status": 402, "body": openrouter_error(
        402, "Insufficient credits. Add more using https://openrouter.ai/credits")}]
    status = submit({"prompt": "hi"})
    assert (status.error_code, status.retryable) == ("quota_exceeded", False)
    assert status.error_message.startswith("Insufficient credits")


def test_a_moderation_block_is_a_final_content_policy_error(fake: Any) -> None:
    status = submit({"prompt": "something forbidden"})
    assert (status.error_code, status.retryable) == ("content_policy", False)
    assert status.error_message == "Input was flagged by moderation. (violence)"


@pytest.mark.parametrize("http_status", [429, 502, 503])
def test_rate_limits_and_unavailable_upstreams_are_retryable(fake: Any, http_status: int) -> None:
    fake.state["fail_next"] = [{"status": http_status, "body": openrouter_error(http_status, "try later"),
                                "headers": {"Retry-After": "2"}}]
    status = submit({"prompt": "hi"})
    assert (status.retryable, status.error_message) == (True, "try later")
    if http_status == 429:
        assert status.usage["retry_after"] == 2.0
    assert submit({"prompt": "hi"}).state == "succeeded"


def test_check_credentials_reads_the_key_endpoint_and_names_a_bad_key(fake: Any) -> None:
    provider.check_credentials({"api_key": "test-key"})
    with pytest.raises(ProviderError) as caught:
        provider.check_credentials({"api_key": "sk-or-wrong"})
    assert (caught.value.code, caught.value.message) == ("invalid_key", "No auth credentials found")
    assert [r["path"] for r in fake.requests] == ["/api/v1/key", "/api/v1/key"]


# --- worked example through the pipeline ------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize(("model_id", "inputs"), [
    ("openrouter/meta-llama/llama-3.3-70b-instruct", {"prompt": "Three title ideas for a documentary"}),
    ("openrouter/anthropic/claude-haiku-4.5/script-breakdown", {"script": "INT. CAR - DAY\n\nMIA drives."}),
    ("openrouter/meta-llama/llama-3.1-8b-instruct/prompt-enhance", {"prompt": "castle at night"}),
])
def test_worked_example_text_generation(fake: Any, owner: Any, project: Any, catalog: None, model_id: str,
                                        inputs: dict[str, Any]) -> None:
    generation = run_pipeline(owner, project, model_id, inputs)
    assert generation.status == Status.SUCCEEDED, generation.error_message
    asset = Asset.objects.get(generation=generation)
    with asset.file.open("rb") as fh:
        assert fh.read() == fake.state["outputs"][0].encode()
    assert generation.provider_cost_usd == Decimal(str(OPENROUTER_COST)) and generation.credits_charged == 1
    assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}


@pytest.mark.django_db
def test_running_out_of_credits_fails_the_generation_and_releases_the_hold(fake: Any, owner: Any, project: Any,
                                                                           catalog: None) -> None:
    fake.state["fail_next"] = [{"status": 402, "body": openrouter_error(402, "Insufficient credits")}]
    generation = run_pipeline(owner, project, "openrouter/meta-llama/llama-3.3-70b-instruct", {"prompt": "hi"})
    assert (generation.status, generation.error_code, generation.error_message) == (
        Status.FAILED, "quota_exceeded", "Insufficient credits")
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


@pytest.mark.django_db
def test_a_job_with_no_content_generated_is_retried_and_the_next_attempt_delivers(fake: Any, owner: Any,
                                                                                   project: Any, catalog: None) -> None:
    fake.state["no_content"] = ["empty"]
    generation = generation_create(user=owner, project_id=project.pk,
                                   model_id="openrouter/meta-llama/llama-3.3-70b-instruct", inputs={"prompt": "hi"})
    with pytest.raises(attempts.RetryLater):
        generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == (Status.QUEUED, "")
    assert any("no_content" in line["message"] for line in generation.logs)
    assert generation.provider_cost_usd == Decimal(str(OPENROUTER_COST))  # the empty attempt's reported cost
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED and generation.attempts == 2
    assert generation.provider_cost_usd == 2 * Decimal(str(OPENROUTER_COST))
    assert Asset.objects.filter(generation=generation).count() == 1
    assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}


@pytest.mark.django_db
def test_an_answer_cut_off_before_any_text_fails_frees_the_hold_and_records_the_billed_cost(
        fake: Any, owner: Any, project: Any, catalog: None) -> None:
    fake.state["no_content"] = ["length"]
    generation = run_pipeline(owner, project, "openrouter/meta-llama/llama-3.3-70b-instruct",
                              {"prompt": "hi", "max_tokens": 64})
    assert (generation.status, generation.error_code, generation.credits_charged) == (
        Status.FAILED, "invalid_input", 0)
    assert generation.provider_cost_usd == Decimal(str(OPENROUTER_COST))
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
