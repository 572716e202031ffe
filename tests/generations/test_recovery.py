"""Jobs whose worker died: each retry gets its whole timeout, a cancel made meanwhile is honoured,
and the sweep that recovers them runs on its own queue."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from PIL import Image

from assets import tasks as asset_tasks
from billing.models import BudgetUsage, Hold
from billing.services import credits_summary
from generations import attempts, dispatch, runner
from generations import tasks as generation_tasks
from generations.models import Generation, Status
from generations.providers.base import Output, ProviderJob, ProviderStatus
from generations.runner import generation_run
from generations.services import generation_cancel, generation_create
from generations.sweep import generations_sweep_stale
from orchestration.budgets import budget_set

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_polling(settings: Any) -> None:
    settings.GENERATION_POLL_INTERVAL = 0.01


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    monkeypatch.setattr(dispatch, "generation_run_send", lambda gid, countdown=None: sent.append(gid))
    return sent


def submit(owner: Any, project: Any) -> Generation:
    return generation_create(user=owner, project_id=project.pk, model_id="local/sketch",
                             inputs={"prompt": "a lighthouse", "width": 256, "height": 256, "steps": 2})


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buf, "PNG")
    return buf.getvalue()


class SlowThenDone:
    """Reports `running` once, then `succeeded`: the runner checks its deadline between the two polls.
    Once asked to cancel, it reports `canceled` (the runner polls a stopped job to its end)."""

    name = "local"

    def __init__(self) -> None:
        self.polls = 0
        self.canceled = False

    def submit(self, model: Any, inputs: Any, *, credentials: Any, webhook_url: Any = None) -> ProviderJob:
        return ProviderJob(provider="local", request_id="req-1")

    def poll(self, job: ProviderJob) -> ProviderStatus:
        self.polls += 1
        if self.canceled:
            return ProviderStatus(state="canceled")
        if self.polls == 1:
            return ProviderStatus(state="running", progress=50)
        return ProviderStatus(state="succeeded", outputs=[Output(kind="image", mime="image/png", data=png())])

    def cancel(self, job: ProviderJob) -> bool:
        self.canceled = True
        return True


def _worker_died(generation: Generation, settings: Any, *, started: Any = None) -> None:
    """What a SIGKILLed worker leaves behind: the row running, its heartbeat stopped long ago."""
    long_ago = timezone.now() - settings.STALE_RUNNING_AFTER * 2
    changes: dict[str, Any] = {"heartbeat_at": long_ago}
    if started is not None:
        changes.update(started_at=started, attempt_started_at=started)
    Generation.objects.filter(pk=generation.pk).update(**changes)


# --- the deadline runs per attempt ------------------------------------------------------------------------

def test_a_job_requeued_after_its_worker_died_gets_its_whole_timeout_again(
        owner: Any, project: Any, catalog: None, settings: Any, dispatched: list[str],
        monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any) -> None:
    provider = SlowThenDone()
    monkeypatch.setattr(runner, "get_provider", lambda name: provider)
    generation = submit(owner, project)
    assert runner._claim(generation.pk)
    # The first attempt started longer ago than the model's whole timeout (120 s), then its worker died.
    first_start = timezone.now() - timedelta(seconds=generation.model.timeout_seconds + 60)
    _worker_died(generation, settings, started=first_start)
    with django_capture_on_commit_callbacks(execute=True):
        assert generations_sweep_stale()["requeued"] == 1
    assert dispatched == [str(generation.pk)]
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == (Status.SUCCEEDED, ""), generation.error_message
    assert generation.attempts == 2 and not provider.canceled
    assert generation.started_at == first_start  # users still see when the job first started
    assert generation.attempt_started_at > first_start + timedelta(seconds=generation.model.timeout_seconds)
    assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}


def test_an_attempt_that_outlives_its_own_timeout_still_fails_with_timeout(
        owner: Any, project: Any, catalog: None, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = SlowThenDone()
    monkeypatch.setattr(runner, "get_provider", lambda name: provider)
    generation = submit(owner, project)
    assert runner._claim(generation.pk)
    # A parked webhook job resumed past its attempt's deadline: the resume keeps the attempt's clock.
    past = timezone.now() - timedelta(seconds=generation.model.timeout_seconds + 1)
    Generation.objects.filter(pk=generation.pk).update(attempt_started_at=past, awaiting_webhook=True,
                                                       provider_request_id="req-1")
    runner.generation_resume(generation.pk)
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == (Status.FAILED, "timeout")
    assert provider.canceled and credits_summary(user=owner).held == 0


# --- a cancel made while the worker was dead --------------------------------------------------------------

def test_the_sweep_cancels_a_running_job_whose_worker_died_after_the_user_asked_to_cancel(
        owner: Any, project: Any, catalog: None, settings: Any, dispatched: list[str],
        django_capture_on_commit_callbacks: Any) -> None:
    budget = budget_set(project=project, limit_credits=100)
    generation = submit(owner, project)
    assert runner._claim(generation.pk)
    generation_cancel(user=owner, generation_id=generation.pk)  # running: only sets cancel_requested
    assert BudgetUsage.objects.get(budget=budget).held == 1
    _worker_died(generation, settings)
    with django_capture_on_commit_callbacks(execute=True):
        counts = generations_sweep_stale()
    assert (counts["canceled"], counts["requeued"]) == (1, 0) and dispatched == []
    generation.refresh_from_db()
    assert generation.status == Status.CANCELED and generation.finished_at is not None
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
    assert Hold.objects.get(reference=generation.hold_reference).status == "released"
    assert BudgetUsage.objects.get(budget=budget).held == 0
    assert "Canceled as requested" in generation.logs[-1]["message"]
    assert generations_sweep_stale()["canceled"] == 0  # once


class StillAtTheProvider:
    """A job the provider still has after its worker died: running until asked to stop, then ending as
    `after_cancel` says (a cancel is a request: the job may finish anyway)."""

    name = "local"

    def __init__(self, after_cancel: ProviderStatus) -> None:
        self.after_cancel = after_cancel
        self.canceled = False
        self.submits = 0

    def submit(self, model: Any, inputs: Any, *, credentials: Any, webhook_url: Any = None) -> ProviderJob:
        self.submits += 1
        return ProviderJob(provider="local", request_id=f"new-{self.submits}")

    def poll(self, job: ProviderJob) -> ProviderStatus:
        return self.after_cancel if self.canceled else ProviderStatus(state="running", progress=40)

    def cancel(self, job: ProviderJob) -> bool:
        self.canceled = True
        return True


def _canceled_while_its_worker_was_dead(owner: Any, project: Any, settings: Any) -> Generation:
    generation = submit(owner, project)
    assert runner._claim(generation.pk)
    Generation.objects.filter(pk=generation.pk).update(provider_request_id="req-1")  # sent before it died
    generation_cancel(user=owner, generation_id=generation.pk)
    _worker_died(generation, settings)
    return generation


@pytest.mark.parametrize("after_cancel", [
    ProviderStatus(state="succeeded", outputs=[Output(kind="image", mime="image/png", data=png())]),
    ProviderStatus(state="canceled", cost_usd=Decimal("0.0009")),
], ids=["finished-anyway", "stopped-and-billed"])
def test_the_sweep_has_a_worker_stop_a_canceled_job_the_provider_still_has(
        owner: Any, project: Any, catalog: None, settings: Any, dispatched: list[str],
        monkeypatch: pytest.MonkeyPatch, after_cancel: ProviderStatus) -> None:
    # Canceling it in the database alone would leave it running (and billing) at the provider, and a
    # result it finished anyway, already billed, never fetched.
    provider = StillAtTheProvider(after_cancel)
    monkeypatch.setattr(runner, "get_provider", lambda name: provider)
    resumed: list[str] = []
    monkeypatch.setattr(dispatch, "generation_resume_send", resumed.append)
    generation = _canceled_while_its_worker_was_dead(owner, project, settings)

    counts = generations_sweep_stale()
    assert (counts["resumed"], counts["canceled"], counts["requeued"]) == (1, 0, 0)
    assert resumed == [str(generation.pk)] and dispatched == []
    runner.generation_resume(generation.pk)

    generation.refresh_from_db()
    assert provider.canceled and provider.submits == 0
    if after_cancel.state == "succeeded":
        assert (generation.status, generation.credits_charged) == (Status.SUCCEEDED, 1)
        assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}
    else:
        assert (generation.status, generation.credits_charged) == (Status.CANCELED, 0)
        assert generation.provider_cost_usd == Decimal("0.0009")
        assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


def test_a_canceled_job_lost_with_its_dead_worker_is_canceled_not_submitted_again(
        owner: Any, project: Any, catalog: None, settings: Any, dispatched: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The local provider's jobs die with their worker process: the resumed poll finds the request lost.
    provider = StillAtTheProvider(ProviderStatus(state="canceled"))
    provider.poll = lambda job: ProviderStatus(state="failed", error_code="lost", retryable=True)  # type: ignore[method-assign]
    monkeypatch.setattr(runner, "get_provider", lambda name: provider)
    monkeypatch.setattr(dispatch, "generation_resume_send", lambda gid: None)
    generation = _canceled_while_its_worker_was_dead(owner, project, settings)

    assert generations_sweep_stale()["resumed"] == 1
    runner.generation_resume(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.CANCELED and provider.submits == 0
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


def test_a_cancel_of_a_job_parked_for_its_webhook_has_a_worker_stop_it_at_once(
        owner: Any, project: Any, catalog: None, monkeypatch: pytest.MonkeyPatch,
        django_capture_on_commit_callbacks: Any) -> None:
    # No worker polls a parked job; without this the cancel waited for the sweep (STALE_RUNNING_AFTER).
    provider = StillAtTheProvider(ProviderStatus(state="canceled"))
    monkeypatch.setattr(runner, "get_provider", lambda name: provider)
    resumed: list[str] = []
    monkeypatch.setattr(dispatch, "generation_resume_send", resumed.append)
    generation = submit(owner, project)
    assert runner._claim(generation.pk)
    Generation.objects.filter(pk=generation.pk).update(provider_request_id="req-1", awaiting_webhook=True)

    with django_capture_on_commit_callbacks(execute=True):
        generation_cancel(user=owner, generation_id=generation.pk)
    assert resumed == [str(generation.pk)]
    runner.generation_resume(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.CANCELED and provider.canceled
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


def test_the_sweep_cancels_a_queued_job_with_a_cancel_request_instead_of_dispatching_it_again(
        owner: Any, project: Any, catalog: None, settings: Any, dispatched: list[str]) -> None:
    generation = submit(owner, project)
    # Left by the old sweep (or a retry's re-queue): queued, cancel requested, nobody will claim it.
    Generation.objects.filter(pk=generation.pk).update(
        cancel_requested=True, heartbeat_at=timezone.now() - settings.STALE_QUEUED_AFTER * 2)
    counts = generations_sweep_stale()
    assert (counts["canceled"], counts["redispatched"]) == (1, 0) and dispatched == []
    generation.refresh_from_db()
    assert generation.status == Status.CANCELED
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


def test_a_delivered_task_for_a_queued_job_with_a_cancel_request_cancels_it(
        owner: Any, project: Any, catalog: None) -> None:
    generation = submit(owner, project)
    Generation.objects.filter(pk=generation.pk).update(cancel_requested=True)
    generation_run(generation.pk)
    generation.refresh_from_db()
    assert generation.status == Status.CANCELED and generation.attempts == 0
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}


def test_a_stale_job_whose_worker_comes_back_is_not_canceled_under_it(
        owner: Any, project: Any, catalog: None, settings: Any) -> None:
    generation = submit(owner, project)
    assert runner._claim(generation.pk)
    Generation.objects.filter(pk=generation.pk).update(cancel_requested=True)
    stale_seen = timezone.now() - settings.STALE_RUNNING_AFTER * 2
    Generation.objects.filter(pk=generation.pk).update(heartbeat_at=stale_seen)
    # The sweep read the stale heartbeat, then the worker beat again before the sweep's update.
    Generation.objects.filter(pk=generation.pk).update(heartbeat_at=timezone.now())
    assert not attempts.cancel_unattended(generation.pk, status=Status.RUNNING, heartbeat_at=stale_seen)
    generation.refresh_from_db()
    assert generation.status == Status.RUNNING and credits_summary(user=owner).held == 1


# --- queues per kind of work -----------------------------------------------------------------------------

@pytest.mark.parametrize(("task", "queue"), [
    (generation_tasks.generations_sweep_stale, "housekeeping"),
    (generation_tasks.provider_outcomes_prune, "housekeeping"),
    (asset_tasks.assets_purge_trash_task, "housekeeping"),
    (asset_tasks.assets_files_delete, "housekeeping"),
    (generation_tasks.generation_run_task, "generations"),
    (generation_tasks.generation_resume_task, "generations"),
    (asset_tasks.asset_preview_make, "previews"),
])
def test_each_kind_of_work_runs_on_its_own_queue(task: Any, queue: str) -> None:
    from config.celery import app

    # By the task's real name, so a renamed task cannot silently drop back to the default queue.
    assert app.amqp.router.route({}, task.name)["queue"].name == queue
