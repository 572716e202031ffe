"""Thin tasks: they take ids and call services that tests can call directly. Which queue each runs on
is CELERY_TASK_ROUTES' (docs/ARCHITECTURE.md, "Queues"); the services send them by name
(generations/dispatch.py), so nothing imports this module but Celery."""

from __future__ import annotations

import logging

from celery import current_app, shared_task

from generations import dispatch
from generations.attempts import RetryLater, generation_fail
from generations.health import outcomes_prune
from generations.runner import generation_resume, generation_run
from generations.sweep import generations_sweep_stale as sweep_stale

logger = logging.getLogger(__name__)


def _park() -> bool:
    # Eager mode (debugging) runs a sent task inline: a parked job's next poll would run at once, inside
    # this one, without its countdown. There, jobs are polled to the end in place.
    return not current_app.conf.task_always_eager


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def generation_run_task(self, generation_id: str) -> None:  # type: ignore[no-untyped-def]
    try:
        generation_run(generation_id, park=_park())
    except RetryLater as retry:
        # The row is back to queued; this re-delivery will claim it again. Attempts are capped by
        # GENERATION_MAX_ATTEMPTS in the runner, not here.
        raise self.retry(countdown=retry.countdown) from None
    except Exception:
        logger.exception("generation %s crashed", generation_id)
        generation_fail(generation_id=generation_id, code="internal_error",
                        message="The studio hit an internal error running this job.")
        raise


@shared_task(acks_late=True, reject_on_worker_lost=True)
def generation_resume_task(generation_id: str, parked_at: str | None = None) -> None:
    """A parked job's next step: its webhook came, its next poll is due (`parked_at`: the park's
    token), the sweep found it stale, or its user asked to cancel it."""
    try:
        generation_resume(generation_id, parked_at=parked_at, park=_park())
    except RetryLater as retry:
        # The job is back to queued; it runs from the top (claim, poll) after the backoff.
        dispatch.generation_run_send(generation_id, countdown=retry.countdown)
    except Exception:
        logger.exception("generation %s crashed while resuming", generation_id)
        generation_fail(generation_id=generation_id, code="internal_error",
                        message="The studio hit an internal error running this job.")
        raise


@shared_task
def generations_sweep_stale() -> dict[str, int]:
    return sweep_stale()


@shared_task
def provider_outcomes_prune() -> int:
    return outcomes_prune()
