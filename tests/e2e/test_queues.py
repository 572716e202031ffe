"""Queues per kind of work, with real worker processes: 50 long fal jobs on 2 generation workers of 2
slots each all make progress together (parked between polls, not holding a slot each), while an
upload's preview is made on its own queue meanwhile. The fal adapter is the real one, against the
loopback fake of fal's queue API (tests/fakes/fal.py)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from assets.models import Asset, PreviewStatus
from assets.services import asset_create_from_bytes
from billing.services import credits_summary
from generations.models import Generation, Status
from generations.services import generation_create
from tests.conftest import WorkerProcess, wait_for
from tests.fakes.fal import FalFakeServer
from tests.fakes.server import LocalCA

pytestmark = [pytest.mark.worker, pytest.mark.timeout(120)]

JOBS = 50
SCHNELL = "fal-ai/flux/schnell"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), "orange").save(buf, "PNG")
    return buf.getvalue()


def _polls(fal: FalFakeServer) -> dict[str, int]:
    return {request_id: job["polls"] for request_id, job in list(fal.state["jobs"].items())}


def _logs(workers: list[WorkerProcess]) -> str:
    return "\n".join(f"--- {w.log_path.name}\n{w.log()[-2000:]}" for w in workers)


def test_fifty_long_provider_jobs_progress_together_on_two_workers_and_previews_are_made_meanwhile(
        worker_env: dict[str, str], tmp_path: Path, owner: Any, project: Any, catalog: None, settings: Any) -> None:
    ca = LocalCA(tmp_path / "ca")
    with FalFakeServer(ca=ca) as fal:
        fal.state["progress_polls"] = 10**6  # every job runs until the test lets them finish
        settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "fal": "test-key"}  # fal available at submit
        env = {**worker_env, "FAL_KEY": "test-key", "FAL_QUEUE_URL": fal.url, "PROVIDER_CA_BUNDLE": str(ca.ca_file),
               "TEST_FAL_FAKE_ADDRESS": f"127.0.0.1:{fal.port}", "GENERATION_PARKED_POLL_INTERVAL": "0.2"}
        workers = [WorkerProcess(env, tmp_path / f"generations-{n}.log", queues=("generations",), concurrency=2,
                                 name=f"generations{n}", app="tests.e2e.fal_worker") for n in range(2)]
        workers.append(WorkerProcess(env, tmp_path / "previews.log", queues=("previews",), name="previews"))
        for worker in workers:
            worker.start()
        try:
            ids = [generation_create(user=owner, project_id=project.pk, model_id=SCHNELL,
                                     inputs={"prompt": f"kite {n}", "width": 256, "height": 256}).pk
                   for n in range(JOBS)]
            wait_for(lambda: len(fal.state["jobs"]) == JOBS, timeout=60,
                     message=f"not every job was submitted to fal; logs:\n{_logs(workers)}")
            # All 50 are running at fal now: each must be polled at least twice more while none ends.
            submitted = _polls(fal)
            wait_for(lambda: all(polls >= submitted[rid] + 2 for rid, polls in _polls(fal).items()), timeout=60,
                     message=f"not every job was polled again; logs:\n{_logs(workers)}")
            running = Generation.objects.filter(pk__in=ids, status=Status.RUNNING)
            assert running.count() == JOBS
            # Every job shows fal's log lines as they came (the job's own log, written at each park).
            assert all(any(line["message"].startswith("step ") for line in logs)
                       for logs in running.values_list("logs", flat=True))
            assert all("generation_resume_task" in w.log() for w in workers[:2])  # both workers poll

            upload = asset_create_from_bytes(project=project, data=_png(), name="upload.png")
            made = wait_for(lambda: (a := Asset.objects.get(pk=upload.pk)).preview_status == PreviewStatus.READY
                            and a, timeout=60, message=f"no preview; logs:\n{_logs(workers)}")
            assert made.thumb_small.name
            assert Generation.objects.filter(pk__in=ids, status=Status.RUNNING).count() == JOBS

            fal.state["progress_polls"] = 0  # every job completes at its next poll
            wait_for(lambda: not Generation.objects.filter(pk__in=ids, status=Status.RUNNING).exists(), timeout=60,
                     message=f"jobs did not finish; logs:\n{_logs(workers)}")
        finally:
            # Their work is done (or the test failed): SIGKILL, rather than three warm shutdowns in a row
            # (each waits out the filesystem broker's drain loop).
            for worker in workers:
                worker.kill()
    done = Generation.objects.filter(pk__in=ids)
    assert set(done.values_list("status", flat=True)) == {Status.SUCCEEDED}
    assert Asset.objects.filter(generation_id__in=ids).count() == JOBS
    charged = sum(done.values_list("credits_charged", flat=True))
    assert charged > 0 and credits_summary(user=owner).as_dict() == {"balance": 500 - charged, "held": 0,
                                                                      "available": 500 - charged}
