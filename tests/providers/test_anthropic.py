"""The Anthropic adapter, driven through the real `anthropic` SDK against the loopback fake
(tests/fakes/anthropic.py)."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from assets.models import Asset
from billing.services import credits_summary
from generations import attempts
from generations.inputs import InvalidRequest
from generations.models import Generation, Status
from generations.providers.anthropic import AnthropicProvider, message_cost
from generations.providers.base import CatalogModel, ProviderError, ProviderJob, ProviderStatus
from generations.runner import generation_run
from generations.services import generation_create
from tests.fakes.anthropic import AnthropicFake, anthropic_error, overloaded, rate_limited
from tests.fakes.server import FakeApi
from tests.providers.support import poll_to_end, run_pipeline

provider = AnthropicProvider()
SONNET_PRICES = {"input_tokens": "2", "output_tokens": "10"}


@pytest.fixture(scope="module")
def fake_api() -> FakeApi:
    return FakeApi(AnthropicFake, "anthropic")


def model(**config: Any) -> CatalogModel:
    config.setdefault("token_prices", SONNET_PRICES)
    return CatalogModel(id="anthropic/claude-sonnet-5-5", provider="anthropic", provider_model="claude-sonnet-5-5",
                        operation="text-generation", output_kind="text", config=config)


def run(job: ProviderJob) -> ProviderStatus:
    return poll_to_end(provider, job)[-1]


def submit(inputs: dict[str, Any], *, key: str = "test-key", **config: Any) -> ProviderStatus:
    return run(provider.submit(model(**config), inputs, credentials={"api_key": key}))


def sent(fake: Any) -> dict[str, Any]:
    [request] = [r for r in fake.requests if r["path"] == "/v1/messages"]
    return json.loads(request["body"])


def test_a_message_returns_the_text_blocks_as_markdown_and_the_token_cost(fake: Any) -> None:
    status = submit({"prompt": "Summarise Hamlet", "instructions": "One paragraph.", "max_tokens": 500})
    assert status.state == "succeeded", status.error_message
    [output] = status.outputs
    assert (output.kind, output.mime, output.filename) == ("text", "text/plain", "anthropic-claude-sonnet-5-5.md")
    assert output.data == fake.state["outputs"][0].encode()  # the thinking block is not part of it
    usage = status.usage
    assert status.cost_usd == (Decimal(usage["input_tokens"]) * 2 + Decimal(usage["output_tokens"]) * 10) / Decimal(1_000_000)
    body = sent(fake)
    assert body == {"model": "claude-sonnet-5-5", "max_tokens": 500, "system": "One paragraph.",
                    "messages": [{"role": "user", "content": "Summarise Hamlet"}]}


def test_it_authenticates_the_way_sdk_2_12_does(fake: Any) -> None:
    submit({"prompt": "hi"})
    headers = next(r["headers"] for r in fake.requests if r["path"] == "/v1/messages")
    assert headers["Authorization"] == "Bearer test-key" and headers["anthropic-version"] == "2026-10-21"
    assert headers["x-stainless-retry-count"] == "0"


def test_the_script_breakdown_sends_the_catalog_system_prompt_and_the_script(fake: Any) -> None:
    status = submit({"script": "INT. KITCHEN - NIGHT\n\nANNA pours tea."}, input_field="script",
                    system_prompt="You are a first AD.", thinking={"type": "disabled"})
    assert status.state == "succeeded", status.error_message
    body = sent(fake)
    assert body["system"] == "You are a first AD." and body["thinking"] == {"type": "disabled"}
    assert body["messages"][0]["content"] == "INT. KITCHEN - NIGHT\n\nANNA pours tea."
    assert "temperature" not in body  # Sonnet 5+ answers 400 to sampling parameters


def test_the_prompt_enhancer_fills_the_configured_template(fake: Any) -> None:
    submit({"prompt": "cat on a roof", "target": "video"}, system_prompt="Rewrite prompts.",
           user_template="Target: {target}\n\nIdea: {text}")
    assert sent(fake)["messages"][0]["content"] == "Target: video\n\nIdea: cat on a roof"


def test_overloaded_is_retryable(fake: Any) -> None:
    fake.state["fail_next"] = [overloaded()]
    status = submit({"prompt": "hi"})
    assert (status.state, status.error_code, status.retryable, status.error_message) == (
        "failed", "overloaded", True, "Overloaded")


def test_a_rate_limit_is_retryable_after_retry_after_and_the_next_call_succeeds(fake: Any) -> None:
    fake.state["fail_next"] = [rate_limited(3)]
    status = submit({"prompt": "hi"})
    assert (status.error_code, status.retryable, status.usage["retry_after"]) == ("rate_limited", True, 3.0)
    assert len([r for r in fake.requests if r["path"] == "/v1/messages"]) == 1
    assert submit({"prompt": "hi"}).state == "succeeded"


@pytest.mark.parametrize(("http_status", "error_type", "code"), [
    (400, "invalid_request_error", "invalid_input"),
    (402, "billing_error", "quota_exceeded"),
    (413, "request_too_large", "invalid_input"),
])
def test_request_errors_are_final_with_anthropics_message(fake: Any, http_status: int, error_type: str,
                                                          code: str) -> None:
    fake.state["fail_next"] = [{"status": http_status, "body": anthropic_error(error_type, f"{error_type} says no")}]
    status = submit({"prompt": "hi"})
    assert (status.error_code, status.error_message, status.retryable) == (code, f"{error_type} says no", False)


def test_a_refusal_is_a_final_content_policy_error(fake: Any) -> None:
    status = submit({"prompt": "something forbidden"})
    assert (status.error_code, status.retryable) == ("content_policy", False)
    assert "usage policy" in status.error_message


def test_an_answer_cut_off_before_any_text_is_final_asks_for_more_max_tokens_and_keeps_its_cost(fake: Any) -> None:
    fake.state["no_text"] = ["max_tokens"]
    status = submit({"prompt": "Plan a film", "max_tokens": 300})
    assert (status.state, status.error_code, status.retryable) == ("failed", "invalid_input", False)
    assert status.error_message.endswith("raise Max tokens.")
    assert status.usage["output_tokens"] == 300 and status.cost_usd is not None and status.cost_usd > 0


def test_an_empty_end_turn_answer_is_final_without_the_max_tokens_advice(fake: Any) -> None:
    fake.state["no_text"] = ["end_turn"]
    status = submit({"prompt": "Plan a film"})
    assert (status.state, status.error_code, status.retryable) == ("failed", "no_output", False)
    assert "Max tokens" not in status.error_message and status.cost_usd is not None


def test_a_bad_key_is_final(fake: Any) -> None:
    status = submit({"prompt": "hi"}, key="sk-ant-wrong")
    assert (status.error_code, status.error_message, status.retryable) == ("invalid_key", "invalid x-api-key", False)


def test_cancel_stops_waiting_for_an_in_flight_message(fake: Any) -> None:
    fake.state["gate"] = threading.Event()
    job = provider.submit(model(), {"prompt": "hi"}, credentials={"api_key": "test-key"})
    deadline = time.monotonic() + 5
    while not fake.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert provider.poll(job).state == "running"
    assert provider.cancel(job) is True and provider.poll(job).state == "canceled"
    fake.state["gate"].set()
    assert provider.cancel(job) is False


def test_a_long_haiku_prompt_is_priced_at_the_long_prompt_rates() -> None:
    config = {"token_prices": {"input_tokens": "0.10", "output_tokens": "0.50"},
              "long_prompt": {"threshold_tokens": 100000,
                              "token_prices": {"input_tokens": "0.50", "output_tokens": "2.50"}}}

    class Usage:
        input_tokens, output_tokens = 100001, 1000
        cache_creation_input_tokens = cache_read_input_tokens = 0

    _, cost = message_cost(Usage(), config)
    assert cost == (Decimal(100001) * Decimal("0.50") + Decimal(1000) * Decimal("2.50")) / Decimal(1_000_000)
    Usage.input_tokens = 100000
    assert message_cost(Usage(), config)[1] == (Decimal(100000) * Decimal("0.10") + Decimal(500)) / Decimal(1_000_000)


def test_check_credentials_lists_models_and_names_a_bad_key(fake: Any) -> None:
    provider.check_credentials({"api_key": "test-key"})
    with pytest.raises(ProviderError) as caught:
        provider.check_credentials({"api_key": "sk-ant-wrong"})
    assert caught.value.code == "invalid_key"
    assert [r["path"] for r in fake.requests] == ["/v1/models?limit=1"] * 2


# --- worked examples through the pipeline -----------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize(("model_id", "inputs"), [
    ("anthropic/claude-sonnet-5-5", {"prompt": "Pitch a short film about a lighthouse keeper"}),
    ("anthropic/claude-sonnet-5-5/script-breakdown", {"script": "EXT. PIER - DAWN\n\nTOM casts a line."}),
    ("anthropic/claude-haiku-5-5/prompt-enhance", {"prompt": "dog in rain", "target": "image"}),
])
def test_worked_example_text_generation(fake: Any, owner: Any, project: Any, catalog: None, model_id: str,
                                        inputs: dict[str, Any]) -> None:
    generation = run_pipeline(owner, project, model_id, inputs)
    assert generation.status == Status.SUCCEEDED, generation.error_message
    asset = Asset.objects.get(generation=generation)
    with asset.file.open("rb") as fh:
        assert fh.read() == fake.state["outputs"][0].encode()
    assert asset.kind == "text"
    assert generation.provider_cost_usd > 0 and generation.credits_charged == 1
    assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}


@pytest.mark.django_db
def test_a_final_error_fails_the_generation_and_releases_the_hold(fake: Any, owner: Any, project: Any,
                                                                   catalog: None) -> None:
    fake.state["fail_next"] = [{"status": 400, "body": anthropic_error("invalid_request_error", "prompt is too long")}]
    generation = run_pipeline(owner, project, "anthropic/claude-sonnet-5-5", {"prompt": "hi"})
    assert (generation.status, generation.error_code, generation.error_message) == (
        Status.FAILED, "invalid_input", "prompt is too long")
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


@pytest.mark.django_db
def test_an_overloaded_api_requeues_the_generation_and_the_next_run_completes(fake: Any, owner: Any, project: Any,
                                                                               catalog: None) -> None:
    fake.state["fail_next"] = [overloaded()]
    generation = generation_create(user=owner, project_id=project.pk, model_id="anthropic/claude-sonnet-5-5",
                                   inputs={"prompt": "hi"})
    with pytest.raises(attempts.RetryLater):
        generation_run(generation.pk)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED and generation.attempts == 2


# --- a job dearer than its estimate: charged at most the hold, or up to the user's max_credits -------------

LONG_REPLY = " ".join(["word"] * 6000)  # ~6,000 output tokens (the fake counts words), dearer than estimated


@pytest.mark.django_db
def test_a_job_dearer_than_its_estimate_is_charged_the_estimate_without_a_limit(fake: Any, owner: Any, project: Any,
                                                                                 catalog: None) -> None:
    fake.state["reply"] = LONG_REPLY
    generation = run_pipeline(owner, project, "anthropic/claude-sonnet-5-5", {"prompt": "Write at length"})
    assert generation.status == Status.SUCCEEDED, generation.error_message
    assert generation.max_credits is None
    assert generation.credits_charged == generation.credits_held == generation.credits_estimated
    assert any("above the" in entry["message"] for entry in generation.logs)
    assert credits_summary(user=owner).as_dict() == {"balance": 500 - generation.credits_estimated, "held": 0,
                                                     "available": 500 - generation.credits_estimated}


@pytest.mark.django_db
def test_max_credits_holds_the_limit_and_charges_the_actual_cost_up_to_it(fake: Any, owner: Any, project: Any,
                                                                          catalog: None) -> None:
    fake.state["reply"] = LONG_REPLY
    generation = generation_create(user=owner, project_id=project.pk, model_id="anthropic/claude-sonnet-5-5",
                                   inputs={"prompt": "Write at length"}, max_credits=50)
    assert (generation.credits_held, generation.max_credits) == (50, 50)
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 50, "available": 450}
    generation_run(generation.pk)
    generation.refresh_from_db()
    actual = generation.credits_charged
    assert generation.credits_estimated < actual < 50  # the real price, not the estimate, not the limit
    assert credits_summary(user=owner).as_dict() == {"balance": 500 - actual, "held": 0, "available": 500 - actual}


@pytest.mark.django_db
def test_max_credits_caps_the_charge_when_the_job_costs_even_more(fake: Any, owner: Any, project: Any,
                                                                  catalog: None) -> None:
    fake.state["reply"] = LONG_REPLY
    estimate = generation_create(user=owner, project_id=project.pk, model_id="anthropic/claude-sonnet-5-5",
                                 inputs={"prompt": "probe"}).credits_estimated
    generation = generation_create(user=owner, project_id=project.pk, model_id="anthropic/claude-sonnet-5-5",
                                   inputs={"prompt": "Write at length"}, max_credits=estimate + 1)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.credits_charged == estimate + 1


@pytest.mark.django_db
def test_max_credits_below_the_estimate_is_refused_naming_the_field(fake: Any, owner: Any, project: Any,
                                                                   catalog: None) -> None:
    with pytest.raises(InvalidRequest) as refused:
        generation_create(user=owner, project_id=project.pk, model_id="anthropic/claude-sonnet-5-5",
                          inputs={"prompt": "hi"}, max_credits=0)
    assert refused.value.code == "max_credits_below_estimate" and "max_credits" in refused.value.fields
    assert Generation.objects.filter(user=owner).count() == 0
    assert credits_summary(user=owner).held == 0
