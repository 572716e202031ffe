"""The pipeline run in-process through its services (the worker's task only calls these)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.utils import timezone
from PIL import Image

from assets.models import Asset
from billing.models import Hold
from billing.services import credits_summary
from generations import attempts, dispatch, runner
from generations.models import Generation, Status
from generations.providers.base import Output, ProviderError, ProviderJob, ProviderStatus
from generations.runner import generation_run
from generations.services import generation_cancel, generation_create
from generations.sweep import generations_sweep_stale

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_polling(settings: Any) -> None:
    settings.GENERATION_POLL_INTERVAL = 0.01


def submit(owner: Any, project: Any, model: str = "local/sketch", **inputs: Any) -> Generation:
    return generation_create(user=owner, project_id=project.pk, model_id=model,
                             inputs=inputs or {"prompt": "a lighthouse", "width": 256, "height": 256, "steps": 2})


def test_a_sketch_runs_to_a_stored_png_and_a_settled_charge(owner: Any, project: Any, catalog: None) -> None:
    generation = submit(owner, project)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED, generation.error_message
    assert generation.progress == 100 and generation.credits_charged == 1
    asset = Asset.objects.get(generation=generation)
    assert (asset.kind, asset.mime, asset.width, asset.height) == ("image", "image/png", 256, 256)
    with asset.file.open("rb") as fh:
        assert Image.open(fh).size == (256, 256)
    assert asset.metadata["recipe"]["inputs"]["prompt"] == "a lighthouse"
    assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}
    assert Hold.objects.get(reference=generation.hold_reference).status == "settled"
    messages = [line["message"] for line in generation.logs]
    assert any("step 1/2" in m for m in messages) and messages[-1].startswith("Succeeded")


def test_running_the_task_twice_does_nothing_the_second_time(owner: Any, project: Any, catalog: None) -> None:
    generation = submit(owner, project)
    generation_run(generation.pk)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.attempts == 1
    assert Asset.objects.filter(generation=generation).count() == 1
    assert credits_summary(user=owner).balance == 499


def test_two_workers_racing_for_one_job_run_it_once(owner: Any, project: Any, catalog: None) -> None:
    generation = submit(owner, project)
    claims = [runner._claim(generation.pk) for _ in range(2)]
    assert claims == [True, False]


def test_an_upscale_records_its_parent_for_lineage(owner: Any, project: Any, catalog: None) -> None:
    first = submit(owner, project)
    generation_run(first.pk)
    source = Asset.objects.get(generation=first)
    second = generation_create(user=owner, project_id=project.pk, model_id="local/upscale",
                               inputs={"image": str(source.pk), "scale": 2})
    generation_run(second.pk)
    second.refresh_from_db()
    assert second.status == Status.SUCCEEDED, second.error_message
    upscaled = Asset.objects.get(generation=second)
    assert (upscaled.width, upscaled.height, upscaled.parent_id) == (512, 512, source.pk)


class ScriptedProvider:
    """A provider whose polls follow a script, to drive the runner's error paths."""

    name = "local"

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.canceled = False
        self.submits = 0

    def submit(self, model: Any, inputs: Any, *, credentials: Any, webhook_url: Any = None) -> ProviderJob:
        self.submits += 1
        return ProviderJob(provider="local", request_id=f"req-{self.submits}")

    def poll(self, job: ProviderJob) -> ProviderStatus:
        if self.canceled:  # a provider that honours the cancel reports the job canceled (cancel is a request)
            return ProviderStatus(state="canceled")
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step

    def cancel(self, job: ProviderJob) -> bool:
        self.canceled = True
        return True


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(*script: Any) -> ScriptedProvider:
        provider = ScriptedProvider(list(script))
        monkeypatch.setattr(runner, "get_provider", lambda name: provider)
        return provider

    return install


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(buf, "PNG")
    return buf.getvalue()


def test_a_final_provider_error_fails_the_job_and_releases_the_hold(owner: Any, project: Any, catalog: None,
                                                                   scripted: Any) -> None:
    scripted(ProviderStatus(state="running", progress=10),
             ProviderStatus(state="failed", error_code="content_policy",
                            error_message="The prompt was flagged by the provider's safety system."))
    generation = submit(owner, project)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == (Status.FAILED, "content_policy")
    assert "safety system" in generation.error_message
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


def test_a_transient_error_requeues_with_backoff_and_then_succeeds(owner: Any, project: Any, catalog: None,
                                                                  scripted: Any) -> None:
    provider = scripted(ProviderError("Too many requests", code="rate_limited", retryable=True, retry_after=7),
                        ProviderStatus(state="succeeded", outputs=[Output(kind="image", mime="image/png", data=png())]))
    generation = submit(owner, project)
    with pytest.raises(attempts.RetryLater) as info:
        generation_run(generation.pk)
    assert info.value.countdown == 7  # Retry-After wins over the shorter backoff
    generation.refresh_from_db()
    assert generation.status == Status.QUEUED and generation.provider_request_id == "req-1"
    assert credits_summary(user=owner).held == 1
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED and generation.attempts == 2
    assert provider.submits == 1  # the retry re-used the provider's request


