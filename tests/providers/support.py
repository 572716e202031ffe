"""Helpers the provider tests share (their fixtures are in conftest.py): polling a job to its end, and
running one through the pipeline."""

from __future__ import annotations

import time
from typing import Any, Protocol

from generations.models import Generation
from generations.providers.base import ProviderJob, ProviderStatus
from generations.runner import generation_run
from generations.services import generation_create


class Pollable(Protocol):
    def poll(self, job: ProviderJob) -> ProviderStatus: ...


def poll_to_end(provider: Pollable, job: ProviderJob, *, seconds: float = 10.0, pause: float = 0.01,
                polls: int | None = None) -> list[ProviderStatus]:
    """Every status up to the terminal one. Jobs on a thread (local, synchronous calls) are polled for up
    to `seconds` with a `pause` between polls; a remote fake that moves on at each poll, `polls` times
    with no pause."""
    statuses: list[ProviderStatus] = []
    deadline = time.monotonic() + seconds
    while (len(statuses) < polls) if polls is not None else (time.monotonic() < deadline):
        statuses.append(provider.poll(job))
        if statuses[-1].terminal:
            return statuses
        if polls is None:
            time.sleep(pause)
    raise AssertionError(f"job {job.request_id} did not finish: {statuses[-1] if statuses else 'never polled'}")


def run_pipeline(owner: Any, project: Any, model_id: str, inputs: dict[str, Any]) -> Generation:
    """Submit a job as the API does and run it to its end in this process, as a worker would."""
    generation = generation_create(user=owner, project_id=project.pk, model_id=model_id, inputs=inputs)
    generation_run(generation.pk)
    generation.refresh_from_db()
    return generation
