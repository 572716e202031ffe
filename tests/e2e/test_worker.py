"""End to end with a real `celery worker` process on the configured broker (filesystem on the SQLite
leg, Redis on the PostgreSQL leg): API accept → worker → stored asset → settled ledger."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from assets.models import Asset
from billing.models import Hold
from billing.services import credits_summary
from generations.models import Generation, Status
from generations.sweep import generations_sweep_stale
from tests.conftest import WorkerProcess, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.timeout(240)]


def _status(generation_id: str) -> Generation:
    return Generation.objects.get(pk=generation_id)


def test_a_generation_goes_from_the_api_through_a_real_worker_to_a_stored_asset(
        celery_worker_process: WorkerProcess, owner_api: APIClient, owner: Any, project: Any, catalog: None) -> None:
    response = owner_api.post("/api/v1/generations", {
        "project": str(project.pk), "model": "local/sketch",
        "inputs": {"prompt": "a harbour at night", "width": 320, "height": 256, "steps": 3, "seed": 7}},
        format="json")
    assert response.status_code == 202
    gid = response.json()["id"]
    done = wait_for(lambda: (g := _status(gid)).status in (Status.SUCCEEDED, Status.FAILED) and g, timeout=120,
                    message=f"worker did not finish the job; log:\n{celery_worker_process.log()[-3000:]}")
    assert done.status == Status.SUCCEEDED, done.error_message
    body = owner_api.get(f"/api/v1/generations/{gid}").json()
    assert body["progress"] == 100 and len(body["outputs"]) == 1 and body["credits"]["charged"] == 1
    asset = Asset.objects.get(pk=body["outputs"][0])
    download = owner_api.get(f"/api/v1/assets/{asset.pk}/download")
    data = b"".join(download.streaming_content)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) == asset.size
    assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}
    assert Hold.objects.get(reference=f"generation:{gid}").status == "settled"
    call_command("ledger_verify")


def test_a_worker_killed_mid_job_leads_to_a_completed_job_not_a_stuck_one(
        worker_env: dict[str, str], tmp_path: Any, owner: Any, owner_api: APIClient, project: Any,
        catalog: None) -> None:
    slow = {**worker_env, "LOCAL_SKETCH_STEP_SECONDS": "0.25"}
    first = WorkerProcess(slow, tmp_path / "first.log").start()
    try:
        gid = owner_api.post("/api/v1/generations", {
            "project": str(project.pk), "model": "local/sketch",
            "inputs": {"prompt": "storm", "width": 256, "height": 256, "steps": 40}}, format="json").json()["id"]
        wait_for(lambda: _status(gid).progress > 0, timeout=90,
                 message=f"job never started; log:\n{first.log()[-3000:]}")
        first.kill()
    finally:
        first.kill()
    assert _status(gid).status == Status.RUNNING  # the dead worker left it running, hold still open
    assert credits_summary(user=owner).held == 1
    # The worker died long ago, longer than the model's whole timeout: the retry must get its own.
    first_start = timezone.now() - timedelta(hours=1)
    Generation.objects.filter(pk=gid).update(started_at=first_start, attempt_started_at=first_start)
    # What beat's periodic sweep does once the heartbeat is older than STALE_RUNNING_AFTER.
    counts = generations_sweep_stale(now=timezone.now() + timedelta(hours=1))
    assert counts["requeued"] == 1
    # Slow enough that the runner polls the job while it runs (and checks its deadline), at ~2 s.
    second = WorkerProcess({**worker_env, "LOCAL_SKETCH_STEP_SECONDS": "0.05"}, tmp_path / "second.log").start()
    try:
        done = wait_for(lambda: (g := _status(gid)).status in (Status.SUCCEEDED, Status.FAILED) and g,
                        timeout=120, message=f"not recovered; log:\n{second.log()[-3000:]}")
    finally:
        second.stop()
    assert done.status == Status.SUCCEEDED and done.attempts == 2, done.error_message
    assert done.started_at == first_start and done.attempt_started_at > first_start
    assert Asset.objects.filter(generation_id=gid).count() == 1
    assert credits_summary(user=owner).as_dict() == {"balance": 499, "held": 0, "available": 499}
    call_command("ledger_verify")