def test_transient_errors_stop_after_the_attempt_cap_with_a_refund(owner: Any, project: Any, catalog: None,
                                                                   scripted: Any, settings: Any) -> None:
    settings.GENERATION_MAX_ATTEMPTS = 2
    scripted(ProviderError("Bad gateway", code="upstream_502", retryable=True))
    generation = submit(owner, project)
    with pytest.raises(attempts.RetryLater):
        generation_run(generation.pk)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code, generation.attempts) == (Status.FAILED, "upstream_502", 2)
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


def test_cancel_while_running_stops_the_provider_and_releases_the_hold(owner: Any, project: Any, catalog: None,
                                                                      scripted: Any) -> None:
    provider = scripted(ProviderStatus(state="running", progress=30))
    generation = submit(owner, project)
    polls = 0
    original_poll = provider.poll

    def poll_then_user_cancels(job: ProviderJob) -> ProviderStatus:
        nonlocal polls
        polls += 1
        if polls == 3:  # the user presses cancel while the job runs
            generation_cancel(user=owner, generation_id=generation.pk)
        return original_poll(job)

    provider.poll = poll_then_user_cancels  # type: ignore[method-assign]
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.CANCELED and provider.canceled
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
    assert "Cancel requested" in " ".join(line["message"] for line in generation.logs)


def test_a_job_that_finishes_after_a_blip_during_the_cancel_grace_is_delivered_and_charged(
        owner: Any, project: Any, catalog: None, scripted: Any) -> None:
    # A cancel is a request: after it, the provider may still finish (and bill) the job. A transient
    # error while asking how it ended must not end it as canceled with the billed outputs left behind.
    provider = scripted(ProviderStatus(state="running", progress=30))
    generation = submit(owner, project)
    after_cancel = [ProviderError("Bad gateway", code="upstream_502", retryable=True),
                    ProviderStatus(state="succeeded", outputs=[Output(kind="image", mime="image/png", data=png())])]

    def poll(job: ProviderJob) -> ProviderStatus:
        if not provider.canceled:
            generation_cancel(user=owner, generation_id=generation.pk)
            return ProviderStatus(state="running", progress=30)
        step = after_cancel.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    provider.poll = poll  # type: ignore[method-assign]
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert provider.canceled and after_cancel == []
    assert (generation.status, generation.credits_charged) == (Status.SUCCEEDED, 1), generation.error_message
    assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}
    assert Asset.objects.filter(generation=generation).count() == 1


def test_a_job_past_its_timeout_fails_and_is_canceled_upstream(owner: Any, project: Any, catalog: None,
                                                              scripted: Any) -> None:
    from generations.models import AIModel

    AIModel.objects.filter(pk="local/sketch").update(timeout_seconds=0)
    provider = scripted(ProviderStatus(state="running", progress=1))
    generation = submit(owner, project)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == (Status.FAILED, "timeout")
    assert provider.canceled and credits_summary(user=owner).held == 0


def test_partial_success_charges_for_what_was_delivered(owner: Any, project: Any, catalog: None,
                                                        scripted: Any) -> None:
    from decimal import Decimal

    from generations.pricing import Estimate, actual

    card = type("Card", (), {"usd_per_unit": Decimal("0.04")})()
    cost, credits = actual(card, Estimate(units=Decimal(4), cost_usd=Decimal("0.16"), credits=16), usage={},
                           provider_cost_usd=None, requested_outputs=4, delivered_outputs=3)
    assert (cost, credits) == (Decimal("0.120000"), 12)


def test_the_sweep_requeues_a_job_whose_worker_died_and_fails_it_when_out_of_attempts(
        owner: Any, project: Any, catalog: None, settings: Any, django_capture_on_commit_callbacks: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    dispatched: list[str] = []
    monkeypatch.setattr(dispatch, "generation_run_send", lambda gid, countdown=None: dispatched.append(gid))
    generation = submit(owner, project)
    long_ago = timezone.now() - settings.STALE_RUNNING_AFTER * 2
    Generation.objects.filter(pk=generation.pk).update(status=Status.RUNNING, attempts=1, heartbeat_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        assert generations_sweep_stale()["requeued"] == 1
    assert dispatched == [str(generation.pk)]
    generation.refresh_from_db()
    assert generation.status == Status.QUEUED and credits_summary(user=owner).held == 1
    Generation.objects.filter(pk=generation.pk).update(status=Status.RUNNING, attempts=settings.GENERATION_MAX_ATTEMPTS,
                                                       heartbeat_at=long_ago)
    assert generations_sweep_stale()["failed"] == 1
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == (Status.FAILED, "worker_lost")
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


def test_the_sweep_redispatches_a_queued_job_nobody_picked_up(owner: Any, project: Any, catalog: None,
                                                             settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    dispatched: list[str] = []
    monkeypatch.setattr(dispatch, "generation_run_send", lambda gid, countdown=None: dispatched.append(gid))
    generation = submit(owner, project)
    Generation.objects.filter(pk=generation.pk).update(heartbeat_at=timezone.now() - settings.STALE_QUEUED_AFTER * 2)
    assert generations_sweep_stale()["redispatched"] == 1
    assert dispatched == [str(generation.pk)]
    assert generations_sweep_stale()["redispatched"] == 0  # not again until it is stale again
