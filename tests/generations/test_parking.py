"""Parked polling: a job whose state lives at the provider is polled once per task run and handed back
to the queue with a countdown, instead of holding a worker slot (generations/runner.py). The cancel,
the timeout, the heartbeat and the sweep keep working across the parks."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from PIL import Image

from assets.models import Asset, AssetSource
from assets.services import asset_create_from_bytes
from billing.services import credits_summary
from generations import dispatch, runner
from generations.models import Generation, Status
from generations.providers.base import Output, ProviderError, ProviderJob, ProviderStatus
from generations.runner import generation_resume, generation_run
from generations.services import generation_cancel, generation_create
from generations.sweep import generations_sweep_stale

pytestmark = pytest.mark.django_db


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "teal").save(buf, "PNG")
    return buf.getvalue()


class RemoteJobs:
    """A provider whose jobs live at the provider: `running` for `polls_to_finish` polls, then done."""

    name = "local"
    parks_between_polls = True

    def __init__(self, polls_to_finish: int = 3) -> None:
        self.polls_to_finish = polls_to_finish
        self.polls = 0
        self.cancels = 0

    def submit(self, model: Any, inputs: Any, *, credentials: Any, webhook_url: Any = None) -> ProviderJob:
        return ProviderJob(provider="local", request_id="remote-1", data={"seen": 0})

    def poll(self, job: ProviderJob) -> ProviderStatus:
        self.polls += 1
        job.data = {"seen": self.polls}  # the adapter's place, carried from park to park on the row
        if self.cancels:
            return ProviderStatus(state="canceled")
        if self.polls < self.polls_to_finish:
            return ProviderStatus(state="running", progress=self.polls * 30, logs=[f"poll {self.polls}"])
        return ProviderStatus(state="succeeded", outputs=[Output(kind="image", mime="image/png", data=png())])

    def cancel(self, job: ProviderJob) -> bool:
        self.cancels += 1
        return True


@dataclass
class Queue:
    """Stands in for the broker: the parked jobs' next polls, and the resumes sent at once."""

    polls: list[tuple[str, str, float]] = field(default_factory=list)
    resumes: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def deliver_next_poll(self) -> None:
        gid, parked_at, _ = self.polls.pop(0)
        generation_resume(gid, parked_at=parked_at, park=True)


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch, settings: Any) -> RemoteJobs:
    settings.GENERATION_POLL_INTERVAL = 0.01
    provider = RemoteJobs()
    monkeypatch.setattr(runner, "get_provider", lambda name: provider)
    return provider


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Queue:
    sent = Queue()
    monkeypatch.setattr(dispatch, "generation_poll_send",
                        lambda gid, *, parked_at, countdown: sent.polls.append((gid, parked_at, countdown)))
    monkeypatch.setattr(dispatch, "generation_resume_send", sent.resumes.append)
    monkeypatch.setattr(dispatch, "generation_run_send", lambda gid, countdown=None: sent.runs.append(gid))
    return sent


def submit(owner: Any, project: Any) -> Generation:
    return generation_create(user=owner, project_id=project.pk, model_id="local/sketch",
                             inputs={"prompt": "a lighthouse", "width": 256, "height": 256, "steps": 2})


def test_a_remote_job_is_polled_once_per_run_and_parked_until_it_ends(
        owner: Any, project: Any, catalog: None, remote: RemoteJobs, queue: Queue, settings: Any) -> None:
    settings.GENERATION_PARKED_POLL_INTERVAL = 1.5
    generation = submit(owner, project)
    generation_run(generation.pk, park=True)

    parked = Generation.objects.get(pk=generation.pk)
    assert remote.polls == 1 and parked.status == Status.RUNNING and parked.awaiting_webhook
    assert (parked.progress, parked.provider_data) == (30, {"seen": 1})
    assert queue.polls == [(str(generation.pk), parked.heartbeat_at.isoformat(), 1.5)]

    queue.deliver_next_poll()
    assert remote.polls == 2 and len(queue.polls) == 1
    assert Generation.objects.get(pk=generation.pk).provider_data == {"seen": 2}
    queue.deliver_next_poll()

    done = Generation.objects.get(pk=generation.pk)
    assert (remote.polls, queue.polls) == (3, [])
    assert done.status == Status.SUCCEEDED and not done.awaiting_webhook and done.attempts == 1
    assert Asset.objects.filter(generation=done).count() == 1
    assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}
    messages = [line["message"] for line in done.logs]
    assert [m for m in messages if m.startswith(("poll ", "Started"))] == ["Started on local (attempt 1).",
                                                                          "poll 1", "poll 2"]


def test_a_poll_message_from_an_earlier_park_does_nothing(
        owner: Any, project: Any, catalog: None, remote: RemoteJobs, queue: Queue) -> None:
    generation = submit(owner, project)
    generation_run(generation.pk, park=True)
    earlier = queue.polls[0][1]
    queue.deliver_next_poll()  # polled and parked again: a new token
    generation_resume(generation.pk, parked_at=earlier, park=True)  # the earlier message, delivered late
    assert remote.polls == 2 and len(queue.polls) == 1  # one poll chain, not two


