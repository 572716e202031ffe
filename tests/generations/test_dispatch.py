"""A broker that is down when a job is sent: the submit is still accepted (its credits are held once,
its row committed), and the sweep sends it once the broker is back (generations/dispatch.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from celery import current_app
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from billing.services import credits_summary
from generations import runner
from generations.dispatch import RESUME_TASK, RUN_TASK
from generations.models import Generation, Status
from generations.runner import generation_run
from generations.services import generation_create, generation_webhook_accept
from generations.sweep import generations_sweep_stale

pytestmark = pytest.mark.django_db


class Broker:
    """Stands in for the broker connection behind `send_task`: down (raises as kombu does when it
    cannot connect) or up (records what was sent)."""

    def __init__(self) -> None:
        self.up = False
        self.sent: list[tuple[str, list[str]]] = []

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        if not self.up:
            raise OperationalError("[Errno 111] Connection refused")
        self.sent.append((name, list(args)))


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Broker:
    stand_in = Broker()
    monkeypatch.setattr(current_app, "send_task", stand_in.send_task)
    return stand_in


def test_a_submit_while_the_broker_is_down_is_accepted_and_runs_once_the_sweep_sends_it_again(
        owner: Any, owner_api: Any, project: Any, catalog: None, broker: Broker,
        django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                                          "inputs": {"prompt": "a lighthouse"}}, format="json")
    assert response.status_code == 202, response.json()
    generation = Generation.objects.get(pk=response.json()["id"])
    assert generation.status == Status.QUEUED and broker.sent == []
    assert credits_summary(user=owner).held == generation.credits_held == 1

    # Still down at the next sweep: the sweep carries on and nothing is held twice.
    later = timezone.now() + settings.STALE_QUEUED_AFTER + timedelta(seconds=1)
    assert generations_sweep_stale(now=later)["redispatched"] == 1
    assert broker.sent == [] and credits_summary(user=owner).held == 1

    broker.up = True
    generations_sweep_stale(now=later + settings.STALE_QUEUED_AFTER + timedelta(seconds=1))
    assert broker.sent == [(RUN_TASK, [str(generation.pk)])]
    generation_run(generation.pk)  # what the worker runs for that message
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED and generation.credits_charged == 1
    assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}


def test_a_web_submit_while_the_broker_is_down_is_accepted(
        owner: Any, project: Any, catalog: None, broker: Broker, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        generation = generation_create(user=owner, project_id=project.pk, model_id="local/sketch",
                                       inputs={"prompt": "a fox"}, rate_limit=True)
    assert Generation.objects.get(pk=generation.pk).status == Status.QUEUED
    assert credits_summary(user=owner).held == 1


def test_runs_are_sent_by_name_to_the_generation_queue(broker: Broker) -> None:
    from generations.dispatch import generation_run_send

    broker.up = True
    assert generation_run_send("00000000-0000-0000-0000-000000000001") is True
    assert broker.sent == [(RUN_TASK, ["00000000-0000-0000-0000-000000000001"])]
    assert current_app.amqp.router.route({}, RUN_TASK)["queue"].name == "generations"


def test_a_send_that_fails_unexpectedly_after_the_commit_still_answers_202(
        owner: Any, owner_api: Any, project: Any, catalog: None, monkeypatch: pytest.MonkeyPatch,
        django_capture_on_commit_callbacks: Any) -> None:
    def broken(name: str, args: Any = None, **options: Any) -> None:
        raise RuntimeError("a router that cannot route")  # not a broker outage: nothing catches it but on_commit

    monkeypatch.setattr(current_app, "send_task", broken)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_api.post("/api/v1/generations", {"project": str(project.pk), "model": "local/sketch",
                                                          "inputs": {"prompt": "a lighthouse"}}, format="json")
    assert response.status_code == 202, response.json()
    generation = Generation.objects.get(pk=response.json()["id"])
    assert generation.status == Status.QUEUED and credits_summary(user=owner).held == generation.credits_held


def test_a_callback_for_a_parked_job_while_the_broker_is_down_is_resumed_by_the_sweep(
        owner: Any, project: Any, catalog: None, broker: Broker, django_capture_on_commit_callbacks: Any) -> None:
    generation = generation_create(user=owner, project_id=project.pk, model_id="local/sketch",
                                   inputs={"prompt": "a fox"})
    assert runner._claim(generation.pk)
    Generation.objects.filter(pk=generation.pk).update(provider_request_id="req-1", awaiting_webhook=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert generation_webhook_accept(provider="local", request_id="req-1", terminal=True)
    assert broker.sent == [] and credits_summary(user=owner).held == 1  # answered; nothing sent, nothing lost

    broker.up = True
    generations_sweep_stale(now=timezone.now() + settings.STALE_RUNNING_AFTER + timedelta(seconds=1))
    assert broker.sent == [(RESUME_TASK, [str(generation.pk)])]
    assert credits_summary(user=owner).held == 1
