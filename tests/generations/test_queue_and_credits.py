"""What a job reports while it waits and after it ends: its place in the studio's queue, and what is
still held for it."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from billing.services import credits_summary
from generations import runner
from generations.models import Generation, Status
from generations.runner import generation_run
from generations.services import generation_create

pytestmark = pytest.mark.django_db


def submit(user: Any, project: Any) -> Generation:
    return generation_create(user=user, project_id=project.pk, model_id="local/sketch",
                             inputs={"prompt": "a lighthouse", "width": 256, "height": 256, "steps": 2})


def positions(api: APIClient) -> dict[str, Any]:
    body = api.get("/api/v1/generations").json()
    return {row["id"]: row["queue_position"] for row in body["results"]}


def test_queued_jobs_report_how_many_queued_jobs_the_workers_take_up_before_them(
        owner: Any, outsider: Any, project: Any, owner_api: APIClient, catalog: None) -> None:
    from projects.services import project_create

    elsewhere = submit(outsider, project_create(owner=outsider, name="Other"))  # anyone's job counts
    first, second, third = (submit(owner, project) for _ in range(3))
    assert positions(owner_api) == {str(first.pk): 1, str(second.pk): 2, str(third.pk): 3}
    assert owner_api.get(f"/api/v1/generations/{third.pk}").json()["queue_position"] == 3

    generation_run(elsewhere.pk)  # done: no longer ahead of anyone
    assert runner._claim(first.pk)  # a worker took it up: running on the local provider, no queue
    owner_api.post(f"/api/v1/generations/{third.pk}/cancel")
    assert positions(owner_api) == {str(first.pk): None, str(second.pk): 0, str(third.pk): None}


def test_a_running_job_reports_its_providers_queue_position(owner: Any, project: Any, owner_api: APIClient,
                                                            catalog: None) -> None:
    generation = submit(owner, project)
    assert runner._claim(generation.pk)
    Generation.objects.filter(pk=generation.pk).update(queue_position=4)  # as a fal poll records it
    assert owner_api.get(f"/api/v1/generations/{generation.pk}").json()["queue_position"] == 4


def test_the_job_list_counts_queue_places_in_a_fixed_number_of_queries(owner: Any, project: Any,
                                                                       owner_api: APIClient, catalog: None) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert owner_api.get("/api/v1/generations").status_code == 200
        return len(ctx)

    submit(owner, project)
    queries()  # the first request of a token also records its use
    few = queries()
    for _ in range(8):
        submit(owner, project)
    assert queries() == few
    assert sorted(positions(owner_api).values()) == list(range(9))


def test_the_queue_place_is_counted_from_the_small_partial_index_of_waiting_jobs(
        owner: Any, project: Any, catalog: None) -> None:
    from generations.selectors import with_queue_place

    if connection.vendor != "postgresql":
        pytest.skip("SQLite cannot match a partial index's condition against a bound parameter")
    for _ in range(3):
        submit(owner, project)
    sql, params = with_queue_place(Generation.objects.all()).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a test table is small enough to scan
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Only Scan using gen_queued_created" in plan, plan


def test_the_job_pages_show_the_queue_place(owner: Any, project: Any, client: Any, catalog: None) -> None:
    submit(owner, project)
    waiting = submit(owner, project)
    client.force_login(owner)
    page = client.get(reverse("studio:generation", kwargs={"generation_id": waiting.pk}))
    assert page.status_code == 200 and "1 ahead in the queue" in page.content.decode()
    jobs = client.get(reverse("studio:project", kwargs={"project_id": project.pk}))
    assert "0 ahead in the queue" in jobs.content.decode() and "1 ahead in the queue" in jobs.content.decode()


def test_a_canceled_job_reports_nothing_held_once_its_hold_is_released(owner: Any, project: Any,
                                                                       owner_api: APIClient, catalog: None) -> None:
    generation = submit(owner, project)
    assert owner_api.get(f"/api/v1/generations/{generation.pk}").json()["credits"]["held"] == 1
    canceled = owner_api.post(f"/api/v1/generations/{generation.pk}/cancel").json()
    assert canceled["status"] == Status.CANCELED
    assert canceled["credits"] == {"estimated": 1, "held": 0, "charged": 0}
    assert owner_api.get(f"/api/v1/generations/{generation.pk}").json()["credits"]["held"] == 0
    assert credits_summary(user=owner).held == 0


def test_a_finished_job_reports_its_charge_and_nothing_held(owner: Any, project: Any, owner_api: APIClient,
                                                            catalog: None, settings: Any) -> None:
    settings.GENERATION_POLL_INTERVAL = 0.01
    generation = submit(owner, project)
    generation_run(generation.pk)
    body = owner_api.get(f"/api/v1/generations/{generation.pk}").json()
    assert body["status"] == Status.SUCCEEDED
    assert body["credits"] == {"estimated": 1, "held": 0, "charged": 1}