def test_a_cancel_of_a_parked_job_has_a_worker_stop_it_at_once(
        owner: Any, project: Any, catalog: None, remote: RemoteJobs, queue: Queue,
        django_capture_on_commit_callbacks: Any) -> None:
    generation = submit(owner, project)
    generation_run(generation.pk, park=True)
    with django_capture_on_commit_callbacks(execute=True):
        generation_cancel(user=owner, generation_id=generation.pk)
    assert queue.resumes == [str(generation.pk)]  # not left until the next poll
    generation_resume(generation.pk, park=True)

    canceled = Generation.objects.get(pk=generation.pk)
    assert remote.cancels == 1 and canceled.status == Status.CANCELED
    assert credits_summary(user=owner).as_dict() == {"balance": 500, "held": 0, "available": 500}
    polls = remote.polls
    queue.deliver_next_poll()  # the poll that was already scheduled finds nothing to do
    assert remote.polls == polls


def test_a_parked_job_past_its_timeout_is_stopped_and_fails(
        owner: Any, project: Any, catalog: None, remote: RemoteJobs, queue: Queue) -> None:
    remote.polls_to_finish = 100
    generation = submit(owner, project)
    generation_run(generation.pk, park=True)
    long_ago = timezone.now() - timedelta(hours=1)
    Generation.objects.filter(pk=generation.pk).update(attempt_started_at=long_ago)
    queue.deliver_next_poll()

    failed = Generation.objects.get(pk=generation.pk)
    assert remote.cancels == 1 and (failed.status, failed.error_code) == (Status.FAILED, "timeout")
    assert credits_summary(user=owner).held == 0 and queue.polls == []


def test_a_parked_job_whose_poll_message_was_lost_is_resumed_by_the_sweep(
        owner: Any, project: Any, catalog: None, remote: RemoteJobs, queue: Queue, settings: Any) -> None:
    generation = submit(owner, project)
    generation_run(generation.pk, park=True)
    queue.polls.clear()  # the worker holding the delayed message died

    assert generations_sweep_stale()["resumed"] == 0  # its heartbeat is fresh: the poll may still come
    later = timezone.now() + settings.STALE_RUNNING_AFTER + timedelta(seconds=1)
    counts = generations_sweep_stale(now=later)
    assert counts["resumed"] == 1 and counts["requeued"] == 0 and queue.resumes == [str(generation.pk)]
    generation_resume(generation.pk, park=True)  # what the resume message runs
    assert remote.polls == 2 and len(queue.polls) == 1  # polled, and its poll chain goes on


def test_a_job_that_lives_in_the_worker_is_polled_to_the_end_in_place(
        owner: Any, project: Any, catalog: None, queue: Queue, settings: Any) -> None:
    settings.GENERATION_POLL_INTERVAL = 0.01
    generation = submit(owner, project)  # the local provider: its engine runs on a thread of this process
    generation_run(generation.pk, park=True)
    done = Generation.objects.get(pk=generation.pk)
    assert done.status == Status.SUCCEEDED and queue.polls == []


def test_a_parked_job_is_polled_to_its_end_even_if_its_inputs_can_no_longer_be_read(
        owner: Any, project: Any, catalog: None, remote: RemoteJobs, queue: Queue,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider already has the job (and bills it): a later poll does not re-read its inputs, so an
    input asset deleted meanwhile does not fail a job that is still running upstream."""
    generation = submit(owner, project)
    generation_run(generation.pk, park=True)

    def gone(generation: Generation) -> dict[str, Any]:
        raise ProviderError("An input asset no longer exists.", code="input_missing")

    monkeypatch.setattr(runner, "_provider_inputs", gone)
    queue.deliver_next_poll()
    queue.deliver_next_poll()
    done = Generation.objects.get(pk=generation.pk)
    assert done.status == Status.SUCCEEDED and remote.cancels == 0
    assert Asset.objects.filter(generation=done).count() == 1


def dead_workers_output(generation: Generation) -> Asset:
    """What a worker killed between storing an output and settling leaves: an asset of an unsettled job."""
    return asset_create_from_bytes(project=generation.project, data=png(), name="left-behind.png",
                                   source=AssetSource.GENERATION, generation=generation)


def test_outputs_a_dead_worker_stored_but_never_settled_are_not_delivered_twice(
        owner: Any, project: Any, catalog: None, remote: RemoteJobs, queue: Queue) -> None:
    generation = submit(owner, project)
    generation_run(generation.pk, park=True)
    left = dead_workers_output(generation)
    queue.deliver_next_poll()
    queue.deliver_next_poll()
    done = Generation.objects.get(pk=generation.pk)
    assert done.status == Status.SUCCEEDED
    assert not Asset.objects.filter(pk=left.pk).exists()  # one set of outputs, charged once
    assert Asset.objects.filter(generation=done).count() == 1


def test_outputs_of_a_job_that_fails_after_its_worker_died_are_not_kept(
        owner: Any, project: Any, catalog: None, remote: RemoteJobs, queue: Queue, settings: Any) -> None:
    settings.GENERATION_MAX_ATTEMPTS = 1
    generation = submit(owner, project)
    generation_run(generation.pk)  # polled in place: it ends here
    Generation.objects.filter(pk=generation.pk).update(status=Status.RUNNING, awaiting_webhook=False)
    Asset.objects.filter(generation=generation).delete()
    generation = Generation.objects.get(pk=generation.pk)
    left = dead_workers_output(generation)
    later = timezone.now() + settings.STALE_RUNNING_AFTER + timedelta(seconds=1)
    assert generations_sweep_stale(now=later)["failed"] == 1  # out of attempts: failed, refunded
    assert not Asset.objects.filter(pk=left.pk).exists()  # refunded work is not delivered
