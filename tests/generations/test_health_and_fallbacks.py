"""The circuit breaker and fallback models, driven through the runner with scripted providers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache

from billing.services import credits_summary
from core.errors import InvalidRequest
from generations import attempts, runner
from generations.health import circuit_open_for, provider_health, record_outcome
from generations.models import AIModel, Generation, PriceCard, Status
from generations.providers.base import Output, ProviderError, ProviderStatus
from generations.runner import generation_run
from generations.services import generation_create
from tests.generations.test_pipeline import ScriptedProvider, png

pytestmark = pytest.mark.django_db
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["prompt"],
          "properties": {"prompt": {"type": "string", "minLength": 1}, "steps": {"type": "integer", "default": 4}}}


@pytest.fixture(autouse=True)
def setup(settings: Any) -> None:
    cache.clear()
    settings.GENERATION_POLL_INTERVAL = 0.01
    settings.GENERATION_MAX_ATTEMPTS = 1
    settings.CIRCUIT_FAILURES = 3
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "alpha": "key-a", "beta": "key-b"}


def make_model(model_id: str, provider: str, usd: str, operation: str = "text-to-image") -> AIModel:
    model = AIModel.objects.create(id=model_id, provider=provider, provider_model=model_id, name=model_id,
                                   operation=operation, output_kind="image", input_schema=SCHEMA)
    PriceCard.objects.create(model=model, version=1, unit="image", usd_per_unit=Decimal(usd),
                             effective_from="2026-11-21", source="test")
    return model


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> dict[str, ScriptedProvider]:
    ok = ProviderStatus(state="succeeded", outputs=[Output(kind="image", mime="image/png", data=png())])
    scripted = {
        "alpha": ScriptedProvider([ProviderError("upstream overloaded", code="overloaded", retryable=True)]),
        "beta": ScriptedProvider([ok]),
    }
    for name, provider in scripted.items():
        provider.name = name
    monkeypatch.setattr(runner, "get_provider", lambda name: scripted[name])
    return scripted


def test_the_circuit_opens_after_repeated_transient_failures_and_a_success_closes_it() -> None:
    for _ in range(2):
        record_outcome(provider="alpha", model="a", ok=False, transient=True)
    assert circuit_open_for("alpha") == 0
    record_outcome(provider="alpha", model="a", ok=False, transient=False, error_code="content_policy")
    assert circuit_open_for("alpha") == 0  # a refused prompt says nothing about the provider's health
    record_outcome(provider="alpha", model="a", ok=False, transient=True)
    assert circuit_open_for("alpha") > 0
    record_outcome(provider="alpha", model="a", ok=True, latency_ms=120)
    assert circuit_open_for("alpha") == 0
    [row] = provider_health()
    assert (row.provider, row.attempts, row.transient_failures, row.avg_latency_ms) == ("alpha", 5, 3, 120.0)
    assert row.success_rate == pytest.approx(0.2)


def test_a_transient_failure_moves_the_job_to_its_fallback_and_records_who_served_it(
        owner: Any, project: Any, providers: dict[str, ScriptedProvider]) -> None:
    make_model("alpha/img", "alpha", "0.05")
    make_model("beta/img", "beta", "0.03")
    generation = generation_create(user=owner, project_id=project.pk, model_id="alpha/img",
                                   inputs={"prompt": "a kite"}, fallback_models=["beta/img"])
    assert generation.credits_held == 5
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.model_id, generation.provider) == (Status.QUEUED, "beta/img", "beta")
    assert generation.fallbacks_used[0]["from"] == "alpha/img" and generation.fallbacks_used[0]["reason"] == "overloaded"
    assert credits_summary(user=owner).held == 3  # the hold follows the fallback's price
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED and generation.credits_charged == 3
    assert credits_summary(user=owner).as_dict() == {"balance": 497, "held": 0, "available": 497}


def test_a_fallback_the_user_cannot_pay_for_is_skipped(owner: Any, project: Any,
                                                       providers: dict[str, ScriptedProvider]) -> None:
    make_model("alpha/img", "alpha", "0.05")
    make_model("beta/img", "beta", "9.00")  # 900 credits; the user has 500
    generation = generation_create(user=owner, project_id=project.pk, model_id="alpha/img",
                                   inputs={"prompt": "a kite"}, fallback_models=["beta/img"])
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code, generation.model_id) == (Status.FAILED, "overloaded", "alpha/img")
    assert "more than are available" in " ".join(line["message"] for line in generation.logs)
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
    assert providers["beta"].submits == 0


def test_final_errors_never_use_a_fallback(owner: Any, project: Any, providers: dict[str, ScriptedProvider]) -> None:
    make_model("alpha/img", "alpha", "0.05")
    make_model("beta/img", "beta", "0.03")
    providers["alpha"].script = [ProviderStatus(state="failed", error_code="content_policy", error_message="Flagged.")]
    generation = generation_create(user=owner, project_id=project.pk, model_id="alpha/img",
                                   inputs={"prompt": "a kite"}, fallback_models=["beta/img"])
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code, generation.fallbacks_used) == (Status.FAILED, "content_policy", [])


def test_an_open_circuit_sends_new_jobs_straight_to_the_fallback(
        owner: Any, project: Any, providers: dict[str, ScriptedProvider], settings: Any) -> None:
    make_model("alpha/img", "alpha", "0.05")
    make_model("beta/img", "beta", "0.03")
    for _ in range(settings.CIRCUIT_FAILURES):
        record_outcome(provider="alpha", model="alpha/img", ok=False, transient=True)
    generation = generation_create(user=owner, project_id=project.pk, model_id="alpha/img",
                                   inputs={"prompt": "a kite"}, fallback_models=["beta/img"])
    generation_run(generation.pk)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED and generation.provider == "beta"
    assert providers["alpha"].submits == 0
    assert generation.fallbacks_used[0]["reason"] == "circuit_open"


def test_an_open_circuit_without_a_fallback_waits_without_spending_an_attempt(
        owner: Any, project: Any, providers: dict[str, ScriptedProvider], settings: Any) -> None:
    make_model("alpha/img", "alpha", "0.05")
    for _ in range(settings.CIRCUIT_FAILURES):
        record_outcome(provider="alpha", model="alpha/img", ok=False, transient=True)
    generation = generation_create(user=owner, project_id=project.pk, model_id="alpha/img", inputs={"prompt": "a kite"})
    with pytest.raises(attempts.RetryLater) as wait:
        generation_run(generation.pk)
    assert 0 < wait.value.countdown <= settings.CIRCUIT_COOLDOWN
    generation.refresh_from_db()
    assert (generation.status, generation.attempts) == (Status.QUEUED, 0)
    assert providers["alpha"].submits == 0 and credits_summary(user=owner).held == 5


def test_fallbacks_must_be_known_models_of_the_same_operation(owner: Any, project: Any) -> None:
    make_model("alpha/img", "alpha", "0.05")
    make_model("beta/chat", "beta", "0.01", operation="text-generation")
    with pytest.raises(InvalidRequest, match="different operation"):
        generation_create(user=owner, project_id=project.pk, model_id="alpha/img", inputs={"prompt": "x"},
                          fallback_models=["beta/chat"])
    with pytest.raises(InvalidRequest, match="Unknown fallback"):
        generation_create(user=owner, project_id=project.pk, model_id="alpha/img", inputs={"prompt": "x"},
                          fallback_models=["nobody/nothing"])
    assert not Generation.objects.exists()


def test_the_model_picker_shows_typical_run_time_from_recent_runs(client: Any, owner: Any, project: Any,
                                                                   catalog: None) -> None:
    for ms in (1800, 2200):
        record_outcome(provider="local", model="local/sketch", ok=True, latency_ms=ms)
    client.force_login(owner)
    page = client.get(f"/p/{project.pk}/").content.decode()
    assert "Offline sketch · local · $0.01 per image · ~2 s" in page
